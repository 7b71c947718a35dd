"""Tests for ctas7.rings (SpscRing, MpmcRing) against ReferenceRing."""

import mmap
import threading
import time
from multiprocessing import shared_memory

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ctas7._core import _ring
from ctas7.events import EVENT_DTYPE, make_events
from ctas7.rings import MpmcRing, ReferenceRing, SpscRing, WaitStrategy, ring_nbytes

RINGS = [SpscRing, MpmcRing]


def events(n, start=0, station=0):
    return make_events(ts=np.arange(start, start + n), seq=np.arange(start, start + n), station=station)


def new_ring(cls, capacity=16, **kw):
    return cls(bytearray(cls.nbytes(capacity)), capacity, **kw)


# --------------------------------------------------------------------------- buffers


@pytest.fixture(params=["bytearray", "numpy", "mmap", "shared_memory"])
def buffer_factory(request):
    made = []

    def make(nbytes):
        if request.param == "bytearray":
            return bytearray(nbytes)
        if request.param == "numpy":
            return np.zeros(nbytes, dtype=np.uint8)
        if request.param == "mmap":
            m = mmap.mmap(-1, nbytes)
            made.append(m)
            return m
        shm = shared_memory.SharedMemory(create=True, size=nbytes)
        made.append(shm)
        return shm.buf

    yield make
    for m in made:
        if isinstance(m, shared_memory.SharedMemory):
            m.close()
            m.unlink()


@pytest.mark.parametrize("cls", RINGS)
def test_any_writable_buffer(cls, buffer_factory):
    buf = buffer_factory(cls.nbytes(64))
    ring = cls(buf, 64)
    assert ring.put_many(events(100)) == 64
    assert ring.get_many(10)["seq"].tolist() == list(range(10))
    other = cls.attach(buf)  # a second handle over the same memory
    assert other.capacity == 64 and len(other) == 54
    assert other.get_many(100)["seq"].tolist() == list(range(10, 64))
    ring.close()
    other.close()


@pytest.mark.parametrize("cls", RINGS)
def test_nbytes(cls):
    assert cls.nbytes(8) == ring_nbytes(8, 32, mpmc=cls is MpmcRing)
    assert cls.nbytes(1024) - cls.nbytes(512) == 512 * (32 + (8 if cls is MpmcRing else 0))
    assert cls.nbytes(8, np.dtype([("a", "<u8")])) < cls.nbytes(8)



