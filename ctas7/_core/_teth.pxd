# TETH kernels: per-key DFA matching and sch periodicity (beaconing).

from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t

from ctas7._core._events cimport event_t as ctas7_event_t

# Mirrors ctas7.records.MATCH_DTYPE (16 bytes).
cdef packed struct ctas7_match_t:
    int64_t ts
    uint32_t node
    uint32_t pattern

# Per (key, pattern) matcher state; t0 beside the DFA state so one event
# touches one cache line for all its patterns.
cdef packed struct ctas7_key_state_t:
    int64_t t0
    int32_t state
    int32_t pad

# One slot of the open-addressing sch table (40 bytes).
cdef packed struct ctas7_beacon_slot_t:
    uint64_t key
    int64_t last_ts
    double mean
    double m2
    uint32_t count
    uint32_t flagged

# First arrival of an sch not (yet) in the table.
cdef packed struct ctas7_door_t:
    uint64_t key
    int64_t ts

# Mirrors BEACON_DTYPE (40 bytes).
cdef packed struct ctas7_beacon_t:
    int64_t ts
    uint64_t sch
    uint32_t node
    uint32_t count
    double period_ns
    double cv

# One compiled pattern, pointing into arrays owned by PatternBank. ``code``
# is the transition table with the accepting flag of the target folded into
# bit 30; ``kind_col`` has one extra trailing entry, the column of every kind
# past its end, so the lookup is a clamp instead of a branch.
cdef struct ctas7_dfa_t:
    const int32_t *code
    const int16_t *kind_col
    int32_t kind_col_last
    int32_t n_cols
    int64_t within_ns


cdef Py_ssize_t ctas7_teth_match(
    const ctas7_event_t *events, Py_ssize_t n,
    const ctas7_dfa_t *dfas, Py_ssize_t n_patterns,
    bint key_is_node,
    ctas7_key_state_t *state,
    ctas7_match_t *out,
) noexcept nogil

cdef Py_ssize_t ctas7_teth_beacons(
    const ctas7_event_t *events, Py_ssize_t n,
    ctas7_beacon_slot_t *slots, ctas7_door_t *door, uint64_t mask, int probes,
    uint32_t min_count, double max_cv, int64_t min_gap_ns,
    ctas7_beacon_t *out,
) noexcept nogil


cdef class PatternBank:
    cdef ctas7_dfa_t *dfas
    cdef readonly Py_ssize_t n_patterns
    cdef readonly bint key_is_node
    cdef readonly int64_t max_key
    cdef readonly Py_ssize_t capacity
    cdef object _specs
    cdef object _encoded
    cdef object _scratch
    cdef object _state
    cdef ctas7_key_state_t *state_ptr
    cdef void _grow(self, Py_ssize_t needed) except *
    cdef void _bind(self) except *


cdef class BeaconTable:
    cdef readonly uint32_t min_count
    cdef readonly double max_cv
    cdef readonly int64_t min_gap_ns
    cdef readonly int probes
    cdef readonly Py_ssize_t capacity
    cdef object _slots
    cdef object _door
    cdef object _scratch
    cdef ctas7_beacon_slot_t *slots_ptr
    cdef ctas7_door_t *door_ptr
