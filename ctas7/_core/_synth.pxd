# Seeded synthetic event generator: shared declarations (see _synth.pyx).

from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t


from ctas7._core._events cimport event_t as synth_event_t


ctypedef struct synth_cfg_t:
    uint32_t n_stations
    uint32_t first_station
    uint32_t n_kinds
    int64_t burst_period_ns    # 0: no bursts
    int64_t burst_len_ns
    uint32_t burst_share16     # share of events sent to burst stations during a burst, /65536
    uint32_t n_burst           # the first n_burst stations burst


cdef uint64_t synth_splitmix64(uint64_t *state) noexcept nogil

cdef void synth_fill_c(synth_event_t *out, Py_ssize_t n, uint64_t *state, uint64_t *seqs,
                       const synth_cfg_t *cfg, int64_t t_first, double step_ns) noexcept nogil
