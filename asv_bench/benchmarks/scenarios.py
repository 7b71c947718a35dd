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
