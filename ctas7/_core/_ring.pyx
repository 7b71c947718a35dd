# cython: language_level=3
"""Lock-free SPSC and MPMC (Vyukov) rings laid over any writable buffer.

Layout of the buffer (offsets in bytes; every hot word on its own 128-byte
line so the adjacent-line prefetcher cannot couple them):

====  =========================================================
0     meta: magic, layout version, kind, capacity, record size
128   producer line: tail, claim intent [lo, hi), heartbeat, closed flag
256   consumer line: head, skipped (dead claims, MPMC)
384   data futex word + number of sleeping consumers
512   space futex word + number of sleeping producers
640   MPMC only: one 64-bit sequence per slot
...   records, ``capacity * record_size`` bytes, 128-byte aligned
====  =========================================================

Positions are 64-bit and never wrap; a slot is ``pos & (capacity - 1)``.
The producer writes a record *before* it publishes it (SPSC: release-store
of tail; MPMC: compare-and-swap of the slot sequence), a full ring refuses
writes, and a consumer reserves its slots before it reads them.
"""

from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_GET_SIZE
from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.string cimport memcpy, memset

cimport numpy as cnp
import queue

import numpy as np

from ctas7.events import EVENT_DTYPE

cnp.import_array()

cdef extern from "numpy/arrayobject.h":
    object PyArray_Scalar(void *data, cnp.dtype descr, PyObject *base)
    ctypedef struct descr_t "PyArray_Descr"
    PyTypeObject PyArray_Type
    # Steals the reference to descr.
    object PyArray_NewFromDescr(PyTypeObject *subtype, descr_t *descr, int nd, cnp.npy_intp *dims,
                                cnp.npy_intp *strides, void *data, int flags, PyObject *obj)

cdef extern from "numpy/arrayscalars.h":
    ctypedef struct PyVoidScalarObject:
        char *obval
        void *descr

__all__ = [
    "SpscRing",
    "MpmcRing",
    "SharedWords",
    "ChannelFace",
    "ring_nbytes",
    "WAIT_SPIN",
    "WAIT_YIELD",
    "WAIT_SLEEP",
    "RING_MAGIC",
    "RING_VERSION",
]

# ---------------------------------------------------------------------------
# layout
# ---------------------------------------------------------------------------

RING_MAGIC = 0x474E523753415443  # b"CTAS7RNG" little-endian
RING_VERSION = 1
cdef extern from *:
    """
    #define CTAS7_RING_MAGIC 0x474E523753415443ull
    #define CTAS7_RING_VOID 0x8000000000000000ull
    #define CTAS7_RING_NOVOID 0x7FFFFFFFFFFFFFFFull
    #define CTAS7_RING_FOREVER 0xFFFFFFFFFFFFFFFFull
    """
    const uint64_t C_MAGIC "CTAS7_RING_MAGIC"
    # A published slot whose record must be dropped (a claim committed short).
    const uint64_t VOID "CTAS7_RING_VOID"
    const uint64_t NOVOID "CTAS7_RING_NOVOID"
    const uint64_t FOREVER "CTAS7_RING_FOREVER"

cdef enum:
    C_VERSION = 1
    KIND_SPSC = 1
    KIND_MPMC = 2
    H_MAGIC = 0
    H_VERSION = 8
    H_KIND = 12
    H_CAP = 16
    H_RSIZE = 24
    H_SEQ_OFF = 32
    H_DATA_OFF = 40
    H_NBYTES = 48
    P_TAIL = 128
    P_INTENT = 136
    P_HEARTBEAT = 152
    P_CLOSED = 160
    C_HEAD = 256
    C_SKIPPED = 264
    F_DATA = 384
    F_SPACE = 512
    SEQ_OFF = 640
    LINE = 128
    W_SPIN = 0
    W_YIELD = 1
    W_SLEEP = 2
    SPINS = 256
    YIELDS = 64
    SLEEP_SLICE_NS = 10000000
    NOGIL_BYTES = 16384

WAIT_SPIN = 0
WAIT_YIELD = 1
WAIT_SLEEP = 2

_WAIT_NAMES = {
    "spin": W_SPIN,
    "yield": W_YIELD,
    "spin-yield": W_YIELD,
    "spin_yield": W_YIELD,
    "sleep": W_SLEEP,
    "futex": W_SLEEP,
}

cdef object _void_type = np.void
cdef object _queue_Full = queue.Full

# SLEEP waits spin 256 times and yield 64 times, then keep yielding until
# this many ns have passed before they sleep on the futex. 0 by default:
# measured on a loaded 2-core machine, a 50 us budget cost ~12% more CPU per
# event and no throughput; on idle dedicated cores use WAIT_YIELD instead.
cdef uint64_t _sleep_after_ns = 0


def _set_sleep_after_ns(uint64_t ns):
    """Set the spin/yield budget of the SLEEP strategy; returns the old one."""
    global _sleep_after_ns
    old = _sleep_after_ns
    _sleep_after_ns = ns
    return old


cdef inline uint64_t _round_line(uint64_t n) noexcept nogil:
    return (n + LINE - 1) & ~(<uint64_t>LINE - 1)


def ring_nbytes(capacity, record_size=32, *, mpmc=False):
    """Bytes a ring of ``capacity`` records of ``record_size`` bytes needs."""
    cdef uint64_t cap = _check_capacity(capacity)
    if record_size <= 0 or record_size % 8:
        raise ValueError(f"record_size must be a positive multiple of 8, got {record_size}")
    cdef uint64_t seq_bytes = _round_line(cap * 8) if mpmc else 0
    return int(SEQ_OFF + seq_bytes + cap * <uint64_t>record_size)


cdef uint64_t _check_capacity(object capacity) except? 0:
    if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)):
        raise TypeError(f"capacity must be an int, got {type(capacity).__name__}")
    c = int(capacity)
    if c < 2 or c > (1 << 40) or (c & (c - 1)):
        raise ValueError(f"capacity must be a power of two between 2 and 2**40, got {c}")
    return <uint64_t>c


cdef int _parse_wait(object wait) except -1:
    if isinstance(wait, str):
        try:
            return _WAIT_NAMES[wait.lower()]
        except KeyError:
            raise ValueError(f"unknown wait strategy {wait!r}; use one of {sorted(_WAIT_NAMES)}") from None
    if isinstance(wait, (int, np.integer)) and int(wait) in (W_SPIN, W_YIELD, W_SLEEP):
        return int(wait)
    raise ValueError(f"unknown wait strategy {wait!r}; use 'spin', 'yield' or 'sleep'")


