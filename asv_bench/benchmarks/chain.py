"""The full default chain (TETH | Meter | AXON | PRISM) in one process.

A seeded 247-station stream with a burst on 14 nodes (so the meter
converges and AXON/PRISM do real work). Each timed sample processes the
same ``TIMED_EVENTS`` events, cut into frames of ``batch``, on a chain
warmed on the events before them: ``TIMED_EVENTS / time`` is events/s.
``StageInChain`` times each stage on frames that went through the stages
before it; ``track_events_per_s`` is the one-process throughput of a fresh
chain over the whole stream. Peer: ``python asv_bench/peers.py --only chain``.
"""

import time

import numpy as np

from ctas7.chain import default_chain
from ctas7.sim.synthetic import synthetic_stream
from ctas7.stage import Frame

from .common import SEED

N_EVENTS = 200_000
WARM_EVENTS = 100_000
TIMED_EVENTS = 65_536
STAGES = ["teth", "meter", "axon", "prism"]


def _stream():
    return synthetic_stream(N_EVENTS, n_stations=247, burst_nodes=range(0, 42, 3), burst_start=0.55, seed=SEED)


def _frames(events, batch):
    return [np.ascontiguousarray(events[i:i + batch]) for i in range(0, events.shape[0], batch)]


def _close(chain):
    for st in chain.stages:
        close = getattr(st, "close", None)
        if close is not None:
            close()


def _warm_chain(stream, batch):
    chain = default_chain()
    for f in _frames(stream[:WARM_EVENTS], batch):
        chain.process(Frame(f))
    return chain


class DefaultChain:
    """Whole chain per TIMED_EVENTS events, by frame size."""

    params = [[1024, 4096, 16384]]
    param_names = ["batch"]
    number = 1
    repeat = (5, 20, 30.0)
    timeout = 180

    def setup_cache(self):
        return _stream()

    def setup(self, stream, batch):
        self.chain = _warm_chain(stream, batch)
        self.timed = _frames(stream[WARM_EVENTS:WARM_EVENTS + TIMED_EVENTS], batch)

    def teardown(self, stream, batch):
        _close(self.chain)

    def time_process(self, stream, batch):
        process = self.chain.process
        for f in self.timed:
            process(Frame(f))


class StageInChain:
    """One stage of the chain per TIMED_EVENTS events (frames of 4096), fed by the stages before it."""

    params = [STAGES]
    param_names = ["stage"]
    number = 1
    repeat = (5, 20, 30.0)
    timeout = 180

    def setup_cache(self):
        return _stream()

    def setup(self, stream, stage):
        self.chain = _warm_chain(stream, 4096)
        k = STAGES.index(stage)
        upstream, self.stage = self.chain.stages[:k], self.chain.stages[k]
        self.frames = []
        for f in _frames(stream[WARM_EVENTS:WARM_EVENTS + TIMED_EVENTS], 4096):
            frame = Frame(f)
            for st in upstream:
                frame = st.process(frame)
            self.frames.append(frame)

    def teardown(self, stream, stage):
        _close(self.chain)

    def time_stage(self, stream, stage):
        process = self.stage.process
        for frame in self.frames:
            process(frame)


class Throughput:
    """Fresh chain over the whole stream: events/s, convergences seen, peak memory."""

    timeout = 180

    def setup_cache(self):
        return _stream()

    def track_events_per_s(self, stream):
        chain = default_chain()
        frames = _frames(stream, 4096)
        t0 = time.perf_counter()
        for f in frames:
            chain.process(Frame(f))
        dt = time.perf_counter() - t0
        _close(chain)
        return stream.shape[0] / dt

    track_events_per_s.unit = "events/s"

    def track_convergences(self, stream):
        # the workload check: a chain that stops converging would time a different path
        chain = default_chain()
        n = 0
        for f in _frames(stream, 4096):
            n += len(chain.process(Frame(f)).convergences)
        _close(chain)
        return n

    track_convergences.unit = "convergences"

    def peakmem_stream(self, stream):
        chain = default_chain()
        for f in _frames(stream, 4096):
            chain.process(Frame(f))
        _close(chain)
