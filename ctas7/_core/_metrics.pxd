# Shared-memory metrics kernels: shared declarations (see _metrics.pyx).

from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t


# One EVENT_DTYPE record (ctas7.events), 32 bytes.
cdef packed struct metrics_event_t:
    int64_t ts
    uint64_t sch
    uint32_t seq
    uint32_t node
    uint16_t station
    uint16_t kind
    float value


# HdrHistogram geometry (the counts-array layout of the ``hdrh`` package).
ctypedef struct metrics_hdr_t:
    int unit_magnitude
    int sub_bucket_half_count_magnitude
    int64_t sub_bucket_half_count
    uint64_t sub_bucket_mask
    int64_t counts_len


cdef int64_t metrics_hdr_index(const metrics_hdr_t *h, int64_t value) noexcept nogil
