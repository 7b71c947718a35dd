# SlotGraph kernels: shared declarations (see _slotgraph.pyx).

from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t

cdef extern from "ctas7/slotgraph.h" nogil:
    double ctas7_sg_score(double latency_ms, double max_latency_ms,
                          int32_t free_slots, int32_t need_slots,
                          int32_t slots, int32_t need_caps, int32_t have_caps)
    int ctas7_sg_popcount64(uint64_t v)

from ctas7._core._events cimport event_t as sg_event_t


cdef class StationTable:
    cdef readonly Py_ssize_t n              # station ids in use: max id + 1
    cdef readonly Py_ssize_t cap
    cdef readonly int64_t timeout_ns
    cdef readonly bint data_is_liveness
    cdef readonly bint started              # an event has set the watermark
    cdef readonly int64_t watermark         # max event time seen
    cdef readonly Py_ssize_t n_alive        # stations in the deadline heap
    cdef readonly uint64_t n_heartbeats
    cdef readonly uint64_t n_unknown        # heartbeats from unregistered ids
    cdef readonly Py_ssize_t n_open         # online stations with a free slot
    cdef dict _arr
    cdef uint64_t[::1] mask
    cdef uint8_t[::1] known
    cdef uint8_t[::1] online                # placement view (applied transitions)
    cdef uint8_t[::1] alive                 # liveness tracker's view
    cdef uint8_t[::1] ncaps
    cdef int32_t[::1] free
    cdef int32_t[::1] slots
    cdef int32_t[::1] heap
    cdef int32_t[::1] hpos
    cdef int32_t[::1] scratch
    cdef int32_t[::1] open_ids              # the open list, unordered
    cdef int32_t[::1] open_pos              # index in open_ids, -1 if absent
    cdef double[::1] latency
    cdef int64_t[::1] last_seen
    cdef float[::1] load
    cdef _bind(self)
    cdef _grow(self, Py_ssize_t n)
    cpdef Py_ssize_t best(self, uint64_t need, int32_t need_slots)
    cpdef int32_t take(self, Py_ssize_t s, int32_t k) except? -1
    cpdef set_online(self, Py_ssize_t s, bint flag)


cdef Py_ssize_t sg_best(const uint64_t* mask, const int32_t* free, const int32_t* slots,
                        const double* latency, const uint8_t* ncaps,
                        const int32_t* open_ids, Py_ssize_t n_open,
                        uint64_t need, int32_t need_slots, int32_t* scratch) noexcept nogil
