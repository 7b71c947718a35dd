"""Scenario generation and activity binning (ctas7.sim.scenarios).

Peers measured in the same run: ``time_generate`` (activity only, what Monte
Carlo pays) against ``time_generate_with_events`` (plus the event stream),
and ``time_bin_activity`` against ``time_bin_activity_add_at`` (the plain
``np.add.at`` formulation).
"""

import numpy as np

from ctas7.sim import scenarios as S

from .common import SEED

NAMES = list(S.SCENARIOS)


class Generate:
    params = NAMES
    param_names = ["scenario"]

    def setup(self, name):
        self.sc = S.get(name)
        self.seed = SEED % 100_000

    def time_generate(self, name):
        self.sc.generate(self.seed)

    def time_generate_null(self, name):
        self.sc.generate(self.seed, null=True)

    def time_generate_with_events(self, name):
        self.sc.generate(self.seed).events

    def track_events_per_run(self, name):
        return int(self.sc.generate(self.seed).events.shape[0])

    track_events_per_run.unit = "events"


class GenerateAll:
    """One run of every scenario: the cost of one Monte Carlo sweep's data."""

    def time_all_41(self):
        for sc in S.SCENARIOS.values():
            sc.generate(SEED % 100_000)

    def peakmem_all_41_with_events(self):
        for sc in S.SCENARIOS.values():
            sc.generate(SEED % 100_000).events


def _add_at(events, tick_ns, n_nodes, n_ticks):
    tick = events["ts"] // tick_ns
    out = np.zeros((n_ticks, n_nodes), np.float64)
    np.add.at(out, (tick, events["node"].astype(np.int64)), events["value"])
    return out.astype(np.float32)


class BinActivity:
    params = ["tokyo_sarin_1995", "nuclear_device", "mumbai_2008"]
    param_names = ["scenario"]

    def setup(self, name):
        run = S.get(name).generate(SEED % 100_000)
        self.args = (run.events, run.tick_ns, run.n_nodes, run.n_ticks)

    def time_bin_activity(self, name):
        S.bin_activity(*self.args)

    def time_bin_activity_add_at(self, name):
        _add_at(*self.args)



def _write_event_files():
    import tempfile

    run = S.get("madrid_2004").generate(SEED % 100_000)
    d = tempfile.mkdtemp(prefix="ctas7-asv-read-")
    paths = {fmt: f"{d}/events.{fmt}" for fmt in ("csv", "jsonl", "npy")}
    for path in paths.values():
        S.write_events(path, run.events)
    return paths


class ReadEvents:
    """Reading a replay event file (one madrid_2004 run, ~14k events)."""

    params = ["csv", "jsonl", "npy"]
    param_names = ["format"]

    def setup_cache(self):
        return _write_event_files()

    def time_read(self, paths, fmt):
        S.read_events(paths[fmt])


class ReadJsonl:
    """JSONL through the whole-file fast path against the row-by-row reader
    (what every JSONL file cost before), in the same run."""

    def setup_cache(self):
        return _write_event_files()["jsonl"]

    def time_fast_path(self, path):
        S.read_events(path)

    def time_row_by_row(self, path):
        fast = S._read_jsonl_fast
        S._read_jsonl_fast = lambda f, max_line_bytes: None
        try:
            S.read_events(path)
        finally:
            S._read_jsonl_fast = fast
