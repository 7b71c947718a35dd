"""Hot-path helpers of the shared-memory metrics segment.

HdrHistogram recording straight into a counts array that lives in shared
memory (the layout of the ``hdrh`` package, so a reader rebuilds a real
``HdrHistogram`` from the counts), and the scan of a drained batch for the
cluster's ingest stamps. ``ctas7.metrics`` holds the numpy/hdrh references
the tests compare these with.
"""

from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t

import numpy as np

__all__ = ["hdr_index", "record", "collect_stamps", "record_spread", "merge_runs", "record_stage_times", "StepRecorder"]

cdef extern from *:
    """
    static inline int ctas7_metrics_clz64(unsigned long long x) { return x ? __builtin_clzll(x) : 64; }
    """
    int ctas7_metrics_clz64(unsigned long long x) noexcept nogil


# ---------------------------------------------------------------------------
# C kernels
# ---------------------------------------------------------------------------

cdef inline int64_t metrics_hdr_index(const metrics_hdr_t *h, int64_t value) noexcept nogil:
    """Counts index of ``value`` (clamped to [0, counts_len - 1])."""
    cdef int pow2ceiling, bucket
    cdef int64_t sub, idx
    if value < 0:
        value = 0
    pow2ceiling = 64 - ctas7_metrics_clz64(<uint64_t>value | h.sub_bucket_mask)
    bucket = pow2ceiling - h.unit_magnitude - (h.sub_bucket_half_count_magnitude + 1)
    sub = value >> (bucket + h.unit_magnitude)
    idx = ((<int64_t>(bucket + 1)) << h.sub_bucket_half_count_magnitude) + sub - h.sub_bucket_half_count
    if idx >= h.counts_len:
        idx = h.counts_len - 1
    return idx



cdef int _geometry(tuple geom, metrics_hdr_t *h) except -1:
    unit, half_mag, counts_len = geom
    if not (0 <= unit < 40 and 0 <= half_mag < 20 and counts_len > 0):
        raise ValueError(f"bad HdrHistogram geometry {geom!r}")
    h.unit_magnitude = unit
    h.sub_bucket_half_count_magnitude = half_mag
    h.sub_bucket_half_count = 1 << half_mag
    h.sub_bucket_mask = ((<uint64_t>1 << (half_mag + 1)) - 1) << unit
    h.counts_len = counts_len
    return 0


# ---------------------------------------------------------------------------
# Python wrappers
# ---------------------------------------------------------------------------

def hdr_index(tuple geom, int64_t value):
    """Counts index of ``value`` for ``geom = (unit_magnitude, sub_bucket_half_count_magnitude, counts_len)``."""
    cdef metrics_hdr_t h
    _geometry(geom, &h)
    return metrics_hdr_index(&h, value)


def record(uint64_t[::1] counts,  # IN/OUT: histogram counts (shared memory)
           tuple geom, int64_t value, uint64_t count=1):
    """Add ``count`` at ``value`` (negative -> 0, too large -> the top bucket)."""
    cdef metrics_hdr_t h
    _geometry(geom, &h)
    if counts.shape[0] < h.counts_len:
        raise ValueError(f"counts has {counts.shape[0]} words, geometry needs {h.counts_len}")
    counts[metrics_hdr_index(&h, value)] += count


def collect_stamps(batch,  # IN: EVENT_DTYPE records
                   int stamp_kind,
                   int64_t[:, ::1] out):  # OUT: rows (first_ns, last_ns, events)
    """Scan a drained batch: return ``(n_stamps, n_events, n_control)``.

    ``n_events`` counts records below ``KIND_CONTROL_BASE``; each record of
    kind ``stamp_kind`` is copied to a row of ``out`` as (``sch``, ``ts``,
    ``value``): first and last intended ingest times and the events it
    covers. If ``out`` runs short, the remaining stamps are merged into its
    last row (earliest first time, latest last time, summed events), which
    only makes the recorded latencies more pessimistic.
    """
    from ctas7.events import validate_batch

    validate_batch(batch, name="batch")
    if out.shape[1] != 3 or out.shape[0] < 1:
        raise ValueError(f"out must have shape (k >= 1, 3), got ({out.shape[0]}, {out.shape[1]})")
    cdef Py_ssize_t n = batch.shape[0], i, k = 0, cap = out.shape[0]
    cdef int64_t events = 0, control = 0
    cdef uint16_t sk = <uint16_t>stamp_kind
    if n == 0:
        return 0, 0, 0
    cdef const unsigned char[::1] raw = batch.view(np.uint8)
    cdef const metrics_event_t *ev = <const metrics_event_t *>&raw[0]
    with nogil:
        for i in range(n):
            if ev[i].kind < 0xFF00:
                events += 1
                continue
            control += 1
            if ev[i].kind != sk:
                continue
            if k < cap:
                out[k, 0] = <int64_t>ev[i].sch
                out[k, 1] = ev[i].ts
                out[k, 2] = <int64_t>ev[i].value
                k += 1
            else:
                if <int64_t>ev[i].sch < out[cap - 1, 0]:
                    out[cap - 1, 0] = <int64_t>ev[i].sch
                if ev[i].ts > out[cap - 1, 1]:
                    out[cap - 1, 1] = ev[i].ts
                out[cap - 1, 2] += <int64_t>ev[i].value
    return k, events, control


