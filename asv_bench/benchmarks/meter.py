"""Convergence meter: streaming update + convergence check, evaluate_activity,
and scaling with the number of nodes. Peers: the pure numpy/Python reference
meter (``reference_evaluate``) on the same data."""

import numpy as np
from asv_runner.benchmarks.mark import SkipNotImplemented  # skips one parameter from inside a benchmark

from ctas7.sim.synthetic import batches, synthetic_stream
from ctas7.stage import Frame
from ctas7.stages.meter import (
    Meter,
    MeterParams,
    evaluate_activity,
    reference_evaluate,
    reference_score_series,
    score_series,
)

from .common import rng

BATCH = 1024
TIMED_BATCHES = 64
# Strict enough that the Poisson background of a 247-node stream does not
# converge: the timing is the steady-state update + check, not record building.
STREAM_PARAMS = MeterParams(tick_ns=1_000_000, score_threshold=16.0, min_hot_nodes=4, min_samples=10)
#: Detector choices timed: the surprisal test alone is the peer of the CUSUM
#: variants (same data, same run).
DETECTORS = ["surprisal", "both"]


def _stream(n_nodes):
    n_events = max(200 * 1024, 30 * 4 * n_nodes)
    return synthetic_stream(n_events, n_stations=min(n_nodes, 65_535), n_nodes=n_nodes, seed=int(rng(n_nodes).integers(1 << 30)))


def _activity(stream, tick_ns, n_nodes):
    t = stream["ts"] // tick_ns
    t = t - t.min()
    a = np.zeros((int(t.max()) + 1, n_nodes), dtype=np.float32)
    np.add.at(a, (t, stream["node"].astype(np.int64)), stream["value"])
    return a


class MeterStream:
    """Per 1,024-event batch: scatter-add, tick closes, states, convergence.

    Each sample processes TIMED_BATCHES consecutive batches on a meter warmed
    on the batches before them; divide by TIMED_BATCHES for per-batch time.
    """

    params = [[6, 247, 100_000], DETECTORS]
    param_names = ["n_nodes", "detector"]
    number = 1
    repeat = (5, 20, 30.0)

    def setup_cache(self):
        out = {}
        for n in self.params[0]:
            s = _stream(n)
            frames = list(batches(s, BATCH))
            out[n] = (frames, TIMED_BATCHES)
        return out

    def setup(self, cache, n_nodes, detector):
        frames, k = cache[n_nodes]
        warm, self.timed = frames[:-k], frames[-k:]
        self.p = STREAM_PARAMS.replace(detector=detector)
        self.meter = Meter(self.p, n_nodes=n_nodes)
        for b in warm:
            self.meter.process(Frame(b))
        self.frames = [Frame(b) for b in self.timed]
        if n_nodes <= 247:
            self.ref_activity = _activity(np.concatenate(self.timed), STREAM_PARAMS.tick_ns, n_nodes)

    def time_update_64_batches(self, cache, n_nodes, detector):
        for f in self.frames:
            self.meter.process(f)

    def time_reference_64_batches(self, cache, n_nodes, detector):
        if n_nodes > 247:
            raise SkipNotImplemented("the Python reference is too slow at this size")
        for b in self.timed:
            a = np.zeros(n_nodes, np.float32)
            np.add.at(a, b["node"].astype(np.int64), b["value"])
        reference_evaluate(self.ref_activity, None, self.p)

    def peakmem_update(self, cache, n_nodes, detector):
        for f in self.frames:
            self.meter.process(f)


class EvaluateActivity:
    """One Monte Carlo call: a ticks x nodes activity matrix -> alarm ticks.

    ``time_evaluate_with_evidence`` adds a TETH match matrix (2% of cells
    hold 1-2 matches; ``pattern_bonus`` 4 bits); ``time_evaluate`` on the same
    data is its peer (the evidence=None path).
    """

    params = [[(24, 500), (40, 600), (10, 200)], DETECTORS]  # shapes, detector
    param_names = ["nodes_ticks", "detector"]

    def setup(self, shape, detector):
        n, t = shape
        r = rng(n * 1000 + t)
        self.a = r.poisson(r.uniform(1, 20, size=n), size=(t, n)).astype(np.float32)
        self.a[t // 2, : n // 3] += 50.0
        self.groups = np.arange(n) % 5
        self.params_ = MeterParams(min_samples=10, detector=detector, pattern_bonus=4.0)
        self.config = self.params_.compile()
        self.evidence = ((r.random((t, n)) < 0.02) * r.integers(1, 3, size=(t, n))).astype(np.uint32)

    def time_evaluate(self, shape, detector):
        evaluate_activity(self.a, self.groups, self.config)

    def time_evaluate_with_evidence(self, shape, detector):
        evaluate_activity(self.a, self.groups, self.config, evidence=self.evidence)

    def time_evaluate_from_params(self, shape, detector):
        evaluate_activity(self.a, self.groups, self.params_)

    def time_reference(self, shape, detector):
        reference_evaluate(self.a, self.groups, self.params_)


class EvaluateScaling:
    """evaluate_activity cost per tick as the node count grows."""

    params = [6, 247, 100_000]
    param_names = ["n_nodes"]

    def setup(self, n_nodes):
        r = rng(n_nodes)
        ticks = 200 if n_nodes < 10_000 else 20
        self.a = r.poisson(3.0, size=(ticks, n_nodes)).astype(np.float32)
        self.config = MeterParams(min_samples=10).compile()

    def time_evaluate(self, n_nodes):
        evaluate_activity(self.a, None, self.config)

    def track_ns_per_node_tick(self, n_nodes):
        import time

        runs = []
        for _ in range(7):
            t0 = time.perf_counter_ns()
            evaluate_activity(self.a, None, self.config)
            runs.append(time.perf_counter_ns() - t0)
        return float(np.median(runs)) / self.a.size

    track_ns_per_node_tick.unit = "ns"


#: score_series settings: the defaults (Anscombe, smoothing, CUSUM "both"),
#: the surprisal alone, and the scale-aware CUSUM of asv_bench/peers.py.
SERIES_PARAMS = {
    "default": MeterParams(),
    "surprisal": MeterParams(smoothing=1.0, detector="surprisal"),
    "cusum": MeterParams(transform="none", poisson_floor=0.0, var_floor=0.25, detector="cusum", smoothing=1.0,
                         cusum_k=1.0, cusum_offset=0.0, score_threshold=20.0),
}


class ScoreSeries:
    """One series, one call (the NAB detector path): 200,000 values with a
    step and a spike. Peer: the numpy/Python reference on a 2,000-value
    prefix (divide by 2,000 vs 200,000 for the per-value ratio)."""

    params = [list(SERIES_PARAMS)]
    param_names = ["settings"]

    def setup(self, settings):
        r = rng(77)
        x = r.normal(50.0, 3.0, 200_000)
        x[120_000:] += 6.0
        x[150_000] += 60.0
        self.x = x.astype(np.float32)
        self.prefix = self.x[:2_000].copy()
        self.config = SERIES_PARAMS[settings].compile()
        self.p = SERIES_PARAMS[settings]

    def time_score_series(self, settings):
        score_series(self.x, self.config)

    def time_reference_2k(self, settings):
        reference_score_series(self.prefix, self.p)
