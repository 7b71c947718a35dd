# Shared-memory metrics kernels: shared declarations (see _metrics.pyx).

from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t


from ctas7._core._events cimport event_t as metrics_event_t


# HdrHistogram geometry (the counts-array layout of the ``hdrh`` package).
ctypedef struct metrics_hdr_t:
    int unit_magnitude
    int sub_bucket_half_count_magnitude
    int64_t sub_bucket_half_count
    uint64_t sub_bucket_mask
    int64_t counts_len


cdef int64_t metrics_hdr_index(const metrics_hdr_t *h, int64_t value) noexcept nogil
