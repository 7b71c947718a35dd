# cython: language_level=3
"""Declarations for ctas7._core._ring: atomics header, ring state, classes."""

from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t

cdef extern from "ctas7/atomics.h" nogil:
    uint64_t ctas7_load_relaxed_u64(const uint64_t *p)
    uint64_t ctas7_load_acquire_u64(const uint64_t *p)
    void ctas7_store_relaxed_u64(uint64_t *p, uint64_t v)
    void ctas7_store_release_u64(uint64_t *p, uint64_t v)
    uint64_t ctas7_fetch_add_u64(uint64_t *p, uint64_t v)
    int ctas7_cas_u64(uint64_t *p, uint64_t *expected, uint64_t desired)
    uint32_t ctas7_load_acquire_u32(const uint32_t *p)
    void ctas7_store_release_u32(uint32_t *p, uint32_t v)
    uint32_t ctas7_fetch_add_u32(uint32_t *p, uint32_t v)
    int ctas7_cas_u32(uint32_t *p, uint32_t *expected, uint32_t desired)
    void ctas7_fence_seq_cst()
    void ctas7_cpu_relax()
    void ctas7_thread_yield()
    uint64_t ctas7_monotonic_ns()
    void ctas7_sleep_ns(uint64_t ns)
    int ctas7_futex_wait(uint32_t *addr, uint32_t expected, uint64_t timeout_ns)
    void ctas7_futex_wake(uint32_t *addr, int n)


from ctas7._core._events cimport event_t


# Pointers into the shared buffer plus the process-local caches of the
# other side's index (SPSC) that keep the two cache lines from ping-ponging.
cdef struct ring_t:
    uint64_t *tail
    uint64_t *head
    uint64_t *seq
    unsigned char *data
    uint32_t *data_futex
    uint32_t *data_waiters
    uint32_t *space_futex
    uint32_t *space_waiters
    uint64_t *intent
    uint64_t *heartbeat
    uint64_t *skipped
    uint64_t *closed
    uint64_t capacity
    uint64_t mask
    uint64_t rsize
    uint64_t head_cache
    uint64_t tail_cache
    uint64_t beats
    int mpmc


cdef class _Ring:
    cdef ring_t r
    cdef object _mv
    cdef object _base
    cdef readonly object dtype
    cdef readonly Py_ssize_t record_size
    cdef int _wait
    cdef uint64_t _claim_pos
    cdef uint64_t _claim_n
    cdef uint64_t _peek_pos
    cdef uint64_t _peek_n
    cdef readonly uint64_t lost_publishes
    cdef void *_descr
    cdef unsigned char *_base_ptr
    cdef object _words

    cdef int _setup(self, object buffer, uint64_t capacity, object dtype, object wait, bint create, int mpmc) except -1
    cdef unsigned char *_ptr(self) except NULL
    cdef const unsigned char *_batch_ptr(self, object batch, Py_ssize_t *n) except NULL
    cdef object _view(self, uint64_t pos, uint64_t k, bint readonly)
    cdef int _put1(self, object record, uint64_t deadline) except -1
    cdef object _get1(self, uint64_t deadline)
    cdef int64_t _put_many(self, object batch, uint64_t deadline, Py_ssize_t *n) except -1
    cdef int64_t _get_into(self, object out, uint64_t deadline) except -1
    cdef object _claim(self, Py_ssize_t n, uint64_t deadline)
    cdef int64_t _commit(self, object k) except -1
    cdef object _peek(self, Py_ssize_t n, uint64_t deadline)
    cdef int64_t _release(self, object k) except -1


cdef class SpscRing(_Ring):
    pass


cdef class MpmcRing(_Ring):
    pass


cdef class SharedWords:
    cdef object _mv
    cdef unsigned char *_p
    cdef Py_ssize_t _n
    cdef uint64_t *_word(self, Py_ssize_t offset) except NULL


cdef class ChannelFace:
    cdef public _Ring _ring
    cdef public bint _put_ready
    cdef public list _pending
    cdef public int _countdown
    cdef public object _closed_error
    cdef public double _next_check
