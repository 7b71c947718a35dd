"""AXON and PRISM per 1,024-event batch, with 0 or 1 convergence.

The usual batch carries no convergence, so that case must be near-free; a
batch with one convergence pays for one decision (AXON) or one report
(PRISM). ``Peer`` times an identity stage on the same batch, the cheapest
possible stage, so results can be read as a ratio.

Setups warm the stages up (``WARM`` batches) so that a timed call sees the
steady state even when asv times one call per fresh setup, as the asv in
this project's environment does for benchmarks with a ``setup``.
"""

import functools

import numpy as np

from ctas7.events import make_events
from ctas7.records import MATCH_DTYPE, Convergence
from ctas7.stage import Frame, FunctionStage
from ctas7.stages.axon import Axon, CollectHandler
from ctas7.stages.prism import Prism

from .common import rng

BATCH = 1024
TICK = 1_000_000
POOL = 4096
WARM = 256


def _batch(offset: int) -> np.ndarray:
    g = rng(offset)
    ts = np.sort(g.integers(0, 64 * TICK, BATCH))
    return make_events(ts=ts, node=g.integers(0, 64, BATCH), kind=g.integers(0, 8, BATCH), value=1.0)


def _convergence(i: int, events: np.ndarray) -> Convergence:
    """The i-th of a stream of distinct convergences: 3-6 nodes, ts one second apart."""
    g = rng(1000 + i % 64)
    k = 3 + i % 4
    nodes = tuple(int(n) for n in g.choice(64, size=k, replace=False))
    end = int(events["ts"][-1]) + i * 1_000_000_000
    return Convergence(
        ts=end,
        tick=end // TICK,
        nodes=nodes,
        groups=tuple(n % 5 for n in nodes),
        first_hot_ts=tuple(end - int(x) for x in g.integers(0, 8 * TICK, k)),
        scores=tuple(float(x) for x in g.uniform(4.0, 20.0, k)),
        directions=tuple(int(x) for x in g.choice([-1, 1], size=k)),
        weighted_count=float(k),
        confidence=float(g.uniform(0.7, 1.0)),
        pattern_matches=int(g.integers(0, 5)),
        window_start_ts=end - 32 * TICK,
        event_count=int(g.integers(50, 500)),
    )


@functools.lru_cache(maxsize=1)
def _pool():
    """Distinct convergences, built once per benchmark process."""
    events = _batch(0)
    return [_convergence(i, events) for i in range(POOL)]


def _identity(frame):
    return frame


class AxonBatch:
    """``Axon.process`` on one batch; every convergence is a new decision."""

    params = ([0, 1], ["none", "collect"])
    param_names = ["convergences", "handlers"]

    def setup(self, n_conv, handlers):
        self.events = _batch(0)
        self.handlers = handlers
        self.pool = _pool()
        self.n_conv = n_conv
        self.axon = self._warm_axon()
        if not n_conv:  # end the warm-up on the path being timed
            for _ in range(WARM):
                self.time_process(n_conv, handlers)

    def _warm_axon(self):
        hs = [CollectHandler(maxlen=16)] if self.handlers == "collect" else []
        # cooldown 0: every convergence is actioned, the most expensive path
        axon = Axon(cooldown_ns=0, handlers=hs)
        for c in self.pool[:WARM]:
            axon.process(Frame(events=self.events, convergences=[c]))
        axon.flush(timeout=5.0)
        self.i = WARM
        return axon

    def teardown(self, n_conv, handlers):
        self.axon.close(timeout=5.0)

    def time_process(self, n_conv, handlers):
        if self.n_conv:
            if self.i == POOL:  # out of distinct convergences: start over on a fresh stage
                self.axon.close(timeout=5.0)
                self.axon = self._warm_axon()
            convs = [self.pool[self.i]]
            self.i += 1
        else:
            convs = []
        self.axon.process(Frame(events=self.events, convergences=convs))


class PrismBatch:
    """``Prism.process`` on one batch, with AXON's decision and optional TETH matches."""

    params = ([0, 1], [False, True])
    param_names = ["convergences", "matches"]

    def setup(self, n_conv, with_matches):
        self.events = _batch(0)
        self.convs = [_convergence(0, self.events)] if n_conv else []
        c = self.convs[0] if n_conv else None
        self.responses = Axon().process(Frame(events=self.events, convergences=list(self.convs))).responses
        self.matches = None
        if with_matches:
            g = rng(7)
            m = np.zeros(64, dtype=MATCH_DTYPE)
            m["ts"] = np.sort(g.choice(self.events["ts"], 64))
            nodes = list(c.nodes) if c is not None else [0]
            m["node"] = g.choice(nodes + list(range(64)), 64)
            m["pattern"] = g.integers(0, 6, 64)
            self.matches = m
        self.prism = Prism(pattern_names=["beacon", "exfil", "recon", "spread", "burst", "probe"])
        for _ in range(WARM):
            self.time_process(n_conv, with_matches)

    def time_process(self, n_conv, with_matches):
        self.prism.process(
            Frame(events=self.events, convergences=self.convs, responses=self.responses, matches=self.matches)
        )


class Peer:
    """The cheapest stage on the same batch and frame construction: the yardstick."""

    def setup(self):
        self.events = _batch(0)
        self.stage = FunctionStage(_identity)
        for _ in range(WARM):
            self.time_identity_stage()

    def time_identity_stage(self):
        self.stage.process(Frame(events=self.events, convergences=[]))