cdef uint64_t _deadline(object timeout) except? 1:
    """0 = do not wait, FOREVER = no limit, else absolute monotonic ns."""
    if timeout is None:
        return FOREVER
    t = float(timeout)
    if not t >= 0.0:
        raise ValueError(f"timeout must be None or >= 0, got {timeout!r}")
    if t == 0.0:
        return 0
    if t > 1e9:
        return FOREVER
    return ctas7_monotonic_ns() + <uint64_t>(t * 1e9)


# ---------------------------------------------------------------------------
# waiting and waking
# ---------------------------------------------------------------------------

cdef inline void _wake(uint32_t *futex, uint32_t *waiters) noexcept nogil:
    # Dekker handshake with _await: our publish must be visible before we
    # look for sleepers, and a sleeper registers before it re-checks.
    ctas7_fence_seq_cst()
    if ctas7_load_acquire_u32(waiters) != 0:
        ctas7_fetch_add_u32(futex, 1)
        ctas7_futex_wake(futex, 0x7FFFFFFF)


cdef inline bint _ready_get(ring_t *r) noexcept nogil:
    cdef uint64_t head, s
    if r.mpmc:
        head = ctas7_load_relaxed_u64(r.head)
        s = ctas7_load_acquire_u64(&r.seq[head & r.mask]) & NOVOID
        return s > head
    head = ctas7_load_relaxed_u64(r.head)
    return ctas7_load_acquire_u64(r.tail) != head


cdef inline bint _ready_put(ring_t *r) noexcept nogil:
    cdef uint64_t tail, s
    if ctas7_load_relaxed_u64(r.closed):
        return 1
    tail = ctas7_load_relaxed_u64(r.tail)
    if r.mpmc:
        s = ctas7_load_acquire_u64(&r.seq[tail & r.mask]) & NOVOID
        return s >= tail
    return tail - ctas7_load_acquire_u64(r.head) < r.capacity


cdef int _await(ring_t *r, bint for_get, int strategy, uint64_t deadline) noexcept nogil:
    """Wait until a get (or put) may make progress. 1 = ready, 0 = timed out."""
    cdef uint64_t i = 0, now, left, start = 0
    cdef uint32_t seen
    cdef uint32_t *futex = r.data_futex if for_get else r.space_futex
    cdef uint32_t *waiters = r.data_waiters if for_get else r.space_waiters
    cdef bint ready
    while True:
        ready = _ready_get(r) if for_get else _ready_put(r)
        if ready:
            return 1
        if deadline == 0:
            return 0
        now = ctas7_monotonic_ns()
        if now >= deadline:
            return 0
        if i == 0:
            start = now
        if strategy == W_SPIN or i < SPINS:
            ctas7_cpu_relax()
        elif strategy == W_YIELD or i < SPINS + YIELDS or now - start < _sleep_after_ns:
            ctas7_thread_yield()
        else:
            seen = ctas7_load_acquire_u32(futex)
            ctas7_fetch_add_u32(waiters, 1)
            ready = _ready_get(r) if for_get else _ready_put(r)
            if not ready:
                left = deadline - now
                ctas7_futex_wait(futex, seen, left if left < SLEEP_SLICE_NS else SLEEP_SLICE_NS)
            ctas7_fetch_add_u32(waiters, 0xFFFFFFFF)
        i += 1


cdef inline void _beat(ring_t *r, bint always) noexcept nogil:
    if r.heartbeat != NULL:
        r.beats += 1
        if always or (r.beats & 63) == 0:
            ctas7_store_relaxed_u64(r.heartbeat, ctas7_monotonic_ns())


cdef inline void _copy_in(ring_t *r, uint64_t pos, const unsigned char *src, uint64_t n) noexcept nogil:
    cdef uint64_t idx = pos & r.mask
    cdef uint64_t first = r.capacity - idx
    if first >= n:
        memcpy(r.data + idx * r.rsize, src, n * r.rsize)
    else:
        memcpy(r.data + idx * r.rsize, src, first * r.rsize)
        memcpy(r.data, src + first * r.rsize, (n - first) * r.rsize)


cdef inline void _copy_out(ring_t *r, uint64_t pos, unsigned char *dst, uint64_t n) noexcept nogil:
    cdef uint64_t idx = pos & r.mask
    cdef uint64_t first = r.capacity - idx
    if first >= n:
        memcpy(dst, r.data + idx * r.rsize, n * r.rsize)
    else:
        memcpy(dst, r.data + idx * r.rsize, first * r.rsize)
        memcpy(dst + first * r.rsize, r.data, (n - first) * r.rsize)


# ---------------------------------------------------------------------------
# SPSC
# ---------------------------------------------------------------------------

cdef inline uint64_t _spsc_free(ring_t *r, uint64_t tail, uint64_t want) noexcept nogil:
    cdef uint64_t used = tail - r.head_cache
    if used > r.capacity or r.capacity - used < want:
        r.head_cache = ctas7_load_acquire_u64(r.head)
        used = tail - r.head_cache
    return r.capacity - used


cdef inline uint64_t _spsc_avail(ring_t *r, uint64_t head, uint64_t want) noexcept nogil:
    cdef uint64_t avail = r.tail_cache - head
    if avail < want or r.tail_cache < head:
        r.tail_cache = ctas7_load_acquire_u64(r.tail)
        avail = r.tail_cache - head
    return avail


cdef inline void _set_intent(ring_t *r, uint64_t lo, uint64_t hi) noexcept nogil:
    ctas7_store_relaxed_u64(&r.intent[0], lo)
    ctas7_store_release_u64(&r.intent[1], hi)


cdef inline void _clear_intent(ring_t *r, uint64_t upto) noexcept nogil:
    ctas7_store_release_u64(&r.intent[0], upto)


cdef uint64_t _spsc_write(ring_t *r, const unsigned char *src, uint64_t n) noexcept nogil:
    cdef uint64_t tail = ctas7_load_relaxed_u64(r.tail)
    cdef uint64_t k = _spsc_free(r, tail, n)
    if ctas7_load_relaxed_u64(r.closed):
        return 0
    if k > n:
        k = n
    if k == 0:
        return 0
    _set_intent(r, tail, tail + k)
    _copy_in(r, tail, src, k)
    ctas7_store_release_u64(r.tail, tail + k)
    _clear_intent(r, tail + k)
    _wake(r.data_futex, r.data_waiters)
    return k


cdef uint64_t _spsc_read(ring_t *r, unsigned char *dst, uint64_t n) noexcept nogil:
    cdef uint64_t head = ctas7_load_relaxed_u64(r.head)
    cdef uint64_t k = _spsc_avail(r, head, n)
    if k > n:
        k = n
    if k == 0:
        return 0
    _copy_out(r, head, dst, k)
    ctas7_store_release_u64(r.head, head + k)
    _wake(r.space_futex, r.space_waiters)
    return k


# ---------------------------------------------------------------------------
# MPMC (Vyukov): seq == pos free for the producer of pos; pos + 1 published
# (| VOID: published empty); pos + capacity free again for the next lap.
# ---------------------------------------------------------------------------

