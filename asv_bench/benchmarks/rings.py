"""Rings and channels: cross-process throughput, per-event cost, crash resumption.

Each ``track_*`` returns a rate measured in one run (events/s, or ms for
resumption). Peers measured the same way: ``multiprocessing.Queue`` (pickled
batches) and :class:`ShmLockRing`, a plain lock-protected ring in
``multiprocessing.shared_memory`` written in Python/numpy. Run
``python asv_bench/bench_rings_quick.py`` for medians of interleaved rounds
and ratios against the peers without asv.

Cross-process figures depend on both processes getting a core at the same
time; on a shared 2-core machine compare ratios within one run, not
absolute rates between runs.
"""

import multiprocessing as mp
import os
import queue
import resource
import signal
import time
from multiprocessing import shared_memory

import numpy as np

from ctas7.channel import Channel
from ctas7.events import EVENT_DTYPE, KIND_GAP, make_events
from ctas7.rings import SpscRing

from .common import rng

FORK = mp.get_context("fork")
RSIZE = EVENT_DTYPE.itemsize


def _name(tag):
    return f"bench-{tag}-{os.getpid()}-{time.monotonic_ns()}"


def _batch(batch, station=0):
    seq = np.arange(batch)
    return make_events(ts=seq, seq=seq, station=station)


def _cpu_s():
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _timed(start_children, consume, cpu=False):
    """Start the producers (they wait on ``go``), then time ``consume()``.

    Returns events/s, or (events/s, CPU ns per event of consumer and
    producers together) with ``cpu``: the CPU figure hardly depends on how
    busy the machine is, the rate does.
    """
    go = FORK.Event()
    procs = start_children(go)
    time.sleep(0.02)  # let them reach go.wait()
    cpu0 = _cpu_s()
    t0 = time.perf_counter()
    go.set()
    got = consume()
    dt = time.perf_counter() - t0
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"producer exited with {p.exitcode}")
    return (got / dt, (_cpu_s() - cpu0) / got * 1e9) if cpu else got / dt


# ----------------------------------------------------------------- channel


def _channel_producer(name, rounds, batch, station, go, mode, wait):
    data = _batch(batch, station)
    ch = Channel.attach(name, wait=wait)
    ch.put_many(data[:0])  # register before the clock starts
    go.wait()
    if mode in ("copy", "zero-copy read"):
        for _ in range(rounds):
            ch.put_many(data)
    else:
        # Zero copy: fill the ring's slots in place (through a plain uint64
        # view: numpy's structured-dtype assignment is ~20x slower than a
        # byte copy).
        words, left = data.view(np.uint64), rounds * batch
        while left:
            view = ch.claim(min(batch, left), timeout=None)
            k = len(view)
            view.view(np.uint64)[:] = words[: 4 * k]
            ch.commit()
            left -= k
            del view
    ch.close()


def channel_throughput(producers=1, n=16_000_000, batch=16384, wait="sleep", capacity=1 << 16, mode="copy", cpu=False):
    """Events/s through a channel from ``producers`` processes to this one.

    ``mode`` "copy": ``put_many`` -> ``get_into``; "zero-copy": ``claim`` ->
    fill -> ``commit`` and ``peek`` -> checksum -> ``release`` (SPSC only);
    "zero-copy read": ``put_many`` -> ``peek`` -> check the last record's
    seq -> ``release`` (the consumer leaves the other records in the ring:
    the mode ``asv_bench/peers.py`` compares with faster-fifo).
    ``cpu``: also return CPU ns per event (see :func:`_timed`).
    """
    name = _name("tp")
    rounds = n // producers // batch
    total = rounds * batch * producers
    with Channel.create(name, capacity, multi_producer=producers > 1, wait=wait) as ch:

        def start(go):
            ps = [
                FORK.Process(target=_channel_producer, args=(name, rounds, batch, s, go, mode, wait))
                for s in range(producers)
            ]
            for p in ps:
                p.start()
            return ps

        def consume():
            got = 0
            if mode == "copy":
                out = np.empty(batch, EVENT_DTYPE)
                while got < total:
                    got += ch.get_into(out, timeout=10)
            elif mode == "zero-copy read":
                while got < total:
                    view = ch.peek(1 << 16, timeout=10)
                    k = len(view)
                    got += k
                    if k == 0 or int(view[k - 1]["seq"]) != (got - 1) % batch:
                        raise AssertionError("zero-copy read: records lost or out of order")
                    del view
                    ch.release(k)
            else:
                check = 0
                while got < total:
                    view = ch.peek(batch, timeout=10)
                    check += int(view.view(np.uint64).sum())
                    got += len(view)
                    del view
                    ch.release()
                expect = int(_batch(batch).view(np.uint64).sum()) * rounds * producers
                if check != expect:
                    raise AssertionError("zero-copy checksum mismatch")
            return got

        return _timed(start, consume, cpu)