@pytest.mark.parametrize("cls", RINGS)
def test_hot_words_on_separate_lines(cls):
    """tail (producer) and head (consumer) sit on their own 128-byte lines; records start line-aligned."""
    buf = np.zeros(cls.nbytes(16), np.uint8)
    ring = cls(buf, 16)
    words = buf.view(np.uint64)
    ring.put_many(events(5))
    ring.get_many(2)
    tail_at = [i * 8 for i in range(len(words)) if words[i] == 5 and i * 8 < 640]
    head_at = [i * 8 for i in range(len(words)) if words[i] == 2 and i * 8 < 640]
    assert 128 in tail_at and 256 in head_at
    assert ring.tail == 5 and ring.head == 2
    data_off = int(words[40 // 8])
    assert data_off % 128 == 0 and data_off >= 640
    assert buf[data_off + 2 * 32 : data_off + 5 * 32].view(EVENT_DTYPE)["seq"].tolist() == [2, 3, 4]


@pytest.mark.parametrize("cls", RINGS)
def test_cached_index_refreshes(cls):
    """Separate producer and consumer handles: each re-reads the other's index when its copy says full/empty."""
    buf = bytearray(cls.nbytes(8))
    prod = cls(buf, 8)
    cons = cls.attach(buf)
    assert len(cons.get_many(4)) == 0
    assert prod.put_many(events(8)) == 8
    assert prod.put_many(events(1, 8)) == 0
    assert cons.get_many(3)["seq"].tolist() == [0, 1, 2]
    assert prod.put_many(events(4, 8)) == 3  # saw the new head
    assert cons.get_many(100)["seq"].tolist() == list(range(3, 11))
    for start in range(11, 200, 5):  # many laps, cached copies stay correct
        assert prod.put_many(events(5, start)) == 5
        assert cons.get_many(5)["seq"].tolist() == list(range(start, start + 5))

@pytest.mark.parametrize("cls", RINGS)
@pytest.mark.parametrize("capacity", [0, 1, 3, 6, 100, -4, 1 << 41])
def test_bad_capacity(cls, capacity):
    with pytest.raises(ValueError, match="power of two"):
        cls(bytearray(1 << 16), capacity)


@pytest.mark.parametrize("cls", RINGS)
def test_bad_capacity_type(cls):
    with pytest.raises(TypeError):
        cls(bytearray(1 << 16), 8.0)


@pytest.mark.parametrize("cls", RINGS)
def test_bad_buffers(cls):
    with pytest.raises(ValueError, match="needs"):
        cls(bytearray(cls.nbytes(16) - 1), 16)
    with pytest.raises(TypeError, match="writable"):
        cls(bytes(cls.nbytes(16)), 16)
    with pytest.raises(TypeError, match="buffer protocol"):
        cls([0] * 100, 16)
    with pytest.raises(ValueError, match="aligned"):
        cls(memoryview(bytearray(cls.nbytes(16) + 8))[1:], 16)
    with pytest.raises(ValueError, match="contiguous"):
        cls(np.zeros(2 * cls.nbytes(16), np.uint8)[::2], 16)
    with pytest.raises(ValueError, match="record size"):
        cls(bytearray(1 << 16), 16, np.dtype("i4"))
    with pytest.raises(ValueError, match="wait strategy"):
        cls(bytearray(cls.nbytes(16)), 16, wait="nap")


def test_attach_checks():
    buf = bytearray(SpscRing.nbytes(16) + MpmcRing.nbytes(16))
    with pytest.raises(ValueError, match="initialised"):
        SpscRing.attach(buf)
    SpscRing(buf, 16)
    with pytest.raises(ValueError, match="SPSC ring, not a MpmcRing"):
        MpmcRing.attach(buf)
    with pytest.raises(ValueError, match="32 bytes"):
        SpscRing.attach(buf, np.dtype([("a", "<u8")]))
    buf[8] = 99  # layout version
    with pytest.raises(ValueError, match="version 99"):
        SpscRing.attach(buf)
    with pytest.raises(ValueError, match="too small"):
        SpscRing(buf, 16)
        SpscRing.attach(buf[: SpscRing.nbytes(16) - 32])


@pytest.mark.parametrize("cls", RINGS)
def test_wrong_batches(cls):
    ring = new_ring(cls)
    with pytest.raises(TypeError, match="dtype"):
        ring.put_many(np.zeros(4, dtype=np.float64))
    with pytest.raises(TypeError, match="numpy array"):
        ring.put_many([1, 2, 3])
    with pytest.raises(ValueError, match="1-dimensional"):
        ring.put_many(events(4).reshape(2, 2))
    with pytest.raises(ValueError, match="contiguous"):
        ring.put_many(events(8)[::2])
    with pytest.raises(TypeError, match="dtype"):
        ring.get_into(np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="writable"):
        out = np.zeros(4, EVENT_DTYPE)
        out.flags.writeable = False
        ring.get_into(out)
    with pytest.raises(ValueError, match="max_n"):
        ring.get_many(-1)
    with pytest.raises(ValueError, match="timeout"):
        ring.get_many(1, timeout=-1)
    assert len(ring) == 0


@pytest.mark.parametrize("cls", RINGS)
def test_wraparound_and_full_empty(cls):
    ring = new_ring(cls, 8)
    got, sent = [], 0
    for step in range(50):
        n = (step * 7) % 11
        sent += ring.put_many(events(n, sent)[: 8 - len(ring)] if n else events(0))
        got.extend(ring.get_many((step * 5) % 9)["seq"].tolist())
    got.extend(ring.get_many(100)["seq"].tolist())
    assert got == list(range(sent))
    assert ring.put_many(events(9)) == 8
    assert ring.put_many(events(1)) == 0  # full: never overwrites
    assert ring.get_many(100)["seq"].tolist() == list(range(8))
    assert len(ring.get_many(5)) == 0  # empty


@pytest.mark.parametrize("cls", RINGS)
def test_single_records(cls):
    ring = new_ring(cls, 4)
    batch = events(3)
    assert ring.put(batch[0])
    assert ring.put((7, 8, 9, 10, 11, 12, 0.5))
    assert ring.put(batch[2].tobytes())
    assert ring.put(batch[1])
    assert not ring.put(batch[1])  # full
    a = ring.get()
    assert isinstance(a, np.void) and a.dtype == EVENT_DTYPE
    assert a.tolist() == batch[0].tolist()
    assert ring.get().tolist() == (7, 8, 9, 10, 11, 12, 0.5)
    ring.put_many(events(1, 100))
    # The records handed out are copies, not views of the slots.
    assert a["seq"] == 0
    assert ring.get()["seq"] == 2
    assert ring.get()["seq"] == 1
    assert ring.get()["seq"] == 100
    assert ring.get() is None


@pytest.mark.parametrize("cls", RINGS)
def test_single_record_errors(cls):
    ring = new_ring(cls, 4)
    with pytest.raises(TypeError, match="dtype"):
        ring.put(np.zeros(1, dtype=[("x", "<f8")] * 1)[0])
    with pytest.raises(TypeError, match="7 fields"):
        ring.put((1, 2, 3))
    with pytest.raises(ValueError, match="32-byte"):
        ring.put(b"short")
    with pytest.raises(TypeError):
        ring.put(3.5)
    assert len(ring) == 0


@pytest.mark.parametrize("cls", RINGS)
def test_claim_commit(cls):
    ring = new_ring(cls, 8)
    ring.put_many(events(6))
    ring.get_many(6)  # position 6: two slots before the wrap
    view = ring.claim(5)
    assert len(view) == 2 and view.flags.writeable  # contiguous, stops at the wrap
    view["seq"] = [40, 41]
    with pytest.raises(ValueError, match="previous claim"):
        ring.claim(1)
    with pytest.raises(ValueError, match="outside"):
        ring.commit(3)
    assert ring.commit() == 2
    view = ring.claim(10)
    assert len(view) == 6
    view["seq"] = np.arange(50, 56)
    assert ring.commit(4) == 4
    # SPSC drops the rest of a short commit; MPMC publishes them empty.
    assert ring.get_many(100)["seq"].tolist() == [40, 41, 50, 51, 52, 53]
    assert ring.put_many(events(8)) == 8



def test_mpmc_voids_between_records():
    """Short MPMC commits leave empty slots inside a read, also across the wrap."""
    ring = new_ring(MpmcRing, 8)
    ring.put_many(events(5))
    assert len(ring.get_many(5)) == 5  # position 5
    view = ring.claim(3)  # slots 5..7, up to the wrap
    view["seq"] = [100, 101, 102]
    ring.commit(1)  # 101, 102 become empty slots
    ring.put_many(events(2, 200))  # slots 0, 1 after the wrap
    view = ring.claim(4)  # slots 2..4: the ring is full after them
    assert len(view) == 3
    view["seq"] = [300, 301, 302]
    ring.commit(2)
    out = np.zeros(16, EVENT_DTYPE)
    got = ring.get_into(out)
    assert out["seq"][:got].tolist() == [100, 200, 201, 300, 301]
    assert len(ring) == 0 and ring.put_many(events(8, 400)) == 8
    assert ring.get_many(16)["seq"].tolist() == list(range(400, 408))

@pytest.mark.parametrize("cls", RINGS)
def test_peek_release(cls):
    ring = new_ring(cls, 8)
    assert len(ring.peek(4)) == 0
    ring.release()
    ring.put_many(events(5))
    view = ring.peek(3)
    assert view["seq"].tolist() == [0, 1, 2] and not view.flags.writeable
    with pytest.raises(ValueError, match="previous peek"):
        ring.peek(1)
    if cls is MpmcRing:
        with pytest.raises(ValueError, match="whole"):
            ring.release(1)
        assert ring.release() == 3
    else:
        assert ring.release(1) == 1
        assert ring.peek(10)["seq"].tolist() == [1, 2, 3, 4]
        ring.release(3)
    assert ring.get_many(10)["seq"].tolist() == ([3, 4] if cls is MpmcRing else [4])


@pytest.mark.parametrize("cls", RINGS)
def test_views_are_the_ring_memory(cls):
    dt = np.dtype([("a", "<u8"), ("b", "<f8")])
    buf = bytearray(cls.nbytes(8, dt))
    ring = cls(buf, 8, dt)
    ring.put_many(np.zeros(6, dt))
    ring.get_many(6)  # the next claim starts two slots before the wrap
    view = ring.claim(8)
    assert view.dtype == dt and view.shape == (2,) and view.flags.c_contiguous and view.flags.writeable
    view["a"] = [7, 8]
    ring.commit()
    # the claim wrote the buffer itself, at the slots of positions 6 and 7
    data_off = len(buf) - 8 * dt.itemsize
    assert np.frombuffer(buf, dt, 8, data_off)["a"][6:].tolist() == [7, 8]
    peeked = ring.peek(8)
    assert peeked["a"].tolist() == [7, 8] and not peeked.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        peeked["a"] = 0
    assert len(ring.claim(0)) == 0 and ring.commit() == 0
    ring.close()
    # a view keeps the buffer alive after the ring handle is gone
    assert peeked["a"].tolist() == [7, 8]
    del buf, ring
    assert peeked["a"].tolist() == [7, 8]


@pytest.mark.parametrize("cls", RINGS)
@pytest.mark.parametrize("wait", ["spin", "yield", "sleep"])
def test_timeouts(cls, wait):
    ring = new_ring(cls, 4, wait=wait)
    t0 = time.monotonic()
    assert ring.get(timeout=0.05) is None
    assert len(ring.get_many(4, timeout=0.05)) == 0
    assert len(ring.peek(4, timeout=0.05)) == 0
    ring.release()
    assert ring.put_many(events(6), timeout=0.05) == 4
    assert not ring.put(events(1)[0], timeout=0.05)
    assert len(ring.claim(2, timeout=0.05)) == 0
    ring.commit()
    assert time.monotonic() - t0 >= 0.25


@pytest.mark.parametrize("cls", RINGS)
@pytest.mark.parametrize("wait", list(WaitStrategy))
def test_threads_blocking(cls, wait):
    """Producer and consumer threads block in nogil waits: no loss, order kept."""
    ring = new_ring(cls, 64, wait=wait)
    n = 20_000
    data = events(n)

    def produce():
        i = 0
        while i < n:
            i += ring.put_many(data[i : i + 100], timeout=None)

    t = threading.Thread(target=produce)
    t.start()
    got = []
    while sum(map(len, got)) < n:
        got.append(ring.get_many(77, timeout=None))
    t.join()
    assert np.array_equal(np.concatenate(got), data)



@pytest.mark.parametrize("cls", RINGS)
@pytest.mark.parametrize("budget_ns", [0, 10_000_000])
def test_sleep_budget(cls, budget_ns):
    """SLEEP waits: straight to the futex (0) or yielding for 10 ms first; no lost wake-up."""
    old = _ring._set_sleep_after_ns(budget_ns)
    try:
        ring = new_ring(cls, 16, wait="sleep")
        n = 5_000
        data = events(n)

        def produce():
            for i in range(0, n, 7):
                assert ring.put_many(data[i : i + 7], timeout=10) == len(data[i : i + 7])
                if i % 700 == 0:
                    time.sleep(0.002)  # let the consumer fall asleep

        t = threading.Thread(target=produce)
        t.start()
        got = []
        while sum(map(len, got)) < n:
            got.append(ring.get_many(5, timeout=10))
            assert len(got[-1]), "consumer was not woken"
        t.join()
        assert np.array_equal(np.concatenate(got), data)
        t0 = time.monotonic()
        assert ring.get(timeout=0.03) is None
        assert time.monotonic() - t0 >= 0.025
    finally:
        assert _ring._set_sleep_after_ns(old) == budget_ns

def test_mpmc_threads_many_producers():
    ring = new_ring(MpmcRing, 128, wait="yield")
    n, k = 5000, 3

    def produce(s):
        data = events(n, station=s)
        i = 0
        while i < n:
            i += ring.put_many(data[i : i + 37], timeout=None)

    threads = [threading.Thread(target=produce, args=(s,)) for s in range(k)]
    for t in threads:
        t.start()
    got = []
    while sum(map(len, got)) < n * k:
        got.append(ring.get_many(50, timeout=5))
    for t in threads:
        t.join()
    out = np.concatenate(got)
    for s in range(k):
        assert out["seq"][out["station"] == s].tolist() == list(range(n))


def test_mpmc_skip_dead_claim():
    buf = bytearray(MpmcRing.nbytes(8))
    ring = MpmcRing(buf, 8)
    dead = MpmcRing.attach(buf)
    view = dead.claim(2)  # a producer that never commits
    assert len(view) == 2 and ring.intent == (0, 2)
    ring.put_many(events(3, 10))  # a live producer behind it
    assert len(ring.get_many(10)) == 0  # the consumer is stuck on slot 0
    assert ring.stalled_position() == 0
    assert ring.skip(0) and ring.skip(1)
    assert not ring.skip(1)
    assert ring.skipped == 2
    assert ring.get_many(10)["seq"].tolist() == [10, 11, 12]
    assert dead.commit() == 2  # a late commit loses its compare-and-swap
    assert dead.lost_publishes == 2
    assert ring.stalled_position() == -1
    assert ring.put_many(events(8)) == 8  # every slot is usable again


def test_spsc_cannot_skip():
    ring = new_ring(SpscRing)
    assert ring.stalled_position() == -1
    with pytest.raises(ValueError, match="MPMC"):
        ring.skip(0)


def test_closed_ring():
    ring = new_ring(SpscRing)
    ring.close()
    with pytest.raises(ValueError, match="closed"):
        ring.put_many(events(1))
    with pytest.raises(ValueError, match="closed"):
        len(ring)


# --------------------------------------------------------------------------- model


def _model_get(ref, n, mpmc):
    """What the ring hands out: MPMC reserves n slots, empty ones included."""
    if not mpmc:
        return ref.get_many(n)
    while True:
        take = [ref._q.popleft() for _ in range(min(n, len(ref._q)))]
        recs = [t for t in take if t is not None]
        if recs or not take:
            return np.frombuffer(b"".join(recs), dtype=EVENT_DTYPE) if recs else np.empty(0, EVENT_DTYPE)


@pytest.mark.parametrize("cls", RINGS)
@settings(max_examples=80, deadline=None, derandomize=True)
@given(ops=st.lists(st.tuples(st.sampled_from("PGpgcr"), st.integers(0, 20)), max_size=60))
@example(ops=[("c", 3), ("G", 2), ("r", 0)])  # MPMC: an empty slot left at the head, then peek(0)
def test_matches_reference(cls, ops):
    cap, mpmc = 8, cls is MpmcRing
    ring, ref = new_ring(cls, cap), ReferenceRing(cap)
    counter = 0
    for op, n in ops:
        if op == "P":
            batch = events(n, counter)
            counter += n
            assert ring.put_many(batch) == ref.put_many(batch)
        elif op == "G":
            assert np.array_equal(ring.get_many(n), _model_get(ref, n, mpmc))
        elif op == "p":
            rec = events(1, counter)[0]
            counter += 1
            assert ring.put(rec) == ref.put(rec)
        elif op == "g":
            a, b = ring.get(), _model_get(ref, 1, mpmc)
            assert (a is None and len(b) == 0) or a.tolist() == b[0].tolist()
        elif op == "c":
            view = ring.claim(n)
            assert len(view) <= min(n, cap - len(ref))
            if n and len(ref) < cap:
                assert len(view) > 0
            view[:] = events(len(view), counter)
            counter += len(view)
            k = min(len(view), n // 2 + 1)
            assert ring.commit(k) == k
            ref.put_many(np.array(view[:k]))
            if mpmc:  # the rest of an MPMC claim holds its slots until consumed
                ref._q.extend([None] * (len(view) - k))
        elif op == "r":
            view = ring.peek(n)
            if mpmc:
                while ref._q and ref._q[0] is None:
                    ref._q.popleft()
            if n and len(ref):
                assert len(view) > 0
            assert np.array_equal(np.array(view), ref.get_many(len(view)))
            ring.release()
        assert len(ring) == len(ref)


class RingMachine(RuleBasedStateMachine):
    """Stateful property: an SPSC ring behaves as a bounded FIFO."""

    @initialize(cap_log=st.integers(1, 5))
    def setup(self, cap_log):
        self.cap = 1 << cap_log
        self.ring = new_ring(SpscRing, self.cap)
        self.ref = ReferenceRing(self.cap)
        self.counter = 0

    @rule(n=st.integers(0, 40))
    def put_many(self, n):
        batch = events(n, self.counter)
        self.counter += n
        assert self.ring.put_many(batch) == self.ref.put_many(batch)

    @rule(n=st.integers(0, 40))
    def get_many(self, n):
        assert np.array_equal(self.ring.get_many(n), self.ref.get_many(n))

    @rule(n=st.integers(0, 40))
    def get_into(self, n):
        out = np.zeros(n, EVENT_DTYPE)
        k = self.ring.get_into(out)
        assert np.array_equal(out[:k], self.ref.get_many(n))

    @invariant()
    def same_length(self):
        assert len(self.ring) == len(self.ref)


TestRingMachine = RingMachine.TestCase
TestRingMachine.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