cdef uint64_t _mpmc_reserve_write(ring_t *r, uint64_t n, bint contiguous, uint64_t *out_pos) noexcept nogil:
    cdef uint64_t pos, k, s = 0, limit
    while True:
        if ctas7_load_relaxed_u64(r.closed):
            return 0
        pos = ctas7_load_relaxed_u64(r.tail)
        limit = n if n < r.capacity else r.capacity
        if contiguous and limit > r.capacity - (pos & r.mask):
            limit = r.capacity - (pos & r.mask)
        k = 0
        while k < limit:
            s = ctas7_load_acquire_u64(&r.seq[(pos + k) & r.mask]) & NOVOID
            if s != pos + k:
                break
            k += 1
        if k == 0:
            if s < pos:
                return 0  # full: the slot still holds last lap's record
            continue  # another producer moved tail on
        # The intent goes up before the claim so a consumer can attribute the
        # slots to us even if we die right after the compare-and-swap.
        _set_intent(r, pos, pos + k)
        if ctas7_cas_u64(r.tail, &pos, pos + k):
            out_pos[0] = pos
            return k
        _set_intent(r, 0, 0)


cdef uint64_t _mpmc_publish(ring_t *r, uint64_t pos, uint64_t n, uint64_t valid) noexcept nogil:
    """Publish slots [pos, pos+n); those past ``valid`` as VOID. Returns lost."""
    cdef uint64_t i, expected, lost = 0
    for i in range(n):
        expected = pos + i
        if not ctas7_cas_u64(&r.seq[(pos + i) & r.mask], &expected,
                             (pos + i + 1) if i < valid else ((pos + i + 1) | VOID)):
            lost += 1  # a consumer judged us dead and skipped the slot
    _clear_intent(r, pos + n)
    _wake(r.data_futex, r.data_waiters)
    return lost


cdef uint64_t _mpmc_reserve_read(ring_t *r, uint64_t n, bint contiguous, bint stop_at_void,
                                 uint64_t *out_pos) noexcept nogil:
    cdef uint64_t pos, k, s, raw, limit
    while True:
        pos = ctas7_load_relaxed_u64(r.head)
        limit = n if n < r.capacity else r.capacity
        if contiguous and limit > r.capacity - (pos & r.mask):
            limit = r.capacity - (pos & r.mask)
        k = 0
        s = 0
        while k < limit:
            raw = ctas7_load_acquire_u64(&r.seq[(pos + k) & r.mask])
            s = raw & NOVOID
            if s != pos + k + 1:
                break
            if stop_at_void and raw != s:
                break
            k += 1
        if k == 0:
            if s <= pos or stop_at_void:
                return 0  # not published yet (or last lap's reader still copying)
            continue  # another consumer moved head on
        if ctas7_cas_u64(r.head, &pos, pos + k):
            out_pos[0] = pos
            return k


cdef uint64_t _mpmc_finish_read(ring_t *r, uint64_t pos, uint64_t k, unsigned char *dst) noexcept nogil:
    """Copy the non-void records of [pos, pos+k) to dst (if any) and free the slots.

    The slots are reserved for us, so the records are copied in runs (one
    memcpy per run of non-void slots) before any slot goes back to producers.
    """
    cdef uint64_t i = 0, j, m = 0
    while i < k:
        j = i
        while j < k and not (ctas7_load_relaxed_u64(&r.seq[(pos + j) & r.mask]) & VOID):
            j += 1
        if j > i:
            if dst != NULL:
                _copy_out(r, pos + i, dst + m * r.rsize, j - i)
            m += j - i
        i = j + 1  # past the void slot that ended the run
    for i in range(k):
        ctas7_store_release_u64(&r.seq[(pos + i) & r.mask], pos + i + r.capacity)
    _wake(r.space_futex, r.space_waiters)
    return m


cdef uint64_t _mpmc_drop_voids(ring_t *r) noexcept nogil:
    cdef uint64_t pos, raw, dropped = 0
    while True:
        pos = ctas7_load_relaxed_u64(r.head)
        raw = ctas7_load_acquire_u64(&r.seq[pos & r.mask])
        if raw != ((pos + 1) | VOID):
            return dropped
        if ctas7_cas_u64(r.head, &pos, pos + 1):
            ctas7_store_release_u64(&r.seq[pos & r.mask], pos + r.capacity)
            dropped += 1


# ---------------------------------------------------------------------------
# generic, blocking
# ---------------------------------------------------------------------------

cdef uint64_t _write_all(ring_t *r, const unsigned char *src, uint64_t n, int strategy,
                         uint64_t deadline, uint64_t *lost) noexcept nogil:
    cdef uint64_t done = 0, k, pos
    while done < n:
        if r.mpmc:
            k = _mpmc_reserve_write(r, n - done, 0, &pos)
            if k:
                _copy_in(r, pos, src + done * r.rsize, k)
                lost[0] += _mpmc_publish(r, pos, k, k)
        else:
            k = _spsc_write(r, src + done * r.rsize, n - done)
        done += k
        if done < n and k == 0 and (ctas7_load_relaxed_u64(r.closed) or not _await(r, 0, strategy, deadline)):
            break
    if done:
        _beat(r, 1)
    return done


cdef uint64_t _acquire_read(ring_t *r, uint64_t n, int strategy, uint64_t deadline,
                            uint64_t *out_pos) noexcept nogil:
    """Wait for records. SPSC: count them; MPMC: reserve them (voids included)."""
    cdef uint64_t k, head
    while True:
        if r.mpmc:
            k = _mpmc_reserve_read(r, n, 0, 0, out_pos)
        else:
            head = ctas7_load_relaxed_u64(r.head)
            k = _spsc_avail(r, head, n)
            if k > n:
                k = n
            out_pos[0] = head
        if k or n == 0:
            return k
        if not _await(r, 1, strategy, deadline):
            return 0


cdef uint64_t _finish_read(ring_t *r, uint64_t pos, uint64_t k, unsigned char *dst) noexcept nogil:
    if r.mpmc:
        return _mpmc_finish_read(r, pos, k, dst)
    _copy_out(r, pos, dst, k)
    ctas7_store_release_u64(r.head, pos + k)
    _wake(r.space_futex, r.space_waiters)
    return k


cdef uint64_t _read_some(ring_t *r, unsigned char *dst, uint64_t n, int strategy,
                         uint64_t deadline) noexcept nogil:
    """Copy up to n records to dst once any are there (skipping MPMC voids)."""
    cdef uint64_t pos = 0, k, m = 0
    while True:
        k = _acquire_read(r, n, strategy, deadline, &pos)
        if k == 0:
            return 0
        m = _finish_read(r, pos, k, dst)
        if m:
            return m