# ------------------------------------------------------------------- peers


class ShmLockRing:
    """Peer: a ring of records in ``shared_memory`` behind one ``multiprocessing.Lock``.

    The simple correct design a Python user would write: head and tail
    counters and the records in one shared block; every operation takes the
    lock, checks room, copies with numpy (as bytes) and moves its counter.
    Fork children use the same object.
    """

    def __init__(self, capacity, dtype=EVENT_DTYPE):
        self.capacity = capacity
        self.rsize = np.dtype(dtype).itemsize
        self.dtype = np.dtype(dtype)
        self.lock = FORK.Lock()
        self.shm = shared_memory.SharedMemory(create=True, size=64 + capacity * self.rsize)
        self.idx = np.ndarray(2, np.int64, self.shm.buf, 0)  # head, tail
        self.raw = np.ndarray(capacity * self.rsize, np.uint8, self.shm.buf, 64)
        self.slots = np.ndarray(capacity, self.dtype, self.shm.buf, 64)

    def put_many(self, batch):
        """Write what fits of ``batch`` now; return the count."""
        src, r, cap = batch.view(np.uint8), self.rsize, self.capacity
        with self.lock:
            head, tail = int(self.idx[0]), int(self.idx[1])
            k = min(len(batch), cap - (tail - head))
            i = tail % cap
            first = min(k, cap - i)
            self.raw[i * r : (i + first) * r] = src[: first * r]
            self.raw[: (k - first) * r] = src[first * r : k * r]
            self.idx[1] = tail + k
        return k

    def get_into(self, out):
        """Fill the front of ``out`` with what is there now; return the count."""
        dst, r, cap = out.view(np.uint8), self.rsize, self.capacity
        with self.lock:
            head, tail = int(self.idx[0]), int(self.idx[1])
            k = min(len(out), tail - head)
            i = head % cap
            first = min(k, cap - i)
            dst[: first * r] = self.raw[i * r : (i + first) * r]
            dst[first * r : k * r] = self.raw[: (k - first) * r]
            self.idx[0] = head + k
        return k

    def put(self, record):
        """Write one record; False if the ring is full."""
        with self.lock:
            tail = int(self.idx[1])
            if tail - int(self.idx[0]) >= self.capacity:
                return False
            self.slots[tail % self.capacity] = record
            self.idx[1] = tail + 1
        return True

    def get(self):
        """Take one record (a numpy void); None if the ring is empty."""
        with self.lock:
            head = int(self.idx[0])
            if head == int(self.idx[1]):
                return None
            rec = self.slots[head % self.capacity].copy()
            self.idx[0] = head + 1
        return rec

    def close(self):
        del self.idx, self.raw, self.slots
        self.shm.close()
        self.shm.unlink()


def _shmlock_producer(ring, rounds, batch, go):
    data = _batch(batch)
    go.wait()
    for _ in range(rounds):
        done = 0
        while done < batch:
            k = ring.put_many(data[done:])
            done += k
            if not k:
                os.sched_yield()


def shmlock_throughput(n=4_000_000, batch=16384, capacity=1 << 16, cpu=False):
    """Peer: the same batches through :class:`ShmLockRing` (events/s)."""
    ring = ShmLockRing(capacity)
    rounds = n // batch
    total = rounds * batch
    try:

        def start(go):
            p = FORK.Process(target=_shmlock_producer, args=(ring, rounds, batch, go))
            p.start()
            return [p]

        def consume():
            out, got = np.empty(batch, EVENT_DTYPE), 0
            while got < total:
                k = ring.get_into(out)
                got += k
                if not k:
                    os.sched_yield()
            return got

        return _timed(start, consume, cpu)
    finally:
        ring.close()


