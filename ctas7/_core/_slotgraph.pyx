# cython: language_level=3
"""SlotGraph hot loops: best-station scan and the batch heartbeat tracker.

Private module; the public face is :mod:`ctas7.stages.slotgraph`, which also
holds the pure-Python references these kernels are tested against.

Two views of a station's liveness are kept on purpose. ``alive`` belongs to
the heartbeat tracker, which runs over a whole batch at once and emits the
ordered list of timeouts and comebacks it found. ``online`` is what
placement sees; the Python layer flips it while it replays those
transitions in order, so a task re-placed at a transition sees the stations
that were online at that event time, not at the end of the batch.
"""

from libc.math cimport INFINITY, isfinite
from libc.stdint cimport INT64_MIN, int32_t, int64_t, uint8_t, uint16_t, uint64_t

import numpy as np

from ctas7.events import EVENT_DTYPE

__all__ = ["StationTable", "TIMEOUT", "COMEBACK", "NEVER", "MAX_STATIONS", "best_station"]

cdef enum:
    _TIMEOUT = 0
    _COMEBACK = 1
    _HEARTBEAT = 0xFFFF
    _CONTROL_BASE = 0xFF00
    _MAX_STATIONS = 65536

#: Transition kinds emitted by :meth:`StationTable.scan`.
TIMEOUT = _TIMEOUT
COMEBACK = _COMEBACK
#: ``last_seen`` of a station no event time has reached yet.
NEVER = INT64_MIN
MAX_STATIONS = _MAX_STATIONS

_ARRAYS = (
    ("mask", np.uint64, 0),
    ("known", np.uint8, 0),
    ("online", np.uint8, 0),
    ("alive", np.uint8, 0),
    ("ncaps", np.uint8, 0),
    ("free", np.int32, 0),
    ("slots", np.int32, 0),
    ("heap", np.int32, -1),
    ("hpos", np.int32, -1),
    ("scratch", np.int32, 0),
    ("open_ids", np.int32, -1),
    ("open_pos", np.int32, -1),
    ("latency", np.float64, 0),
    ("last_seen", np.int64, INT64_MIN),
    ("load", np.float32, 0),
)


# ---------------------------------------------------------------------------
# Placement
# ---------------------------------------------------------------------------

cdef Py_ssize_t sg_best(const uint64_t* mask, const int32_t* free, const int32_t* slots,
                        const double* latency, const uint8_t* ncaps,
                        const int32_t* open_ids, Py_ssize_t n_open,
                        uint64_t need, int32_t need_slots, int32_t* scratch) noexcept nogil:
    # Only the open list (online stations with a free slot) is scanned, in
    # no particular order, so ties are broken by id explicitly. Two passes:
    # the latency score is normalised by the largest candidate latency.
    cdef Py_ssize_t j, m = 0, best = -1
    cdef int32_t s
    cdef double lmax = 0.0, sc, best_sc = -INFINITY, l
    cdef int32_t nneed = ctas7_sg_popcount64(need)
    cdef bint ok
    for j in range(n_open):
        # Branch-free: whether a station is a candidate is data-dependent.
        s = open_ids[j]
        ok = (free[s] >= need_slots) & ((mask[s] & need) == need)
        scratch[m] = s
        m += ok
        l = latency[s] if ok else 0.0
        lmax = l if l > lmax else lmax
    for j in range(m):
        s = scratch[j]
        sc = ctas7_sg_score(latency[s], lmax, free[s], need_slots, slots[s], nneed, ncaps[s])
        if sc > best_sc or (sc == best_sc and s < best):
            best_sc = sc
            best = s
    return best


cdef inline void _open_update(const uint8_t* online, const int32_t* free, int32_t* open_ids,
                              int32_t* open_pos, Py_ssize_t* n_open, int32_t s) noexcept nogil:
    cdef bint want = online[s] and free[s] > 0
    cdef int32_t p = open_pos[s], last
    if want and p < 0:
        open_ids[n_open[0]] = s
        open_pos[s] = <int32_t>n_open[0]
        n_open[0] += 1
    elif not want and p >= 0:
        n_open[0] -= 1
        last = open_ids[n_open[0]]
        open_ids[p] = last
        open_pos[last] = p
        open_ids[n_open[0]] = -1
        open_pos[s] = -1


def best_station(StationTable table, uint64_t need, int32_t need_slots):
    """Best online station for a task, or -1 (no state change)."""
    return table.best(need, need_slots)


# ---------------------------------------------------------------------------
# Deadline heap: online stations keyed by (last_seen, id)
# ---------------------------------------------------------------------------

cdef inline bint _before(const int64_t* ls, int32_t a, int32_t b) noexcept nogil:
    return ls[a] < ls[b] or (ls[a] == ls[b] and a < b)


