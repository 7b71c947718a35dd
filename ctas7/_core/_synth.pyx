"""Seeded synthetic event generator, filling EVENT_DTYPE records in place.

The cluster's station workers write straight into a claimed channel slot
with :func:`fill` (no temporary array, no Python object per event). The
stream is a pure function of the seed, the parameters and the call
sequence; ``ctas7.stations.worker.reference_fill`` is the numpy model the
tests compare it with.

Per event, two splitmix64 draws ``r1, r2`` (in that order):

- station ``s = (low32(r1) * n_stations) >> 32``; during a burst window
  (``ts % burst_period_ns < burst_len_ns``), if ``bits 32..47 of r1 <
  burst_share16`` the event goes to burst station
  ``(bits 48..63 of r1 * n_burst) >> 16`` instead;
- ``sch = r2``, ``kind = ((r2 >> 48) * n_kinds) >> 16``;
- ``ts = t_first + int(i * step_ns)``, ``seq = seqs[s]++``,
  ``station = node = first_station + s``, ``value = 1``.
"""

from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t

import numpy as np

__all__ = ["fill", "splitmix64"]

_EVENT_SIZE = 32


# ---------------------------------------------------------------------------
# C kernels
# ---------------------------------------------------------------------------

cdef inline uint64_t synth_splitmix64(uint64_t *state) noexcept nogil:
    cdef uint64_t z
    state[0] += <uint64_t>0x9E3779B97F4A7C15
    z = state[0]
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EB
    return z ^ (z >> 31)


cdef void synth_fill_c(synth_event_t *out, Py_ssize_t n, uint64_t *state, uint64_t *seqs,
                       const synth_cfg_t *cfg, int64_t t_first, double step_ns) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint64_t r1, r2
    cdef uint32_t s
    cdef int64_t ts
    cdef bint bursty = cfg.burst_period_ns > 0 and cfg.burst_len_ns > 0 and cfg.n_burst > 0
    cdef bint in_burst = False
    # Window edges are tracked instead of taking ts % period per event (an
    # integer division costs more than the rest of the loop); ts never
    # decreases within a call.
    cdef int64_t w_start = 0, w_end = 0, w_next = 0
    if bursty:
        w_start = t_first - t_first % cfg.burst_period_ns
        w_end = w_start + cfg.burst_len_ns
        w_next = w_start + cfg.burst_period_ns
    for i in range(n):
        ts = t_first + <int64_t>(<double>i * step_ns)
        if bursty:
            if ts >= w_next:
                w_start = ts - ts % cfg.burst_period_ns
                w_end = w_start + cfg.burst_len_ns
                w_next = w_start + cfg.burst_period_ns
            in_burst = ts < w_end
        r1 = synth_splitmix64(state)
        r2 = synth_splitmix64(state)
        s = <uint32_t>(((r1 & <uint64_t>0xFFFFFFFFU) * <uint64_t>cfg.n_stations) >> 32)
        if in_burst and ((r1 >> 32) & <uint64_t>0xFFFF) < cfg.burst_share16:
            s = <uint32_t>(((r1 >> 48) * <uint64_t>cfg.n_burst) >> 16)
        out[i].ts = ts
        out[i].sch = r2
        out[i].seq = <uint32_t>seqs[s]
        seqs[s] += 1
        out[i].station = <uint16_t>(cfg.first_station + s)
        out[i].node = cfg.first_station + s
        out[i].kind = <uint16_t>(((r2 >> 48) * <uint64_t>cfg.n_kinds) >> 16)
        out[i].value = 1.0


# ---------------------------------------------------------------------------
# Python wrappers
# ---------------------------------------------------------------------------

def splitmix64(uint64_t[::1] state,  # IN/OUT
               Py_ssize_t n):
    """The next ``n`` splitmix64 outputs (advances ``state[0]``)."""
    if state.shape[0] < 1:
        raise ValueError("state must hold one uint64")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    out = np.empty(n, dtype=np.uint64)
    cdef uint64_t[::1] o = out
    cdef Py_ssize_t i
    with nogil:
        for i in range(n):
            o[i] = synth_splitmix64(&state[0])
    return out


def fill(out,  # OUT: EVENT_DTYPE array, C-contiguous, writable
         uint64_t[::1] state,  # IN/OUT: splitmix64 state, one word
         uint64_t[::1] seqs,  # IN/OUT: next sequence number per station (uint64; the record keeps the low 32 bits)
         Py_ssize_t n_stations, Py_ssize_t first_station, Py_ssize_t n_kinds,
         int64_t t_first, double step_ns,
         int64_t burst_period_ns=0, int64_t burst_len_ns=0,
         double burst_share=0.0, Py_ssize_t n_burst=0):
    """Fill every record of ``out`` with the next synthetic events; return the count.

    Raises
    ------
    TypeError
        ``out`` is not an array of 32-byte records.
    ValueError
        Bad sizes or ranges (stations must fit 16 bits, ``seqs`` must hold
        ``n_stations`` counters, ``n_burst <= n_stations``).
    """
    from ctas7.events import validate_batch

    validate_batch(out, name="out")
    if not out.flags.writeable:
        raise ValueError("out must be writable")
    if n_stations < 1 or first_station < 0 or first_station + n_stations > 0x10000:
        raise ValueError(f"stations [{first_station}, {first_station + n_stations}) must lie in [0, 65536) and be non-empty")
    if seqs.shape[0] < n_stations:
        raise ValueError(f"seqs holds {seqs.shape[0]} counters, need {n_stations}")
    if state.shape[0] < 1:
        raise ValueError("state must hold one uint64")
    if not 1 <= n_kinds <= 0xFF00:
        raise ValueError(f"n_kinds must lie in [1, 65280], got {n_kinds}")
    if not step_ns >= 0:
        raise ValueError(f"step_ns must be >= 0, got {step_ns}")
    if not 0.0 <= burst_share <= 1.0:
        raise ValueError(f"burst_share must lie in [0, 1], got {burst_share}")
    if not 0 <= n_burst <= n_stations:
        raise ValueError(f"n_burst must lie in [0, n_stations], got {n_burst}")
    if burst_period_ns < 0 or burst_len_ns < 0:
        raise ValueError("burst_period_ns and burst_len_ns must be >= 0")
    if burst_period_ns > 0 and t_first < 0:
        raise ValueError(f"t_first must be >= 0 with bursts, got {t_first}")
    cdef synth_cfg_t cfg
    cfg.n_stations = <uint32_t>n_stations
    cfg.first_station = <uint32_t>first_station
    cfg.n_kinds = <uint32_t>n_kinds
    cfg.burst_period_ns = burst_period_ns
    cfg.burst_len_ns = burst_len_ns
    cfg.burst_share16 = <uint32_t>min(65536.0, burst_share * 65536.0)
    cfg.n_burst = <uint32_t>n_burst
    cdef Py_ssize_t n = out.shape[0]
    if n == 0:
        return 0
    cdef unsigned char[::1] raw = out.view(np.uint8)
    cdef synth_event_t *p = <synth_event_t *>&raw[0]
    with nogil:
        synth_fill_c(p, n, &state[0], &seqs[0], &cfg, t_first, step_ns)
    return n
