# The C view of one ctas7.events.EVENT_DTYPE record: 32 bytes, no padding.
# Every kernel family cimports it from here so the layout is declared once.
from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t


cdef packed struct event_t:
    int64_t ts
    uint64_t sch
    uint32_t seq
    uint32_t node
    uint16_t station
    uint16_t kind
    float value
