"""Convergence meter kernels (private; use ``ctas7.stages.meter``).

One core, ``_close_tick``, closes an event-time tick for every node: it
scores the tick against the node's baseline (before updating it), updates
persistence, hotness and (when tracking) the node state machine, updates
the EWMA baselines, and evaluates the convergence window. The streaming
``MeterCore`` feeds it from batches of events (scatter-add into the open
tick); ``evaluate_activity`` feeds it rows of a precomputed activity
matrix. Both run entirely without the GIL.
"""

from libc.math cimport erfc, exp2, expm1, fabs, isfinite, log2, sqrt, INFINITY, NAN
from libc.stdint cimport INT64_MAX, INT64_MIN, int8_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memmove, memset

import numpy as np

from ctas7._core._kernels cimport ewma_update_f32, surprisal_f32

cdef extern from *:
    """
    #define CTAS7_METER_SQRT1_2 0.70710678118654752440
    """
    double CTAS7_METER_SQRT1_2

from ctas7._core._kernels cimport CTAS7_SIMD_AVX2, CTAS7_SIMD_AVX512, ctas7_simd_supported
from ctas7._core import _kernels

# AVX2 without FMA: the same double operations as the scalar code, 4 at a time
# (identical bits), used when the kernels' active variant is AVX2 or wider
# (CTAS7_SIMD=scalar forces the scalar loops here too).
cdef int _wide = (_kernels.simd_info()["active"] != "scalar") and ctas7_simd_supported(CTAS7_SIMD_AVX2)
cdef int _row_avx2 = CTAS7_METER_HAVE_ROW_AVX2 and _wide
# 8 nodes a step where the kernels run AVX-512 (F + DQ)
cdef int _avx512 = (CTAS7_METER_HAVE_ROW_AVX512 and _kernels.simd_info()["active"] == "avx512"
                    and ctas7_simd_supported(CTAS7_SIMD_AVX512))
cdef int _row_avx512 = _row_avx2 and _avx512
cdef int _series_avx = CTAS7_METER_HAVE_AVX and _wide


cdef inline void _transform(const float* x, float* y, Py_ssize_t n, int anscombe) noexcept nogil:
    if _row_avx2:
        ctas7_meter_transform_avx(x, y, n, anscombe)
    else:
        ctas7_meter_transform(x, y, n, anscombe)


def _wide_paths(row=None, series=None, row512=None):
    """Whether the AVX2 row and series paths are in use; ``row`` / ``series``
    switch one off (False) or back on where supported; ``row512`` likewise
    for the AVX-512 row (tests compare them all)."""
    global _row_avx2, _series_avx, _row_avx512
    if row is not None:
        _row_avx2 = bool(row) and CTAS7_METER_HAVE_ROW_AVX2 and _wide
        _row_avx512 = _row_avx2 and _avx512
    if row512 is not None:
        _row_avx512 = bool(row512) and _row_avx2 and _avx512
    if series is not None:
        _series_avx = bool(series) and CTAS7_METER_HAVE_AVX and _wide
    return bool(_row_avx2), bool(_series_avx)


def _row_variant():
    """The row kernel in use: "avx512", "avx2" or "scalar"."""
    return "avx512" if _row_avx512 else ("avx2" if _row_avx2 else "scalar")

DEF KIND_CONTROL_BASE = 0xFF00
DEF DECAY_TABLE = 256
DEF CM_MIN_NODES = 3      # eligible nodes needed for a common-mode median
DEF CM_MIN_MEAN = 0.5
DEF VAR_CLIP = 4.0        # the variance CUSUM takes min(z^2, VAR_CLIP)     # baseline mean (scored scale) for a node to be eligible

cdef enum:
    CALM = 0
    INVESTIGATING = 1
    HIGH = 2
    LOW = 3
    INCREASING = 4
    REDUCING = 5

cdef enum:
    ERR_NOMEM = -1
    ERR_NODE = -2


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

cdef inline uint32_t popcount32(uint32_t v) noexcept nogil:
    v = v - ((v >> 1) & 0x55555555u)
    v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u)
    return (((v + (v >> 4)) & 0x0F0F0F0Fu) * 0x01010101u) >> 24


cdef inline double _bits_of_z(double z) noexcept nogil:
    return -log2(erfc(z * CTAS7_METER_SQRT1_2))


cdef double bits_of_z(double z) noexcept nogil:
    """Two-sided surprisal ``-log2 P(|Z| >= |z|)`` in bits."""
    return _bits_of_z(fabs(z))