def _queue_producer(q, rounds, batch, go):
    data = _batch(batch)
    go.wait()
    for _ in range(rounds):
        q.put(data)
    q.put(None)


def mpqueue_throughput(n=2_000_000, batch=16384, cpu=False):
    """Peer: the same batches through multiprocessing.Queue (pickled arrays)."""
    q = FORK.Queue(64)
    rounds = n // batch

    def start(go):
        p = FORK.Process(target=_queue_producer, args=(q, rounds, batch, go))
        p.start()
        return [p]

    def consume():
        got = 0
        while (item := q.get()) is not None:
            got += len(item)
        return got

    return _timed(start, consume, cpu)


# --------------------------------------------------------------- per event


def _single_rate(put, get, n):
    rec = make_events(ts=[1])[0]
    t0 = time.perf_counter()
    for _ in range(n):
        put(rec)
        get()
    return n / (time.perf_counter() - t0)


def ring_single_rate(n=200_000):
    """Per-event put + get from Python on one SpscRing (events/s)."""
    ring = SpscRing(bytearray(SpscRing.nbytes(1024)), 1024)
    return _single_rate(ring.put, ring.get, n)


def channel_single_rate(n=200_000):
    """Per-event put + get through the Channel face (queue.Queue-style calls)."""
    with Channel.create(_name("one"), 1024) as ch:
        ch.put_many(make_events(ts=[0]))  # register as producer
        ch.get()
        return _single_rate(ch.put, ch.get, n)


def shmlock_single_rate(n=100_000):
    """Peer: per-event put + get on :class:`ShmLockRing`."""
    ring = ShmLockRing(1024)
    try:
        return _single_rate(ring.put, ring.get, n)
    finally:
        ring.close()


def mpqueue_single_rate(n=20_000):
    """Peer: per-event put + get on multiprocessing.Queue."""
    q = FORK.Queue()
    try:
        return _single_rate(q.put, q.get, n)
    finally:
        q.close()
        q.join_thread()


# ------------------------------------------------- per event, two processes


def _channel_event_producer(name, n, go, wait):
    ch = Channel.attach(name, wait=wait)
    one = _batch(1)
    ch.put_many(one[:0])  # register before the clock starts
    rec, put = one[0], ch.put
    go.wait()
    for _ in range(n):
        put(rec)
    ch.close()


def channel_stream_rate(n=1_000_000, capacity=1 << 16, wait="sleep", cpu=False):
    """Events/s from a producer process calling ``put`` per event to this
    process calling ``get`` per event (queue.Queue-style calls)."""
    name = _name("st")
    with Channel.create(name, capacity, wait=wait) as ch:

        def start(go):
            p = FORK.Process(target=_channel_event_producer, args=(name, n, go, wait))
            p.start()
            return [p]

        def consume():
            get = ch.get
            for _ in range(n):
                get()
            return n

        return _timed(start, consume, cpu)


def _shmlock_event_producer(ring, n, go):
    rec, put = _batch(1)[0], ring.put
    go.wait()
    for _ in range(n):
        while not put(rec):
            os.sched_yield()


def shmlock_stream_rate(n=100_000, capacity=1 << 16, cpu=False):
    """Peer: per-event put/get across two processes on :class:`ShmLockRing`."""
    ring = ShmLockRing(capacity)
    try:

        def start(go):
            p = FORK.Process(target=_shmlock_event_producer, args=(ring, n, go))
            p.start()
            return [p]

        def consume():
            get = ring.get
            for _ in range(n):
                while get() is None:
                    os.sched_yield()
            return n

        return _timed(start, consume, cpu)
    finally:
        ring.close()


def _queue_event_producer(q, n, go):
    rec = _batch(1)[0]
    go.wait()
    for _ in range(n):
        q.put(rec)


def mpqueue_stream_rate(n=20_000, cpu=False):
    """Peer: per-event put/get across two processes on multiprocessing.Queue."""
    q = FORK.Queue()

    def start(go):
        p = FORK.Process(target=_queue_event_producer, args=(q, n, go))
        p.start()
        return [p]

    def consume():
        for _ in range(n):
            q.get()
        return n

    try:
        return _timed(start, consume, cpu)
    finally:
        q.close()
        q.join_thread()


