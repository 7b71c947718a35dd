"""Rings and channels: cross-process throughput, per-event cost, crash resumption.

Each ``track_*`` returns a rate measured in one run (events/s, or ms for
resumption) with ``multiprocessing.Queue`` as the same-run peer. Run
``python asv_bench/bench_rings_quick.py`` for medians and ratios without asv.
"""

import multiprocessing as mp
import os
import queue
import signal
import time

import numpy as np

from ctas7.channel import Channel
from ctas7.events import EVENT_DTYPE, KIND_GAP, make_events
from ctas7.rings import SpscRing

from .common import rng

FORK = mp.get_context("fork")


def _name(tag):
    return f"bench-{tag}-{os.getpid()}-{time.monotonic_ns()}"


def _batches(n, batch, station=0):
    seq = np.arange(batch)
    return make_events(ts=seq, seq=seq, station=station), n // batch


def _channel_producer(name, n, batch, station, go):
    data, rounds = _batches(n, batch, station)
    ch = Channel.attach(name)
    go.wait()
    for _ in range(rounds):
        ch.put_many(data)
    ch.close()


def channel_throughput(producers=1, n=4_000_000, batch=4096, wait="sleep"):
    """Events/s through a channel from ``producers`` processes to this one."""
    name = _name("tp")
    go = FORK.Event()
    with Channel.create(name, 1 << 16, multi_producer=producers > 1, wait=wait) as ch:
        ps = [FORK.Process(target=_channel_producer, args=(name, n // producers, batch, s, go)) for s in range(producers)]
        for p in ps:
            p.start()
        out = np.empty(1 << 15, EVENT_DTYPE)
        total = (n // producers // batch) * batch * producers
        got = 0
        time.sleep(0.05)
        t0 = time.perf_counter()
        go.set()
        while got < total:
            got += ch.get_into(out, timeout=10)
        dt = time.perf_counter() - t0
        for p in ps:
            p.join()
    return got / dt


def _queue_producer(q, n, batch, go):
    data, rounds = _batches(n, batch)
    go.wait()
    for _ in range(rounds):
        q.put(data)
    q.put(None)


def mpqueue_throughput(n=1_000_000, batch=4096):
    """Peer: the same batches through multiprocessing.Queue (pickled arrays)."""
    q, go = FORK.Queue(64), FORK.Event()
    p = FORK.Process(target=_queue_producer, args=(q, n, batch, go))
    p.start()
    time.sleep(0.05)
    got, t0 = 0, time.perf_counter()
    go.set()
    while (item := q.get()) is not None:
        got += len(item)
    dt = time.perf_counter() - t0
    p.join()
    return got / dt


def ring_single_rate(n=200_000):
    """Per-event put + get from Python on one ring (events/s)."""
    ring = SpscRing(bytearray(SpscRing.nbytes(1024)), 1024)
    rec = make_events(ts=[1])[0]
    put, get = ring.put, ring.get
    t0 = time.perf_counter()
    for _ in range(n):
        put(rec)
        get()
    return n / (time.perf_counter() - t0)


def channel_single_rate(n=200_000):
    """Per-event put + get through the Channel face (events/s)."""
    with Channel.create(_name("one"), 1024) as ch:
        rec = make_events(ts=[1])[0]
        put, get = ch.put, ch.get
        t0 = time.perf_counter()
        for _ in range(n):
            put(rec)
            get()
        return n / (time.perf_counter() - t0)


def mpqueue_single_rate(n=50_000):
    """Peer: per-event put + get on multiprocessing.Queue."""
    q = FORK.Queue()
    rec = make_events(ts=[1])[0]
    t0 = time.perf_counter()
    for _ in range(n):
        q.put(rec)
        q.get()
    q.close()
    return n / (time.perf_counter() - t0)


def _hang(name, ready):
    ch = Channel.attach(name)
    ch.put_many(make_events(ts=np.arange(10)))
    ch.claim(100)[:] = make_events(ts=np.arange(100))
    ready.set()
    time.sleep(60)


def resume_after_kill_ms():
    """ms from SIGKILL of a producer (mid-claim) to the consumer's gap event."""
    name = _name("kill")
    ready = FORK.Event()
    with Channel.create(name, 1024) as ch:
        p = FORK.Process(target=_hang, args=(name, ready))
        p.start()
        ready.wait(10)
        ch.get_many(100, timeout=5)
        t0 = time.perf_counter()
        os.kill(p.pid, signal.SIGKILL)
        while True:
            try:
                ev = ch.get(timeout=5)
            except queue.Empty:
                continue
            if ev["kind"] == KIND_GAP:
                break
        dt = time.perf_counter() - t0
        p.join()
    return dt * 1e3


class ChannelThroughput:
    params = [[1, 2], [1024, 4096, 16384]]
    param_names = ["producers", "batch"]
    timeout = 120

    def setup(self, producers, batch):
        rng(0)

    def track_events_per_s(self, producers, batch):
        return channel_throughput(producers, 2_000_000, batch)

    track_events_per_s.unit = "events/s"


class MpQueuePeer:
    timeout = 120

    def track_events_per_s(self):
        return mpqueue_throughput(500_000, 4096)

    track_events_per_s.unit = "events/s"


class SingleEvent:
    def track_ring_put_get(self):
        return ring_single_rate()

    def track_channel_put_get(self):
        return channel_single_rate()

    def track_mpqueue_put_get(self):
        return mpqueue_single_rate()

    track_ring_put_get.unit = track_channel_put_get.unit = track_mpqueue_put_get.unit = "events/s"


class Resume:
    timeout = 60

    def track_resume_after_kill(self):
        return resume_after_kill_ms()

    track_resume_after_kill.unit = "ms"


class BatchCopy:
    """In-process put_many + get_into cost (memcpy with the GIL released)."""

    params = [[256, 4096, 65536]]
    param_names = ["batch"]

    def setup(self, batch):
        self.ring = SpscRing(bytearray(SpscRing.nbytes(1 << 17)), 1 << 17)
        self.data = make_events(ts=rng(1).integers(0, 1 << 40, batch))
        self.out = np.empty(batch, EVENT_DTYPE)

    def time_put_get(self, batch):
        self.ring.put_many(self.data)
        self.ring.get_into(self.out)
