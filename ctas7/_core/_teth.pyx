# cython: language_level=3
"""TETH hot loops: per-key DFA matching over whole batches, and sch periodicity.

Private module; the public face is :mod:`ctas7.stages.teth`.
"""

from libc.math cimport sqrt
from libc.stdint cimport INT64_MAX, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

cimport numpy as cnp

import numpy as np

from ctas7.events import EVENT_DTYPE
from ctas7.records import MATCH_DTYPE

cnp.import_array()

__all__ = ["PatternBank", "BeaconTable", "BEACON_DTYPE", "KEY_STATE_DTYPE", "SLOT_DTYPE", "DOOR_DTYPE", "KIND_CONTROL_BASE"]

cdef enum:
    _CONTROL_BASE = 0xFF00
    _STATE_MASK = (1 << 30) - 1

KIND_CONTROL_BASE = _CONTROL_BASE

#: Mirrors ctas7.stages.teth.BEACON_DTYPE (which re-exports this object).
BEACON_DTYPE = np.dtype(
    [("ts", "<i8"), ("sch", "<u8"), ("node", "<u4"), ("count", "<u4"), ("period_ns", "<f8"), ("cv", "<f8")]
)
KEY_STATE_DTYPE = np.dtype([("t0", "<i8"), ("state", "<i4"), ("pad", "<i4")])
DOOR_DTYPE = np.dtype([("key", "<u8"), ("ts", "<i8")])
SLOT_DTYPE = np.dtype(
    [("key", "<u8"), ("last_ts", "<i8"), ("mean", "<f8"), ("m2", "<f8"), ("count", "<u4"), ("flagged", "<u4")]
)


# ---------------------------------------------------------------------------
# DFA matching
# ---------------------------------------------------------------------------

cdef Py_ssize_t ctas7_teth_match(
    const ctas7_event_t *events, Py_ssize_t n,
    const ctas7_dfa_t *dfas, Py_ssize_t n_patterns,
    bint key_is_node,
    ctas7_key_state_t *state,
    ctas7_match_t *out,
) noexcept nogil:
    # Branch-free per step (selects instead of jumps): kinds and DFA moves are
    # data-dependent, so jumps here mispredict on real streams. ``out[m]`` is
    # written every step and kept only on a match; m never passes the step
    # count, so it stays inside the n * n_patterns slots.
    cdef Py_ssize_t i, p, m = 0
    cdef const ctas7_event_t *ev
    cdef const ctas7_dfa_t *d
    cdef ctas7_key_state_t *ks
    cdef uint32_t kind, node
    cdef int32_t col, s, e, acc
    cdef int64_t ts
    for i in range(n):
        ev = &events[i]
        kind = ev.kind
        if kind >= _CONTROL_BASE:
            continue
        ts = ev.ts
        node = ev.node
        ks = &state[<Py_ssize_t>(node if key_is_node else ev.station) * n_patterns]
        for p in range(n_patterns):
            d = &dfas[p]
            col = d.kind_col[kind if <int32_t>kind < d.kind_col_last else d.kind_col_last]
            if col < 0:
                continue
            s = ks[p].state
            # `within`: the run that left the start state has expired
            # (within_ns is INT64_MAX when the pattern has no bound).
            s &= -<int32_t>(ts - ks[p].t0 <= d.within_ns)
            e = d.code[s * d.n_cols + col]
            acc = e >> 30
            ks[p].t0 = ts if s == 0 else ks[p].t0
            ks[p].state = (e & _STATE_MASK) & (acc - 1)
            out[m].ts = ts
            out[m].node = node
            out[m].pattern = <uint32_t>p
            m += acc
    return m