# ---------------------------------------------------------------------------
# Python classes
# ---------------------------------------------------------------------------

cdef class _Ring:
    """Shared machinery of :class:`SpscRing` and :class:`MpmcRing`."""

    def __cinit__(self):
        memset(&self.r, 0, sizeof(ring_t))
        self._mv = None
        self._base = None
        self.dtype = None

    def __init__(self, buffer, capacity, dtype=None, *, wait="sleep"):
        self._setup(buffer, _check_capacity(capacity), dtype, wait, 1, isinstance(self, MpmcRing))

    @classmethod
    def nbytes(cls, capacity, dtype=None):
        """Bytes of buffer a ring of ``capacity`` records needs.

        Parameters
        ----------
        capacity : int
            Number of records, a power of two.
        dtype : numpy.dtype, optional
            Record dtype, EVENT_DTYPE (32 bytes) by default.
        """
        dt = EVENT_DTYPE if dtype is None else np.dtype(dtype)
        return ring_nbytes(capacity, dt.itemsize, mpmc=cls is MpmcRing)

    @classmethod
    def attach(cls, buffer, dtype=None, *, wait="sleep"):
        """Attach to a ring another handle (maybe another process) created.

        Raises
        ------
        ValueError
            If the buffer holds no ring, a ring of the other kind, another
            layout version or another record size.
        """
        cdef _Ring self = cls.__new__(cls)
        self._setup(buffer, 0, dtype, wait, 0, cls is MpmcRing)
        return self

    cdef unsigned char *_ptr(self) except NULL:
        if self.r.data == NULL:
            raise ValueError("ring is closed")
        return self.r.data

    cdef int _setup(self, object buffer, uint64_t capacity, object dtype, object wait,
                    bint create, int mpmc) except -1:
        cdef unsigned char[::1] mv
        cdef unsigned char *p
        cdef uint64_t need, seq_bytes, i, kind, rsize
        dt = EVENT_DTYPE if dtype is None else np.dtype(dtype)
        if dt.itemsize <= 0 or dt.itemsize % 8:
            raise ValueError(f"record size must be a positive multiple of 8 bytes, got {dt.itemsize}")
        self._wait = _parse_wait(wait)
        try:
            m = memoryview(buffer)
        except TypeError:
            raise TypeError(f"buffer must support the buffer protocol, got {type(buffer).__name__}") from None
        if m.readonly:
            raise TypeError("buffer must be writable")
        if not m.c_contiguous:
            raise ValueError("buffer must be C-contiguous")
        m = m.cast("B")
        mv = m
        p = &mv[0] if m.nbytes else NULL
        if p == NULL or (<uintptr_t>p) % 8:
            raise ValueError("buffer must be non-empty and 8-byte aligned")
        rsize = dt.itemsize
        kind = KIND_MPMC if mpmc else KIND_SPSC
        if create:
            need = ring_nbytes(capacity, rsize, mpmc=mpmc)
            if <uint64_t>m.nbytes < need:
                raise ValueError(f"buffer has {m.nbytes} bytes, a ring of {capacity} x {rsize}-byte "
                                 f"records needs {need} ({type(self).__name__}.nbytes)")
            memset(p, 0, SEQ_OFF)
            (<uint32_t *>(p + H_VERSION))[0] = C_VERSION
            (<uint32_t *>(p + H_KIND))[0] = <uint32_t>kind
            (<uint64_t *>(p + H_CAP))[0] = capacity
            (<uint64_t *>(p + H_RSIZE))[0] = rsize
            seq_bytes = _round_line(capacity * 8) if mpmc else 0
            (<uint64_t *>(p + H_SEQ_OFF))[0] = SEQ_OFF if mpmc else 0
            (<uint64_t *>(p + H_DATA_OFF))[0] = SEQ_OFF + seq_bytes
            (<uint64_t *>(p + H_NBYTES))[0] = need
            if mpmc:
                for i in range(capacity):
                    (<uint64_t *>(p + SEQ_OFF))[i] = i
            # Magic last: an attacher never sees a half-initialised ring.
            ctas7_store_release_u64(<uint64_t *>(p + H_MAGIC), C_MAGIC)
        else:
            if m.nbytes < SEQ_OFF or ctas7_load_acquire_u64(<uint64_t *>(p + H_MAGIC)) != C_MAGIC:
                raise ValueError("buffer does not hold an initialised ctas7 ring")
            if (<uint32_t *>(p + H_VERSION))[0] != C_VERSION:
                raise ValueError(f"ring layout version {(<uint32_t *>(p + H_VERSION))[0]} "
                                 f"is not supported (expected {C_VERSION})")
            if (<uint32_t *>(p + H_KIND))[0] != kind:
                raise ValueError(f"buffer holds a {'MPMC' if (<uint32_t *>(p + H_KIND))[0] == KIND_MPMC else 'SPSC'} "
                                 f"ring, not a {type(self).__name__}")
            if (<uint64_t *>(p + H_RSIZE))[0] != rsize:
                raise ValueError(f"ring records are {(<uint64_t *>(p + H_RSIZE))[0]} bytes, "
                                 f"dtype {dt} has {rsize}")
            capacity = (<uint64_t *>(p + H_CAP))[0]
            if capacity < 2 or capacity & (capacity - 1):
                raise ValueError(f"corrupt ring header: capacity {capacity}")
            need = (<uint64_t *>(p + H_NBYTES))[0]
            if <uint64_t>m.nbytes < need or need != <uint64_t>ring_nbytes(capacity, rsize, mpmc=mpmc):
                raise ValueError(f"buffer of {m.nbytes} bytes is too small for the ring it holds ({need})")
        self._mv = m
        self._base = buffer
        self._base_ptr = p
        self.dtype = dt
        self.record_size = rsize
        self._descr = <void *>dt
        self.r.capacity = capacity
        self.r.mask = capacity - 1
        self.r.rsize = rsize
        self.r.mpmc = mpmc
        self.r.tail = <uint64_t *>(p + P_TAIL)
        self.r.head = <uint64_t *>(p + C_HEAD)
        self.r.skipped = <uint64_t *>(p + C_SKIPPED)
        self.r.seq = <uint64_t *>(p + SEQ_OFF) if mpmc else NULL
        self.r.data = p + (<uint64_t *>(p + H_DATA_OFF))[0]
        self.r.data_futex = <uint32_t *>(p + F_DATA)
        self.r.data_waiters = <uint32_t *>(p + F_DATA + 4)
        self.r.space_futex = <uint32_t *>(p + F_SPACE)
        self.r.space_waiters = <uint32_t *>(p + F_SPACE + 4)
        self.r.intent = <uint64_t *>(p + P_INTENT)
        self.r.heartbeat = <uint64_t *>(p + P_HEARTBEAT)
        self.r.closed = <uint64_t *>(p + P_CLOSED)
        self.r.head_cache = 0
        self.r.tail_cache = 0
        return 0

    # -- properties ---------------------------------------------------------

    @property
    def capacity(self):
        """Number of record slots (a power of two)."""
        return int(self.r.capacity)

    @property
    def wait(self):
        """The wait strategy code (0 spin, 1 spin-then-yield, 2 sleep/futex)."""
        return self._wait

    @wait.setter
    def wait(self, value):
        self._wait = _parse_wait(value)

    @property
    def head(self):
        """Position of the next record to read (never wraps)."""
        self._ptr()
        return int(ctas7_load_acquire_u64(self.r.head))

    @property
    def tail(self):
        """Position one past the last claimed (SPSC: published) record."""
        self._ptr()
        return int(ctas7_load_acquire_u64(self.r.tail))

    @property
    def intent(self):
        """(lo, hi): positions the producer has claimed but not yet published."""
        self._ptr()
        return (int(ctas7_load_acquire_u64(&self.r.intent[0])),
                int(ctas7_load_acquire_u64(&self.r.intent[1])))

    @property
    def skipped(self):
        """Slots consumers skipped because their producer died (MPMC)."""
        self._ptr()
        return int(ctas7_load_acquire_u64(self.r.skipped))

    @property
    def closed(self):
        """True once :meth:`shutdown` was called on any handle."""
        self._ptr()
        return bool(ctas7_load_acquire_u64(self.r.closed))

    def shutdown(self):
        """Refuse further writes on every handle (puts return 0/False); reads drain."""
        self._ptr()
        ctas7_store_release_u64(self.r.closed, 1)
        _wake(self.r.space_futex, self.r.space_waiters)

    def __len__(self):
        self._ptr()
        cdef uint64_t head = ctas7_load_acquire_u64(self.r.head)
        cdef uint64_t tail = ctas7_load_acquire_u64(self.r.tail)
        return int(tail - head) if tail > head else 0

    def close(self):
        """Drop the reference to the buffer; later calls raise ValueError."""
        memset(&self.r, 0, sizeof(ring_t))
        self._mv = None
        self._base = None

    def _bind_producer(self, SharedWords words, Py_ssize_t intent_offset, Py_ssize_t heartbeat_offset):
        """Keep claim intent and heartbeat in ``words`` (a channel's producer entry)."""
        self._ptr()
        self.r.intent = words._word(intent_offset)
        words._word(intent_offset + 8)
        self.r.heartbeat = words._word(heartbeat_offset)
        self._words = words

    # -- batches ------------------------------------------------------------

    cdef const unsigned char *_batch_ptr(self, object batch, Py_ssize_t *n) except NULL:
        if not isinstance(batch, np.ndarray):
            raise TypeError(f"batch must be a numpy array of {self.dtype}, got {type(batch).__name__}")
        cdef cnp.ndarray arr = <cnp.ndarray>batch
        if batch.dtype != self.dtype:
            raise TypeError(f"batch has dtype {batch.dtype}, the ring holds {self.dtype}")
        if cnp.PyArray_NDIM(arr) != 1:
            raise ValueError(f"batch must be 1-dimensional, got shape {batch.shape}")
        if not cnp.PyArray_IS_C_CONTIGUOUS(arr):
            raise ValueError("batch must be C-contiguous; use np.ascontiguousarray")
        n[0] = cnp.PyArray_DIM(arr, 0)
        return <const unsigned char *>cnp.PyArray_DATA(arr) if n[0] else <const unsigned char *>self.r.data

    def put_many(self, batch, timeout=0.0):
        """Copy a batch of records in; return how many were written.

        Parameters
        ----------
        batch : numpy.ndarray
            1-d, C-contiguous array of the ring's dtype.
        timeout : float or None
            0 (default) writes what fits now; ``None`` blocks until all are
            written; a number of seconds blocks at most that long.
        """
        cdef Py_ssize_t n
        return int(self._put_many(batch, _deadline(timeout), &n))

    cdef int64_t _put_many(self, object batch, uint64_t deadline, Py_ssize_t *n) except -1:
        """put_many with a C deadline; ``n`` receives the batch length."""
        self._ptr()
        cdef const unsigned char *src = self._batch_ptr(batch, n)
        cdef uint64_t lost = 0, done
        cdef int strategy = self._wait
        # Small non-blocking copies are cheaper than dropping the GIL.
        if deadline == 0 and <uint64_t>n[0] * self.r.rsize < NOGIL_BYTES:
            done = _write_all(&self.r, src, <uint64_t>n[0], strategy, deadline, &lost)
        else:
            with nogil:
                done = _write_all(&self.r, src, <uint64_t>n[0], strategy, deadline, &lost)
        self.lost_publishes += lost
        return <int64_t>done

    def get_many(self, Py_ssize_t max_n, timeout=0.0):
        """Take up to ``max_n`` records out as a new array.

        ``timeout`` 0 (default) returns what is there now (maybe nothing);
        ``None`` blocks until at least one record arrives; a number of
        seconds blocks at most that long.
        """
        cdef uint64_t pos = 0, k, m
        cdef uint64_t deadline = _deadline(timeout)
        cdef int strategy = self._wait
        if max_n < 0:
            raise ValueError(f"max_n must be >= 0, got {max_n}")
        self._ptr()
        while True:
            with nogil:
                k = _acquire_read(&self.r, <uint64_t>max_n, strategy, deadline, &pos)
            # Allocate only once the size is known; the copy releases the GIL again.
            out = np.empty(k, dtype=self.dtype)
            if k == 0:
                return out
            with nogil:
                m = _finish_read(&self.r, pos, k, <unsigned char *>cnp.PyArray_DATA(<cnp.ndarray>out))
            if m:
                return out[:m] if m < k else out

    def get_into(self, out, timeout=0.0):
        """Fill the front of ``out`` (an array of the ring's dtype); return the count."""
        return int(self._get_into(out, _deadline(timeout)))

    cdef int64_t _get_into(self, object out, uint64_t deadline) except -1:
        cdef Py_ssize_t n
        cdef uint64_t m
        cdef int strategy = self._wait
        self._ptr()
        cdef unsigned char *dst = <unsigned char *>self._batch_ptr(out, &n)
        if not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>out):
            raise ValueError("out must be writable")
        if deadline == 0 and <uint64_t>n * self.r.rsize < NOGIL_BYTES:
            m = _read_some(&self.r, dst, <uint64_t>n, strategy, deadline)
        else:
            with nogil:
                m = _read_some(&self.r, dst, <uint64_t>n, strategy, deadline)
        return <int64_t>m

    # -- one record ---------------------------------------------------------

    cdef int _put1(self, object record, uint64_t deadline) except -1:
        """Write one record; 1 if written, 0 if full (or closed) when time ran out."""
        cdef event_t ev
        cdef const unsigned char *src
        cdef const unsigned char[::1] raw
        cdef uint64_t lost = 0, done
        cdef int strategy = self._wait
        self._ptr()
        if type(record) is _void_type and (<PyVoidScalarObject *>record).descr == self._descr:
            src = <const unsigned char *>(<PyVoidScalarObject *>record).obval
        elif type(record) is tuple and self.record_size == 32 and PyTuple_GET_SIZE(record) == 7:
            t = <tuple>record
            ev.ts = t[0]
            ev.sch = t[1]
            ev.seq = t[2]
            ev.node = t[3]
            ev.station = t[4]
            ev.kind = t[5]
            ev.value = t[6]
            src = <const unsigned char *>&ev
        elif type(record) is _void_type:
            if record.dtype != self.dtype:
                raise TypeError(f"record has dtype {record.dtype}, the ring holds {self.dtype}")
            src = <const unsigned char *>(<PyVoidScalarObject *>record).obval
        elif isinstance(record, tuple):
            raise TypeError(f"a tuple record needs EVENT_DTYPE's 7 fields, got {len(record)} values")
        else:
            try:
                raw = memoryview(record).cast("B")
            except TypeError:
                raise TypeError(f"record must be a numpy void, a tuple or bytes, got {type(record).__name__}") from None
            if raw.shape[0] != self.record_size:
                raise ValueError(f"record has {raw.shape[0]} bytes, the ring holds {self.record_size}-byte records")
            src = &raw[0]
        if self.r.mpmc or deadline:
            with nogil:
                done = _write_all(&self.r, src, 1, strategy, deadline, &lost)
            self.lost_publishes += lost
        else:
            done = _spsc_write(&self.r, src, 1)
            _beat(&self.r, 0)
        return done == 1

    cdef object _get1(self, uint64_t deadline):
        """Take one record as a numpy void; None if none arrived in time."""
        cdef uint64_t pos = 0, k, m = 0
        cdef unsigned char buf[256]
        cdef unsigned char *dst = buf
        cdef int strategy = self._wait
        self._ptr()
        if self.record_size > 256:
            scratch = np.empty(1, dtype=self.dtype)
            dst = <unsigned char *>cnp.PyArray_DATA(<cnp.ndarray>scratch)
        if not self.r.mpmc and deadline == 0:
            if _spsc_read(&self.r, dst, 1) == 0:
                return None
        else:
            with nogil:
                while True:
                    k = _acquire_read(&self.r, 1, strategy, deadline, &pos)
                    if k == 0:
                        break
                    m = _finish_read(&self.r, pos, k, dst)
                    if m:
                        break
            if m == 0:
                return None
        # base NULL: numpy copies the bytes into a fresh void scalar.
        return PyArray_Scalar(dst, <cnp.dtype>self.dtype, NULL)

    def put(self, record, timeout=0.0):
        """Write one record; return True if written.

        ``record`` is a numpy void of the ring's dtype (``batch[i]``), a
        7-tuple ``(ts, sch, seq, node, station, kind, value)`` when the dtype
        is EVENT_DTYPE, or any bytes-like object of ``record_size`` bytes.
        """
        cdef uint64_t deadline = 0 if timeout is not None and timeout == 0.0 else _deadline(timeout)
        return self._put1(record, deadline) == 1

    def get(self, timeout=0.0):
        """Take one record out as a numpy void; None if none arrived in time."""
        cdef uint64_t deadline = 0 if timeout is not None and timeout == 0.0 else _deadline(timeout)
        return self._get1(deadline)

    # -- zero copy ----------------------------------------------------------

    def claim(self, Py_ssize_t n, timeout=0.0):
        """A writable view of up to ``n`` free slots; fill it, then :meth:`commit`.

        The view is contiguous, so it may be shorter than ``n`` at the end of
        the buffer (and empty if the ring is full when the time is up).
        """
        return self._claim(n, 0 if timeout is not None and timeout == 0.0 else _deadline(timeout))

    cdef object _claim(self, Py_ssize_t n, uint64_t deadline):
        cdef int strategy = self._wait
        cdef uint64_t k = 0, pos = 0, idx
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self._ptr()
        if self._claim_n:
            raise ValueError("commit the previous claim before claiming again")
        with nogil:
            while n > 0:
                if self.r.mpmc:
                    k = _mpmc_reserve_write(&self.r, <uint64_t>n, 1, &pos)
                else:
                    pos = ctas7_load_relaxed_u64(self.r.tail)
                    k = 0 if ctas7_load_relaxed_u64(self.r.closed) else _spsc_free(&self.r, pos, <uint64_t>n)
                    idx = pos & self.r.mask
                    if k > <uint64_t>n:
                        k = <uint64_t>n
                    if k > self.r.capacity - idx:
                        k = self.r.capacity - idx
                    if k:
                        _set_intent(&self.r, pos, pos + k)
                if k or ctas7_load_relaxed_u64(self.r.closed) or not _await(&self.r, 0, strategy, deadline):
                    break
        self._claim_pos = pos
        self._claim_n = k
        return self._view(pos, k, False)

    def commit(self, k=None):
        """Publish the first ``k`` records of the last claim (all by default).

        SPSC drops the rest of the claim; MPMC publishes the rest as empty
        slots that consumers skip (the positions are already taken).
        """
        return int(self._commit(k))

    cdef int64_t _commit(self, object k) except -1:
        cdef uint64_t n = self._claim_n, kk, pos = self._claim_pos, lost = 0
        if k is not None and (k < 0 or k > n):
            raise ValueError(f"commit({k}) outside the claim of {n} records")
        kk = n if k is None else k
        self._ptr()
        with nogil:
            if self.r.mpmc:
                if n:
                    lost = _mpmc_publish(&self.r, pos, n, kk)
            elif kk:
                ctas7_store_release_u64(self.r.tail, pos + kk)
                _clear_intent(&self.r, pos + kk)
                _wake(self.r.data_futex, self.r.data_waiters)
            else:
                _clear_intent(&self.r, pos)
            if kk:
                _beat(&self.r, 1)
        self.lost_publishes += lost
        self._claim_n = 0
        return <int64_t>kk

    def peek(self, Py_ssize_t n, timeout=0.0):
        """A read-only view of up to ``n`` records; then :meth:`release` them.

        The view is contiguous, so it may be shorter than ``n`` at the end of
        the buffer. On an MPMC ring the records are reserved for this handle
        and ``release`` must release all of them.
        """
        return self._peek(n, 0 if timeout is not None and timeout == 0.0 else _deadline(timeout))

    cdef object _peek(self, Py_ssize_t n, uint64_t deadline):
        cdef int strategy = self._wait
        cdef uint64_t k = 0, pos = 0, idx
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self._ptr()
        if self._peek_n:
            raise ValueError("release the previous peek before peeking again")
        with nogil:
            if self.r.mpmc:
                _mpmc_drop_voids(&self.r)  # even for n == 0: a peek always clears empty head slots
            while n > 0:
                if self.r.mpmc:
                    _mpmc_drop_voids(&self.r)
                    k = _mpmc_reserve_read(&self.r, <uint64_t>n, 1, 1, &pos)
                else:
                    pos = ctas7_load_relaxed_u64(self.r.head)
                    k = _spsc_avail(&self.r, pos, <uint64_t>n)
                    idx = pos & self.r.mask
                    if k > <uint64_t>n:
                        k = <uint64_t>n
                    if k > self.r.capacity - idx:
                        k = self.r.capacity - idx
                if k or not _await(&self.r, 1, strategy, deadline):
                    break
        self._peek_pos = pos
        self._peek_n = k
        return self._view(pos, k, True)

    def release(self, k=None):
        """Free the first ``k`` records of the last peek (all by default)."""
        return int(self._release(k))

    cdef int64_t _release(self, object k) except -1:
        cdef uint64_t n = self._peek_n, kk, pos = self._peek_pos
        if k is not None and (k < 0 or k > n):
            raise ValueError(f"release({k}) outside the peek of {n} records")
        kk = n if k is None else k
        if self.r.mpmc and kk != n:
            raise ValueError(f"an MpmcRing peek is reserved whole: release all {n} records")
        self._ptr()
        with nogil:
            if self.r.mpmc:
                if n:
                    _mpmc_finish_read(&self.r, pos, n, NULL)
            elif kk:
                ctas7_store_release_u64(self.r.head, pos + kk)
                _wake(self.r.space_futex, self.r.space_waiters)
        self._peek_n = 0
        return <int64_t>kk

    cdef object _view(self, uint64_t pos, uint64_t k, bint readonly):
        # Built in C (np.frombuffer + flags cost ~1 us a call, as much as
        # moving a few thousand records). The base is the ring's memoryview,
        # which holds the buffer export: the mapping outlives the view.
        cdef cnp.npy_intp dims[1]
        dims[0] = <cnp.npy_intp>k
        Py_INCREF(self.dtype)
        view = PyArray_NewFromDescr(&PyArray_Type, <descr_t *>self.dtype, 1, dims, NULL,
                                    self.r.data + (pos & self.r.mask) * self.r.rsize,
                                    cnp.NPY_ARRAY_CARRAY_RO if readonly else cnp.NPY_ARRAY_CARRAY, NULL)
        cnp.set_array_base(<cnp.ndarray>view, self._mv)
        return view

    # -- dead producers (used by Channel) -----------------------------------

    def stalled_position(self):
        """Head position if it waits on a claimed, unpublished MPMC slot, else -1."""
        cdef uint64_t head, tail, s
        self._ptr()
        if not self.r.mpmc:
            return -1
        head = ctas7_load_acquire_u64(self.r.head)
        tail = ctas7_load_acquire_u64(self.r.tail)
        if tail <= head:
            return -1
        s = ctas7_load_acquire_u64(&self.r.seq[head & self.r.mask])
        return int(head) if s == head else -1

    def skip(self, uint64_t pos):
        """Give up on the unpublished MPMC slot at ``pos`` (its producer died).

        Returns True if this call skipped it; False if it was published (or
        skipped by someone else) meanwhile. A late publish by the producer
        fails its compare-and-swap and is counted in its ``lost_publishes``.
        """
        cdef uint64_t expected = pos, head = pos
        cdef bint ok = 0
        self._ptr()
        if not self.r.mpmc:
            raise ValueError("only MPMC slots can be skipped")
        with nogil:
            if ctas7_load_acquire_u64(self.r.head) == pos and ctas7_load_acquire_u64(self.r.tail) > pos:
                if ctas7_cas_u64(&self.r.seq[pos & self.r.mask], &expected, pos + self.r.capacity):
                    ctas7_cas_u64(self.r.head, &head, pos + 1)
                    ctas7_fetch_add_u64(self.r.skipped, 1)
                    _wake(self.r.space_futex, self.r.space_waiters)
                    ok = 1
        return bool(ok)


