"""Lock-free rings of fixed-size records over any writable buffer.

:class:`SpscRing` (one producer, one consumer) and :class:`MpmcRing`
(bounded Vyukov queue: a 64-bit sequence per slot) move numpy records
between threads or processes through a bytearray, a numpy array, an mmap
or ``multiprocessing.shared_memory``. Capacities are powers of two;
positions are 64-bit and never wrap. Batches are copied with ``memcpy``
with the GIL released; ``claim -> view -> commit`` and ``peek -> view ->
release`` avoid the copy entirely.

Examples
--------
>>> import numpy as np
>>> from ctas7.rings import SpscRing, WaitStrategy
>>> from ctas7.events import make_events
>>> buf = np.zeros(SpscRing.nbytes(16), dtype=np.uint8)
>>> ring = SpscRing(buf, 16, wait=WaitStrategy.SPIN_YIELD)
>>> view = ring.claim(4)          # write straight into the ring
>>> view["ts"] = [10, 20, 30, 40]
>>> ring.commit()
4
>>> ring.peek(8)["ts"].tolist()   # read without copying
[10, 20, 30, 40]
>>> ring.release()
4
>>> ring.put((5, 0, 1, 2, 3, 0, 1.0))
True
>>> int(ring.get(timeout=1.0)["node"])
2

Performance notes (measured with ``asv_bench/bench_rings_quick.py``):

- Batched transfers are bound by ``memcpy``; per-call overhead is ~0.3 us.
  A ring that fits the L2 caches with batches of a quarter of it (64 Ki
  records = 2 MiB, batches of 16 Ki) costs ~3 ns of CPU per 32-byte event
  (both processes); 1 Mi records (32 MiB) spill to memory and cost ~2x.
- Zero copy saves the consumer's copy (~20% less CPU). Fill a claimed view
  through a plain view, ``view.view(np.uint64)[:] = src.view(np.uint64)``,
  or field by field: assigning a whole structured array
  (``view[:] = src``) is ~20x slower than the byte copy.
- ``WaitStrategy.SLEEP`` (futex) costs no CPU while idle and is right on a
  busy machine; ``SPIN_YIELD`` gives lower latency when both sides have a
  core of their own. A producer calls ``FUTEX_WAKE`` only when a consumer
  is actually asleep.
"""

from __future__ import annotations

import collections
import enum

import numpy as np

from ctas7._core._ring import MpmcRing, SharedWords, SpscRing, ring_nbytes
from ctas7.events import EVENT_DTYPE

__all__ = ["SpscRing", "MpmcRing", "WaitStrategy", "ring_nbytes", "SharedWords", "ReferenceRing"]


class WaitStrategy(enum.IntEnum):
    """How a blocking ring call waits for space or records.

    SPIN burns a core (lowest latency when cores are free); SPIN_YIELD spins
    briefly then calls ``sched_yield``; SLEEP spins, yields, then sleeps on a
    futex that the other side wakes (the default: right for shared machines).
    """

    SPIN = 0
    SPIN_YIELD = 1
    SLEEP = 2


class ReferenceRing:
    """Pure-Python model of the ring semantics, the oracle for the tests.

    Bounded FIFO of records with the same ``put_many``/``get_many``/``put``/
    ``get`` contract (non-blocking) as the Cython rings.

    Examples
    --------
    >>> from ctas7.events import make_events
    >>> ref = ReferenceRing(4)
    >>> ref.put_many(make_events(ts=[1, 2, 3, 4, 5]))
    4
    >>> ref.get_many(2)["ts"].tolist()
    [1, 2]
    """

    def __init__(self, capacity: int, dtype=None):
        if capacity < 2 or capacity & (capacity - 1):
            raise ValueError(f"capacity must be a power of two >= 2, got {capacity}")
        self.capacity = capacity
        self.dtype = EVENT_DTYPE if dtype is None else np.dtype(dtype)
        self._q: collections.deque = collections.deque()

    def __len__(self) -> int:
        return len(self._q)

    def put_many(self, batch: np.ndarray) -> int:
        if not isinstance(batch, np.ndarray) or batch.dtype != self.dtype:
            raise TypeError("batch must be an array of the ring's dtype")
        k = min(len(batch), self.capacity - len(self._q))
        self._q.extend(batch[:k].tobytes()[i * self.dtype.itemsize : (i + 1) * self.dtype.itemsize] for i in range(k))
        return k

    def get_many(self, max_n: int) -> np.ndarray:
        k = min(max_n, len(self._q))
        raw = b"".join(self._q.popleft() for _ in range(k))
        return np.frombuffer(raw, dtype=self.dtype).copy() if k else np.empty(0, self.dtype)

    def put(self, record) -> bool:
        return self.put_many(np.array([record], dtype=self.dtype)) == 1

    def get(self):
        out = self.get_many(1)
        return out[0] if len(out) else None