# ------------------------------------------------------------------ resume


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


# --------------------------------------------------------------------- asv


class ChannelThroughput:
    """SPSC channel, one producer process -> this one, 32-byte events."""

    params = [["copy", "zero-copy"], ["sleep", "yield"], [1 << 16, 1 << 20], [16384, 65536]]
    param_names = ["mode", "wait", "capacity", "batch"]
    timeout = 180

    def setup(self, mode, wait, capacity, batch):
        if batch > capacity // 2:
            raise NotImplementedError("batch larger than half the ring")
        rng(0)

    def track_events_per_s(self, mode, wait, capacity, batch):
        return channel_throughput(1, 16_000_000, batch, wait, capacity, mode)

    track_events_per_s.unit = "events/s"


class ZeroCopyRead:
    """SPSC channel, put_many -> peek/release with a last-record check, rings near L2 size."""

    params = [[1 << 15, 1 << 16], [8192, 16384]]
    param_names = ["capacity", "batch"]
    timeout = 120

    def setup(self, capacity, batch):
        if batch != capacity // 4:
            # asv's way to skip a parameter combination: only rings of four batches are measured
            raise NotImplementedError("the ring holds four batches")

    def track_events_per_s(self, capacity, batch):
        return channel_throughput(1, 32_000_000, batch, "sleep", capacity, "zero-copy read")

    track_events_per_s.unit = "events/s"


class MpmcThroughput:
    """MPMC channel, ``producers`` processes -> this one."""

    params = [[2], [4096, 16384]]
    param_names = ["producers", "batch"]
    timeout = 120

    def track_events_per_s(self, producers, batch):
        return channel_throughput(producers, 8_000_000, batch)

    track_events_per_s.unit = "events/s"


class Peers:
    """The same batches through multiprocessing.Queue and a shm + Lock ring."""

    params = [[1024, 16384]]
    param_names = ["batch"]
    timeout = 120

    def track_mpqueue_events_per_s(self, batch):
        return mpqueue_throughput(2_000_000, batch)

    def track_shmlock_events_per_s(self, batch):
        return shmlock_throughput(8_000_000, batch)

    track_mpqueue_events_per_s.unit = track_shmlock_events_per_s.unit = "events/s"


class SmallBatch:
    """SPSC channel with 1,024-event batches (compare with Peers at 1024)."""

    timeout = 120

    def track_events_per_s(self):
        return channel_throughput(1, 8_000_000, 1024)

    track_events_per_s.unit = "events/s"


class CpuPerEvent:
    """CPU ns per event (producer + consumer) of the batched transfers: the
    figure that survives a busy machine, unlike the rates above."""

    params = [["channel copy", "channel zero-copy", "shm+Lock ring", "mp.Queue"]]
    param_names = ["path"]
    timeout = 120

    def track_cpu_ns_per_event(self, path):
        if path == "shm+Lock ring":
            return shmlock_throughput(8_000_000, 16384, cpu=True)[1]
        if path == "mp.Queue":
            return mpqueue_throughput(2_000_000, 16384, cpu=True)[1]
        mode = "copy" if path == "channel copy" else "zero-copy"
        return channel_throughput(1, 16_000_000, 16384, "sleep", 1 << 16, mode, cpu=True)[1]

    track_cpu_ns_per_event.unit = "ns"


class SingleEvent:
    def track_ring_put_get(self):
        return ring_single_rate()

    def track_channel_put_get(self):
        return channel_single_rate()

    def track_shmlock_put_get(self):
        return shmlock_single_rate()

    def track_mpqueue_put_get(self):
        return mpqueue_single_rate()

    track_ring_put_get.unit = track_channel_put_get.unit = "events/s"
    track_shmlock_put_get.unit = track_mpqueue_put_get.unit = "events/s"


class EventStream:
    """Per-event put in one process, per-event get in another."""

    timeout = 120

    def track_channel(self):
        return channel_stream_rate()

    def track_shmlock(self):
        return shmlock_stream_rate()

    def track_mpqueue(self):
        return mpqueue_stream_rate()

    track_channel.unit = track_shmlock.unit = track_mpqueue.unit = "events/s"


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