cdef void _sift_up(int32_t* heap, int32_t* pos, const int64_t* ls, Py_ssize_t i) noexcept nogil:
    cdef int32_t s = heap[i]
    cdef Py_ssize_t p
    while i > 0:
        p = (i - 1) >> 1
        if not _before(ls, s, heap[p]):
            break
        heap[i] = heap[p]
        pos[heap[i]] = <int32_t>i
        i = p
    heap[i] = s
    pos[s] = <int32_t>i


cdef void _sift_down(int32_t* heap, int32_t* pos, const int64_t* ls, Py_ssize_t i,
                     Py_ssize_t n) noexcept nogil:
    cdef int32_t s = heap[i]
    cdef Py_ssize_t c
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and _before(ls, heap[c + 1], heap[c]):
            c += 1
        if not _before(ls, heap[c], s):
            break
        heap[i] = heap[c]
        pos[heap[i]] = <int32_t>i
        i = c
    heap[i] = s
    pos[s] = <int32_t>i


cdef void _push(int32_t* heap, int32_t* pos, const int64_t* ls, Py_ssize_t* n,
                int32_t s) noexcept nogil:
    heap[n[0]] = s
    pos[s] = <int32_t>n[0]
    n[0] += 1
    _sift_up(heap, pos, ls, n[0] - 1)


cdef int32_t _pop(int32_t* heap, int32_t* pos, const int64_t* ls, Py_ssize_t* n) noexcept nogil:
    cdef int32_t top = heap[0]
    n[0] -= 1
    pos[top] = -1
    if n[0] > 0:
        heap[0] = heap[n[0]]
        pos[heap[0]] = 0
        _sift_down(heap, pos, ls, 0, n[0])
    return top


# ---------------------------------------------------------------------------
# Heartbeat scan
# ---------------------------------------------------------------------------

ctypedef struct _scan_t:
    int64_t watermark
    int started
    Py_ssize_t heap_n
    uint64_t heartbeats
    uint64_t unknown


cdef Py_ssize_t _scan(const sg_event_t* ev, Py_ssize_t n_ev, Py_ssize_t n,
                      const uint8_t* known, uint8_t* alive, int64_t* last_seen, float* load,
                      int32_t* heap, int32_t* pos, int64_t timeout, bint data_live,
                      _scan_t* st, uint8_t* out_kind, int32_t* out_station,
                      int64_t* out_ts) noexcept nogil:
    cdef Py_ssize_t i, m = 0
    cdef int64_t ts, lim
    cdef int32_t s
    cdef uint16_t kind
    cdef bint beat
    lim = INT64_MIN
    if st.started and st.watermark >= INT64_MIN + timeout:
        lim = st.watermark - timeout
    for i in range(n_ev):
        ts = ev[i].ts
        if not st.started:
            # Stations registered before any event get their grace period
            # from the first event time.
            st.started = 1
            st.watermark = ts
            if ts >= INT64_MIN + timeout:
                lim = ts - timeout
            for s in range(<int32_t>n):
                if known[s] and alive[s] and pos[s] < 0:
                    if last_seen[s] == INT64_MIN:
                        last_seen[s] = ts
                    _push(heap, pos, last_seen, &st.heap_n, s)
        if ts > st.watermark:
            st.watermark = ts
            # last_seen < lim  <=>  watermark - last_seen > timeout, without overflow.
            lim = st.watermark - timeout if st.watermark >= INT64_MIN + timeout else INT64_MIN
            while st.heap_n > 0 and last_seen[heap[0]] < lim:
                s = _pop(heap, pos, last_seen, &st.heap_n)
                alive[s] = 0
                out_kind[m] = _TIMEOUT
                out_station[m] = s
                out_ts[m] = st.watermark
                m += 1
        kind = ev[i].kind
        beat = kind == _HEARTBEAT
        if not beat and not (data_live and kind < _CONTROL_BASE):
            continue
        s = ev[i].station
        if s >= n or not known[s]:
            if beat:
                st.unknown += 1
            continue
        if beat:
            st.heartbeats += 1
        if ts >= last_seen[s]:
            if ts > last_seen[s]:
                last_seen[s] = ts
                if alive[s]:
                    _sift_down(heap, pos, last_seen, pos[s], st.heap_n)
            if beat:
                load[s] = ev[i].value
        if not alive[s] and last_seen[s] >= lim:
            alive[s] = 1
            _push(heap, pos, last_seen, &st.heap_n, s)
            out_kind[m] = _COMEBACK
            out_station[m] = s
            out_ts[m] = st.watermark
            m += 1
    return m


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------

