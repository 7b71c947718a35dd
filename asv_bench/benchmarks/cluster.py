"""hft-cluster: metrics overhead on the hot path, end-to-end throughput and latency.

- ``StepOverhead``: one turn of the pipeline loop (stamp scan, stages,
  latency and per-stage histograms in shared memory, counters) on a batch,
  with the metrics segment on and off, around a trivial one-stage chain so
  that the difference is the metrics cost alone.
  ``track_metrics_ns_per_event`` is that difference per event, from
  interleaved rounds in one process (median of rounds).
- ``ClusterRun``: real cluster runs (default placement, no sink):
  unpaced throughput, throughput at a paced 5M events/s offered (zero loss
  asserted), and ingest-to-decision latency at a paced 1M events/s;
  the peer is the bare default chain on the same kind of events in this
  process (no processes, channels or metrics), reported as a ratio.
- ``LatencyAt1M``: p50/p99/p99.9 at 1M events/s, default placement vs
  pinned with a busy-polling worker vs two merged workers, from one set of
  runs.

Figures from a shared 2-core machine: compare ratios within one run.
"""

import os
import time

import numpy as np

from ctas7.cluster import Cluster
from ctas7.events import empty
from ctas7.stage import Pipeline, stage
from ctas7.stations.worker import KIND_STAMP, FastSyntheticSource

from .common import SEED


@stage
def passthrough(frame):
    return frame


def _stamped_batch(n):
    b = empty(n)
    FastSyntheticSource(n_stations=247, seed=SEED).fill(b[: n - 1], 1_000, 100.0)
    b[n - 1]["kind"] = KIND_STAMP
    b[n - 1]["ts"] = b[n - 2]["ts"]
    b[n - 1]["sch"] = 1_000
    b[n - 1]["value"] = n - 1
    return b


def _bare_cluster(metrics, tag):
    c = Cluster(stations=4, workers=[(0, 4)], surreal=None, name=f"bench-{tag}-{os.getpid()}-{time.monotonic_ns()}",
                chain=Pipeline([passthrough]), metrics=metrics)
    c._setup()
    return c


class StepOverhead:
    params = ([False, True], [64, 1024, 16384])
    param_names = ["metrics", "batch"]

    def setup(self, metrics, batch):
        self.c = _bare_cluster(metrics, "step")
        self.b = _stamped_batch(batch)

    def teardown(self, metrics, batch):
        self.c._close_segments()

    def time_step(self, metrics, batch):
        self.c._step(self.b)


class MetricsOverhead:
    params = [64, 1024, 16384]
    param_names = ["batch"]
    unit = "ns/event"
    rounds = 15
    reps = 200

    def setup(self, batch):
        self.on = _bare_cluster(True, "on")
        self.off = _bare_cluster(False, "off")
        self.b = _stamped_batch(batch)

    def teardown(self, batch):
        self.on._close_segments()
        self.off._close_segments()

    def _time(self, c):
        t = time.perf_counter_ns()
        for _ in range(self.reps):
            c._step(self.b)
        return (time.perf_counter_ns() - t) / self.reps

    def track_metrics_ns_per_event(self, batch):
        diffs = []
        for _ in range(self.rounds):
            diffs.append(self._time(self.on) - self._time(self.off))
        return float(np.median(diffs)) / batch

    track_metrics_ns_per_event.unit = "ns/event"


def _chain_peer_rate(seconds=1.0):
    """Events/s of the bare default chain on 8,192-event synthetic batches in this process."""
    from ctas7.chain import default_chain
    from ctas7.stage import Frame

    chain = default_chain()
    src = FastSyntheticSource(n_stations=247, seed=SEED, burst_period_ns=5 * 10**9, burst_len_ns=3 * 10**8,
                              burst_share=0.1, n_burst=4)
    b = empty(8192)
    t_ev, n, t0 = 10**12, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        src.fill(b, t_ev, 200.0)
        t_ev += 8192 * 200
        chain.process(Frame(events=b))
        n += len(b)
    rate = n / (time.perf_counter() - t0)
    chain.stages[2].close()
    return rate