cdef class SpscRing(_Ring):
    """Single-producer single-consumer ring over a writable buffer.

    The producer owns ``tail``, the consumer owns ``head``; each keeps a
    process-local copy of the other's index and re-reads the shared one only
    when the copy says the ring is full (empty). Works across processes when
    the buffer is shared memory (mmap, ``multiprocessing.shared_memory``).

    Parameters
    ----------
    buffer : writable buffer
        At least ``SpscRing.nbytes(capacity, dtype)`` bytes, 8-byte aligned.
    capacity : int
        Number of records, a power of two >= 2.
    dtype : numpy.dtype, optional
        Record dtype (size a multiple of 8); EVENT_DTYPE by default.
    wait : {'sleep', 'yield', 'spin'}
        How blocking calls wait: futex sleep after a short spin, spin then
        ``sched_yield``, or pure spin.

    Examples
    --------
    >>> from ctas7.rings import SpscRing
    >>> from ctas7.events import make_events
    >>> ring = SpscRing(bytearray(SpscRing.nbytes(8)), 8)
    >>> ring.put_many(make_events(ts=[1, 2, 3]))
    3
    >>> ring.get_many(10)["ts"].tolist()
    [1, 2, 3]
    """


cdef class MpmcRing(_Ring):
    """Bounded multi-producer multi-consumer ring (Vyukov), one sequence per slot.

    A producer claims positions by compare-and-swap on ``tail``, writes the
    records, then publishes each slot by compare-and-swap of its sequence; a
    consumer reserves published slots by compare-and-swap on ``head`` before
    copying them out, then hands the slots back to the next lap.

    Parameters are those of :class:`SpscRing`.

    Examples
    --------
    >>> from ctas7.rings import MpmcRing
    >>> from ctas7.events import make_events
    >>> ring = MpmcRing(bytearray(MpmcRing.nbytes(4)), 4)
    >>> ring.put_many(make_events(ts=[1, 2, 3, 4, 5]))
    4
    >>> ring.get()["ts"]
    np.int64(1)
    """