cdef const ctas7_event_t *_event_ptr(object events) except NULL:
    # Cheaper than acquiring a struct memoryview (no format-string parse).
    if not cnp.PyArray_Check(events):
        raise TypeError(f"events must be a numpy array of EVENT_DTYPE, got {type(events).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray>events
    if cnp.PyArray_NDIM(arr) != 1 or not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        raise ValueError("events must be a 1-d C-contiguous array")
    if arr.dtype is not EVENT_DTYPE and arr.dtype != EVENT_DTYPE:
        raise TypeError(f"events have dtype {arr.dtype}, expected EVENT_DTYPE")
    if cnp.PyArray_DIM(arr, 0) == 0:
        return <const ctas7_event_t *>&_EMPTY_EVENT
    return <const ctas7_event_t *>cnp.PyArray_DATA(arr)


cdef ctas7_event_t _EMPTY_EVENT


cdef inline uint32_t _max_key(const ctas7_event_t *events, Py_ssize_t n, bint key_is_node) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint32_t k, best = 0
    for i in range(n):
        if events[i].kind >= _CONTROL_BASE:
            continue
        k = events[i].node if key_is_node else events[i].station
        if k > best:
            best = k
    return best


def _check_spec(Py_ssize_t i, spec):
    table, accepting, kind_map, default_col, within_ns = spec
    table = np.ascontiguousarray(table, dtype=np.int32)
    accepting = np.ascontiguousarray(accepting, dtype=np.uint8)
    kind_map = np.ascontiguousarray(kind_map, dtype=np.int16)
    if table.ndim != 2 or table.shape[0] < 1 or table.shape[1] < 1:
        raise ValueError(f"pattern {i}: table must be a non-empty 2-d array, got shape {table.shape}")
    n_states, n_cols = table.shape
    if n_states >= (1 << 30):
        raise ValueError(f"pattern {i}: {n_states} states exceed the 2**30 limit")
    if table.min() < 0 or table.max() >= n_states:
        raise ValueError(f"pattern {i}: table entries must lie in [0, {n_states})")
    if accepting.shape != (n_states,):
        raise ValueError(f"pattern {i}: accepting has shape {accepting.shape}, expected ({n_states},)")
    if accepting[0]:
        raise ValueError(f"pattern {i}: the start state must not be accepting (empty match)")
    if kind_map.ndim != 1 or kind_map.shape[0] > _CONTROL_BASE:
        raise ValueError(f"pattern {i}: kind_map must be 1-d with at most {_CONTROL_BASE} entries")
    if kind_map.shape[0] and (kind_map.min() < -1 or kind_map.max() >= n_cols):
        raise ValueError(f"pattern {i}: kind_map entries must lie in [-1, {n_cols})")
    default_col = int(default_col)
    if not -1 <= default_col < n_cols:
        raise ValueError(f"pattern {i}: default_col {default_col} outside [-1, {n_cols})")
    within_ns = int(within_ns)
    if within_ns < 0:
        raise ValueError(f"pattern {i}: within_ns must be >= 0, got {within_ns}")
    return (table, accepting, kind_map, default_col, within_ns)


cdef class PatternBank:
    """Several compiled DFAs matched per key over batches of events.

    Parameters
    ----------
    specs : sequence of (table, accepting, kind_map, default_col, within_ns)
        ``table`` int32 ``[n_states, n_cols]`` (state 0 is the start),
        ``accepting`` uint8 ``[n_states]``, ``kind_map`` int16 (kind -> column,
        -1 = ignored; kinds past its end use ``default_col``), ``within_ns``
        (0 = no time bound).
    key_is_node : bool
        Key the per-key state by ``node`` (else by ``station``).
    max_key : int
        Largest key accepted; the state array grows on demand up to it.
    state : numpy.ndarray of KEY_STATE_DTYPE, optional
        Saved state (from :meth:`get_state`) to resume from.
    """

    def __cinit__(self, specs, bint key_is_node=True, int64_t max_key=(1 << 22), state=None):
        cdef Py_ssize_t i
        self.dfas = NULL
        specs = tuple(_check_spec(i, s) for i, s in enumerate(specs))
        if max_key < 0 or max_key > 0xFFFFFFFF:
            raise ValueError(f"max_key must lie in [0, 2**32), got {max_key}")
        self._specs = specs
        self.n_patterns = len(specs)
        self.key_is_node = key_is_node
        self.max_key = max_key
        self.dfas = <ctas7_dfa_t *>malloc(max(self.n_patterns, 1) * sizeof(ctas7_dfa_t))
        if self.dfas == NULL:
            raise MemoryError()
        cdef const int32_t[:, ::1] code
        cdef const int16_t[::1] kc
        encoded = []
        for i, (table, accepting, kind_map, default_col, within_ns) in enumerate(specs):
            code_arr = np.ascontiguousarray(table | (accepting[table].astype(np.int32) << 30))
            kc_arr = np.concatenate([kind_map, np.array([default_col], dtype=np.int16)])
            encoded.append((code_arr, kc_arr))
            code = code_arr
            kc = kc_arr
            self.dfas[i].code = &code[0, 0]
            self.dfas[i].kind_col = &kc[0]
            self.dfas[i].kind_col_last = <int32_t>(kc.shape[0] - 1)
            self.dfas[i].n_cols = <int32_t>code.shape[1]
            self.dfas[i].within_ns = within_ns if within_ns > 0 else INT64_MAX
        self._encoded = tuple(encoded)
        self.capacity = 0
        self._scratch = np.empty(0, dtype=MATCH_DTYPE)
        self._state = np.zeros(0, dtype=KEY_STATE_DTYPE)
        if state is not None:
            self.set_state(state)
        self._bind()

    def __dealloc__(self):
        free(self.dfas)


    cdef void _bind(self) except *:
        cdef ctas7_key_state_t[::1] v = self._state
        self.state_ptr = &v[0] if v.shape[0] else NULL

    cdef void _grow(self, Py_ssize_t needed) except *:
        if needed - 1 > self.max_key:
            raise ValueError(
                f"key {needed - 1} exceeds max_key={self.max_key}; raise max_key if this key space is intended"
            )
        cdef Py_ssize_t cap = min(max(needed, 2 * self.capacity, 64), self.max_key + 1)
        state = np.zeros(cap * self.n_patterns, dtype=KEY_STATE_DTYPE)
        state[: self._state.shape[0]] = self._state
        self._state, self.capacity = state, cap
        self._bind()

    def run(self, events,  # IN
            ctas7_match_t[::1] out=None):  # OUT
        """Advance every key's DFAs over ``events``; return or write the matches.

        Without ``out``, returns a new MATCH_DTYPE array of this batch's
        matches. With ``out`` (room for ``len(events) * n_patterns``
        records), writes there and returns the count. Matches are in event
        order, then pattern order.
        """
        cdef const ctas7_event_t *ev = _event_ptr(events)
        cdef Py_ssize_t n = cnp.PyArray_DIM(events, 0), m
        cdef ctas7_match_t *dst
        cdef cnp.ndarray result
        cdef uint32_t top
        if out is not None:
            if out.shape[0] < n * self.n_patterns:
                raise ValueError(f"out has {out.shape[0]} slots, needs {n * self.n_patterns}")
            if n == 0 or self.n_patterns == 0:
                return 0
            dst = &out[0]
        else:
            if self._scratch.shape[0] < n * self.n_patterns:
                self._scratch = np.empty(max(n * self.n_patterns, 2 * self._scratch.shape[0]), dtype=MATCH_DTYPE)
            dst = <ctas7_match_t *>cnp.PyArray_DATA(self._scratch)
        m = 0
        if n > 0 and self.n_patterns > 0:
            top = _max_key(ev, n, self.key_is_node)
            if <Py_ssize_t>top >= self.capacity:
                self._grow(<Py_ssize_t>top + 1)
            with nogil:
                m = ctas7_teth_match(ev, n, self.dfas, self.n_patterns, self.key_is_node, self.state_ptr, dst)
        if out is not None:
            return m
        result = np.empty(m, dtype=MATCH_DTYPE)
        if m:
            memcpy(cnp.PyArray_DATA(result), dst, m * sizeof(ctas7_match_t))
        return result

    def get_state(self):
        """A copy of the per-key state, KEY_STATE_DTYPE ``[key * n_patterns + p]``."""
        return self._state.copy()

    def set_state(self, state):
        """Restore state saved by :meth:`get_state` (same patterns)."""
        state = np.array(state, copy=True).reshape(-1)
        if state.dtype != KEY_STATE_DTYPE:
            raise ValueError(f"state must have dtype {KEY_STATE_DTYPE}, got {state.dtype}")
        P = max(self.n_patterns, 1)
        if state.shape[0] % P:
            raise ValueError(f"state length {state.shape[0]} is not a multiple of {P} patterns")
        for i, spec in enumerate(self._specs):
            col = state["state"][i :: P]
            if col.size and (col.min() < 0 or col.max() >= spec[0].shape[0]):
                raise ValueError(f"state of pattern {i} outside [0, {spec[0].shape[0]})")
        if state.shape[0] // P > self.max_key + 1:
            raise ValueError(f"state covers more keys than max_key={self.max_key}")
        self._state = state
        self.capacity = state.shape[0] // P
        self._bind()

    def reset(self):
        """Forget all per-key state."""
        self._state[:] = 0

    def __reduce__(self):
        return (PatternBank, (self._specs, self.key_is_node, self.max_key, self._state.copy()))


# ---------------------------------------------------------------------------
# Periodicity (beaconing)
# ---------------------------------------------------------------------------

cdef inline uint64_t _fmix64(uint64_t k) noexcept nogil:
    k ^= k >> 33
    k *= 0xFF51AFD7ED558CCDULL
    k ^= k >> 33
    k *= 0xC4CEB9FE1A85EC53ULL
    k ^= k >> 33
    return k


cdef inline void _welford(ctas7_beacon_slot_t *e, int64_t dt) noexcept nogil:
    cdef uint32_t k = e.count - 1
    cdef double x = <double>dt
    cdef double delta = x - e.mean
    e.mean += delta / k
    e.m2 += delta * (x - e.mean)


cdef Py_ssize_t ctas7_teth_beacons(
    const ctas7_event_t *events, Py_ssize_t n,
    ctas7_beacon_slot_t *slots, ctas7_door_t *door, uint64_t mask, int probes,
    uint32_t min_count, double max_cv, int64_t min_gap_ns,
    ctas7_beacon_t *out,
) noexcept nogil:
    # Most sch values never repeat. A direct-mapped "door" remembers each
    # sch's first arrival; only a second arrival admits it to the table, so
    # one-off noise costs one line and never evicts a tracked sch.
    cdef Py_ssize_t i, m = 0
    cdef int j
    cdef uint64_t key, h, slot, victim, d
    cdef ctas7_beacon_slot_t *e
    cdef int64_t dt, ts
    cdef double cv
    cdef uint32_t k
    cdef bint periodic
    for i in range(n):
        key = events[i].sch
        if key == 0 or events[i].kind >= _CONTROL_BASE:
            continue
        ts = events[i].ts
        h = _fmix64(key)
        e = NULL
        for j in range(probes):
            slot = (h + <uint64_t>j) & mask
            if slots[slot].key == key:
                e = &slots[slot]
                break
            if slots[slot].key == 0:
                break
        if e == NULL:
            d = (h >> 32) & mask
            if door[d].key != key:
                door[d].key = key
                door[d].ts = ts
                continue
            dt = ts - door[d].ts
            if dt < min_gap_ns:
                continue  # a duplicate report of the first arrival
            door[d].key = 0
            # Admit: first empty slot, else evict the weakest evidence
            # (fewest arrivals, then stalest).
            victim = h & mask
            for j in range(probes):
                slot = (h + <uint64_t>j) & mask
                if slots[slot].key == 0:
                    victim = slot
                    break
                if (slots[slot].count < slots[victim].count
                        or (slots[slot].count == slots[victim].count
                            and slots[slot].last_ts < slots[victim].last_ts)):
                    victim = slot
            e = &slots[victim]
            e.key = key
            e.last_ts = ts
            e.count = 2
            e.mean = <double>dt
            e.m2 = 0.0
            e.flagged = 0
        else:
            dt = ts - e.last_ts
            if dt < min_gap_ns:
                continue  # a duplicate report of the same arrival (or out of order)
            e.last_ts = ts
            e.count += 1
            _welford(e, dt)
        k = e.count - 1
        if e.count < min_count or k < 2:
            continue
        cv = sqrt(e.m2 / (k - 1)) / e.mean
        periodic = cv <= max_cv
        if periodic and not e.flagged:
            e.flagged = 1
            out[m].ts = ts
            out[m].sch = key
            out[m].node = events[i].node
            out[m].count = e.count
            out[m].period_ns = e.mean
            out[m].cv = cv
            m += 1
        elif not periodic:
            e.flagged = 0
    return m


def _checked_copy(name, arr, dtype, Py_ssize_t capacity):
    arr = np.array(arr, copy=True)
    if arr.dtype != dtype or arr.shape != (capacity,):
        raise ValueError(f"{name} must be {capacity} records of {dtype}")
    return arr


cdef class BeaconTable:
    """Per-sch running inter-arrival statistics in a bounded hash table.

    See :class:`ctas7.stages.teth.Teth` for the semantics; this is its kernel.
    """

    def __cinit__(self, Py_ssize_t capacity=4096, uint32_t min_count=8, double max_cv=0.1,
                  int64_t min_gap_ns=1_000_000, int probes=4, slots=None, door=None):
        if capacity < 1 or capacity & (capacity - 1):
            raise ValueError(f"capacity must be a power of two >= 1, got {capacity}")
        if min_count < 3:
            raise ValueError(f"min_count must be >= 3 (two intervals), got {min_count}")
        if not max_cv >= 0.0:
            raise ValueError(f"max_cv must be >= 0, got {max_cv}")
        if min_gap_ns < 1:
            raise ValueError(f"min_gap_ns must be >= 1, got {min_gap_ns}")
        if probes < 1:
            raise ValueError(f"probes must be >= 1, got {probes}")
        self.capacity = capacity
        self.min_count = min_count
        self.max_cv = max_cv
        self.min_gap_ns = min_gap_ns
        self.probes = min(probes, capacity)
        self._slots = np.zeros(capacity, dtype=SLOT_DTYPE)
        self._door = np.zeros(capacity, dtype=DOOR_DTYPE)
        self._scratch = np.empty(0, dtype=BEACON_DTYPE)
        if slots is not None:
            self._slots = _checked_copy("slots", slots, SLOT_DTYPE, capacity)
        if door is not None:
            self._door = _checked_copy("door", door, DOOR_DTYPE, capacity)
        cdef ctas7_beacon_slot_t[::1] view = self._slots
        cdef ctas7_door_t[::1] dview = self._door
        self.slots_ptr = &view[0]
        self.door_ptr = &dview[0]

    @property
    def slots(self):
        """A copy of the table (key, last_ts, mean, m2, count, flagged)."""
        return self._slots.copy()

    @property
    def door(self):
        """A copy of the first-arrival door (key, ts)."""
        return self._door.copy()

    def run(self, events,  # IN
            ctas7_beacon_t[::1] out=None):  # OUT
        """Update the table with ``events``; return (or write to ``out``, room for ``len(events)``) new detections.

        Without ``out`` returns a new BEACON_DTYPE array, else the count written.
        """
        cdef const ctas7_event_t *ev = _event_ptr(events)
        cdef Py_ssize_t n = cnp.PyArray_DIM(events, 0), m = 0
        cdef ctas7_beacon_t *dst
        cdef cnp.ndarray result
        if out is not None:
            if out.shape[0] < n:
                raise ValueError(f"out has {out.shape[0]} slots, needs {n}")
            if n == 0:
                return 0
            dst = &out[0]
        else:
            if self._scratch.shape[0] < n:
                self._scratch = np.empty(max(n, 2 * self._scratch.shape[0]), dtype=BEACON_DTYPE)
            dst = <ctas7_beacon_t *>cnp.PyArray_DATA(self._scratch)
        if n > 0:
            with nogil:
                m = ctas7_teth_beacons(ev, n, self.slots_ptr, self.door_ptr, <uint64_t>(self.capacity - 1),
                                       self.probes, self.min_count, self.max_cv, self.min_gap_ns, dst)
        if out is not None:
            return m
        result = np.empty(m, dtype=BEACON_DTYPE)
        if m:
            memcpy(cnp.PyArray_DATA(result), dst, m * sizeof(ctas7_beacon_t))
        return result

    def reset(self):
        """Forget every sch."""
        self._slots[:] = 0
        self._door[:] = 0

    def __reduce__(self):
        return (BeaconTable, (self.capacity, self.min_count, self.max_cv, self.min_gap_ns, self.probes,
                              self._slots.copy(), self._door.copy()))