def _run(rate, seconds, workers=None, **kw):
    """One cluster run; ``workers=None``: the default placement (one per core beyond the loop's)."""
    from ctas7.cluster import plan_workers

    ranges, _ = plan_workers(workers or 64, 247, "synthetic", oversubscribe=workers is not None)
    c = Cluster(stations=247, workers=ranges, rate=rate, surreal=None,
                name=f"bench-run-{os.getpid()}-{time.monotonic_ns()}", **kw)
    return c.run(seconds, handle_signals=False)


class LatencyAt1M:
    """Ingest-to-decision latency (µs, corrected for coordinated omission) at 1M events/s offered.

    ``default``: the default placement (on 2 cores: one worker and the loop,
    left to the scheduler, the worker sleeping between commits);
    ``pinned_spinning``: the same two pinned to a CPU each, the worker
    busy-polling its pacing (``--pin on``); ``two_workers_merged``: two
    workers whose channels are merged behind the watermark (hold-back 25 ms),
    the default before the one-worker placement. The ratios between them in
    one run are the figures to read on a shared machine.
    """

    params = (["default", "pinned_spinning", "two_workers_merged"],)
    param_names = ["placement"]
    timeout = 180
    number = 1
    repeat = 1

    def setup_cache(self):
        out = {}
        for placement in self.params[0]:
            if placement == "default":
                s = _run(1e6, 3.0)
            elif placement == "pinned_spinning":
                s = _run(1e6, 3.0, pin=True)
            else:
                s = _run(1e6, 3.0, 2)
            out[placement] = s["latency_us"]
        return out

    def track_p50_us(self, cache, placement):
        return cache[placement]["p50_us"]

    def track_p99_us(self, cache, placement):
        return cache[placement]["p99_us"]

    def track_p999_us(self, cache, placement):
        return cache[placement]["p99.9_us"]

    def track_p99_ratio_to_two_workers(self, cache, placement):
        return cache[placement]["p99_us"] / cache["two_workers_merged"]["p99_us"]

    def track_p99_ratio_to_default(self, cache, placement):
        return cache[placement]["p99_us"] / cache["default"]["p99_us"]

    def track_p999_ratio_to_default(self, cache, placement):
        return cache[placement]["p99.9_us"] / cache["default"]["p99.9_us"]

    track_p50_us.unit = track_p99_us.unit = track_p999_us.unit = "us"
    track_p99_ratio_to_two_workers.unit = "ratio"
    track_p99_ratio_to_default.unit = track_p999_ratio_to_default.unit = "ratio"


class ClusterRun:
    timeout = 120
    number = 1
    repeat = 1

    def track_unpaced_events_per_s(self):
        return _run(float("inf"), 3.0)["throughput_events_per_s"]

    track_unpaced_events_per_s.unit = "events/s"

    def track_unpaced_ratio_to_bare_chain(self):
        peer = _chain_peer_rate()
        s = _run(float("inf"), 3.0)
        assert s["accounting"]["balanced"]
        return s["throughput_events_per_s"] / peer

    track_unpaced_ratio_to_bare_chain.unit = "ratio"

    def track_paced_5M_events_per_s(self):
        s = _run(5e6, 4.0)
        a = s["accounting"]
        # Zero loss is part of the target: a run that loses events fails.
        assert a["balanced"] and sum(a["dropped"].values()) == 0 and a["lost_records_in_channels"] == 0
        return s["throughput_events_per_s"]

    track_paced_5M_events_per_s.unit = "events/s"

    def track_p99_us_at_1M(self):
        return _run(1e6, 4.0)["latency_us"]["p99_us"]

    track_p99_us_at_1M.unit = "us"

    def track_p999_us_at_1M(self):
        return _run(1e6, 4.0)["latency_us"]["p99.9_us"]

    track_p999_us_at_1M.unit = "us"