cdef class SharedWords:
    """Atomic 64-bit loads, stores and compare-and-swaps on a shared buffer.

    The channel keeps its header (producer table, gap counters) in these.

    Examples
    --------
    >>> w = SharedWords(bytearray(64))
    >>> w.cas(8, 0, 42), w.cas(8, 0, 7), w.load(8)
    (True, False, 42)
    """

    def __cinit__(self, buffer):
        cdef unsigned char[::1] mv
        m = memoryview(buffer)
        if m.readonly:
            raise TypeError("buffer must be writable")
        m = m.cast("B")
        mv = m
        self._mv = m
        self._n = m.nbytes
        self._p = &mv[0] if self._n else NULL

    cdef uint64_t *_word(self, Py_ssize_t offset) except NULL:
        if self._p == NULL:
            raise ValueError("SharedWords is closed")
        if offset < 0 or offset % 8 or offset + 8 > self._n:
            raise ValueError(f"offset {offset} is not an aligned word inside {self._n} bytes")
        return <uint64_t *>(self._p + offset)

    def load(self, Py_ssize_t offset):
        return int(ctas7_load_acquire_u64(self._word(offset)))

    def store(self, Py_ssize_t offset, uint64_t value):
        ctas7_store_release_u64(self._word(offset), value)

    def add(self, Py_ssize_t offset, uint64_t value):
        """Atomic fetch-and-add; returns the previous value."""
        return int(ctas7_fetch_add_u64(self._word(offset), value))

    def cas(self, Py_ssize_t offset, uint64_t expected, uint64_t desired):
        """Atomic compare-and-swap; True if the word held ``expected``."""
        return bool(ctas7_cas_u64(self._word(offset), &expected, desired))

    def close(self):
        self._p = NULL
        self._n = 0
        self._mv = None