cdef class StationTable:
    """Per-station arrays indexed by station id, plus the liveness tracker.

    Parameters
    ----------
    timeout_ns : int
        A station with no heartbeat for more than this much event time
        (``watermark - last_seen > timeout_ns``) times out.
    data_is_liveness : bool
        Whether observation events (kind below ``KIND_CONTROL_BASE``) also
        count as signs of life.
    """

    def __init__(self, int64_t timeout_ns, bint data_is_liveness=False):
        if timeout_ns < 0:
            raise ValueError(f"timeout_ns must be >= 0, got {timeout_ns}")
        self.timeout_ns = timeout_ns
        self.data_is_liveness = data_is_liveness
        self.n = 0
        self.cap = 0
        self.started = False
        self.watermark = INT64_MIN
        self.n_alive = 0
        self.n_heartbeats = 0
        self.n_unknown = 0
        self.n_open = 0
        self._arr = {name: np.full(1, fill, dtype=dt) for name, dt, fill in _ARRAYS}
        self.cap = 1
        self._bind()

    cdef _bind(self):
        a = self._arr
        self.mask = a["mask"]; self.known = a["known"]; self.online = a["online"]
        self.alive = a["alive"]; self.ncaps = a["ncaps"]; self.free = a["free"]
        self.slots = a["slots"]; self.heap = a["heap"]; self.hpos = a["hpos"]
        self.scratch = a["scratch"]; self.latency = a["latency"]
        self.open_ids = a["open_ids"]; self.open_pos = a["open_pos"]
        self.last_seen = a["last_seen"]; self.load = a["load"]

    cdef _grow(self, Py_ssize_t n):
        cdef Py_ssize_t cap
        if n > self.cap:
            cap = min(max(n, 2 * self.cap), _MAX_STATIONS)
            for name, dt, fill in _ARRAYS:
                new = np.full(cap, fill, dtype=dt)
                new[: self.cap] = self._arr[name]
                self._arr[name] = new
            self.cap = cap
            self._bind()
        if n > self.n:
            self.n = n

    def array(self, str name):
        """Read-only numpy view of one per-station array (first ``n`` ids)."""
        view = self._arr[name][: self.n].view()
        view.flags.writeable = False
        return view

    def set_station(self, Py_ssize_t s, uint64_t mask, int32_t slots, double latency_ms):
        """Register (or re-register) station ``s``: online, all slots free."""
        if not 0 <= s < _MAX_STATIONS:
            raise ValueError(f"station id must be in [0, {_MAX_STATIONS}), got {s}")
        if slots < 1:
            raise ValueError(f"station slots must be >= 1, got {slots}")
        if not (isfinite(latency_ms) and latency_ms >= 0.0):
            raise ValueError(f"latency_ms must be finite and >= 0, got {latency_ms}")
        self._grow(s + 1)
        if self.known[s]:
            raise ValueError(f"station {s} is already registered")
        self.known[s] = 1
        self.mask[s] = mask
        self.ncaps[s] = ctas7_sg_popcount64(mask)
        self.slots[s] = slots
        self.free[s] = slots
        self.latency[s] = latency_ms
        self.online[s] = 1
        self.alive[s] = 1
        _open_update(&self.online[0], &self.free[0], &self.open_ids[0], &self.open_pos[0],
                     &self.n_open, <int32_t>s)
        if self.started:
            self.last_seen[s] = self.watermark
            _push(&self.heap[0], &self.hpos[0], &self.last_seen[0], &self.n_alive, <int32_t>s)

    cpdef Py_ssize_t best(self, uint64_t need, int32_t need_slots):
        """Best online station for ``need`` / ``need_slots``, or -1."""
        cdef Py_ssize_t r
        if self.n_open == 0:
            return -1
        with nogil:
            r = sg_best(&self.mask[0], &self.free[0], &self.slots[0], &self.latency[0],
                        &self.ncaps[0], &self.open_ids[0], self.n_open, need, need_slots,
                        &self.scratch[0])
        return r

    def place_many(self, const uint64_t[::1] need,  # IN
                   const int32_t[::1] need_slots,  # IN
                   int64_t[::1] out):  # OUT station per task, -1 when none fits
        """Place tasks in order, taking their slots (see ``best``)."""
        cdef Py_ssize_t i, k = need.shape[0], s
        if need_slots.shape[0] != k or out.shape[0] != k:
            raise ValueError("need, need_slots and out must have the same length")
        if self.n == 0:
            out[:] = -1
            return
        for i in range(k):
            if need_slots[i] < 1:
                raise ValueError(f"need_slots[{i}] = {need_slots[i]}, expected >= 1")
        with nogil:
            for i in range(k):
                s = -1
                if self.n_open:
                    s = sg_best(&self.mask[0], &self.free[0], &self.slots[0], &self.latency[0],
                                &self.ncaps[0], &self.open_ids[0], self.n_open, need[i],
                                need_slots[i], &self.scratch[0])
                out[i] = s
                if s >= 0:
                    self.free[s] -= need_slots[i]
                    _open_update(&self.online[0], &self.free[0], &self.open_ids[0],
                                 &self.open_pos[0], &self.n_open, <int32_t>s)

    cpdef int32_t take(self, Py_ssize_t s, int32_t k) except? -1:
        """Take (``k > 0``) or give back (``k < 0``) slots on station ``s``."""
        if not 0 <= s < self.n or not self.known[s]:
            raise KeyError(f"unknown station {s}")
        if self.free[s] - k < 0 or self.free[s] - k > self.slots[s]:
            raise ValueError(f"station {s}: taking {k} slots leaves {self.free[s] - k} of {self.slots[s]}")
        self.free[s] -= k
        _open_update(&self.online[0], &self.free[0], &self.open_ids[0], &self.open_pos[0],
                     &self.n_open, <int32_t>s)
        return self.free[s]

    cpdef set_online(self, Py_ssize_t s, bint flag):
        """Flip the placement view of station ``s``."""
        if not 0 <= s < self.n or not self.known[s]:
            raise KeyError(f"unknown station {s}")
        self.online[s] = flag
        _open_update(&self.online[0], &self.free[0], &self.open_ids[0], &self.open_pos[0],
                     &self.n_open, <int32_t>s)

    def scan(self, events):
        """Run the heartbeat tracker over one batch.

        Returns ``(kind, station, ts)`` arrays of the transitions found, in
        event order (:data:`TIMEOUT` or :data:`COMEBACK`).
        """
        if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE:
            raise TypeError("events must be a numpy array of EVENT_DTYPE")
        cdef const sg_event_t[::1] ev = events.view(np.uint8).view(_SG_EVENT) if events.shape[0] else _NO_EVENTS
        cdef Py_ssize_t n_ev = events.shape[0], bound = self.n + 2 * n_ev + 1, m
        kind_a = np.empty(bound, dtype=np.uint8)
        station_a = np.empty(bound, dtype=np.int32)
        ts_a = np.empty(bound, dtype=np.int64)
        cdef uint8_t[::1] ok = kind_a
        cdef int32_t[::1] os = station_a
        cdef int64_t[::1] ot = ts_a
        cdef _scan_t st
        if n_ev == 0:
            return kind_a[:0], station_a[:0], ts_a[:0]
        st.watermark = self.watermark
        st.started = self.started
        st.heap_n = self.n_alive
        st.heartbeats = self.n_heartbeats
        st.unknown = self.n_unknown
        with nogil:
            m = _scan(&ev[0], n_ev, self.n, &self.known[0], &self.alive[0], &self.last_seen[0],
                      &self.load[0], &self.heap[0], &self.hpos[0], self.timeout_ns,
                      self.data_is_liveness, &st, &ok[0], &os[0], &ot[0])
        self.watermark = st.watermark
        self.started = st.started
        self.n_alive = st.heap_n
        self.n_heartbeats = st.heartbeats
        self.n_unknown = st.unknown
        return kind_a[:m], station_a[:m], ts_a[:m]

    def __reduce__(self):
        state = {name: self._arr[name][: self.n].copy() for name, _, _ in _ARRAYS}
        state["scalars"] = (self.n, self.started, self.watermark, self.n_alive,
                            self.n_heartbeats, self.n_unknown, self.n_open)
        return (StationTable, (self.timeout_ns, self.data_is_liveness), state)

    def __setstate__(self, state):
        n, started, wm, n_alive, hb, unk, n_open = state["scalars"]
        if self.n != 0:
            raise ValueError("StationTable state can only be restored into a fresh table")
        self._grow(max(int(n), 1))
        self.n = n
        for name, dt, _ in _ARRAYS:
            arr = np.ascontiguousarray(state[name], dtype=dt)
            if arr.shape[0] != n:
                raise ValueError(f"state array {name!r} has {arr.shape[0]} entries, expected {n}")
            self._arr[name][:n] = arr
        self.started = started
        self.watermark = wm
        self.n_alive = n_alive
        self.n_heartbeats = hb
        self.n_unknown = unk
        self.n_open = n_open


# A structured dtype numpy accepts for a packed-struct memoryview.
_SG_EVENT = np.dtype(
    [("ts", "<i8"), ("sch", "<u8"), ("seq", "<u4"), ("node", "<u4"),
     ("station", "<u2"), ("kind", "<u2"), ("value", "<f4")]
)
_NO_EVENTS = np.zeros(1, dtype=_SG_EVENT)