def record_spread(uint64_t[::1] counts,  # IN/OUT: histogram counts (shared memory)
                  tuple geom,
                  const int64_t[:, ::1] stamps,  # IN: rows (first_ns, last_ns, events)
                  Py_ssize_t k, int64_t t_done, int points=4):
    """Record ingest-to-decision latencies of ``k`` stamped batches decided at ``t_done``.

    A stamp covers ``m`` events whose intended ingest times run evenly from
    ``first_ns`` to ``last_ns``; ``min(points, m)`` latencies are recorded
    at the midpoints of equal shares of them, weights summing to ``m``.
    Latency is measured from the *intended* time, so a producer held back
    by backpressure does not hide the wait (no coordinated omission).
    Returns ``(events recorded, max latency ns)``.
    """
    cdef metrics_hdr_t h
    _geometry(geom, &h)
    if counts.shape[0] < h.counts_len:
        raise ValueError(f"counts has {counts.shape[0]} words, geometry needs {h.counts_len}")
    if k < 0 or k > stamps.shape[0] or (k and stamps.shape[1] != 3):
        raise ValueError(f"k={k} rows of a ({stamps.shape[0]}, {stamps.shape[1]}) stamp array")
    if points < 1:
        raise ValueError(f"points must be >= 1, got {points}")
    cdef Py_ssize_t r
    cdef int64_t m, p, j, c, total = 0, worst = 0, lat, first, span
    with nogil:
        for r in range(k):
            first = stamps[r, 0]
            span = stamps[r, 1] - first
            m = stamps[r, 2]
            if m <= 0:
                continue
            p = points if points < m else m
            for j in range(p):
                lat = t_done - (first + <int64_t>(<double>span * (2 * j + 1) / (2 * p)))
                c = m * (j + 1) // p - m * j // p
                counts[metrics_hdr_index(&h, lat)] += <uint64_t>c
                if lat > worst:
                    worst = lat
            total += m
    return total, worst


def merge_runs(src,  # IN: EVENT_DTYPE records, runs each sorted by ts
               const int64_t[::1] bounds,  # IN: run r is src[bounds[r]:bounds[r + 1]]
               dst):  # OUT: EVENT_DTYPE, at least bounds[-1] records
    """Merge sorted runs of ``src`` by ``ts`` into ``dst`` (stable: ties keep run order); return the count.

    The cluster drains one channel per worker into consecutive runs; the
    merge hands the chain one batch in event-time order, so a tick of the
    meter does not close on one worker's events before another's arrive.
    """
    from ctas7.events import validate_batch

    validate_batch(src, name="src")
    validate_batch(dst, name="dst")
    cdef Py_ssize_t k = bounds.shape[0] - 1, r, best
    if k < 1:
        raise ValueError("bounds must hold at least two offsets")
    cdef Py_ssize_t n = bounds[k]
    if bounds[0] != 0 or n > src.shape[0] or n > dst.shape[0]:
        raise ValueError(f"bounds [{bounds[0]}, {n}] do not fit src ({src.shape[0]}) and dst ({dst.shape[0]})")
    for r in range(k):
        if bounds[r + 1] < bounds[r]:
            raise ValueError("bounds must be non-decreasing")
    if n == 0:
        return 0
    if not dst.flags.writeable:
        raise ValueError("dst must be writable")
    cdef const unsigned char[::1] rs = src.view(np.uint8)
    cdef unsigned char[::1] rd = dst.view(np.uint8)
    cdef const metrics_event_t *s = <const metrics_event_t *>&rs[0]
    cdef metrics_event_t *d = <metrics_event_t *>&rd[0]
    cdef int64_t[::1] pos = np.array(bounds[:k], dtype=np.int64)
    cdef Py_ssize_t i
    cdef int64_t t
    with nogil:
        for i in range(n):
            best = -1
            for r in range(k):
                if pos[r] < bounds[r + 1] and (best < 0 or s[pos[r]].ts < t):
                    best = r
                    t = s[pos[r]].ts
            d[i] = s[pos[best]]
            pos[best] += 1
    return n


def record_stage_times(uint64_t[:, ::1] hists,  # IN/OUT: histogram counts, one row per histogram
                       tuple geom,
                       const int64_t[::1] dts,  # IN: ns spent in each stage on this batch
                       uint64_t[:, ::1] acc,  # IN/OUT: per stage (events, batches, time_ns, max_ns)
                       int64_t events, Py_ssize_t first_row=1):
    """One batch's per-stage bookkeeping in one call: stage ``j``'s time goes to histogram row ``first_row + j``."""
    cdef metrics_hdr_t h
    _geometry(geom, &h)
    cdef Py_ssize_t j, n = dts.shape[0]
    if hists.shape[1] < h.counts_len or first_row < 0 or first_row + n > hists.shape[0]:
        raise ValueError(f"{n} stages from row {first_row} do not fit histograms of shape ({hists.shape[0]}, {hists.shape[1]})")
    if acc.shape[0] < n or acc.shape[1] != 4:
        raise ValueError(f"acc must have shape (>= {n}, 4), got ({acc.shape[0]}, {acc.shape[1]})")
    if events < 0:
        raise ValueError(f"events must be >= 0, got {events}")
    cdef int64_t dt
    with nogil:
        for j in range(n):
            dt = dts[j] if dts[j] > 0 else 1
            hists[first_row + j, metrics_hdr_index(&h, dt)] += 1
            acc[j, 0] += <uint64_t>events
            acc[j, 1] += 1
            acc[j, 2] += <uint64_t>dt
            if <uint64_t>dt > acc[j, 3]:
                acc[j, 3] = <uint64_t>dt