cdef class ChannelFace:
    """The ``queue.Queue``-style ``put``/``get`` of a channel, one C call each.

    The fast path (a record fits / a record is there, no gap event is due)
    never leaves C. Everything else goes to the subclass's Python methods
    ``_put_slow(obj, block, timeout)`` and ``_get_slow(block, timeout)``:
    producer registration, blocking with timeouts, dead-producer checks and
    in-stream gap events. :class:`ctas7.channel.Channel` is the subclass.

    Attributes the subclass keeps up to date: ``_ring`` (the ring),
    ``_put_ready`` (this process is a registered producer), ``_pending``
    (gap events not yet handed out), ``_countdown`` (gets until the next
    periodic producer check), ``_next_check`` (``time.monotonic()`` of the
    next producer check by batch gets), ``_closed_error`` (exception for
    puts after shutdown); ``_register()`` makes this process a registered
    producer (``claim`` calls it until ``_put_ready`` is set). Batch calls fall back to ``_put_many_slow(batch,
    done, block, timeout)``, ``_get_into_slow(out, block, timeout)`` and
    ``_get_many_slow(max_n, block, timeout)``.
    """

    def __cinit__(self, *args, **kwargs):
        self._ring = None
        self._put_ready = 0
        self._pending = []
        self._countdown = 1024
        self._closed_error = None
        self._next_check = 0.0

    def put(self, obj, block=True, timeout=None):
        """Put one record (numpy void of the dtype, 7-tuple, or bytes).

        Raises ``queue.Full`` if no slot frees up in time (at once when
        ``block`` is false), ``ChannelClosed`` after ``shutdown``.
        """
        cdef _Ring ring = self._ring
        if self._put_ready and ring is not None:
            if ring._put1(obj, 0):
                return None
            if not block:
                if ctas7_load_acquire_u64(ring.r.closed):
                    raise (self._closed_error or _queue_Full)("channel was shut down")
                raise _queue_Full("channel is full")
        self._put_slow(obj, block, timeout)

    def put_nowait(self, obj):
        """``put(obj, block=False)``."""
        self.put(obj, False)

    def get(self, block=True, timeout=None):
        """Take one record (a numpy void); ``queue.Empty`` if none in time.

        Raises ``ChannelClosed`` once the channel is shut down and drained.
        """
        cdef _Ring ring = self._ring
        cdef object rec
        self._countdown -= 1
        if self._countdown > 0 and ring is not None and not self._pending:
            rec = ring._get1(0)
            if rec is not None:
                return rec
        return self._get_slow(block, timeout)

    def get_nowait(self):
        """``get(block=False)``."""
        return self.get(False)

    def put_many(self, batch, block=True, timeout=None):
        """Put a whole batch; blocks (at most ``timeout`` s) while the ring is full.

        Raises ``ChannelFull`` (a ``queue.Full``) carrying how many records
        went in if the time runs out.
        """
        cdef _Ring ring = self._ring
        cdef Py_ssize_t n = 0
        cdef int64_t done = 0
        if self._put_ready and ring is not None:
            done = ring._put_many(batch, 0, &n)
            if done == n:
                return None
        self._put_many_slow(batch, done, block, timeout)

    def get_into(self, out, block=True, timeout=None):
        """Fill the front of ``out``; return the count (a gap event comes alone)."""
        cdef _Ring ring = self._ring
        cdef int64_t got
        if ring is not None and not self._pending and ctas7_monotonic_ns() * 1e-9 < self._next_check:
            got = ring._get_into(out, 0)
            if got:
                return got
        return self._get_into_slow(out, block, timeout)

    def claim(self, Py_ssize_t n, timeout=0.0):
        """Zero-copy: a writable view of up to ``n`` slots; fill it, then :meth:`commit`.

        The view is contiguous (shorter than ``n`` where the ring wraps) and
        empty if no slot frees up within ``timeout`` seconds (0: now;
        ``None``: no limit). The first claim registers the producer.
        """
        cdef _Ring ring = self._ring
        if not self._put_ready or ring is None:
            self._register()
            ring = self._ring
        return ring._claim(n, 0 if timeout is not None and timeout == 0.0 else _deadline(timeout))

    def commit(self, k=None):
        """Publish the first ``k`` records of the last :meth:`claim` (all by default)."""
        return int((<_Ring?>self._ring)._commit(k))

    def peek(self, Py_ssize_t n, timeout=0.0):
        """Zero-copy: a read-only view of up to ``n`` records; then :meth:`release`.

        Empty if nothing arrives within ``timeout`` seconds (0: now;
        ``None``: no limit). Gap events are not delivered through peeks
        (use ``get``/``get_into``/``get_many`` for those); the counters are
        kept either way.
        """
        return (<_Ring?>self._ring)._peek(n, 0 if timeout is not None and timeout == 0.0 else _deadline(timeout))

    def release(self, k=None):
        """Free the first ``k`` records of the last :meth:`peek` (all by default)."""
        return int((<_Ring?>self._ring)._release(k))

    def get_many(self, Py_ssize_t max_n, block=True, timeout=None):
        """Take up to ``max_n`` records (at least one) as a new array.

        A gap event (``KIND_GAP``) comes alone, in its own batch, at the
        position of the stream where the gap happened. Raises
        ``queue.Empty`` if nothing arrives in time.
        """
        cdef _Ring ring = self._ring
        if max_n > 0 and ring is not None and not self._pending and ctas7_monotonic_ns() * 1e-9 < self._next_check:
            out = ring.get_many(max_n)
            if len(out):
                return out
        return self._get_many_slow(max_n, block, timeout)