cdef double quickselect_median(double* a, Py_ssize_t n) noexcept nogil:
    """Lower median (element ``(n - 1) // 2`` in sorted order) of ``a[:n]``;
    reorders ``a``. ``n`` must be at least 1."""
    cdef Py_ssize_t k = (n - 1) // 2, lo = 0, hi = n - 1, i, j
    cdef double pivot, tmp
    while lo < hi:
        pivot = a[lo + (hi - lo) // 2]
        i = lo
        j = hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                tmp = a[i]; a[i] = a[j]; a[j] = tmp
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return a[k]
    return a[k]


cdef double z_of_bits(double bits) noexcept nogil:
    """Smallest |z| whose two-sided surprisal is at least ``bits``."""
    cdef double lo = 0.0, hi = 40.0, mid
    cdef int k
    if bits <= 0.0:
        return 0.0
    if not isfinite(bits):
        return INFINITY
    if _bits_of_z(hi) < bits:
        return INFINITY
    for k in range(200):
        mid = 0.5 * (lo + hi)
        if mid == lo or mid == hi:
            break
        if _bits_of_z(mid) >= bits:
            hi = mid
        else:
            lo = mid
    return hi


cdef double cusum_bits(double s, double k) noexcept nogil:
    """Score in bits of a one-sided CUSUM at ``s`` with reference ``k``:
    ``log2`` of Siegmund's in-control average run length to reach ``s``,
    ``(exp(2 k b) - 2 k b - 1) / (2 k^2)`` with ``b = s + 1.166``."""
    cdef double x = 2.0 * k * (s + 1.166)
    return log2((expm1(x) - x) / (2.0 * k * k))


cdef double cusum_h_of_bits(double bits, double k) noexcept nogil:
    """Smallest CUSUM value ``s >= 0`` whose score reaches ``bits``."""
    cdef double lo = 0.0, hi = 1.0, mid
    cdef int j
    if not isfinite(bits):
        return INFINITY
    if cusum_bits(0.0, k) >= bits:
        return 0.0
    while cusum_bits(hi, k) < bits:
        hi *= 2.0
        if hi > 1e12:
            return INFINITY
    for j in range(200):
        mid = 0.5 * (lo + hi)
        if mid == lo or mid == hi:
            break
        if cusum_bits(mid, k) >= bits:
            hi = mid
        else:
            lo = mid
    return hi


cdef inline int64_t _floordiv(int64_t a, int64_t b) noexcept nogil:
    cdef int64_t q = a / b
    if (a % b != 0) and ((a < 0) != (b < 0)):
        q -= 1
    return q


cdef inline void _tick_range(int64_t k, int64_t tick_ns, int64_t* lo, int64_t* hi) noexcept nogil:
    """[lo, hi) event times of tick k, clamped to the int64 range."""
    cdef int64_t big = INT64_MAX / tick_ns
    if k >= big:
        lo[0] = k * tick_ns if k == big else INT64_MAX
        hi[0] = INT64_MAX
    elif k < -big:
        lo[0] = INT64_MIN
        hi[0] = (k + 1) * tick_ns if k + 1 >= -big else INT64_MIN
    else:
        lo[0] = k * tick_ns
        hi[0] = lo[0] + tick_ns


cdef int _realloc(void** p, size_t elsize, Py_ssize_t cap) noexcept nogil:
    cdef void* q = realloc(p[0], elsize * <size_t>(cap if cap > 0 else 1))
    if q == NULL:
        return -1
    p[0] = q
    return 0


# ---------------------------------------------------------------------------
# State allocation
# ---------------------------------------------------------------------------

cdef void _state_zero(meter_state_t* st) noexcept nogil:
    memset(st, 0, sizeof(meter_state_t))


cdef void _state_free(meter_state_t* st) noexcept nogil:
    free(st.mean); free(st.var); free(st.count); free(st.acc)
    free(st.hist); free(st.last_hot); free(st.first_hot); free(st.hot_dir)
    free(st.hot); free(st.hot_z); free(st.last_z); free(st.fmark)
    free(st.state); free(st.state_age); free(st.x1); free(st.x2)
    free(st.z2thr); free(st.z2inv); free(st.weight); free(st.group)
    free(st.thrbits); free(st.cm_buf); free(st.cm_fac); free(st.cm_gcount); free(st.cm_gstart)
    free(st.z2); free(st.zrow); free(st.flags); free(st.busy)
    free(st.upd); free(st.ybuf); free(st.zsm); free(st.cup); free(st.cdn); free(st.cvr); free(st.hthr)
    free(st.mwin); free(st.cwin); free(st.ctick); free(st.mq_tick); free(st.mq_node); free(st.mq_src)
    free(st.active); free(st.gpos); free(st.gneg); free(st.gtouched); free(st.gmark)
    free(st.fired_tick); free(st.fired_count); free(st.fired_conf); free(st.fired_off)
    free(st.snap_node); free(st.snap_first); free(st.snap_z); free(st.snap_dir)
    _state_zero(st)


cdef int _state_init(meter_state_t* st, int track, Py_ssize_t n_groups, int use_mwin) noexcept nogil:
    """Fresh state with no nodes; ``n_groups`` sized group sums; ``use_mwin``
    keeps per-node window match counts (always on when tracking)."""
    _state_zero(st)
    st.track = track
    st.last_fire = -(1LL << 62)
    st.use_mwin = 1 if track else use_mwin
    if n_groups < 1:
        n_groups = 1
    st.n_groups = n_groups
    st.gpos = <double*>malloc(sizeof(double) * n_groups)
    st.gneg = <double*>malloc(sizeof(double) * n_groups)
    st.gtouched = <int32_t*>malloc(sizeof(int32_t) * n_groups)
    st.gmark = <uint8_t*>malloc(sizeof(uint8_t) * n_groups)
    st.cm_gcount = <int32_t*>malloc(sizeof(int32_t) * (n_groups + 1))
    st.cm_gstart = <int32_t*>malloc(sizeof(int32_t) * (n_groups + 1))
    if (st.gpos == NULL or st.gneg == NULL or st.gtouched == NULL or st.gmark == NULL
            or st.cm_gcount == NULL or st.cm_gstart == NULL):
        return -1
    memset(st.gpos, 0, sizeof(double) * n_groups)
    memset(st.gneg, 0, sizeof(double) * n_groups)
    memset(st.gmark, 0, n_groups)
    return 0


cdef int _state_reserve(meter_state_t* st, Py_ssize_t cap) noexcept nogil:
    if cap <= st.cap:
        return 0
    if (_realloc(<void**>&st.mean, sizeof(float), cap)
            or _realloc(<void**>&st.var, sizeof(float), cap)
            or _realloc(<void**>&st.count, sizeof(uint32_t), cap)
            or _realloc(<void**>&st.hist, sizeof(uint32_t), cap)
            or _realloc(<void**>&st.last_hot, sizeof(int64_t), cap)
            or _realloc(<void**>&st.first_hot, sizeof(int64_t), cap)
            or _realloc(<void**>&st.hot_dir, sizeof(int8_t), cap)
            or _realloc(<void**>&st.fmark, sizeof(uint8_t), cap)
            or _realloc(<void**>&st.z2thr, sizeof(double), cap)
            or _realloc(<void**>&st.z2inv, sizeof(double), cap)
            or _realloc(<void**>&st.weight, sizeof(double), cap)
            or _realloc(<void**>&st.group, sizeof(int32_t), cap)
            or _realloc(<void**>&st.active, sizeof(int32_t), cap)
            or _realloc(<void**>&st.thrbits, sizeof(double), cap)
            or _realloc(<void**>&st.cm_buf, sizeof(double), cap)
            or _realloc(<void**>&st.cm_fac, sizeof(double), cap)
            or _realloc(<void**>&st.upd, sizeof(float), cap)
            or _realloc(<void**>&st.ybuf, sizeof(float), cap)
            or _realloc(<void**>&st.zsm, sizeof(float), cap)
            or _realloc(<void**>&st.cup, sizeof(float), cap)
            or _realloc(<void**>&st.cdn, sizeof(float), cap)
            or _realloc(<void**>&st.cvr, sizeof(float), cap)
            or _realloc(<void**>&st.hthr, sizeof(double), cap)
            or _realloc(<void**>&st.z2, sizeof(double), cap)
            or _realloc(<void**>&st.zrow, sizeof(double), cap)
            or _realloc(<void**>&st.busy, sizeof(int32_t), cap)
            or _realloc(<void**>&st.flags, sizeof(uint8_t), cap)):
        return -1
    if st.use_mwin:
        if (_realloc(<void**>&st.mwin, sizeof(uint32_t), cap) or _realloc(<void**>&st.cwin, sizeof(uint32_t), cap)
                or _realloc(<void**>&st.ctick, sizeof(int64_t), cap)):
            return -1
    if st.track:
        if (_realloc(<void**>&st.acc, sizeof(float), cap)
                or _realloc(<void**>&st.hot, sizeof(uint8_t), cap)
                or _realloc(<void**>&st.hot_z, sizeof(float), cap)
                or _realloc(<void**>&st.last_z, sizeof(float), cap)
                or _realloc(<void**>&st.state, sizeof(uint8_t), cap)
                or _realloc(<void**>&st.state_age, sizeof(uint32_t), cap)
                or _realloc(<void**>&st.x1, sizeof(float), cap)
                or _realloc(<void**>&st.x2, sizeof(float), cap)):
            return -1
    st.cap = cap
    return 0


cdef int _state_grow(meter_state_t* st, const meter_cfg_t* cfg, const meter_over_t* ov,
                     Py_ssize_t n) noexcept nogil:
    """Add nodes ``st.n .. n-1``, as if they had seen zero activity since
    the first closed tick (so a stream equals its activity matrix)."""
    cdef Py_ssize_t i, j, old = st.n, cap
    cdef int64_t node
    cdef uint32_t seen
    if n <= old:
        return 0
    if n > st.cap:
        cap = st.cap * 2
        if cap < n:
            cap = n
        if _state_reserve(st, cap):
            return -1
    if st.n_closed < <int64_t>0xFFFFFFFFu:
        seen = <uint32_t>st.n_closed
    else:
        seen = 0xFFFFFFFFu
    for i in range(old, n):
        st.mean[i] = 0.0
        st.var[i] = 0.0
        st.count[i] = seen
        st.hist[i] = 0
        st.last_hot[i] = -(1LL << 62)
        st.first_hot[i] = -(1LL << 62)
        st.hot_dir[i] = 0
        st.fmark[i] = 0
        st.z2thr[i] = cfg.z2_hot
        st.z2inv[i] = cfg.z2_investigate
        st.thrbits[i] = cfg.score_threshold
        st.zsm[i] = 0.0
        st.cup[i] = 0.0
        st.cdn[i] = 0.0
        st.cvr[i] = 0.0
        st.hthr[i] = cfg.cusum_h
        st.weight[i] = 1.0
        st.group[i] = ov.groups[i] if i < ov.n_groups_arr else 0
        if st.use_mwin:
            st.mwin[i] = 0
            st.cwin[i] = 0
            st.ctick[i] = -(1LL << 62)
        if st.track:
            st.acc[i] = 0.0
            st.hot[i] = 0
            st.hot_z[i] = 0.0
            st.last_z[i] = 0.0
            st.state[i] = CALM
            st.state_age[i] = seen
            st.x1[i] = 0.0 if st.n_closed >= 1 else NAN
            st.x2[i] = 0.0 if st.n_closed >= 2 else NAN
    for j in range(ov.n_thr):
        node = ov.thr_nodes[j]
        if old <= node < n:
            st.z2thr[node] = ov.thr_z2[j]
            st.z2inv[node] = ov.thr_z2inv[j]
            st.thrbits[node] = ov.thr_bits[j]
            if cfg.detector:
                st.hthr[node] = cusum_h_of_bits(ov.thr_bits[j] + cfg.cusum_offset, cfg.cusum_k)
    for j in range(ov.n_w):
        node = ov.w_nodes[j]
        if old <= node < n:
            st.weight[node] = ov.w_values[j]
    st.n = n
    if cfg.family_correction > 0.0:
        _family_thresholds(st, cfg, ov)
    return 0


cdef void _family_thresholds(meter_state_t* st, const meter_cfg_t* cfg,
                             const meter_over_t* ov) noexcept nogil:
    """Raise every node's threshold by ``family_correction * log2(n)`` bits
    for the ``n`` nodes now tracked (a Bonferroni-style correction)."""
    cdef Py_ssize_t i, j, n = st.n
    cdef int64_t node
    cdef double corr = cfg.family_correction * log2(<double>n) if n > 1 else 0.0
    cdef double b = cfg.score_threshold + corr
    cdef double z, zi, h = INFINITY
    if n == st.corr_n:
        return
    z = z_of_bits(b)
    zi = z_of_bits(0.5 * b)
    if cfg.detector:
        h = cusum_h_of_bits(b + cfg.cusum_offset, cfg.cusum_k)
    st.corr_n = n
    for i in range(n):
        st.z2thr[i] = z * z
        st.z2inv[i] = zi * zi
        st.thrbits[i] = b
        st.hthr[i] = h
    for j in range(ov.n_thr):
        node = ov.thr_nodes[j]
        if node < n:
            b = ov.thr_bits[j] + corr
            z = z_of_bits(b)
            zi = z_of_bits(0.5 * b)
            st.z2thr[node] = z * z
            st.z2inv[node] = zi * zi
            st.thrbits[node] = b
            if cfg.detector:
                st.hthr[node] = cusum_h_of_bits(b + cfg.cusum_offset, cfg.cusum_k)


cdef int _fired_reserve(meter_state_t* st, Py_ssize_t k) noexcept nogil:
    """Room for one more fired record with ``k`` nodes."""
    cdef Py_ssize_t need
    if st.n_fired + 1 > st.fired_cap:
        need = 2 * st.fired_cap + 4
        if (_realloc(<void**>&st.fired_tick, sizeof(int64_t), need)
                or _realloc(<void**>&st.fired_count, sizeof(double), need)
                or _realloc(<void**>&st.fired_conf, sizeof(double), need)
                or _realloc(<void**>&st.fired_off, sizeof(int64_t), need + 1)):
            return -1
        st.fired_cap = need
    if st.n_snap + k > st.snap_cap:
        need = 2 * st.snap_cap + k + 8
        if (_realloc(<void**>&st.snap_node, sizeof(int32_t), need)
                or _realloc(<void**>&st.snap_first, sizeof(int64_t), need)
                or _realloc(<void**>&st.snap_z, sizeof(float), need)
                or _realloc(<void**>&st.snap_dir, sizeof(int8_t), need)):
            return -1
        st.snap_cap = need
    return 0


cdef int _snapshot(meter_state_t* st, int64_t t, double count, double conf) noexcept nogil:
    cdef Py_ssize_t j, i
    if _fired_reserve(st, st.n_active):
        return -1
    st.fired_tick[st.n_fired] = t
    st.fired_count[st.n_fired] = count
    st.fired_conf[st.n_fired] = conf
    st.fired_off[st.n_fired] = st.n_snap
    for j in range(st.n_active):
        i = st.active[j]
        st.snap_node[st.n_snap] = <int32_t>i
        st.snap_first[st.n_snap] = st.first_hot[i]
        st.snap_z[st.n_snap] = st.hot_z[i]
        st.snap_dir[st.n_snap] = st.hot_dir[i]
        st.n_snap += 1
    st.n_fired += 1
    st.fired_off[st.n_fired] = st.n_snap
    return 0


# ---------------------------------------------------------------------------
# The core: close one tick for every node
# ---------------------------------------------------------------------------

cdef void _matches_advance(meter_state_t* st, int64_t t, int64_t lo, int64_t lo_c) noexcept nogil:
    """Matches of ticks <= t enter their node's window count (per source);
    pattern matches of ticks < lo and corroborations of ticks < lo_c leave
    it. Each source has its own expiry cursor over the one queue."""
    while st.mq_in < st.mq_len and st.mq_tick[st.mq_in] <= t:
        if st.mq_src[st.mq_in]:
            st.cwin[st.mq_node[st.mq_in]] += 1
            st.ctick[st.mq_node[st.mq_in]] = st.mq_tick[st.mq_in]
        else:
            st.mwin[st.mq_node[st.mq_in]] += 1
        st.mq_in += 1
    while st.mq_out < st.mq_in and st.mq_tick[st.mq_out] < lo:
        if not st.mq_src[st.mq_out]:
            st.mwin[st.mq_node[st.mq_out]] -= 1
        st.mq_out += 1
    while st.mq_cout < st.mq_in and st.mq_tick[st.mq_cout] < lo_c:
        if st.mq_src[st.mq_cout]:
            st.cwin[st.mq_node[st.mq_cout]] -= 1
        st.mq_cout += 1


cdef int _matches_push(meter_state_t* st, int64_t tick, int32_t node, uint8_t src) noexcept nogil:
    """Queue one match (``src`` 1: corroboration), keeping the pending part
    sorted by tick (stable)."""
    cdef Py_ssize_t j, need
    cdef Py_ssize_t gone = st.mq_out if st.mq_out < st.mq_cout else st.mq_cout
    if gone > 0 and st.mq_len == st.mq_cap:
        memmove(st.mq_tick, st.mq_tick + gone, sizeof(int64_t) * (st.mq_len - gone))
        memmove(st.mq_node, st.mq_node + gone, sizeof(int32_t) * (st.mq_len - gone))
        memmove(st.mq_src, st.mq_src + gone, sizeof(uint8_t) * (st.mq_len - gone))
        st.mq_len -= gone
        st.mq_in -= gone
        st.mq_out -= gone
        st.mq_cout -= gone
    if st.mq_len == st.mq_cap:
        need = 2 * st.mq_cap + 16
        if (_realloc(<void**>&st.mq_tick, sizeof(int64_t), need) or _realloc(<void**>&st.mq_node, sizeof(int32_t), need)
                or _realloc(<void**>&st.mq_src, sizeof(uint8_t), need)):
            return -1
        st.mq_cap = need
    j = st.mq_len
    while j > st.mq_in and st.mq_tick[j - 1] > tick:
        st.mq_tick[j] = st.mq_tick[j - 1]
        st.mq_node[j] = st.mq_node[j - 1]
        st.mq_src[j] = st.mq_src[j - 1]
        j -= 1
    st.mq_tick[j] = tick
    st.mq_node[j] = node
    st.mq_src[j] = src
    st.mq_len += 1
    return 0


cdef void _common_mode(meter_state_t* st, const meter_cfg_t* cfg) noexcept nogil:
    """Per-node common-mode factor ``cm_fac`` for this tick (scored scale).

    The factor is the (lower) median, over eligible nodes, of the ratio of
    the scored value to the baseline mean; eligible: warm, finite value,
    mean > CM_MIN_MEAN. Global mode uses every eligible node; group mode
    uses the node's group when it has at least CM_MIN_NODES eligible nodes,
    else the global factor. Fewer than CM_MIN_NODES eligible nodes overall,
    or a non-positive median: factor 1.
    """
    cdef Py_ssize_t i, n = st.n, k = 0, g, G = st.n_groups, a
    cdef double y, m, f = 1.0, fg
    for i in range(n):
        y = st.ybuf[i]
        m = st.mean[i]
        if st.count[i] >= cfg.min_samples and y == y and m > CM_MIN_MEAN:
            st.cm_buf[k] = y / m
            k += 1
    if k >= CM_MIN_NODES:
        f = quickselect_median(st.cm_buf, k)
        if not (f > 0.0):
            f = 1.0
    if cfg.common_mode == 2 and G > 1:
        # Bucket the eligible ratios by group (counting sort), then a median per group.
        for g in range(G + 1):
            st.cm_gcount[g] = 0
        for i in range(n):
            y = st.ybuf[i]
            m = st.mean[i]
            if st.count[i] >= cfg.min_samples and y == y and m > CM_MIN_MEAN:
                st.cm_gcount[st.group[i] + 1] += 1
        st.cm_gstart[0] = 0
        for g in range(G):
            st.cm_gstart[g + 1] = st.cm_gstart[g] + st.cm_gcount[g + 1]
        for g in range(G):
            st.cm_gcount[g] = st.cm_gstart[g]
        for i in range(n):
            y = st.ybuf[i]
            m = st.mean[i]
            if st.count[i] >= cfg.min_samples and y == y and m > CM_MIN_MEAN:
                g = st.group[i]
                st.cm_buf[st.cm_gcount[g]] = y / m
                st.cm_gcount[g] += 1
        # cm_gcount[g] now is the end of group g's bucket; reuse it as the factor slot.
        for g in range(G):
            a = st.cm_gstart[g]
            if st.cm_gcount[g] - a >= CM_MIN_NODES:
                fg = quickselect_median(st.cm_buf + a, st.cm_gcount[g] - a)
                st.gpos[g] = fg if fg > 0.0 else f
            else:
                st.gpos[g] = f
        for i in range(n):
            st.cm_fac[i] = st.gpos[st.group[i]]
        for g in range(G):
            st.gpos[g] = 0.0
    else:
        for i in range(n):
            st.cm_fac[i] = f


cdef void _agreement(meter_state_t* st, const meter_cfg_t* cfg, const int32_t* members, Py_ssize_t k,
                     int64_t t, int64_t since, double* total_out, double* conf_out,
                     uint32_t* n_dom_out) noexcept nogil:
    """Weighted count, confidence and dominant-direction groups of ``k``
    window members at tick ``t``; a member's age counts from its first hot
    tick, or from ``since`` if later. Neutral (evidence-only) members agree
    with either direction; a corroborated member weighs
    ``corroboration_weight`` times its node weight."""
    cdef Py_ssize_t j, i
    cdef double w, dec, total = 0.0, pos = 0.0, neg = 0.0
    cdef double cw = cfg.corroboration_weight
    cdef int64_t age, start
    cdef int dom
    cdef uint32_t n_dom = 0
    cdef int32_t g
    for j in range(k):
        i = members[j]
        w = st.weight[i]
        if cw != 1.0 and st.use_mwin and st.cwin[i]:
            w *= cw
        total += w
        start = st.first_hot[i] if st.first_hot[i] > since else since
        age = t - start
        if age < DECAY_TABLE:
            dec = cfg.decay[age]
        else:
            dec = exp2(-<double>age / cfg.half_life)
        if st.hot_dir[i] >= 0:
            pos += w * dec
        if st.hot_dir[i] <= 0:
            neg += w * dec
    dom = 1 if pos >= neg else -1
    if cfg.min_groups > 1:
        for j in range(k):
            i = members[j]
            g = st.group[i]
            if st.hot_dir[i] * dom >= 0 and not st.gmark[g]:
                st.gmark[g] = 1
                st.gtouched[n_dom] = g
                n_dom += 1
        for j in range(n_dom):
            st.gmark[st.gtouched[j]] = 0
    else:
        n_dom = 1
    total_out[0] = total
    conf_out[0] = (pos if dom > 0 else neg) / total if total > 0.0 else 0.0
    n_dom_out[0] = n_dom


cdef int _close_tick(meter_state_t* st, const meter_cfg_t* cfg, const float* row,
                     int64_t t) noexcept nogil:
    """Score, hotness, states, baselines and convergence for tick ``t``.

    Returns 1 if convergence fired (rising edge or refire), 0 if not, -1 on OOM.
    """
    cdef Py_ssize_t i, j, k, n = st.n, jb, n_busy
    cdef int64_t lo = t - cfg.window_ticks + 1
    cdef float x
    cdef double z2, zz, total, conf, bonus, ftot, fconf, snap_total, snap_conf
    # Locals: extensions build with -fno-strict-aliasing, so every store
    # would otherwise reload these pointers from the state struct.
    cdef const uint8_t* flags = st.flags
    cdef uint32_t* hist = st.hist
    cdef int track = st.track
    cdef int use_bonus = st.use_mwin and cfg.detector != 1
    cdef double pb = cfg.pattern_bonus, cb = cfg.corroboration_bonus
    cdef ctas7_meter_row_cfg rc
    cdef ctas7_meter_row rw
    cdef uint32_t h, c, n_dom
    cdef int raw, craw, eraw, hot, converged, fired
    cdef Py_ssize_t n_fresh
    cdef uint32_t n_fdom
    cdef uint8_t cand, s, fl8

    # Expire window members first so a node re-entering is listed once.
    k = 0
    for j in range(st.n_active):
        i = st.active[j]
        if st.last_hot[i] >= lo:
            st.active[k] = <int32_t>i
            k += 1
    st.n_active = k

    if st.track and cfg.use_matches:
        _matches_advance(st, t, lo, t - cfg.corroboration_ticks + 1)

    _transform(row, st.ybuf, n, cfg.transform)
    if cfg.common_mode:
        _common_mode(st, cfg)

    # Per-node arithmetic for the whole row (4 nodes a step with AVX2).
    rw.y = st.ybuf
    rw.fac = st.cm_fac
    rw.mean = st.mean
    rw.var = st.var
    rw.count = st.count
    rw.hthr = st.hthr
    rw.z2thr = st.z2thr
    rw.upd = st.upd
    rw.cup = st.cup
    rw.cdn = st.cdn
    rw.cvr = st.cvr
    rw.zsm = st.zsm
    rw.z2 = st.z2
    rw.flags = st.flags
    rw.zr = st.zrow
    rc.min_samples = cfg.min_samples
    rc.transform = cfg.transform
    rc.common_mode = cfg.common_mode
    rc.detector = cfg.detector
    rc.cusum_variance = cfg.cusum_variance
    rc.var_floor = cfg.var_floor
    rc.poisson_floor = cfg.poisson_floor
    rc.smoothing = cfg.smoothing
    rc.smooth_norm = cfg.smooth_norm
    rc.cusum_k = cfg.cusum_k
    if _row_avx512:
        ctas7_meter_row_avx512(&rc, &rw, n)
    elif _row_avx2:
        ctas7_meter_row_avx2(&rc, &rw, n)
    else:
        ctas7_meter_row_scalar(&rc, &rw, n)

    # Without states or pattern bonus only nodes with persistence bits set
    # can change anything: visit just those.
    cdef int sparse = not use_bonus and not track
    n_busy = n
    if not use_bonus:
        ctas7_meter_hist(flags, hist, n, cfg.persist_mask)
    if sparse:
        n_busy = ctas7_meter_busy(hist, n, st.busy)
    for jb in range(n_busy):
        i = st.busy[jb] if sparse else jb
        eraw = 0
        if use_bonus:
            fl8 = flags[i]
            raw = fl8 & CTAS7_ROW_RAW
            craw = fl8 & CTAS7_ROW_CRAW
            z2 = st.z2[i]
            if not raw and (fl8 & CTAS7_ROW_WARM) and (st.mwin[i] or st.cwin[i]) and z2 == z2:
                bonus = pb * st.mwin[i] + cb * st.cwin[i]
                eraw = bonus > 0.0 and bits_of_z(sqrt(z2)) + bonus >= st.thrbits[i]
            h = ((hist[i] << 1) | <uint32_t>(raw != 0 or craw != 0 or eraw != 0)) & cfg.persist_mask
            hist[i] = h
        else:
            h = hist[i]
            if h == 0 and not track:
                continue  # not hot, nothing raw: no direction, window or state to update
            fl8 = flags[i]
            raw = fl8 & CTAS7_ROW_RAW
            craw = fl8 & CTAS7_ROW_CRAW
            z2 = st.z2[i]
        if h == 0 and not track:
            continue
        hot = popcount32(h) >= cfg.persist_m
        # The activity decides the direction; hot on TETH evidence alone, a
        # node is neutral (0): it agrees with either direction.
        if raw:
            st.hot_dir[i] = 1 if fl8 & CTAS7_ROW_DPOS else -1
        elif craw:
            st.hot_dir[i] = 1 if fl8 & CTAS7_ROW_CUP else -1
            raw = 1
        elif eraw:
            st.hot_dir[i] = 0
            raw = 1
        if hot:
            if st.last_hot[i] < lo:
                st.first_hot[i] = t
                st.active[st.n_active] = <int32_t>i
                st.n_active += 1
            st.last_hot[i] = t
        if track:
            x = row[i]
            c = st.count[i]
            zz = sqrt(z2) if z2 == z2 else 0.0
            if fl8 & CTAS7_ROW_DNEG:
                zz = -zz
            st.last_z[i] = <float>zz
            if raw:
                st.hot_z[i] = <float>zz
            st.hot[i] = <uint8_t>hot
            if c < cfg.min_samples:
                cand = CALM
            elif hot:
                cand = LOW if st.hot_dir[i] < 0 else HIGH
            elif raw or z2 >= st.z2inv[i]:
                cand = INVESTIGATING
            elif st.x2[i] < st.x1[i] and st.x1[i] < x:
                cand = INCREASING
            elif st.x2[i] > st.x1[i] and st.x1[i] > x:
                cand = REDUCING
            else:
                cand = CALM
            s = st.state[i]
            if cand != s and (cand == HIGH or cand == LOW or st.state_age[i] >= cfg.min_state_ticks):
                st.state[i] = cand
                st.state_age[i] = 1
            elif st.state_age[i] < 0xFFFFFFFFu:
                st.state_age[i] += 1
            st.x2[i] = st.x1[i]
            st.x1[i] = x

    ewma_update_f32(st.mean, st.var, st.count, st.upd, n, cfg.alpha, cfg.outlier_sigma, cfg.min_samples)
    st.n_closed += 1

    # Window: weighted count of distinct hot nodes; confidence = decayed
    # weight of the dominant direction as a share of that count; the
    # dominant direction's nodes must span at least min_groups groups.
    # The confidence is needed to converge, not to stay converged: it decays
    # with the members' age, and a long incident would otherwise end and
    # restart its convergence (a second alarm for the same nodes).
    _agreement(st, cfg, st.active, st.n_active, t, -(1LL << 62), &total, &conf, &n_dom)
    converged = (st.n_active > 0 and total >= cfg.min_hot_nodes - 1e-9
                 and (st.prev_converged or conf >= cfg.convergence_threshold - 1e-12)
                 and n_dom >= cfg.min_groups)
    fired = converged and not st.prev_converged
    snap_total = total
    snap_conf = conf
    if not fired and cfg.refire_new_nodes and st.n_active > 0:
        # The fresh members converge by themselves: nodes that took no part
        # in the last firing (an incident elsewhere while the first is still
        # on), took part on TETH evidence alone and now deviate in activity
        # (the intel has materialised), or have been corroborated since (new
        # intel). Judged on their own, with ages counted from the last
        # firing at the most, so stale members neither help nor dilute the
        # confidence; at least two of them (a second quorum, not one node's
        # news) unless min_hot_nodes <= 1.
        n_fresh = 0
        for j in range(st.n_active):
            i = st.active[j]
            if (st.fmark[i] == 0 or (st.fmark[i] == 2 and st.hot_dir[i] != 0)
                    or (st.use_mwin and st.ctick[i] > st.last_fire)):
                st.busy[n_fresh] = <int32_t>i
                n_fresh += 1
        _agreement(st, cfg, st.busy, n_fresh, t, st.last_fire + 1, &ftot, &fconf, &n_fdom)
        fired = ((n_fresh > 1 or (n_fresh == 1 and cfg.min_hot_nodes <= 1.0)) and ftot >= cfg.min_hot_nodes - 1e-9
                 and fconf >= cfg.convergence_threshold - 1e-12 and n_fdom >= cfg.min_groups)
        if fired:
            snap_total = ftot
            snap_conf = fconf
    if fired and cfg.refire_new_nodes:
        st.last_fire = t
        memset(st.fmark, 0, sizeof(uint8_t) * n)
        for j in range(st.n_active):
            i = st.active[j]
            st.fmark[i] = 2 if st.hot_dir[i] == 0 else 1
    st.prev_converged = converged
    st.last_count = total
    st.last_confidence = conf
    if fired and st.track:
        if _snapshot(st, t, snap_total, snap_conf):
            return -1
    return fired


cdef Py_ssize_t _stream(meter_state_t* st, const meter_cfg_t* cfg, const meter_over_t* ov,
                        const meter_event_t* ev, Py_ssize_t n_ev, int64_t max_gap,
                        uint32_t max_nodes, int64_t* bad) noexcept nogil:
    """Scatter-add a batch into the open tick, closing ticks as time moves on.

    Returns the number of ticks closed, or ERR_NODE / ERR_NOMEM (before any
    state has changed for ERR_NODE; ``bad`` gets the offending node).
    """
    cdef Py_ssize_t e, closed = 0
    cdef int64_t k, gap, todo, j
    cdef uint32_t top = 0
    cdef int have = 0, r
    for e in range(n_ev):
        if ev[e].kind < KIND_CONTROL_BASE:
            if ev[e].node >= max_nodes:
                bad[0] = ev[e].node
                return ERR_NODE
            if not have or ev[e].node > top:
                top = ev[e].node
                have = 1
    if have and <Py_ssize_t>top + 1 > st.n:
        if _state_grow(st, cfg, ov, <Py_ssize_t>top + 1):
            return ERR_NOMEM
    # Most events fall in the open tick: test its ts range, divide only when
    # not. Locals keep the compiler from reloading state after each store.
    cdef int64_t lo_ts = 0, hi_ts = 0, ts
    cdef int started = st.started
    cdef float* acc = st.acc
    if started:
        _tick_range(st.open_tick, cfg.tick_ns, &lo_ts, &hi_ts)
    for e in range(n_ev):
        ts = ev[e].ts
        if not (started and lo_ts <= ts and ts < hi_ts):
            k = _floordiv(ts, cfg.tick_ns)
            if not started:
                st.open_tick = k
                st.started = started = 1
                _tick_range(k, cfg.tick_ns, &lo_ts, &hi_ts)
            elif k > st.open_tick:
                r = _close_tick(st, cfg, acc, st.open_tick)
                if r < 0:
                    return ERR_NOMEM
                memset(acc, 0, sizeof(float) * st.n)
                closed += 1
                gap = k - st.open_tick - 1
                todo = gap if gap < max_gap else max_gap
                for j in range(todo):
                    if _close_tick(st, cfg, acc, st.open_tick + 1 + j) < 0:
                        return ERR_NOMEM
                    closed += 1
                st.skipped_ticks += <uint64_t>(gap - todo)
                st.open_tick = k
                _tick_range(k, cfg.tick_ns, &lo_ts, &hi_ts)
            elif k < st.open_tick:
                st.late_events += 1
        if ev[e].kind < KIND_CONTROL_BASE:
            acc[ev[e].node] += ev[e].value
    return closed


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------

cdef class MeterConfig:
    """Hot-loop form of ``MeterParams`` (z thresholds, masks, decay table).

    Built by ``ctas7.stages.meter``; the keyword arguments are the already
    validated parameters.
    """

    def __init__(self, *, int64_t tick_ns, double alpha, uint32_t min_samples,
                 double outlier_sigma, double var_floor, double poisson_floor,
                 double score_threshold, uint32_t persistence_m, uint32_t persistence_n,
                 uint32_t min_state_ticks, double min_hot_nodes, double convergence_threshold,
                 int64_t window_ticks, double confidence_half_life,
                 node_thresholds=(), node_weights=(), int transform=0, int common_mode=0,
                 uint32_t min_groups=1, double family_correction=0.0, double pattern_bonus=0.0,
                 double smoothing=1.0, int detector=0, double cusum_k=0.5, double cusum_offset=0.0,
                 int cusum_variance=0, double corroboration_bonus=0.0, double corroboration_weight=1.0,
                 int refire_new_nodes=0, int64_t corroboration_ticks=0):
        cdef int a
        if (tick_ns < 1 or window_ticks < 1 or not (0 < persistence_m <= persistence_n <= 32)
                or transform not in (0, 1) or common_mode not in (0, 1, 2) or min_groups < 1
                or not (family_correction >= 0.0) or not (pattern_bonus >= 0.0)
                or not (corroboration_bonus >= 0.0) or not (corroboration_weight >= 1.0)
                or not isfinite(corroboration_weight) or refire_new_nodes not in (0, 1) or corroboration_ticks < 0
                or not (0.0 < smoothing <= 1.0) or detector not in (0, 1, 2) or not (cusum_k > 0.0)
                or not isfinite(cusum_offset) or cusum_variance not in (0, 1)):
            raise ValueError("invalid meter configuration (validate through MeterParams)")
        self.kwargs = dict(
            tick_ns=tick_ns, alpha=alpha, min_samples=min_samples, outlier_sigma=outlier_sigma,
            var_floor=var_floor, poisson_floor=poisson_floor, score_threshold=score_threshold,
            persistence_m=persistence_m, persistence_n=persistence_n,
            min_state_ticks=min_state_ticks, min_hot_nodes=min_hot_nodes,
            convergence_threshold=convergence_threshold, window_ticks=window_ticks,
            confidence_half_life=confidence_half_life,
            node_thresholds=tuple(node_thresholds), node_weights=tuple(node_weights),
            transform=transform, common_mode=common_mode, min_groups=min_groups,
            family_correction=family_correction, pattern_bonus=pattern_bonus, smoothing=smoothing,
            detector=detector, cusum_k=cusum_k, cusum_offset=cusum_offset, cusum_variance=cusum_variance,
            corroboration_bonus=corroboration_bonus, corroboration_weight=corroboration_weight,
            refire_new_nodes=refire_new_nodes, corroboration_ticks=corroboration_ticks)
        self.cfg.cusum_variance = cusum_variance
        self.cfg.detector = detector
        self.cfg.cusum_k = cusum_k
        self.cfg.cusum_offset = cusum_offset
        self.cfg.cusum_h = cusum_h_of_bits(score_threshold + cusum_offset, cusum_k) if detector else INFINITY
        self.cfg.cusum_h0 = cusum_h_of_bits(cusum_offset, cusum_k) if detector else INFINITY
        self.cfg.smoothing = smoothing
        self.cfg.smooth_norm = 1.0 / sqrt(smoothing / (2.0 - smoothing))
        self.cfg.transform = transform
        self.cfg.common_mode = common_mode
        self.cfg.min_groups = min_groups
        self.cfg.family_correction = family_correction
        self.cfg.pattern_bonus = pattern_bonus
        self.cfg.corroboration_bonus = corroboration_bonus
        self.cfg.corroboration_weight = corroboration_weight
        self.cfg.refire_new_nodes = refire_new_nodes
        self.cfg.corroboration_ticks = corroboration_ticks if corroboration_ticks > 0 else window_ticks
        self.cfg.use_matches = pattern_bonus > 0.0 or corroboration_bonus > 0.0 or corroboration_weight != 1.0
        self.cfg.score_threshold = score_threshold
        self.cfg.tick_ns = tick_ns
        self.cfg.alpha = <float>alpha
        self.cfg.min_samples = min_samples
        self.cfg.outlier_sigma = <float>outlier_sigma
        self.cfg.var_floor = var_floor
        self.cfg.poisson_floor = poisson_floor
        self.cfg.z2_hot = z_of_bits(score_threshold) ** 2
        self.cfg.z2_investigate = z_of_bits(0.5 * score_threshold) ** 2
        self.cfg.persist_m = persistence_m
        self.cfg.persist_mask = 0xFFFFFFFFu if persistence_n == 32 else ((1u << persistence_n) - 1u)
        self.cfg.min_state_ticks = min_state_ticks
        self.cfg.min_hot_nodes = min_hot_nodes
        self.cfg.convergence_threshold = convergence_threshold
        self.cfg.window_ticks = window_ticks
        self.cfg.half_life = confidence_half_life
        for a in range(DECAY_TABLE):
            self.cfg.decay[a] = exp2(-<double>a / confidence_half_life)
        thr = list(node_thresholds)
        self.thr_nodes = np.array([int(k) for k, _ in thr], dtype=np.int64)
        self.thr_z2 = np.array([z_of_bits(float(v)) ** 2 for _, v in thr], dtype=np.float64)
        self.thr_z2inv = np.array([z_of_bits(0.5 * float(v)) ** 2 for _, v in thr], dtype=np.float64)
        self.thr_bits = np.array([float(v) for _, v in thr], dtype=np.float64)
        wts = list(node_weights)
        self.w_nodes = np.array([int(k) for k, _ in wts], dtype=np.int64)
        self.w_values = np.array([float(v) for _, v in wts], dtype=np.float64)

    def __reduce__(self):
        return (_config_from_kwargs, (self.kwargs,))

    @property
    def uses_matches(self):
        """Whether TETH matches can change anything (a bonus, or the
        corroboration weight): else ``add_matches`` ignores them."""
        return bool(self.cfg.use_matches)

    @property
    def z_threshold(self):
        """|z| at which a node (without override) becomes hot."""
        return sqrt(self.cfg.z2_hot)

    @property
    def tick_ns(self):
        return self.cfg.tick_ns

    @property
    def window_ticks(self):
        return self.cfg.window_ticks


def _config_from_kwargs(kwargs):
    return MeterConfig(**kwargs)


cdef void _fill_over(meter_over_t* ov, MeterConfig config, groups_arr):
    cdef const int64_t[::1] tn = config.thr_nodes
    cdef const double[::1] tz = config.thr_z2
    cdef const double[::1] ti = config.thr_z2inv
    cdef const double[::1] tb = config.thr_bits
    cdef const int64_t[::1] wn = config.w_nodes
    cdef const double[::1] wv = config.w_values
    cdef const int32_t[::1] gr = groups_arr
    ov.n_thr = tn.shape[0]
    ov.thr_nodes = &tn[0] if ov.n_thr else NULL
    ov.thr_z2 = &tz[0] if ov.n_thr else NULL
    ov.thr_z2inv = &ti[0] if ov.n_thr else NULL
    ov.thr_bits = &tb[0] if ov.n_thr else NULL
    ov.n_w = wn.shape[0]
    ov.w_nodes = &wn[0] if ov.n_w else NULL
    ov.w_values = &wv[0] if ov.n_w else NULL
    ov.n_groups_arr = gr.shape[0]
    ov.groups = &gr[0] if ov.n_groups_arr else NULL


def _groups_array(groups):
    if groups is None:
        return np.zeros(0, dtype=np.int32)
    g = np.ascontiguousarray(groups)
    if g.ndim != 1 or g.dtype.kind not in "iu":
        raise TypeError(f"groups must be a 1-d integer array (node -> group), got {g.dtype} shape {g.shape}")
    if g.size and (g.min() < 0 or g.max() >= 1 << 20):
        raise ValueError("groups must lie in [0, 2**20)")
    return g.astype(np.int32)


# ---------------------------------------------------------------------------
# Streaming meter
# ---------------------------------------------------------------------------

_STATE_ARRAYS = (
    ("mean", np.float32), ("var", np.float32), ("count", np.uint32), ("acc", np.float32),
    ("hist", np.uint32), ("last_hot", np.int64), ("first_hot", np.int64), ("hot_dir", np.int8),
    ("hot", np.uint8), ("hot_z", np.float32), ("last_z", np.float32), ("state", np.uint8),
    ("state_age", np.uint32), ("x1", np.float32), ("x2", np.float32), ("mwin", np.uint32), ("cwin", np.uint32),
    ("ctick", np.int64), ("fmark", np.uint8),
    ("zsm", np.float32), ("cup", np.float32), ("cdn", np.float32), ("cvr", np.float32),
)


cdef class MeterCore:
    """Streaming state of the convergence meter (all nodes).

    Parameters
    ----------
    config : MeterConfig
    groups : array of int or None
        Group of each node; nodes past its end are in group 0.
    n_nodes : int
        Nodes to allocate up front (more are added as events name them).
    max_gap_ticks : int
        At most this many empty ticks are closed for one jump in event time;
        the rest are skipped (counted in ``skipped_ticks``).
    max_nodes : int
        Events naming a node at or above this are rejected (ValueError).
    """

    def __cinit__(self):
        _state_zero(&self.st)

    def __init__(self, MeterConfig config not None, groups=None, Py_ssize_t n_nodes=0,
                 int64_t max_gap_ticks=100_000, uint32_t max_nodes=1 << 24):
        self.config = config
        self.groups_arr = _groups_array(groups)
        self.max_gap_ticks = max_gap_ticks
        self.max_nodes = max_nodes
        _fill_over(&self.over, config, self.groups_arr)
        n_groups = int(self.groups_arr.max()) + 1 if self.groups_arr.size else 1
        if _state_init(&self.st, 1, n_groups, 1):
            raise MemoryError()
        if n_nodes > 0 and _state_grow(&self.st, &config.cfg, &self.over, n_nodes):
            raise MemoryError()

    def __dealloc__(self):
        _state_free(&self.st)

    def process(self, const meter_event_t[::1] events):  # IN
        """Add a batch; close every tick it moves past. Returns ticks closed."""
        cdef Py_ssize_t r
        cdef int64_t bad = 0
        cdef const meter_event_t* p = &events[0] if events.shape[0] else NULL
        with nogil:
            r = _stream(&self.st, &self.config.cfg, &self.over, p, events.shape[0],
                        self.max_gap_ticks, self.max_nodes, &bad)
        if r == ERR_NODE:
            raise ValueError(f"event names node {bad}, beyond max_nodes={self.max_nodes}")
        if r == ERR_NOMEM:
            raise MemoryError("meter state could not grow")
        return r

    def step(self, const float[::1] row):  # IN
        """Close one tick with the given per-node activity (replay, tests).

        Returns True if convergence fired on this tick.
        """
        cdef int r
        cdef Py_ssize_t n = row.shape[0]
        cdef int64_t t
        if n > self.max_nodes:
            raise ValueError(f"row has {n} nodes, beyond max_nodes={self.max_nodes}")
        if n > self.st.n and _state_grow(&self.st, &self.config.cfg, &self.over, n):
            raise MemoryError()
        if n < self.st.n:
            raise ValueError(f"row has {n} nodes, the meter tracks {self.st.n}")
        if not self.st.started:
            self.st.started = 1
            self.st.open_tick = 0
        t = self.st.open_tick
        with nogil:
            r = _close_tick(&self.st, &self.config.cfg, &row[0] if n else NULL, t)
        self.st.open_tick = t + 1
        if r < 0:
            raise MemoryError()
        return bool(r)

    def add_matches(self, const int64_t[::1] ticks, const int64_t[::1] nodes,  # IN, IN
                    const uint8_t[::1] sources=None):  # IN
        """Queue TETH matches (tick and node of each) for the evidence bonus.

        A match counts for its node from the close of its tick (a tick
        already closed: the open tick) while its tick is inside the window
        (a corroboration: inside the last ``corroboration_ticks``).
        ``sources`` (or None: all 0) says what each match is: 0 a pattern
        match (``pattern_bonus`` bits), 1 a corroboration
        (``corroboration_bonus`` bits, ``corroboration_weight``). Ignored
        when neither can change anything.
        """
        cdef Py_ssize_t j, n = ticks.shape[0], top = -1
        cdef int64_t k
        cdef uint8_t src
        if nodes.shape[0] != n:
            raise ValueError(f"ticks and nodes differ in length ({n} != {nodes.shape[0]})")
        if sources is not None and sources.shape[0] != n:
            raise ValueError(f"ticks and sources differ in length ({n} != {sources.shape[0]})")
        if n == 0 or not self.config.cfg.use_matches:
            return
        for j in range(n):
            if nodes[j] < 0 or nodes[j] >= self.max_nodes:
                raise ValueError(f"match names node {nodes[j]}, outside [0, max_nodes={self.max_nodes})")
            if nodes[j] > top:
                top = nodes[j]
        if top + 1 > self.st.n and _state_grow(&self.st, &self.config.cfg, &self.over, top + 1):
            raise MemoryError()
        for j in range(n):
            k = ticks[j]
            if self.st.started and k < self.st.open_tick:
                k = self.st.open_tick
            src = 0 if sources is None else (1 if sources[j] else 0)
            if _matches_push(&self.st, k, <int32_t>nodes[j], src):
                raise MemoryError()

    def pending_matches(self):
        """``(ticks, nodes, n_in_window, sources)`` of the queued matches that
        still count or are still to come (in window first)."""
        cdef Py_ssize_t j, b = self.st.mq_len, n_in = 0
        keep = [j for j in range(b)
                if j >= (self.st.mq_cout if self.st.mq_src[j] else self.st.mq_out)]
        for j in keep:
            n_in += j < self.st.mq_in
        ticks = np.array([self.st.mq_tick[j] for j in keep], dtype=np.int64)
        nodes = np.array([self.st.mq_node[j] for j in keep], dtype=np.int64)
        sources = np.array([self.st.mq_src[j] for j in keep], dtype=np.uint8)
        return ticks, nodes, int(n_in), sources

    def take_fired(self):
        """Snapshots of fired convergences since the last call, and clear.

        Returns a list of ``(tick, weighted_count, confidence, nodes,
        first_hot_ticks, hot_z, directions)`` with numpy arrays.
        """
        out = []
        cdef Py_ssize_t f, a, b
        for f in range(self.st.n_fired):
            a = self.st.fired_off[f]
            b = self.st.fired_off[f + 1]
            out.append((
                int(self.st.fired_tick[f]), float(self.st.fired_count[f]), float(self.st.fired_conf[f]),
                np.asarray(<int32_t[:b - a]>(self.st.snap_node + a)).astype(np.int64) if b > a else np.zeros(0, np.int64),
                np.asarray(<int64_t[:b - a]>(self.st.snap_first + a)).copy() if b > a else np.zeros(0, np.int64),
                np.asarray(<float[:b - a]>(self.st.snap_z + a)).copy() if b > a else np.zeros(0, np.float32),
                np.asarray(<int8_t[:b - a]>(self.st.snap_dir + a)).copy() if b > a else np.zeros(0, np.int8),
            ))
        self.st.n_fired = 0
        self.st.n_snap = 0
        return out

    def array(self, str name):
        """A copy of one per-node state array (see ``_STATE_ARRAYS``)."""
        cdef Py_ssize_t n = self.st.n
        dt = np.dtype(dict(_STATE_ARRAYS)[name])
        out = np.empty(n, dtype=dt)
        if n:
            memcpy(<void*><size_t>out.ctypes.data, self._ptr(name), n * dt.itemsize)
        return out

    cdef void* _ptr(self, str name) except NULL:
        if name == "mean": return self.st.mean
        if name == "var": return self.st.var
        if name == "count": return self.st.count
        if name == "acc": return self.st.acc
        if name == "hist": return self.st.hist
        if name == "last_hot": return self.st.last_hot
        if name == "first_hot": return self.st.first_hot
        if name == "hot_dir": return self.st.hot_dir
        if name == "hot": return self.st.hot
        if name == "hot_z": return self.st.hot_z
        if name == "last_z": return self.st.last_z
        if name == "state": return self.st.state
        if name == "state_age": return self.st.state_age
        if name == "x1": return self.st.x1
        if name == "x2": return self.st.x2
        if name == "mwin": return self.st.mwin
        if name == "cwin": return self.st.cwin
        if name == "ctick": return self.st.ctick
        if name == "fmark": return self.st.fmark
        if name == "zsm": return self.st.zsm
        if name == "cup": return self.st.cup
        if name == "cdn": return self.st.cdn
        if name == "cvr": return self.st.cvr
        raise KeyError(name)

    def scores(self):
        """Surprisal (bits) of every node's last closed tick."""
        cdef Py_ssize_t n = self.st.n
        z = self.array("last_z")
        out = np.zeros(n, dtype=np.float32)
        zero = np.zeros(n, dtype=np.float32)
        one = np.ones(n, dtype=np.float32)
        cdef const float[::1] zv = z
        cdef const float[::1] mv = zero
        cdef const float[::1] vv = one
        cdef float[::1] ov = out
        if n:
            with nogil:
                surprisal_f32(&zv[0], &mv[0], &vv[0], &ov[0], n)
        return out

    @property
    def n_nodes(self):
        return self.st.n

    @property
    def open_tick(self):
        """Tick currently accumulating (None before the first event)."""
        return int(self.st.open_tick) if self.st.started else None

    @property
    def ticks_closed(self):
        return int(self.st.n_closed)

    @property
    def late_events(self):
        """Events whose tick was already closed (counted into the open tick)."""
        return int(self.st.late_events)

    @property
    def skipped_ticks(self):
        return int(self.st.skipped_ticks)

    @property
    def window_count(self):
        """Weighted count of distinct hot nodes in the window at the last tick."""
        return self.st.last_count

    @property
    def confidence(self):
        """Confidence at the last closed tick."""
        return self.st.last_confidence

    @property
    def converged(self):
        return bool(self.st.prev_converged)

    def window_nodes(self):
        """Nodes in the convergence window at the last closed tick."""
        cdef Py_ssize_t j
        return np.array([self.st.active[j] for j in range(self.st.n_active)], dtype=np.int64)

    def __getstate__(self):
        state = {name: self.array(name) for name, _ in _STATE_ARRAYS}
        state["active"] = self.window_nodes()
        state["scalars"] = (
            int(self.st.n_closed), int(self.st.open_tick), int(self.st.started),
            int(self.st.prev_converged), int(self.st.late_events), int(self.st.skipped_ticks),
            float(self.st.last_count), float(self.st.last_confidence), int(self.st.last_fire),
        )
        state["pending"] = self.take_fired_copy()
        state["matches"] = self.pending_matches()
        return state

    def take_fired_copy(self):
        saved_f, saved_s = self.st.n_fired, self.st.n_snap
        out = self.take_fired()
        self.st.n_fired, self.st.n_snap = saved_f, saved_s
        return out

    def __reduce__(self):
        return (_rebuild_core, (self.config, self.groups_arr, self.max_gap_ticks, self.max_nodes),
                self.__getstate__())

    def __setstate__(self, state):
        cdef Py_ssize_t n = state["mean"].shape[0]
        cdef Py_ssize_t j
        if self.st.n != 0:
            raise ValueError("MeterCore state can only be restored into a fresh core")
        if _state_grow(&self.st, &self.config.cfg, &self.over, n):
            raise MemoryError()
        for name, dt in _STATE_ARRAYS:
            arr = np.ascontiguousarray(state[name], dtype=dt)
            if arr.shape[0] != n:
                raise ValueError(f"state array {name!r} has {arr.shape[0]} entries, expected {n}")
            if n:
                memcpy(self._ptr(name), <void*><size_t>arr.ctypes.data, n * arr.dtype.itemsize)
        active = np.asarray(state["active"], dtype=np.int64)
        for j in range(active.shape[0]):
            self.st.active[j] = <int32_t>active[j]
        self.st.n_active = active.shape[0]
        (n_closed, open_tick, started, prev, late, skipped, lc, lconf, last_fire) = state["scalars"]
        self.st.last_fire = last_fire
        self.st.n_closed = n_closed
        self.st.open_tick = open_tick
        self.st.started = started
        self.st.prev_converged = prev
        self.st.late_events = late
        self.st.skipped_ticks = skipped
        self.st.last_count = lc
        self.st.last_confidence = lconf
        for (t, cnt, conf, nodes, first, hz, dirs) in state["pending"]:
            self._push_fired(t, cnt, conf, nodes, first, hz, dirs)
        mt, mn, m_in, ms = state["matches"]
        for j in range(len(mt)):
            if _matches_push(&self.st, int(mt[j]), int(mn[j]), 1 if ms[j] else 0):
                raise MemoryError()
        self.st.mq_in = m_in

    cdef _push_fired(self, int64_t t, double cnt, double conf, nodes, first, hz, dirs):
        cdef Py_ssize_t j, k = len(nodes), o
        if _fired_reserve(&self.st, k):
            raise MemoryError()
        o = self.st.n_snap
        for j in range(k):
            self.st.snap_node[o + j] = <int32_t>nodes[j]
            self.st.snap_first[o + j] = <int64_t>first[j]
            self.st.snap_z[o + j] = <float>hz[j]
            self.st.snap_dir[o + j] = <int8_t>dirs[j]
        self.st.fired_tick[self.st.n_fired] = t
        self.st.fired_count[self.st.n_fired] = cnt
        self.st.fired_conf[self.st.n_fired] = conf
        self.st.fired_off[self.st.n_fired] = o
        self.st.n_snap = o + k
        self.st.n_fired += 1
        self.st.fired_off[self.st.n_fired] = self.st.n_snap


def _rebuild_core(config, groups, max_gap_ticks, max_nodes):
    return MeterCore(config, groups, 0, max_gap_ticks, max_nodes)


# ---------------------------------------------------------------------------
# Batch entry points
# ---------------------------------------------------------------------------

cdef inline void _slide(uint32_t* win, const uint32_t* m, Py_ssize_t t, int64_t width,
                        Py_ssize_t n) noexcept nogil:
    """Per-node match counts over rows ``[t - width + 1, t]`` of ``m``
    (``n`` nodes a row): row ``t`` enters, row ``t - width`` leaves."""
    cdef Py_ssize_t i
    cdef const uint32_t* row = m + t * n
    for i in range(n):
        win[i] += row[i]
    if t >= width:
        row = m + (t - width) * n
        for i in range(n):
            win[i] -= row[i]


def evaluate_activity(const float[:, ::1] activity,  # IN
                      groups, MeterConfig config not None,
                      const uint32_t[:, ::1] evidence=None,  # IN
                      const uint32_t[:, ::1] corroboration=None):  # IN
    """Ticks (row indices) at which convergence fires, for a whole matrix.

    One call, no Python per tick: the same ``_close_tick`` as the streaming
    meter, without state tracking. ``evidence`` and ``corroboration`` (same
    shape, or None) hold the TETH pattern and corroboration matches
    completed at each (tick, node); a node's matches in the window add
    ``pattern_bonus`` / ``corroboration_bonus`` bits each, and a hot node
    with a corroboration in the window counts ``corroboration_weight``
    times its weight, as with ``MeterCore.add_matches`` (a corroboration's
    window is ``corroboration_ticks`` long).
    """
    cdef Py_ssize_t T = activity.shape[0], N = activity.shape[1], t, i, n_out = 0
    cdef meter_state_t st
    cdef meter_over_t ov
    cdef int r = 0, err = 0, use = 0
    cdef int64_t W = config.cfg.window_ticks, Wc = config.cfg.corroboration_ticks
    cdef const uint32_t* ev = NULL
    cdef const uint32_t* cv = NULL
    cdef const uint32_t* cur
    g = _groups_array(groups)
    if g.shape[0] and g.shape[0] != N:
        raise ValueError(f"groups has {g.shape[0]} entries, activity has {N} nodes")
    for name, m in (("evidence", evidence), ("corroboration", corroboration)):
        if m is not None and (m.shape[0] != T or m.shape[1] != N):
            raise ValueError(f"{name} has shape ({m.shape[0]}, {m.shape[1]}), activity ({T}, {N})")
    if T and N:
        if evidence is not None and config.cfg.pattern_bonus > 0.0:
            ev = &evidence[0, 0]
        if corroboration is not None and (config.cfg.corroboration_bonus > 0.0
                                          or config.cfg.corroboration_weight != 1.0):
            cv = &corroboration[0, 0]
        use = ev != NULL or cv != NULL
    _fill_over(&ov, config, g)
    n_groups = int(g.max()) + 1 if g.size else 1
    out = np.empty(T, dtype=np.int64)
    cdef int64_t[::1] ov_out = out
    cdef const float* base = &activity[0, 0] if T and N else NULL
    if _state_init(&st, 0, n_groups, use):
        _state_free(&st)
        raise MemoryError()
    with nogil:
        if _state_grow(&st, &config.cfg, &ov, N):
            err = 1
        elif use:
            for t in range(T):
                # Pattern matches count for W ticks, corroborations for Wc.
                if ev != NULL:
                    _slide(st.mwin, ev, t, W, N)
                if cv != NULL:
                    _slide(st.cwin, cv, t, Wc, N)
                    cur = cv + t * N
                    for i in range(N):
                        if cur[i]:
                            st.ctick[i] = t
                r = _close_tick(&st, &config.cfg, base + t * N, t)
                if r < 0:
                    err = 1
                    break
                if r:
                    ov_out[n_out] = t
                    n_out += 1
        else:
            for t in range(T):
                r = _close_tick(&st, &config.cfg, base + t * N, t)
                if r < 0:
                    err = 1
                    break
                if r:
                    ov_out[n_out] = t
                    n_out += 1
        _state_free(&st)
    if err:
        raise MemoryError()
    return out[:n_out].copy()


def cusum_threshold(double bits, double k):
    """CUSUM decision interval ``h`` whose score (``cusum_score``) is ``bits``."""
    if not k > 0.0:
        raise ValueError(f"cusum_k must be > 0, got {k}")
    return cusum_h_of_bits(bits, k)


def _cusum_score_block(s, double k):
    """``ctas7_meter_cusum_bits`` (the libm-free block version) of each
    ``s`` (tests compare it with ``cusum_score``)."""
    cdef const double[::1] sv = np.ascontiguousarray(s, dtype=np.float64)
    out = np.empty(sv.shape[0], dtype=np.float64)
    cdef double[::1] o = out
    cdef Py_ssize_t i
    if not k > 0.0:
        raise ValueError(f"cusum_k must be > 0, got {k}")
    for i in range(sv.shape[0]):
        o[i] = ctas7_meter_cusum_bits(sv[i], k)
    return out


def _cusum_scores(const float[::1] s, double k, double h0, double offset, float[::1] out, bint wide):  # IN, OUT
    """``out = max(out, cusum score - offset)`` where ``s > 0`` and ``s >= h0``,
    by the AVX2 block (``wide``) or the scalar loop (tests)."""
    if out.shape[0] != s.shape[0]:
        raise ValueError("s and out differ in length")
    if wide and not _wide:
        raise ValueError("AVX2 is not in use on this machine")
    if s.shape[0] == 0:
        return
    if wide:
        ctas7_meter_cusum_scores_avx2(&s[0], s.shape[0], k, h0, offset, &out[0])
    else:
        ctas7_meter_cusum_scores(&s[0], s.shape[0], k, h0, offset, &out[0])


def cusum_score(double s, double k):
    """Score in bits of a one-sided CUSUM value ``s`` with reference ``k``."""
    if not k > 0.0:
        raise ValueError(f"cusum_k must be > 0, got {k}")
    return cusum_bits(s, k)


DEF SERIES_CHUNK = 512   # values per block; two blocks' scratch (20 KiB) stay in L1


cdef void _series_finish(const meter_cfg_t* cfg, const float* z, const float* sb, Py_ssize_t n,
                         const float* zeros, const float* ones, float* out) noexcept nogil:
    """Scores of one block from its z (surprisal kernel) and CUSUM values."""
    cdef double h0 = cfg.cusum_h0, off_bits = cfg.cusum_offset
    if cfg.detector != 1:
        surprisal_f32(z, zeros, ones, out, n)
    if cfg.detector:
        if _series_avx:
            ctas7_meter_cusum_scores_avx2(sb, n, cfg.cusum_k, h0, off_bits, out)
        else:
            ctas7_meter_cusum_scores(sb, n, cfg.cusum_k, h0, off_bits, out)


def score_series(const float[::1] values,  # IN
                 MeterConfig config not None):
    """Score (bits) of each value against the adaptive baseline, scored
    before the baseline takes the value in; 0 during warm-up.

    The score is what the meter compares with node 0's threshold: the
    surprisal of the (smoothed) standardised residual and, with a CUSUM
    detector, ``cusum_score(S) - cusum_offset`` for the larger CUSUM ``S``
    (``"cusum"``: that alone; ``"both"``: the larger of the two).
    Blocks of SERIES_CHUNK values go through: transform; the baseline
    recurrence (in the same loop as the previous block's smoothing / CUSUM
    recurrences); the residuals (vectorised); then, once the next block's
    loop has run its recurrences, the surprisal kernel and CUSUM scores.
    """
    cdef Py_ssize_t n = values.shape[0], off = 0, m, t, j, first
    cdef Py_ssize_t p_off = 0, p_first = 0, p_m = 0, nc
    cdef int cur = 0, have_prev = 0
    cdef ctas7_meter_series_cfg sc
    cdef ctas7_meter_series_state ss
    cdef const meter_cfg_t* cfg = &config.cfg
    cdef double h = cfg.cusum_h
    cdef float* buf
    cdef float* ybuf[2]
    cdef float* zbuf[2]
    cdef float* sbuf[2]
    cdef double* rbuf[2]
    cdef float* mbuf
    cdef float* vbuf
    cdef float* zeros
    cdef float* ones
    cdef const int64_t[::1] tn = config.thr_nodes
    cdef const double[::1] tb = config.thr_bits
    out = np.zeros(n, dtype=np.float32)
    if n == 0:
        return out
    cdef float[::1] o = out
    if cfg.detector:
        for j in range(tn.shape[0]):
            if tn[j] == 0:  # node 0's own threshold sets its CUSUM cap
                h = cusum_h_of_bits(tb[j] + cfg.cusum_offset, cfg.cusum_k)
    sc.alpha = cfg.alpha
    sc.outlier_sigma = cfg.outlier_sigma
    sc.min_samples = cfg.min_samples
    sc.transform = cfg.transform
    sc.var_floor = cfg.var_floor
    sc.poisson_floor = cfg.poisson_floor
    sc.smoothing = cfg.smoothing
    sc.smooth_norm = cfg.smooth_norm
    sc.detector = cfg.detector
    sc.cusum_variance = cfg.cusum_variance
    sc.cusum_k = cfg.cusum_k
    sc.cusum_cap = 2.0 * h
    memset(&ss, 0, sizeof(ss))
    # float units: 2 x (y, z, s, residual as 2) + mean, var, zeros, ones
    buf = <float*>malloc(sizeof(float) * 14 * SERIES_CHUNK)
    if buf == NULL:
        raise MemoryError()
    for j in range(2):
        rbuf[j] = <double*>(buf + 5 * j * SERIES_CHUNK)
        ybuf[j] = buf + (5 * j + 2) * SERIES_CHUNK
        zbuf[j] = buf + (5 * j + 3) * SERIES_CHUNK
        sbuf[j] = buf + (5 * j + 4) * SERIES_CHUNK
    mbuf = buf + 10 * SERIES_CHUNK
    vbuf = buf + 11 * SERIES_CHUNK
    zeros = buf + 12 * SERIES_CHUNK
    ones = buf + 13 * SERIES_CHUNK
    with nogil:
        for t in range(SERIES_CHUNK):
            zeros[t] = 0.0
            ones[t] = 1.0
        while off < n or have_prev:
            m = n - off if n - off < SERIES_CHUNK else SERIES_CHUNK
            if m:
                _transform(&values[off], ybuf[cur], m, cfg.transform)
            nc = p_m - p_first if have_prev else 0
            first = ctas7_meter_series_step(&sc, &ss, ybuf[cur], m, mbuf, vbuf,
                                            rbuf[1 - cur], nc, zbuf[1 - cur] + p_first, sbuf[1 - cur] + p_first)
            if have_prev and nc:
                _series_finish(cfg, zbuf[1 - cur] + p_first, sbuf[1 - cur] + p_first, nc, zeros, ones,
                               &o[p_off + p_first])
            have_prev = m > 0
            if m and first < m:
                if _series_avx:
                    ctas7_meter_series_residual_avx(ybuf[cur] + first, mbuf + first, vbuf + first, m - first,
                                                    cfg.poisson_floor, cfg.var_floor, cfg.transform, rbuf[cur])
                else:
                    ctas7_meter_series_residual(ybuf[cur] + first, mbuf + first, vbuf + first, m - first,
                                                cfg.poisson_floor, cfg.var_floor, cfg.transform, rbuf[cur])
            p_off = off
            p_first = first
            p_m = m
            off += m
            cur = 1 - cur
        free(buf)
    return out