cdef class StepRecorder:
    """Per-batch bookkeeping of the cluster loop with its buffers bound once.

    Binding the shared-memory views at construction keeps the per-batch
    cost to one call of :meth:`record` (acquiring four buffers per batch
    cost more than the bookkeeping itself). ``hists`` row 0 is
    ingest-to-decision, row ``1 + j`` stage ``j``; ``acc`` holds per stage
    (events, batches, time_ns, max_ns).
    """

    cdef uint64_t[:, ::1] hists
    cdef int64_t[:, ::1] stamps
    cdef uint64_t[:, ::1] acc
    cdef metrics_hdr_t h
    cdef readonly Py_ssize_t n_stages
    cdef readonly int stamp_kind

    def __init__(self, uint64_t[:, ::1] hists, tuple geom, int64_t[:, ::1] stamps, uint64_t[:, ::1] acc,
                 Py_ssize_t n_stages, int stamp_kind):
        _geometry(geom, &self.h)
        if hists.shape[1] < self.h.counts_len or hists.shape[0] < 1 + n_stages:
            raise ValueError(f"histograms of shape ({hists.shape[0]}, {hists.shape[1]}) do not fit {n_stages} stages")
        if acc.shape[0] < n_stages or acc.shape[1] != 4:
            raise ValueError(f"acc must have shape (>= {n_stages}, 4)")
        if stamps.shape[1] != 3:
            raise ValueError("stamps must have 3 columns")
        self.hists, self.stamps, self.acc, self.n_stages = hists, stamps, acc, n_stages
        self.stamp_kind = stamp_kind

    def collect(self, const metrics_event_t[::1] batch):
        """:func:`collect_stamps` into the bound stamp buffer: ``(n_stamps, n_events, n_control)``."""
        cdef Py_ssize_t n = batch.shape[0], i, k = 0, cap = self.stamps.shape[0]
        cdef int64_t events = 0, control = 0
        cdef uint16_t sk = <uint16_t>self.stamp_kind
        with nogil:
            for i in range(n):
                if batch[i].kind < 0xFF00:
                    events += 1
                    continue
                control += 1
                if batch[i].kind != sk:
                    continue
                if k < cap:
                    self.stamps[k, 0] = <int64_t>batch[i].sch
                    self.stamps[k, 1] = batch[i].ts
                    self.stamps[k, 2] = <int64_t>batch[i].value
                    k += 1
                else:
                    if <int64_t>batch[i].sch < self.stamps[cap - 1, 0]:
                        self.stamps[cap - 1, 0] = <int64_t>batch[i].sch
                    if batch[i].ts > self.stamps[cap - 1, 1]:
                        self.stamps[cap - 1, 1] = batch[i].ts
                    self.stamps[cap - 1, 2] += <int64_t>batch[i].value
        return k, events, control

    def record(self, list dts, int64_t events, Py_ssize_t k, int64_t t_done, int points=4):
        """Stage times ``dts`` (ns, one per stage) and ``k`` stamps decided at ``t_done``.

        Returns the events given an ingest-to-decision latency (the sum of
        the stamps' counts).
        """
        if len(dts) != self.n_stages:
            raise ValueError(f"expected {self.n_stages} stage times, got {len(dts)}")
        if k < 0 or k > self.stamps.shape[0]:
            raise ValueError(f"k={k} outside the stamp buffer")
        cdef Py_ssize_t j, r
        cdef int64_t dt, m, p, i, first, span, lat, total = 0
        for j in range(self.n_stages):
            dt = dts[j]
            if dt < 1:
                dt = 1
            self.hists[1 + j, metrics_hdr_index(&self.h, dt)] += 1
            self.acc[j, 0] += <uint64_t>events
            self.acc[j, 1] += 1
            self.acc[j, 2] += <uint64_t>dt
            if <uint64_t>dt > self.acc[j, 3]:
                self.acc[j, 3] = <uint64_t>dt
        with nogil:
            for r in range(k):
                first = self.stamps[r, 0]
                span = self.stamps[r, 1] - first
                m = self.stamps[r, 2]
                if m <= 0:
                    continue
                p = points if points < m else m
                for i in range(p):
                    lat = t_done - (first + <int64_t>(<double>span * (2 * i + 1) / (2 * p)))
                    self.hists[0, metrics_hdr_index(&self.h, lat)] += <uint64_t>(m * (i + 1) // p - m * i // p)
                total += m
        return total
