"""ctas7 side by side with what a user would pick instead, in one run.

Every contender of every comparison is measured once per round, round-robin
(the starting contender rotates each round), for ``--rounds`` rounds; the
table shows medians and the ratio of ctas7's median to each peer's median
(with the spread of the per-round samples). Timings on a shared machine are
noisy: only ratios measured in the same run mean anything.

Comparisons
-----------
channel, batched / per event
    Producer process -> consumer process (fork). ctas7 ``Channel`` (SPSC, and
    MPMC with two producers) against faster-fifo, pyzmq PUSH/PULL over
    ``ipc://`` (cross-process) and ``inproc://`` (producer thread, same
    process, for reference), ``multiprocessing.Queue`` and a
    ``multiprocessing.shared_memory`` ring guarded by a
    ``multiprocessing.Lock``. Per-event messages carry one 32-byte record.
    Batched, the rules are the same for every contender:

    * the same records move: copies of one batch of ``b`` EVENT_DTYPE
      records (32 bytes) whose ``seq`` runs 0..b-1, from a producer
      process to a consumer process;
    * the producer really writes each batch's contents into the transport
      (``put_many``, ``claim`` + a copy into the claimed slots, faster-fifo's
      put of its batch buffer, zmq send, pickling, the locked copy);
    * the consumer ends with readable access to every event (a numpy array
      or a view of one) and checks each batch it takes the same way: the last
      record's seq must be ``(records so far - 1) % b`` (``_check``); with
      two producers only the range of seq can be checked;
    * peers get their best good-faith configuration: faster-fifo moves the
      batch from a ctypes buffer numpy writes (no ``tobytes`` copy;
      ``dumps``/``loads`` are the identity, so the consumer reads memoryviews
      of its message buffer), swept over batch size, buffer size
      (``max_size_bytes``, 1-16 MiB) and messages per ``put_many``; the best
      configuration is the one the ratios use;
    * ctas7 rows are labelled by mode (``CTAS7_MODES``): ``[copy]`` put_many
      -> get_into, the consumer gets its own copy like every peer;
      ``[zero-copy write]`` claim/commit -> get_into, the cluster's mode
      (station workers claim, the pipeline loop copies out of several
      channels into one buffer); ``[zero-copy read]`` put_many ->
      peek/release and ``[zero-copy]`` claim/commit -> peek/release, the
      consumer reads the records in the ring. Who ``ctas7`` (the ratio
      column) are the zero-copy-read rows; ``ctas7-copy`` the rows whose
      consumer copies; both have a target line against the best faster-fifo
      configuration. A zero-copy consumer that checks one record per batch
      never pulls the others into its cache: a consumer that goes on to read
      every record pays that transfer in its own processing.
kernels
    ``ctas7.kernels.surprisal`` / ``binary_entropy`` (active SIMD variant)
    against the vectorised float32 numpy peer of the asv suite, the float64
    numpy reference (the specification) and numba ``@njit`` loops of the
    same float32 math (fastmath and parallel off).
detector (NAB)
    ``ctas7.stages.meter.score_series`` (default parameters; an alarm is the
    start of a run of scores >= the threshold) against River's
    ``drift.PageHinkley`` (defaults) and ``MinMaxScaler | HalfSpaceTrees``
    on every NAB series: events/s, and windows caught vs false alarms
    (alarm onsets outside labelled windows), after NAB's warm-up.
teth
    ``Teth`` pattern matching (default patterns, beacons off) on a 1M-event
    stream against ``reference_match``, the pure-Python loop over the same
    DFA tables (timed on a prefix; matches checked equal on it).
chain
    The full default chain (TETH | Meter | AXON | PRISM) in one process,
    events/s, against PageHinkley's per-value rate.

Usage::

    python asv_bench/peers.py [--quick] [--rounds N] [--only channel,kernels,...] [--json PATH|-]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import threading
import time
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from ctas7 import kernels  # noqa: E402
from ctas7.channel import Channel  # noqa: E402
from ctas7.events import EVENT_DTYPE, make_events  # noqa: E402

FORK = mp.get_context("fork")
REC = EVENT_DTYPE.itemsize
NAB_DIR = ROOT.parent / "shared" / "datasets" / "NAB"
SECTIONS = ("channel", "kernels", "detector", "teth", "chain")


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _uid(tag: str) -> str:
    return f"peers-{tag}-{os.getpid()}-{time.monotonic_ns()}"


def _batch(b: int) -> np.ndarray:
    seq = np.arange(b)
    return make_events(ts=seq, seq=seq, node=seq % 247, value=1.0)


def _record() -> bytes:
    return make_events(ts=[1], node=[7])[0].tobytes()


def _spawn(target, args):
    go = FORK.Event()
    p = FORK.Process(target=target, args=(*args, go), daemon=True)
    p.start()
    return p, go


def _finish(procs, deadline_s=30.0):
    for p in procs:
        p.join(deadline_s)
        if p.is_alive():
            p.kill()
            p.join()


def _rate_loop(fn, items: int, min_time: float = 0.05) -> float:
    """items/s of ``fn()``, repeated until ``min_time`` has passed (one sample)."""
    fn()
    k, t0 = 0, time.perf_counter()
    while True:
        fn()
        k += 1
        dt = time.perf_counter() - t0
        if dt >= min_time:
            return k * items / dt


# ---------------------------------------------------------------------------
# channel contenders: each returns events/s for n events producer -> consumer
# ---------------------------------------------------------------------------


def _check(batch, k: int, got: int, b: int) -> None:
    """The consumer's check of each batch it takes, the same for every contender.

    Producers send copies of one batch whose ``seq`` runs 0..b-1, in order,
    so after ``got`` records the last one taken (``batch[k - 1]``) has seq
    ``(got - 1) % b``: a lost, repeated or reordered piece fails the check.
    """
    seq = int(batch[k - 1]["seq"])
    if seq != (got - 1) % b:
        raise RuntimeError(f"record {got - 1} has seq {seq}, expected {(got - 1) % b}")


def _check_any(batch, k: int, got: int, b: int) -> None:
    """Two producers interleave their pieces: only the range of seq is known."""
    seq = int(batch[k - 1]["seq"])
    if seq >= b:
        raise RuntimeError(f"record {got - 1} has seq {seq}, outside 0..{b - 1}")


# How a ctas7 contender moves records: producer call -> consumer call.
CTAS7_MODES = {
    "copy": ("put_many", "get_into"),  # both sides copy, like every peer
    "zero-copy read": ("put_many", "peek"),  # producer copies in, consumer reads in place
    "zero-copy": ("claim", "peek"),  # producer writes in place, consumer reads in place
    "zero-copy write": ("claim", "get_into"),  # the cluster's mode: workers claim, the loop copies out
}
_CALLS = {"put_many": "put_many", "claim": "claim/commit", "peek": "peek/release", "get_into": "get_into"}


def _ctas7_producer(name, n, b, write, go):
    ch = Channel.attach(name)
    data = _batch(b)
    ch.put_many(data[:0])  # register before the clock starts (faster-fifo has no registration)
    go.wait()
    if b == 1:
        rec, put = _record(), ch.put
        for _ in range(n):
            put(rec)
    elif write == "claim":
        raw, j, left = data.view(np.uint8), 0, n
        while left:
            view = ch.claim(min(b - j, left), timeout=10)
            k = view.shape[0]
            if not k:
                raise TimeoutError("no free slot for 10 s")
            # The producer writes its events straight into the ring (as bytes:
            # numpy's structured assignment view[:] = data goes field by field,
            # ~50x slower). A claim may be short (ring end, or ring nearly
            # full): the next one continues the batch where this one stopped.
            view.view(np.uint8)[:] = raw[j * REC:(j + k) * REC]
            ch.commit(k)
            left -= k
            j = (j + k) % b
    else:
        for _ in range(n // b):
            ch.put_many(data)
    ch.close()


def ctas7_channel(n: int, b: int, cap: int = 1 << 16, mode: str = "copy", producers: int = 1,
                  out_n: int = 4096, *, zero_copy: bool = False) -> float:
    """events/s of ``n`` events through a ctas7 Channel in ``mode`` (see CTAS7_MODES).

    ``zero_copy=True`` is short for ``mode="zero-copy"``.
    """
    write, read = CTAS7_MODES["zero-copy" if zero_copy else mode]
    name = _uid("ch")
    per = n // producers if b == 1 else n // producers // b * b
    total = per * producers
    check = _check if producers == 1 else _check_any
    with Channel.create(name, cap, multi_producer=producers > 1) as ch:
        ps = [_spawn(_ctas7_producer, (name, per, b, write)) for _ in range(producers)]
        time.sleep(0.02)
        got = 0
        t0 = time.perf_counter()
        for _, go in ps:
            go.set()
        if b == 1:
            get = ch.get
            while got < total:
                get(timeout=10)
                got += 1
        elif read == "peek":
            peek, release = ch.peek, ch.release
            while got < total:
                view = peek(1 << 16, timeout=10)  # read in place: a view of the ring
                k = view.shape[0]
                if not k:
                    raise TimeoutError("no records for 10 s")
                got += k
                check(view, k, got, b)
                release(k)
        else:
            out = np.empty(out_n, EVENT_DTYPE)
            get_into = ch.get_into
            while got < total:
                k = get_into(out, timeout=10)
                got += k
                check(out, k, got, b)
        dt = time.perf_counter() - t0
        _finish([p for p, _ in ps])
    return got / dt


def _ff_producer(q, n, b, per, go):
    if b > 1:
        # The batch lives in a ctypes buffer that numpy writes: faster-fifo
        # takes it as it is (dumps is the identity) and copies it into its
        # shared buffer, one copy like ctas7's put_many. (A bytes object per
        # batch, data.tobytes(), would cost it one more copy.)
        buf = (ctypes.c_ubyte * (b * REC))()
        np.frombuffer(buf, EVENT_DTYPE)[:] = _batch(b)
        msgs = [buf] * per
    go.wait()
    if b == 1:
        rec, put = _record(), q.put
        for _ in range(n):
            put(rec)
    else:
        for _ in range(n // (b * per)):
            q.put_many(msgs, timeout=10)  # per messages under one lock
    q.put(b"")


def _same(x):
    return x


def faster_fifo_channel(n: int, b: int, size: int | None = None, per: int = 1) -> float:
    """events/s through faster-fifo: batches of ``b`` records, ``per`` messages a put, ``size``-byte buffer."""
    import faster_fifo

    size = size or max(8 << 20, 8 * b * REC)
    q = faster_fifo.Queue(max_size_bytes=size, dumps=_same, loads=_same)
    p, go = _spawn(_ff_producer, (q, n, b, per))
    time.sleep(0.02)
    got, done = 0, False
    t0 = time.perf_counter()
    go.set()
    if b == 1:
        while not done:
            for msg in q.get_many(timeout=10, max_messages_to_get=4096):
                if not msg:
                    done = True
                    break
                got += 1
    else:
        while not done:
            # each message is a memoryview of the consumer's message buffer (loads is the identity)
            for msg in q.get_many(timeout=10):
                if not len(msg):
                    done = True
                    break
                arr = np.frombuffer(msg, EVENT_DTYPE)
                k = arr.shape[0]
                got += k
                _check(arr, k, got, b)
    dt = time.perf_counter() - t0
    _finish([p])
    q.close()
    return got / dt


def _zmq_producer(addr, n, b, go):
    import zmq

    ctx = zmq.Context.instance() if addr.startswith("inproc") else zmq.Context()
    s = ctx.socket(zmq.PUSH)
    s.connect(addr)
    go.wait()
    if b == 1:
        rec, send = _record(), s.send
        for _ in range(n):
            send(rec)
    else:
        data = _batch(b)
        for _ in range(n // b):
            s.send(data, copy=False)
    s.send(b"")
    s.close(linger=-1)
    if not addr.startswith("inproc"):
        ctx.term()


def zmq_channel(n: int, b: int, transport: str) -> float:
    import zmq

    if transport == "ipc":
        addr = f"ipc:///tmp/{_uid('zmq')}.ipc"
        ctx = zmq.Context()
    else:
        addr = f"inproc://{_uid('zmq')}"
        ctx = zmq.Context.instance()
    pull = ctx.socket(zmq.PULL)
    pull.bind(addr)
    pull.setsockopt(zmq.RCVTIMEO, 10_000)
    if transport == "ipc":
        p, go = _spawn(_zmq_producer, (addr, n, b))
    else:
        go = threading.Event()
        p = threading.Thread(target=_zmq_producer, args=(addr, n, b, go), daemon=True)
        p.start()
    time.sleep(0.02)
    got = 0
    t0 = time.perf_counter()
    go.set()
    recv = pull.recv
    if b == 1:
        while len(recv()):
            got += 1
    else:
        while True:
            frame = pull.recv(copy=False)
            if not len(frame.buffer):
                break
            arr = np.frombuffer(frame.buffer, EVENT_DTYPE)
            k = arr.shape[0]
            got += k
            _check(arr, k, got, b)
    dt = time.perf_counter() - t0
    if transport == "ipc":
        _finish([p])
        pull.close(linger=0)
        ctx.term()
        try:
            os.unlink(addr[len("ipc://"):])
        except OSError:
            pass
    else:
        p.join(30)
        pull.close(linger=0)
    return got / dt


def _mpq_producer(q, n, b, go):
    go.wait()
    if b == 1:
        rec, put = _record(), q.put
        for _ in range(n):
            put(rec)
    else:
        data = _batch(b)
        for _ in range(n // b):
            q.put(data)
    q.put(None)


def mpqueue_channel(n: int, b: int) -> float:
    q = FORK.Queue(1024 if b == 1 else 64)
    p, go = _spawn(_mpq_producer, (q, n, b))
    time.sleep(0.02)
    got = 0
    t0 = time.perf_counter()
    go.set()
    get = q.get
    if b == 1:
        while get(timeout=10) is not None:
            got += 1
    else:
        while (item := get(timeout=10)) is not None:
            k = item.shape[0]
            got += k
            _check(item, k, got, b)
    dt = time.perf_counter() - t0
    _finish([p])
    q.close()
    return got / dt


_SHM_HDR = 64  # head, tail (int64)


class _ShmLockRing:
    """The obvious hand-rolled baseline: a shared_memory ring, one Lock around every access."""

    def __init__(self, shm, lock, cap):
        self.shm, self.lock, self.cap = shm, lock, cap
        self.hdr = np.ndarray((2,), np.int64, buffer=shm.buf)
        self.ring = np.ndarray((cap,), EVENT_DTYPE, buffer=shm.buf, offset=_SHM_HDR)
        self.raw = shm.buf[_SHM_HDR:]

    def put_many(self, data):
        b, cap, hdr = data.shape[0], self.cap, self.hdr
        while True:
            with self.lock:
                head, tail = int(hdr[0]), int(hdr[1])
                if cap - (head - tail) >= b:
                    i = head % cap
                    k = min(b, cap - i)
                    self.ring[i:i + k] = data[:k]
                    self.ring[:b - k] = data[k:]
                    hdr[0] = head + b
                    return
            time.sleep(0)

    def get_into(self, out):
        cap, hdr = self.cap, self.hdr
        while True:
            with self.lock:
                head, tail = int(hdr[0]), int(hdr[1])
                n = min(head - tail, out.shape[0])
                if n > 0:
                    i = tail % cap
                    k = min(n, cap - i)
                    out[:k] = self.ring[i:i + k]
                    out[k:n] = self.ring[:n - k]
                    hdr[1] = tail + n
                    return n
            time.sleep(0)

    def put(self, rec):
        cap, hdr = self.cap, self.hdr
        while True:
            with self.lock:
                head = int(hdr[0])
                if head - int(hdr[1]) < cap:
                    off = (head % cap) * REC
                    self.raw[off:off + REC] = rec
                    hdr[0] = head + 1
                    return
            time.sleep(0)

    def get(self):
        cap, hdr = self.cap, self.hdr
        while True:
            with self.lock:
                tail = int(hdr[1])
                if int(hdr[0]) > tail:
                    off = (tail % cap) * REC
                    rec = bytes(self.raw[off:off + REC])
                    hdr[1] = tail + 1
                    return rec
            time.sleep(0)

    def release(self):
        del self.hdr, self.ring
        self.raw.release()


def _shm_producer(shm_name, lock, cap, n, b, go):
    shm = shared_memory.SharedMemory(shm_name)
    ring = _ShmLockRing(shm, lock, cap)
    go.wait()
    if b == 1:
        rec = _record()
        for _ in range(n):
            ring.put(rec)
    else:
        data = _batch(b)
        for _ in range(n // b):
            ring.put_many(data)
    ring.release()
    shm.close()


def shm_lock_channel(n: int, b: int) -> float:
    cap = 1 << 16
    shm = shared_memory.SharedMemory(create=True, size=_SHM_HDR + cap * REC)
    lock = FORK.Lock()
    ring = _ShmLockRing(shm, lock, cap)
    ring.hdr[:] = 0
    p, go = _spawn(_shm_producer, (shm.name, lock, cap, n, b))
    time.sleep(0.02)
    total = n if b == 1 else (n // b) * b
    got = 0
    t0 = time.perf_counter()
    go.set()
    if b == 1:
        get = ring.get
        while got < total:
            get()
            got += 1
    else:
        out = np.empty(1 << 15, EVENT_DTYPE)
        while got < total:
            k = ring.get_into(out)
            got += k
            _check(out, k, got, b)
    dt = time.perf_counter() - t0
    _finish([p])
    ring.release()
    shm.close()
    shm.unlink()
    return got / dt


def channel_contenders(quick: bool) -> tuple[list, list]:
    # sizes give each contender roughly 0.05-0.2 s per sample on this machine
    zc, cp, peer, slow_peer = (16_000_000, 8_000_000, 4_000_000, 1_000_000) if quick else \
        (64_000_000, 32_000_000, 16_000_000, 4_000_000)
    fast, slow = (100_000, 20_000) if quick else (400_000, 60_000)

    def c7(mode, b, cap, n, who, **kw):
        w, r = (_CALLS[c] for c in CTAS7_MODES[mode])
        label = f"ctas7 SPSC [{mode}] {w} -> {r}, batch {b}, ring {cap >> 10}k"
        return (label, who, lambda: ctas7_channel(n, b, cap, mode, **kw))

    # who "ctas7": zero-copy reads (the consumer gets a view of the ring);
    # "ctas7-copy": the consumer gets its own copy, like every peer.
    batched = [
        c7("copy", 16384, 1 << 16, cp, "ctas7-copy"),
        c7("copy", 4096, 1 << 14, cp, "ctas7-copy"),
        c7("zero-copy write", 16384, 1 << 16, cp, "ctas7-copy"),
        c7("zero-copy read", 8192, 1 << 15, zc, "ctas7"),
        c7("zero-copy read", 16384, 1 << 16, zc, "ctas7"),
        c7("zero-copy", 16384, 1 << 16, zc, "ctas7"),
        ("ctas7 MPMC 2 producers [copy] put_many -> get_into, batch 16384, ring 64k", "ctas7-variant",
         lambda: ctas7_channel(cp // 2, 16384, 1 << 16, "copy", producers=2)),
    ]
    # faster-fifo: batch size x buffer size x messages per put (the best counts)
    ff = ((16384, 2 << 20, 1), (65536, 4 << 20, 1)) if quick else \
        ((1024, 1 << 20, 16), (4096, 1 << 20, 4), (16384, 2 << 20, 1), (32768, 4 << 20, 1),
         (65536, 4 << 20, 1), (65536, 16 << 20, 1))
    batched += [(f"faster-fifo, batch {b}, buffer {size >> 20} MiB" + (f", {per} per put_many" if per > 1 else ""),
                 "faster-fifo", lambda b=b, size=size, per=per: faster_fifo_channel(peer, b, size, per))
                for b, size, per in ff]
    batched += [
        ("pyzmq ipc://, batch 16384", "pyzmq", lambda: zmq_channel(peer, 16384, "ipc")),
        ("pyzmq ipc://, batch 65536", "pyzmq", lambda: zmq_channel(peer, 65536, "ipc")),
        ("pyzmq inproc:// (thread, zero-copy, not x-process)", "pyzmq-inproc",
         lambda: zmq_channel(zc, 16384, "inproc")),
        ("mp.Queue, batch 16384", "mp.Queue", lambda: mpqueue_channel(slow_peer, 16384)),
        ("shared_memory + Lock, batch 16384", "shm+Lock", lambda: shm_lock_channel(slow_peer, 16384)),
    ]
    per_event = [
        ("ctas7 Channel SPSC, put/get", "ctas7", lambda: ctas7_channel(fast, 1, mode="copy")),
        ("faster-fifo, put/get", "faster-fifo", lambda: faster_fifo_channel(fast // 2, 1)),
        ("pyzmq ipc://, send/recv", "pyzmq", lambda: zmq_channel(fast, 1, "ipc")),
        ("pyzmq inproc:// (thread, not x-process), send/recv", "pyzmq-inproc", lambda: zmq_channel(fast, 1, "inproc")),
        ("mp.Queue, put/get", "mp.Queue", lambda: mpqueue_channel(slow, 1)),
        ("shared_memory + Lock, put/get", "shm+Lock", lambda: shm_lock_channel(slow, 1)),
    ]
    return batched, per_event


# ---------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------


def _numba_kernels():
    import numba

    f32 = np.float32
    coef = [f32(c) for c in (
        0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807,
        -0.18628806, 0.09678418, 0.37409196, 1.00002368, -1.26551223,
    )]
    c0, c1, c2, c3, c4, c5, c6, c7, c8, c9 = coef
    log2e, rsqrt2, one, half = f32(1.4426950408889634), f32(0.70710678), f32(1.0), f32(0.5)
    inf, zero = f32(np.inf), f32(0.0)

    @numba.njit(fastmath=False, parallel=False, cache=False)
    def surprisal(x, mean, var, out):
        for i in range(x.shape[0]):
            ad = abs(x[i] - mean[i])
            v = var[i]
            if v <= zero:
                out[i] = inf if ad > zero else zero
                continue
            s = ad / np.sqrt(v) * rsqrt2
            if not s > zero:
                out[i] = zero
                continue
            u = one + half * s
            t = one / u
            p = ((((((((c0 * t + c1) * t + c2) * t + c3) * t + c4) * t + c5) * t + c6) * t + c7) * t + c8) * t + c9
            r = (np.log(u) + s * s - p) * log2e
            out[i] = r if r > zero else zero
        return out

    @numba.njit(fastmath=False, parallel=False, cache=False)
    def binary_entropy(x, b, out):
        for i in range(x.shape[0]):
            p = abs(x[i] - b[i]) / max(b[i], one)
            if p != p:
                out[i] = zero
                continue
            p = min(p, one)
            q = one - p
            h = zero
            if p > zero:
                h -= p * np.log2(p)
            if q > zero:
                h -= q * np.log2(q)
            out[i] = h if h > zero else zero
        return out

    return surprisal, binary_entropy


def kernel_contenders(quick: bool) -> list:
    out = []
    for n in (1 << 16, 1 << 20):
        out += _kernel_contenders(n)
    return out


def _kernel_contenders(n: int) -> list:
    from benchmarks.kernels import numpy_binary_entropy, numpy_surprisal

    g = np.random.default_rng(20261124)
    mean = g.normal(100.0, 10.0, n).astype(np.float32)
    var = g.uniform(1.0, 25.0, n).astype(np.float32)
    x = (mean + g.normal(0.0, 3.0, n) * np.sqrt(var)).astype(np.float32)
    out = np.empty(n, np.float32)
    m = min(n, 1 << 16)  # the float64 reference calls math.erfc per element: timed on a slice
    groups = []
    active = kernels.simd_info()["active"]
    for kname, ref_fn, np_fn in (
        ("surprisal", lambda: kernels.reference.surprisal(x[:m], mean[:m], var[:m]),
         lambda: numpy_surprisal(x, mean, var)),
        ("binary_entropy", lambda: kernels.reference.binary_entropy(x[:m], mean[:m]),
         lambda: numpy_binary_entropy(x, mean)),
    ):
        contenders = []
        for variant in kernels.simd_info()["supported"]:
            fn = getattr(kernels, kname)
            args = (x, mean, var) if kname == "surprisal" else (x, mean)
            label = f"ctas7 {kname} ({variant}{', active' if variant == active else ''})"
            contenders.append((label, "ctas7" if variant == active else "ctas7-variant",
                               lambda fn=fn, args=args, v=variant: _rate_loop(
                                   lambda: fn(*args, out=out, variant=v), n)))
        contenders.append((f"numpy float32 {kname}", "numpy", lambda f=np_fn: _rate_loop(f, n)))
        contenders.append((f"numpy float64 reference {kname} ({m})", "numpy-ref", lambda f=ref_fn: _rate_loop(f, m)))
        contenders.append((f"numba @njit {kname}", "numba", None))
        groups.append((f"{kname} n={n}", contenders))
    try:
        nb_sur, nb_be = _numba_kernels()
        nb_sur(x[:16], mean[:16], var[:16], out[:16])  # compile outside the timing
        nb_be(x[:16], mean[:16], out[:16])
        numba_fns = {f"surprisal n={n}": lambda: nb_sur(x, mean, var, out),
                     f"binary_entropy n={n}": lambda: nb_be(x, mean, out)}
    except ImportError:
        numba_fns = {}
    result = []
    for kname, contenders in groups:
        fixed = []
        for label, who, fn in contenders:
            if who == "numba":
                if kname not in numba_fns:
                    continue
                fn = (lambda f=numba_fns[kname]: _rate_loop(f, n))
            fixed.append((label, who, fn))
        result.append((kname, fixed))
    return result


# ---------------------------------------------------------------------------
# detector on NAB
# ---------------------------------------------------------------------------


def _load_nab(quick: bool):
    windows = json.loads((NAB_DIR / "labels" / "combined_windows.json").read_text())
    files = sorted(NAB_DIR.glob("data/*/*.csv"))
    if quick:
        files = files[::4]
    series = []
    for path in files:
        key = f"{path.parent.name}/{path.name}"
        raw = np.genfromtxt(path, delimiter=",", skip_header=1, dtype=None, encoding="utf-8",
                            converters={0: lambda s: np.datetime64(s[:19], "s")})
        ts = np.array([r[0] for r in raw], dtype="datetime64[s]")
        vals = np.array([r[1] for r in raw], dtype=np.float64)
        warm = min(int(0.15 * len(vals)), 750)
        spans = []
        for start, end in windows.get(key, []):
            lo = int(np.searchsorted(ts, np.datetime64(start[:19])))
            hi = int(np.searchsorted(ts, np.datetime64(end[:19]), "right"))
            lo = max(lo, warm)
            if hi > lo:
                spans.append((lo, hi))
        series.append((key, vals, warm, spans))
    return series


def _score_alarms(alarm_per_series, series) -> dict:
    hits = windows = fa = alarms = 0
    for alarm, (_, vals, warm, spans) in zip(alarm_per_series, series):
        alarm = alarm.copy()
        alarm[:warm] = False
        inside = np.zeros(len(vals), bool)
        for lo, hi in spans:
            inside[lo:hi] = True
            hits += bool(alarm[lo:hi].any())
            windows += 1
        alarms += int(alarm.sum())
        fa += int((alarm & ~inside).sum())
    return {"windows": windows, "caught": hits, "false_alarms": fa, "alarms": alarms}


def _onsets(above: np.ndarray) -> np.ndarray:
    return above & ~np.r_[False, above[:-1]]


def _meter_params(vals, warm, scaled):
    from ctas7.stages.meter import MeterParams

    if not scaled:
        return MeterParams()
    # the parameters of tests/test_meter_nab.py: variance floor from the
    # series' own (unscored) warm-up rows
    head = vals[:warm]
    scale = max(float(np.std(head)), 1e-3 * float(np.mean(np.abs(head))), 1e-6)
    return MeterParams(lookback_ticks=256.0, min_samples=30, outlier_sigma=4.0, poisson_floor=0.0,
                       var_floor=(0.5 * scale) ** 2)


def meter_scores(series, scaled=False):
    from ctas7.stages.meter import score_series

    return [score_series(vals.astype(np.float32), _meter_params(vals, warm, scaled)) for _, vals, warm, _ in series]


#: log2 of the CUSUM's in-control run length at which it alarms (bits; above
#: the score_threshold limit of 64 the rest goes into cusum_offset)
CUSUM_LEVELS = (6.0, 8.0, 10.0, 12.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 64.0, 80.0, 96.0)
CUSUM_K = 1.0  # chosen on NAB among 0.25 / 0.5 / 1.0 (in-sample)


def meter_cusum_alarms(series, level):
    """The meter's CUSUM test as one node with threshold ``level`` bits (so
    its cap 2h follows the threshold, as in the meter), on the scale-aware
    parameters: two-sided CUSUM of the raw standardised residual, no
    transform or Poisson floor (continuous values). Alarm: onset of a run
    of scores >= the threshold."""
    from ctas7.stages.meter import score_series

    out = []
    thr = min(level, 64.0)
    for _, vals, warm, _ in series:
        p = _meter_params(vals, warm, True).replace(
            transform="none", detector="cusum", smoothing=1.0, cusum_k=CUSUM_K,
            score_threshold=thr, cusum_offset=level - thr)
        out.append(_onsets(score_series(vals.astype(np.float32), p) >= thr))
    return out


def _clock_alarms(series, period):
    """An alarm every ``period`` rows after warm-up, whatever the data."""
    out = []
    for _, vals, warm, _ in series:
        a = np.zeros(len(vals), bool)
        a[warm::period] = True
        out.append(a)
    return out


def pagehinkley_alarms(series, standardise=False, threshold=50.0):
    from river import drift

    out = []
    for _, vals, warm, _ in series:
        v = vals
        if standardise:
            head = vals[:warm]
            v = (vals - head.mean()) / max(float(head.std()), 1e-12)
        ph, alarm = drift.PageHinkley(threshold=threshold), np.zeros(len(v), bool)
        for i, x in enumerate(v.tolist()):
            ph.update(x)
            if ph.drift_detected:
                alarm[i] = True
        out.append(alarm)
    return out


def hst_scores(series):
    from river import anomaly, preprocessing

    out = []
    for _, vals, _, _ in series:
        model = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=42)
        s = np.empty(len(vals))
        for i, x in enumerate(vals.tolist()):
            d = {"value": x}
            s[i] = model.score_one(d)
            model.learn_one(d)
        out.append(s)
    return out


def _sweep(scores, thresholds, series):
    return [(float(t), _score_alarms([_onsets(s >= t) for s in scores], series)) for t in thresholds]


def _best_within(curve, budget):
    """The setting of a threshold sweep catching most windows with at most ``budget`` false alarms."""
    ok = [(q["caught"], -q["false_alarms"], k, q) for k, q in curve if q["false_alarms"] <= budget]
    if not ok:
        return None
    _, _, k, q = max(ok, key=lambda t: t[:2])
    return k, q


METER_BITS = (6.0, 8.0, 10.0, 12.0, 15.0, 20.0, 25.0, 30.0, 40.0, 60.0)
PH_THRESHOLDS = (3.0, 5.0, 8.0, 12.0, 20.0, 30.0, 50.0, 80.0, 130.0, 200.0)
HST_THRESHOLDS = tuple(np.round(np.r_[np.arange(0.80, 0.99, 0.01), np.arange(0.99, 1.0, 0.0005)], 4))


def detector_quality(series) -> tuple[list, list]:
    """Windows caught vs false alarms per detector (deterministic, computed once).

    Each detector is shown at its default setting; then, at the false-alarm
    count of each ctas7 setting (the budget), every detector's threshold
    sweep is searched for the setting that catches the most windows within
    that budget. The verdict "no worse" holds when, at that budget, the
    meter catches at least as many windows as the peer.
    """
    rows, verdicts = [], []
    m_def, m_scaled = meter_scores(series), meter_scores(series, scaled=True)
    q_def = _score_alarms([_onsets(s >= 10.0) for s in m_def], series)
    q_scaled = _score_alarms([_onsets(s >= 20.0) for s in m_scaled], series)
    rows.append(("ctas7 meter, default params, 10 bits (default)", q_def))
    rows.append(("ctas7 meter, scale-aware var_floor, 20 bits (tests/test_meter_nab.py)", q_scaled))
    rows.append(("River PageHinkley, defaults, raw values", _score_alarms(pagehinkley_alarms(series), series)))
    ph_curve = [(t, _score_alarms(pagehinkley_alarms(series, True, t), series)) for t in PH_THRESHOLDS]
    rows.append(("River PageHinkley, defaults, warm-up standardised values", dict(ph_curve)[50.0]))
    hst = hst_scores(series)
    hst_curve = _sweep(hst, HST_THRESHOLDS, series)
    rows.append(("River MinMaxScaler|HalfSpaceTrees, score >= 0.9", dict(hst_curve)[0.9]))
    cusum_curve = [(lv, _score_alarms(meter_cusum_alarms(series, lv), series)) for lv in CUSUM_LEVELS]
    q_cusum = dict(cusum_curve)[20.0]
    rows.append((f"ctas7 meter, scale-aware CUSUM k={CUSUM_K:g} (k chosen on NAB), 20 bits", q_cusum))
    rows.append(("no detector: an alarm every 250 rows (what spreading alarms alone catches)",
                 _score_alarms(_clock_alarms(series, 250), series)))
    curves = {
        "ctas7 meter, default params": ("bits", _sweep(m_def, METER_BITS, series)),
        "ctas7 meter, scale-aware": ("bits", _sweep(m_scaled, METER_BITS, series)),
        "ctas7 meter, scale-aware CUSUM": ("bits", cusum_curve),
        "PageHinkley, standardised": ("threshold", ph_curve),
        "HalfSpaceTrees": ("score", hst_curve),
    }
    for own, q_own in (("default params", q_def), ("scale-aware", q_scaled), ("scale-aware CUSUM", q_cusum),
                       ("PageHinkley default threshold", dict(ph_curve)[50.0])):
        budget = q_own["false_alarms"]
        best_caught = {}
        for name, (unit, curve) in curves.items():
            best = _best_within(curve, budget)
            if best is None:
                rows.append((f"  <= {budget} FA: {name}: no setting within budget", None))
                continue
            rows.append((f"  <= {budget} FA: {name}, {unit} {best[0]:g}", best[1]))
            best_caught[name] = best[1]["caught"]
        mine = max(v for k, v in best_caught.items() if k.startswith("ctas7"))
        for peer in ("PageHinkley, standardised", "HalfSpaceTrees"):
            if peer in best_caught:
                verdicts.append((f"{peer} at <= {budget} FA ({own}'s)",
                                 mine >= best_caught[peer], mine, best_caught[peer]))
    return rows, verdicts


def detector_contenders(series, quick: bool) -> list:
    from river import anomaly, drift, preprocessing

    from ctas7.stages.meter import score_series

    vals32 = [v.astype(np.float32) for _, v, _, _ in series]
    total = sum(len(v) for v in vals32)
    longest = max((v for _, v, _, _ in series), key=len)
    ph_n = min(len(longest), 20_000 if quick else 50_000)
    hst_n = 2_000 if quick else 5_000

    def meter():
        t0 = time.perf_counter()
        for v in vals32:
            score_series(v)
        return total / (time.perf_counter() - t0)

    from ctas7.stages.meter import MeterParams

    raw = MeterParams(smoothing=1.0, detector="surprisal").compile()

    def meter_raw():
        # informational: the surprisal alone (no smoothing or CUSUM recurrences)
        t0 = time.perf_counter()
        for v in vals32:
            score_series(v, raw)
        return total / (time.perf_counter() - t0)

    # the configuration of the NAB-balance curve (meter_cusum_alarms at 20
    # bits), compiled per series outside the clock as PageHinkley is built
    cusum = [
        _meter_params(v, warm, True).replace(transform="none", detector="cusum", smoothing=1.0, cusum_k=CUSUM_K,
                                             score_threshold=20.0, cusum_offset=0.0).compile()
        for _, v, warm, _ in series
    ]

    def meter_cusum():
        t0 = time.perf_counter()
        for v, p in zip(vals32, cusum):
            score_series(v, p)
        return total / (time.perf_counter() - t0)

    def ph():
        d = drift.PageHinkley()
        xs = longest[:ph_n].tolist()
        t0 = time.perf_counter()
        for x in xs:
            d.update(x)
            d.drift_detected
        return ph_n / (time.perf_counter() - t0)

    from ctas7.stages.meter import evaluate_activity

    activity = np.random.default_rng(5).poisson(5.0, (2000 if quick else 4000, 247)).astype(np.float32)

    def meter_nodes():
        t0 = time.perf_counter()
        evaluate_activity(activity)
        return activity.size / (time.perf_counter() - t0)

    def hst():
        model = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=42)
        xs = longest[:hst_n].tolist()
        t0 = time.perf_counter()
        for x in xs:
            d = {"value": x}
            model.score_one(d)
            model.learn_one(d)
        return hst_n / (time.perf_counter() - t0)

    return [
        (f"ctas7 meter score_series ({len(series)} NAB series, one call each)", "ctas7", meter),
        ("ctas7 meter score_series, surprisal only (smoothing 1, detector surprisal; info)", "ctas7-raw",
         meter_raw),
        ("ctas7 meter score_series, scale-aware CUSUM (the NAB-balance curve's configuration)", "ctas7-cusum",
         meter_cusum),
        (f"ctas7 meter evaluate_activity ({activity.shape[0]} ticks x 247 nodes, node-ticks/s)", "ctas7-nodes",
         meter_nodes),
        (f"River PageHinkley.update ({ph_n} rows)", "PageHinkley", ph),
        (f"River MinMaxScaler|HalfSpaceTrees score+learn ({hst_n} rows)", "HalfSpaceTrees", hst),
    ]


# ---------------------------------------------------------------------------
# teth and chain
# ---------------------------------------------------------------------------


def teth_contenders(quick: bool) -> list:
    from ctas7.sim.synthetic import synthetic_stream
    from ctas7.stage import Frame
    from ctas7.stages.teth import DEFAULT_PATTERNS, Teth, reference_match

    n = 200_000 if quick else 1_000_000
    ref_n = 50_000 if quick else 200_000
    stream = synthetic_stream(n, n_stations=247, n_kinds=8, seed=7)
    frames = [np.ascontiguousarray(stream[i:i + 16384]) for i in range(0, n, 16384)]
    prefix = np.ascontiguousarray(stream[:ref_n])
    ref, _ = reference_match(prefix, DEFAULT_PATTERNS)
    got = Teth(beacons=False).process(Frame(prefix)).matches
    if not np.array_equal(ref, got):
        raise AssertionError("Teth and reference_match disagree on the benchmark stream")

    def teth(beacons):
        stage = Teth(beacons=beacons)
        t0 = time.perf_counter()
        for f in frames:
            stage.process(Frame(f))
        return n / (time.perf_counter() - t0)

    def ref_loop():
        t0 = time.perf_counter()
        reference_match(prefix, DEFAULT_PATTERNS)
        return ref_n / (time.perf_counter() - t0)

    return [
        (f"ctas7 Teth, default patterns ({n} events, frames of 16384)", "ctas7", lambda: teth(False)),
        ("ctas7 Teth + beacons (same stream)", "ctas7-variant", lambda: teth(True)),
        (f"pure-Python DFA loop reference_match ({ref_n} events)", "python", ref_loop),
    ], len(ref)


def chain_contenders(quick: bool) -> list:
    from river import drift

    from ctas7.chain import default_chain
    from ctas7.sim.synthetic import synthetic_stream
    from ctas7.stage import Frame

    n = 100_000 if quick else 400_000
    stream = synthetic_stream(n, n_stations=247, burst_nodes=range(0, 40, 3), seed=11)
    frames = [np.ascontiguousarray(stream[i:i + 4096]) for i in range(0, n, 4096)]
    values = np.random.default_rng(3).normal(size=50_000).tolist()

    def chain():
        pipe = default_chain()
        t0 = time.perf_counter()
        for f in frames:
            pipe.process(Frame(f))
        dt = time.perf_counter() - t0
        for st in pipe.stages:
            close = getattr(st, "close", None)
            if close is not None:
                close()
        return n / dt

    def ph():
        d = drift.PageHinkley()
        t0 = time.perf_counter()
        for x in values:
            d.update(x)
            d.drift_detected
        return len(values) / (time.perf_counter() - t0)

    return [
        (f"ctas7 default chain, 1 process ({n} events, frames of 4096)", "ctas7", chain),
        ("River PageHinkley.update (50000 values)", "PageHinkley", ph),
    ]


# ---------------------------------------------------------------------------
# running and reporting
# ---------------------------------------------------------------------------


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "numpy": np.__version__,
        "simd_info": kernels.simd_info(),
    }
    for mod, attr in (("faster_fifo", None), ("zmq", "__version__"), ("numba", "__version__"), ("river", "__version__")):
        try:
            m = __import__(mod)
            if attr:
                info[mod] = getattr(m, attr)
            else:
                from importlib.metadata import version

                info[mod] = version(mod.replace("_", "-"))
        except Exception as exc:  # a missing peer is reported, the rest still runs
            info[mod] = f"unavailable ({type(exc).__name__})"
    return info


def run_groups(groups: dict, rounds: int, progress) -> dict:
    """Round-robin: each round measures every contender of every group once."""
    samples = {g: {label: [] for label, _, _ in cs} for g, cs in groups.items()}
    errors = {}
    flat = [(g, label, fn) for g, cs in groups.items() for label, _, fn in cs]
    for r in range(rounds):
        start = (r * 7) % len(flat)
        for g, label, fn in flat[start:] + flat[:start]:
            if label in errors:
                continue
            try:
                samples[g][label].append(float(fn()))
            except Exception as exc:  # keep going; the table says what failed
                errors[label] = f"{type(exc).__name__}: {exc}"
        progress(r + 1, rounds)
    return samples, errors


def summarise(groups: dict, samples: dict, errors: dict) -> list:
    rows = []
    for g, cs in groups.items():
        med = {label: statistics.median(samples[g][label]) for label, _, _ in cs if samples[g][label]}
        ctas = [label for label, who, _ in cs if who == "ctas7" and label in med]
        best_ctas = max(ctas, key=med.get) if ctas else None
        for label, who, _ in cs:
            s = samples[g][label]
            row = {"group": g, "contender": label, "who": who, "rounds": len(s)}
            if label in errors:
                row["error"] = errors[label]
            if s:
                row.update(median=med[label], low=min(s), high=max(s))
                if best_ctas and not who.startswith("ctas7"):
                    row["ctas7_ratio"] = med[best_ctas] / med[label]
            rows.append(row)
    return rows


def targets(rows: list, verdicts: list | None) -> list:
    def med(group, pred):
        vals = [r["median"] for r in rows if r["group"] == group and "median" in r and pred(r)]
        return max(vals) if vals else None

    out = []

    def check(name, group, mine, peer, goal):
        a, b = med(group, lambda r: r["who"] == mine), med(group, lambda r: r["who"] == peer)
        if a is None or b is None:
            out.append({"target": name, "status": "not measured"})
            return
        ratio = a / b
        met = None if goal is None else ratio >= goal
        out.append({"target": name, "ratio": ratio, "goal": goal, "met": met})

    # the zero-copy-read rows (who "ctas7"), then the rows whose consumer gets its own copy
    check("channel batched vs best faster-fifo", "channel batched", "ctas7", "faster-fifo", 10)
    check("channel batched, copy modes only, vs best faster-fifo", "channel batched", "ctas7-copy", "faster-fifo", 10)
    check("channel per event vs mp.Queue", "channel per event", "ctas7", "mp.Queue", 10)
    for k in ("surprisal", "binary_entropy"):
        for n in (1 << 16, 1 << 20):
            check(f"kernel {k} n={n} vs numpy float32", f"kernel {k} n={n}", "ctas7", "numpy", 10)
    check("meter score_series vs PageHinkley (one series)", "detector NAB", "ctas7", "PageHinkley", 100)
    check("meter score_series, NAB-balance configuration, vs PageHinkley", "detector NAB", "ctas7-cusum",
          "PageHinkley", 100)
    check("meter evaluate_activity (247 nodes) vs PageHinkley", "detector NAB", "ctas7-nodes", "PageHinkley", 100)
    check("full default chain vs PageHinkley (info)", "chain", "ctas7", "PageHinkley", None)
    check("Teth vs pure-Python DFA", "teth", "ctas7", "python", None)
    for name, ok, mine, theirs in verdicts or []:
        out.append({"target": f"NAB windows caught: ctas7 {mine} vs {name} {theirs}", "met": bool(ok)})
    return out


def _fmt_rate(v: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if v >= scale:
            return f"{v / scale:.3g} {unit}/s"
    return f"{v:.3g} /s"


def render(report: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    con = Console(width=max(100, Console().width))
    mach = report["machine"]
    si = mach["simd_info"]
    con.print(f"[bold]ctas7 peers[/]  {mach['cpu']}, {mach['usable_cores']}/{mach['cores']} cores, "
              f"load {mach['loadavg']}, Python {mach['python']}, numpy {mach['numpy']}, "
              f"SIMD active {si.get('active')} (supported {', '.join(si.get('supported', []))})")
    con.print(f"peers: faster-fifo {mach.get('faster_fifo')}, pyzmq {mach.get('zmq')}, "
              f"numba {mach.get('numba')}, river {mach.get('river')}; "
              f"{report['rounds']} interleaved rounds, {report['seconds']:.0f} s")
    t = Table(title="throughput (median of rounds; ratio = best ctas7 median / peer median)")
    for col, kw in (("group", {}), ("contender", {}), ("median", {"justify": "right"}),
                    ("min..max", {"justify": "right"}), ("ctas7 ×", {"justify": "right"})):
        t.add_column(col, **kw)
    last = None
    for r in report["rows"]:
        g = r["group"] if r["group"] != last else ""
        if last is not None and g:
            t.add_section()
        last = r["group"]
        if "median" in r:
            spread = f"{_fmt_rate(r['low'])}..{_fmt_rate(r['high'])}"
            ratio = f"{r['ctas7_ratio']:.1f}" if "ctas7_ratio" in r else ""
            t.add_row(g, escape(r["contender"]), _fmt_rate(r["median"]), spread, ratio)
        else:
            t.add_row(g, escape(r["contender"]), "[red]failed[/]", escape(r.get("error", "")[:60]), "")
    con.print(t)
    if report.get("quality"):
        q = Table(title="NAB: windows caught vs false alarms (after warm-up)")
        for col in ("detector", "caught", "false alarms", "alarms", "in windows"):
            q.add_column(col, justify="left" if col == "detector" else "right")
        for name, m in report["quality"]:
            if m is None:
                q.add_row(escape(name), "", "", "", "")
                continue
            share = (m["alarms"] - m["false_alarms"]) / m["alarms"] if m["alarms"] else 0.0
            q.add_row(escape(name), f"{m['caught']}/{m['windows']}", str(m["false_alarms"]), str(m["alarms"]), f"{share:.2f}")
        con.print(q)
    tt = Table(title="targets")
    for col in ("target", "ratio", "goal", "met"):
        tt.add_column(col)
    for tr in report["targets"]:
        ratio = f"{tr['ratio']:.1f}×" if "ratio" in tr else ""
        goal = f"≥{tr['goal']}×" if tr.get("goal") else ""
        if "status" in tr:
            met = tr["status"]
        elif tr["met"] is None:
            met = ""
        elif tr["met"]:
            met = "[green]yes[/]"
        elif "ratio" in tr:
            met = f"[red]no ({tr['ratio'] / tr['goal']:.2f} of goal)[/]"
        else:
            met = "[red]no[/]"
        tt.add_row(tr["target"], ratio, goal, met)
    con.print(tt)
    if report.get("notes"):
        for n in report["notes"]:
            con.print(f"note: {n}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, 3 rounds, a quarter of NAB")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 7, quick 3)")
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    ap.add_argument("--json", metavar="PATH", help="also write the report as JSON ('-' = stdout, no table)")
    args = ap.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = sorted(set(only) - set(SECTIONS))
    if bad:
        ap.error(f"unknown section(s) {bad}; choose from {SECTIONS}")
    rounds = args.rounds or (3 if args.quick else 7)
    if rounds < 1:
        ap.error("--rounds must be >= 1")
    quiet = args.json == "-"

    def say(msg):
        if not quiet:
            print(msg, file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    groups, quality, verdicts, notes = {}, None, None, []
    if "channel" in only:
        batched, per_event = channel_contenders(args.quick)
        groups["channel batched"] = batched
        groups["channel per event"] = per_event
    if "kernels" in only:
        for kname, cs in kernel_contenders(args.quick):
            groups[f"kernel {kname}"] = cs
    if "detector" in only:
        if NAB_DIR.is_dir():
            say("loading NAB ...")
            series = _load_nab(args.quick)
            say("detector quality on NAB (River HalfSpaceTrees is ~10k rows/s: about a minute) ...")
            quality, verdicts = detector_quality(series)
            groups["detector NAB"] = detector_contenders(series, args.quick)
        else:
            notes.append(f"NAB not found at {NAB_DIR}: detector comparison skipped")
    if "teth" in only:
        cs, n_matches = teth_contenders(args.quick)
        groups["teth"] = cs
        notes.append(f"Teth and reference_match agree on the reference prefix ({n_matches} matches)")
    if "chain" in only:
        groups["chain"] = chain_contenders(args.quick)
    say(f"measuring {sum(len(c) for c in groups.values())} contenders x {rounds} rounds ...")
    samples, errors = run_groups(groups, rounds, lambda r, n: say(f"  round {r}/{n} done"))
    rows = summarise(groups, samples, errors)
    report = {
        "machine": machine(),
        "rounds": rounds,
        "quick": args.quick,
        "seconds": time.perf_counter() - t_start,
        "rows": rows,
        "quality": quality,
        "targets": targets(rows, verdicts),
        "notes": notes,
    }
    if args.json:
        text = json.dumps(report, indent=2, default=str)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    if not quiet:
        render(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
