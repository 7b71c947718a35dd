/* Convergence meter helpers (ctas7._core._meter). */
#ifndef CTAS7_METER_H
#define CTAS7_METER_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Scored value of each activity: Anscombe 2*sqrt(max(x, 0) + 3/8) when
 * `anscombe`, else x; NaN stays NaN. Float arithmetic with a correctly
 * rounded sqrt, so numpy float32 gives the same bits. SSE2 (baseline on
 * x86-64) does four at a time: the scalar libm call would set errno and
 * cannot be vectorised by the compiler. */
static inline float ctas7_meter_anscombe1(float v)
{
    v = v < 0.0f ? 0.0f : v;
    return 2.0f * sqrtf(v + 0.375f);
}

static inline void ctas7_meter_transform(const float *x, float *y, ptrdiff_t n, int anscombe)
{
    ptrdiff_t i = 0;
    if (!anscombe) {
        for (; i < n; ++i)
            y[i] = x[i];
        return;
    }
#if defined(__SSE2__)
    const __m128 zero = _mm_setzero_ps(), off = _mm_set1_ps(0.375f), two = _mm_set1_ps(2.0f);
    for (; i + 4 <= n; i += 4) {
        /* max(0, v) returns v when v is NaN (the second operand wins) */
        __m128 v = _mm_max_ps(zero, _mm_loadu_ps(x + i));
        _mm_storeu_ps(y + i, _mm_mul_ps(two, _mm_sqrt_ps(_mm_add_ps(v, off))));
    }
#endif
    for (; i < n; ++i)
        y[i] = ctas7_meter_anscombe1(x[i]);
}


#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* The same transform eight at a time (identical results: sqrt is correctly
 * rounded at every width). */
__attribute__((target("avx"))) static void ctas7_meter_transform_avx(const float *x, float *y, ptrdiff_t n,
                                                                      int anscombe)
{
    ptrdiff_t i = 0;
    if (!anscombe) {
        memmove(y, x, sizeof(float) * (size_t)(n > 0 ? n : 0));
        return;
    }
    const __m256 zero = _mm256_setzero_ps(), off = _mm256_set1_ps(0.375f), two = _mm256_set1_ps(2.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_max_ps(zero, _mm256_loadu_ps(x + i));
        _mm256_storeu_ps(y + i, _mm256_mul_ps(two, _mm256_sqrt_ps(_mm256_add_ps(v, off))));
    }
    for (; i < n; ++i)
        y[i] = ctas7_meter_anscombe1(x[i]);
}
#else
#define ctas7_meter_transform_avx ctas7_meter_transform
#endif

/* ------------------------------------------------------------------------
 * One series (score_series): the sequential part of the meter for one node
 * ------------------------------------------------------------------------
 *
 * Per value, in the meter's order: score against the baseline, then the
 * baseline takes the value in. The scoring arithmetic is the meter's
 * (_close_tick, double precision, f = 1); the EWMA step is the float32
 * formula of the numpy reference (_ref_ewma) op for op, so a series gives
 * exactly the reference's baselines. Only the recurrences run here; the
 * surprisal of the whole z array and the CUSUM scores are computed
 * afterwards in batch (see _meter.pyx score_series).
 *
 * Kept off the loop-carried chain: the clip of an outlier needs
 * sqrt(var), but it is a (rarely taken) branch, so the predicted path
 * carries only mean += a d and var = (1 - a)(var + a d d). */

#pragma GCC push_options
#pragma GCC optimize("fp-contract=off", "no-math-errno", "no-tree-slp-vectorize")

typedef struct {
    float alpha;
    float outlier_sigma;
    uint32_t min_samples;
    int transform;           /* floor: 1 after Anscombe, else |mean| */
    double var_floor;
    double poisson_floor;
    double smoothing;        /* 1: none */
    double smooth_norm;
    int detector;            /* 0: no CUSUM */
    int cusum_variance;
    double cusum_k;
    double cusum_cap;        /* 2 h */
} ctas7_meter_series_cfg;

typedef struct {
    float mean, var;
    uint32_t count;
    float zsm, cup, cdn, cvr;
} ctas7_meter_series_state;

/* Constants of the two recurrences, derived once per call. */
typedef struct {
    float alpha, sigma;
    uint32_t ms, a_cnt;    /* from a_cnt values on, 1 / (count + 1) < alpha */
    double clip2;          /* below clip2 * var, d^2 cannot reach the clip */
    double sm, sm1, norm, k, cap;
    int det, cv, smooth;
} ctas7_meter_series_k;

static inline void ctas7_meter_series_consts(const ctas7_meter_series_cfg *cfg, ctas7_meter_series_k *c)
{
    const double inv = 1.0 / (double)cfg->alpha;
    c->alpha = cfg->alpha;
    c->sigma = cfg->outlier_sigma;
    c->ms = cfg->min_samples;
    c->a_cnt = inv < 4.0e9 ? (uint32_t)inv + 3u : 0xFFFFFFFFu;
    c->clip2 = 0.998 * (double)cfg->outlier_sigma * (double)cfg->outlier_sigma;
    c->sm = cfg->smoothing;
    c->sm1 = 1.0 - cfg->smoothing;
    c->norm = cfg->smooth_norm;
    c->k = cfg->cusum_k;
    c->cap = cfg->cusum_cap;
    c->det = cfg->detector;
    c->cv = cfg->cusum_variance;
    c->smooth = cfg->smoothing < 1.0;
}

/* One EWMA step, as _ref_ewma (float32, op for op): non-finite values
 * leave the baseline alone. The clip needs sqrt(var) only when d is near
 * or past it (the margin in clip2 covers the roundings of d, half, lo and
 * hi), and it is a rarely taken branch, so the predicted path carries only
 * mean += a d and var = (1 - a)(var + a d d). */
static inline void ctas7_meter_series_ewma(const ctas7_meter_series_k *c, float x, float *mean_, float *var_,
                                           uint32_t *cnt_)
{
    float mean = *mean_, var = *var_;
    uint32_t cnt = *cnt_;
    if (fabsf(x) < INFINITY) {
        float a = c->alpha;
        if (__builtin_expect(cnt < c->a_cnt, 0)) {
            const float w = 1.0f / ((float)cnt + 1.0f);
            a = c->alpha > w ? c->alpha : w;
        }
        float d = x - mean;
        if (cnt >= c->ms && var > 0.0f && (double)d * (double)d > c->clip2 * (double)var) {
            const float half = c->sigma * sqrtf(var);
            const float lo = mean - half, hi = mean + half;
            if (x < lo || x > hi)
                d = (x < lo ? lo : hi) - mean;
        }
        *mean_ = mean + a * d;
        *var_ = (1.0f - a) * (var + a * d * d);
        *cnt_ = cnt + (cnt != 0xFFFFFFFFu);
    }
}

/* One step of the smoothing and CUSUM recurrences on r = d / sqrt(var_eff),
 * as _close_tick: returns the standardised (smoothed) residual the
 * surprisal is taken of (0 where NaN) and sets *so to the largest CUSUM. */
/* `su < 0 ? 0 : (su > cap ? cap : su)` for a non-NaN su, without branches
 * (the compiler makes unpredictable jumps of the ternaries): maxsd(0, su)
 * keeps a -0.0 as the ternary does, then minsd(cap, .). */
static inline double ctas7_meter_clamp(double su, double cap)
{
#if defined(__SSE2__)
    return _mm_cvtsd_f64(_mm_min_sd(_mm_set_sd(cap), _mm_max_sd(_mm_setzero_pd(), _mm_set_sd(su))));
#else
    return su < 0.0 ? 0.0 : (su > cap ? cap : su);
#endif
}

static inline float ctas7_meter_series_chain(const ctas7_meter_series_k *c, double r, float *zsm, float *cup,
                                             float *cdn, float *cvr, float *so)
{
    double zz = r;
    float top = 0.0f;
    if (c->det) {
        if (r == r) {
            /* A CUSUM at 0 stays there while r <= k (its common case): the
             * branch keeps the conversions off the loop-carried chain. */
            if (*cup != 0.0f || r > c->k)
                *cup = (float)ctas7_meter_clamp((double)*cup + r - c->k, c->cap);
            if (*cdn != 0.0f || -r > c->k)
                *cdn = (float)ctas7_meter_clamp((double)*cdn - r - c->k, c->cap);
            if (c->cv) {
                double q = r * r;
                if (!(q <= 4.0)) /* VAR_CLIP */
                    q = 4.0;
                *cvr = (float)ctas7_meter_clamp((double)*cvr + (q - 1.0) * 0.70710678118654752440 - c->k, c->cap);
            }
        }
        top = *cup > *cdn ? *cup : *cdn;
        if (c->cv && *cvr > top)
            top = *cvr;
    }
    if (c->smooth && r == r) {
        *zsm = (float)(c->sm1 * (double)*zsm + c->sm * r);
        zz = (double)*zsm * c->norm;
    }
    *so = top;
    return zz == zz ? (float)zz : 0.0f;
}

/* The two sequential passes, software-pipelined: the baseline of this block
 * (y[0:n] -> mb, vb: mean and var before each update) runs in the same loop
 * as the smoothing / CUSUM recurrences of the previous block (zr[0:nc] ->
 * z, s), so their independent dependency chains overlap. Returns the first
 * index of this block that is scored (count >= min_samples: warm-up never
 * ends once begun). */
static inline ptrdiff_t ctas7_meter_series_step(const ctas7_meter_series_cfg *cfg, ctas7_meter_series_state *st,
                                                const float *restrict y, ptrdiff_t n, float *restrict mb,
                                                float *restrict vb, const double *restrict zr, ptrdiff_t nc,
                                                float *restrict z, float *restrict s)
{
    ctas7_meter_series_k c;
    ctas7_meter_series_consts(cfg, &c);
    float mean = st->mean, var = st->var, zsm = st->zsm, cup = st->cup, cdn = st->cdn, cvr = st->cvr;
    uint32_t cnt = st->count;
    ptrdiff_t first = n, t = 0;
    const ptrdiff_t both = n < nc ? n : nc;
    if (cnt >= c.ms)
        first = 0;
    for (; t < both; ++t) {
        mb[t] = mean;
        vb[t] = var;
        ctas7_meter_series_ewma(&c, y[t], &mean, &var, &cnt);
        z[t] = ctas7_meter_series_chain(&c, zr[t], &zsm, &cup, &cdn, &cvr, s + t);
        if (first == n && cnt >= c.ms)
            first = t + 1;
    }
    for (ptrdiff_t u = t; u < n; ++u) {
        mb[u] = mean;
        vb[u] = var;
        ctas7_meter_series_ewma(&c, y[u], &mean, &var, &cnt);
        if (first == n && cnt >= c.ms)
            first = u + 1;
    }
    for (ptrdiff_t u = t; u < nc; ++u)
        z[u] = ctas7_meter_series_chain(&c, zr[u], &zsm, &cup, &cdn, &cvr, s + u);
    st->mean = mean;
    st->var = var;
    st->count = cnt;
    st->zsm = zsm;
    st->cup = cup;
    st->cdn = cdn;
    st->cvr = cvr;
    return first < n ? first : n;
}

/* Pass 2 (independent per value): the standardised residual
 * d / sqrt(var_eff) in double, as _close_tick computes it (sqrt and
 * division are correctly rounded, so every width gives the same bits).
 * max(a, b) below is maxpd's "a > b ? a : b", which is the scalar code's
 * NaN handling: `fl < vf ? vf : fl` and `ve >= fl ? ve : fl`. */
static inline double ctas7_meter_residual1(float y, float m, float v, double pf, double vf, int tr)
{
    const double e = (double)m;
    double ve = (double)v;
    double fl = tr ? pf : pf * fabs(e);
    fl = vf > fl ? vf : fl;
    ve = ve > fl ? ve : fl;
    return ((double)y - e) / sqrt(ve);
}

static inline void ctas7_meter_series_residual(const float *restrict y, const float *restrict mb,
                                               const float *restrict vb, ptrdiff_t n,
                                               double pf, double vf, int tr, double *restrict zr)
{
    ptrdiff_t t = 0;
#if defined(__SSE2__)
    const __m128d vpf = _mm_set1_pd(pf), vvf = _mm_set1_pd(vf);
    const __m128d absm = _mm_castsi128_pd(_mm_set1_epi64x(0x7FFFFFFFFFFFFFFFLL));
    for (; t + 2 <= n; t += 2) {
        __m128d e = _mm_cvtps_pd(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(mb + t))));
        __m128d ve = _mm_cvtps_pd(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(vb + t))));
        __m128d x = _mm_cvtps_pd(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(y + t))));
        __m128d fl = tr ? vpf : _mm_mul_pd(vpf, _mm_and_pd(e, absm));
        fl = _mm_max_pd(vvf, fl);
        ve = _mm_max_pd(ve, fl);
        _mm_storeu_pd(zr + t, _mm_div_pd(_mm_sub_pd(x, e), _mm_sqrt_pd(ve)));
    }
#endif
    for (; t < n; ++t)
        zr[t] = ctas7_meter_residual1(y[t], mb[t], vb[t], pf, vf, tr);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
__attribute__((target("avx"))) static void
ctas7_meter_series_residual_avx(const float *restrict y, const float *restrict mb,
                                const float *restrict vb, ptrdiff_t n, double pf, double vf,
                                int tr, double *restrict zr)
{
    ptrdiff_t t = 0;
    const __m256d vpf = _mm256_set1_pd(pf), vvf = _mm256_set1_pd(vf);
    const __m256d absm = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FFFFFFFFFFFFFFFLL));
    for (; t + 4 <= n; t += 4) {
        __m256d e = _mm256_cvtps_pd(_mm_loadu_ps(mb + t));
        __m256d ve = _mm256_cvtps_pd(_mm_loadu_ps(vb + t));
        __m256d x = _mm256_cvtps_pd(_mm_loadu_ps(y + t));
        __m256d fl = tr ? vpf : _mm256_mul_pd(vpf, _mm256_and_pd(e, absm));
        fl = _mm256_max_pd(vvf, fl);
        ve = _mm256_max_pd(ve, fl);
        _mm256_storeu_pd(zr + t, _mm256_div_pd(_mm256_sub_pd(x, e), _mm256_sqrt_pd(ve)));
    }
    for (; t < n; ++t)
        zr[t] = ctas7_meter_residual1(y[t], mb[t], vb[t], pf, vf, tr);
}
#define CTAS7_METER_HAVE_AVX 1
#else
#define ctas7_meter_series_residual_avx ctas7_meter_series_residual
#define CTAS7_METER_HAVE_AVX 0
#endif

/* CUSUM score in bits, log2((e^x - 1 - x) / (2 k^2)) with x = 2 k (s + 1.166)
 * (Siegmund's in-control run length; _meter.pyx cusum_bits), for a whole
 * block without libm calls. e^x: x = n ln2 + r, |r| <= ln2 / 2, degree-13
 * Taylor polynomial (truncation < 1e-17); log2: y = m 2^e, m in
 * [sqrt(1/2), sqrt(2)), log m = 2 atanh(s), s = (m - 1)/(m + 1), |s| <= 0.172,
 * series to s^23 (< 1e-19). e^x - 1 - x loses at most a factor
 * 1 / (1 - (1 + x) e^-x) <= 170 of relative precision (x >= 2 k 1.166 with
 * k >= 0.05), so the result is within 1e-13 of the libm value; x outside
 * [0.1, 700] falls back to libm. */
static inline double ctas7_meter_exp(double x)
{
    /* round to nearest integer: |x log2 e| < 2^51, so adding 1.5 * 2^52 leaves it in the ulp */
    const double n = (x * 1.4426950408889634 + 6755399441055744.0) - 6755399441055744.0;
    double r = x - n * 6.93147180369123816490e-01;   /* ln2, high part (exact product) */
    r = r - n * 1.90821492927058770002e-10;          /* low part */
    double p = 1.0 / 6227020800.0;                   /* 1/13! */
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    const uint64_t bits = (uint64_t)((int64_t)n + 1023) << 52;
    double scale;
    memcpy(&scale, &bits, 8);
    return p * scale;
}

static inline double ctas7_meter_log2(double y) /* y > 0, normal */
{
    uint64_t b;
    memcpy(&b, &y, 8);
    double e = (double)((int64_t)((b >> 52) & 0x7FF) - 1023);
    b = (b & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull;
    double m;
    memcpy(&m, &b, 8);
    if (m > 1.4142135623730951) {
        m *= 0.5;
        e += 1.0;
    }
    const double sq = (m - 1.0) / (m + 1.0), s2 = sq * sq;
    double p = 1.0 / 23.0;
    p = p * s2 + 1.0 / 21.0;
    p = p * s2 + 1.0 / 19.0;
    p = p * s2 + 1.0 / 17.0;
    p = p * s2 + 1.0 / 15.0;
    p = p * s2 + 1.0 / 13.0;
    p = p * s2 + 1.0 / 11.0;
    p = p * s2 + 1.0 / 9.0;
    p = p * s2 + 1.0 / 7.0;
    p = p * s2 + 1.0 / 5.0;
    p = p * s2 + 1.0 / 3.0;
    p = p * s2 + 1.0;
    return e + (2.0 * sq * p) * 1.4426950408889634;
}

static inline double ctas7_meter_cusum_bits(double s, double k)
{
    const double x = 2.0 * k * (s + 1.166);
    if (!(x >= 0.1 && x <= 700.0))
        return log2((expm1(x) - x) / (2.0 * k * k));
    return ctas7_meter_log2((ctas7_meter_exp(x) - 1.0 - x) / (2.0 * k * k));
}

/* out[t] = max(out[t], score of s[t] - offset) where s[t] > 0 and s[t] >= h0
 * (below h0 the score is negative); `only` (detector "cusum"): out[t] is 0
 * on entry. Consecutive equal s (a CUSUM held at its cap) reuse the score. */
static inline void ctas7_meter_cusum_scores(const float *restrict s, ptrdiff_t n, double k, double h0,
                                            double offset, float *restrict out)
{
    float last = -1.0f;
    double b = 0.0;
    for (ptrdiff_t t = 0; t < n; ++t) {
        const float v = s[t];
        if (v > 0.0f && (double)v >= h0) {
            if (v != last) {
                last = v;
                b = ctas7_meter_cusum_bits((double)v, k) - offset;
            }
            if (b > (double)out[t])
                out[t] = (float)b;
        }
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The same exp / log2 four lanes at a time (same double operations in the
 * same order, no FMA: identical bits to ctas7_meter_cusum_bits). */
__attribute__((target("avx2"))) static inline __m256d ctas7_meter_cusum_bits4(__m256d x, __m256d k2)
{
    const __m256d shift = _mm256_set1_pd(6755399441055744.0);
    const __m256d n = _mm256_sub_pd(_mm256_add_pd(_mm256_mul_pd(x, _mm256_set1_pd(1.4426950408889634)), shift), shift);
    __m256d r = _mm256_sub_pd(x, _mm256_mul_pd(n, _mm256_set1_pd(6.93147180369123816490e-01)));
    r = _mm256_sub_pd(r, _mm256_mul_pd(n, _mm256_set1_pd(1.90821492927058770002e-10)));
    static const double c[14] = {1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
                                 1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0,
                                 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0};
    __m256d p = _mm256_set1_pd(c[0]);
    for (int i = 1; i < 14; ++i)
        p = _mm256_add_pd(_mm256_mul_pd(p, r), _mm256_set1_pd(c[i]));
    /* 2^n: n + 1023 in the exponent field (n is an exact small integer) */
    const __m256i ni = _mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(n));
    const __m256d scale = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(ni, _mm256_set1_epi64x(1023)), 52));
    const __m256d one = _mm256_set1_pd(1.0);
    const __m256d y = _mm256_div_pd(_mm256_sub_pd(_mm256_sub_pd(_mm256_mul_pd(p, scale), one), x), k2);
    /* log2(y) */
    const __m256i b = _mm256_castpd_si256(y);
    const __m256d two52 = _mm256_set1_pd(4503599627370496.0);
    __m256d e = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi64(b, 52),
                                                                                   _mm256_set1_epi64x(0x7FF)),
                                                                  _mm256_castpd_si256(two52))),
                              two52);
    e = _mm256_sub_pd(e, _mm256_set1_pd(1023.0));
    __m256d m = _mm256_castsi256_pd(_mm256_or_si256(_mm256_and_si256(b, _mm256_set1_epi64x(0x000FFFFFFFFFFFFFLL)),
                                                    _mm256_set1_epi64x(0x3FF0000000000000LL)));
    const __m256d big = _mm256_cmp_pd(m, _mm256_set1_pd(1.4142135623730951), _CMP_GT_OQ);
    m = _mm256_blendv_pd(m, _mm256_mul_pd(m, _mm256_set1_pd(0.5)), big);
    e = _mm256_blendv_pd(e, _mm256_add_pd(e, one), big);
    const __m256d sq = _mm256_div_pd(_mm256_sub_pd(m, one), _mm256_add_pd(m, one)), s2 = _mm256_mul_pd(sq, sq);
    static const double d[12] = {1.0 / 23.0, 1.0 / 21.0, 1.0 / 19.0, 1.0 / 17.0, 1.0 / 15.0, 1.0 / 13.0,
                                 1.0 / 11.0, 1.0 / 9.0, 1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0, 1.0};
    __m256d q = _mm256_set1_pd(d[0]);
    for (int i = 1; i < 12; ++i)
        q = _mm256_add_pd(_mm256_mul_pd(q, s2), _mm256_set1_pd(d[i]));
    return _mm256_add_pd(e, _mm256_mul_pd(_mm256_mul_pd(_mm256_mul_pd(_mm256_set1_pd(2.0), sq), q),
                                          _mm256_set1_pd(1.4426950408889634)));
}

__attribute__((target("avx2"))) static void ctas7_meter_cusum_scores_avx2(const float *restrict s, ptrdiff_t n,
                                                                         double k, double h0, double offset,
                                                                         float *restrict out)
{
    const __m256d vk2 = _mm256_set1_pd(2.0 * k), k2 = _mm256_set1_pd(2.0 * k * k), c1166 = _mm256_set1_pd(1.166);
    const __m256d vh0 = _mm256_set1_pd(h0), zero = _mm256_setzero_pd(), voff = _mm256_set1_pd(offset);
    const __m256d lo = _mm256_set1_pd(0.1), hi = _mm256_set1_pd(700.0);
    ptrdiff_t t = 0;
    for (; t + 4 <= n; t += 4) {
        const __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(s + t));
        const __m256d use = _mm256_and_pd(_mm256_cmp_pd(v, zero, _CMP_GT_OQ), _mm256_cmp_pd(v, vh0, _CMP_GE_OQ));
        const int mu = _mm256_movemask_pd(use);
        if (!mu)
            continue;
        const __m256d x = _mm256_mul_pd(vk2, _mm256_add_pd(v, c1166));
        const int inr = _mm256_movemask_pd(_mm256_and_pd(_mm256_cmp_pd(x, lo, _CMP_GE_OQ), _mm256_cmp_pd(x, hi, _CMP_LE_OQ)));
        double b[4];
        _mm256_storeu_pd(b, _mm256_sub_pd(ctas7_meter_cusum_bits4(_mm256_blendv_pd(lo, x, _mm256_cmp_pd(x, x, _CMP_ORD_Q)), k2), voff));
        for (int j = 0; j < 4; ++j) {
            if (!((mu >> j) & 1))
                continue;
            const double bj = ((inr >> j) & 1) ? b[j] : ctas7_meter_cusum_bits((double)s[t + j], k) - offset;
            if (bj > (double)out[t + j])
                out[t + j] = (float)bj;
        }
    }
    if (t < n)
        ctas7_meter_cusum_scores(s + t, n - t, k, h0, offset, out + t);
}
#define CTAS7_METER_HAVE_CUSUM_AVX2 1
#else
#define ctas7_meter_cusum_scores_avx2 ctas7_meter_cusum_scores
#define CTAS7_METER_HAVE_CUSUM_AVX2 0
#endif

/* ------------------------------------------------------------------------
 * One tick, every node: the per-node arithmetic of _close_tick
 * ------------------------------------------------------------------------
 *
 * Everything of a closed tick that does not depend on other nodes or on the
 * node's history bits: residual against the (common-mode scaled) baseline,
 * CUSUMs, smoothing, z^2 and the two hot tests. The rest of the tick
 * (persistence, direction, window, states) reads `flags` and `z2`. The AVX2
 * variant does four nodes per step with the same double operations in the
 * same order (no FMA), so both give identical bits. */

enum {
    CTAS7_ROW_RAW = 1,     /* surprisal test: z^2 >= z2thr */
    CTAS7_ROW_CRAW = 2,    /* CUSUM test */
    CTAS7_ROW_CUP = 4,     /* CUSUM direction up */
    CTAS7_ROW_DPOS = 8,    /* d > 0 */
    CTAS7_ROW_DNEG = 16,   /* d < 0 */
    CTAS7_ROW_WARM = 32    /* count >= min_samples */
};

typedef struct {
    uint32_t min_samples;
    int transform;
    int common_mode;
    int detector;
    int cusum_variance;
    double var_floor;
    double poisson_floor;
    double smoothing;
    double smooth_norm;
    double cusum_k;
} ctas7_meter_row_cfg;

typedef struct {
    const float *y;        /* scored values (transformed) */
    const double *fac;     /* common-mode factor (common_mode only) */
    const float *mean, *var;
    const uint32_t *count;
    const double *hthr, *z2thr;
    float *upd;            /* OUT: the value the baseline takes in */
    float *cup, *cdn, *cvr, *zsm;  /* IN/OUT */
    double *z2;            /* OUT */
    uint8_t *flags;        /* OUT */
    double *zr;            /* scratch (AVX2 path): d / sqrt(var_eff) */
} ctas7_meter_row;

static inline void ctas7_meter_row1(const ctas7_meter_row_cfg *cfg, const ctas7_meter_row *r, ptrdiff_t i)
{
    const double y = (double)r->y[i];
    double f = 1.0, z2 = 0.0, d = 0.0, zr = 0.0;
    int fl8 = 0;
    if (cfg->common_mode) {
        f = r->fac[i];
        r->upd[i] = (float)(y / f);
    } else {
        r->upd[i] = r->y[i];
    }
    if (r->count[i] >= cfg->min_samples) {
        const double e = (double)r->mean[i] * f;
        double ve = (double)r->var[i] * f * f;
        double fl = cfg->poisson_floor * (cfg->transform ? 1.0 : fabs(e));
        if (fl < cfg->var_floor)
            fl = cfg->var_floor;
        if (!(ve >= fl))
            ve = fl;
        d = y - e;
        fl8 = CTAS7_ROW_WARM;
        if (cfg->detector) {
            const double h = r->hthr[i], cap = 2.0 * h, k = cfg->cusum_k;
            zr = d / sqrt(ve);
            if (zr == zr) {
                double su = (double)r->cup[i] + zr - k;
                su = su < 0.0 ? 0.0 : (su > cap ? cap : su);
                r->cup[i] = (float)su;
                su = (double)r->cdn[i] - zr - k;
                su = su < 0.0 ? 0.0 : (su > cap ? cap : su);
                r->cdn[i] = (float)su;
                if (cfg->cusum_variance) {
                    double q = zr * zr;
                    if (!(q <= 4.0))
                        q = 4.0;
                    su = (double)r->cvr[i] + (q - 1.0) * 0.70710678118654752440 - k;
                    su = su < 0.0 ? 0.0 : (su > cap ? cap : su);
                    r->cvr[i] = (float)su;
                }
            }
            double su = r->cup[i], sd = r->cdn[i];
            const int up = su >= sd;
            su = up ? su : sd;
            int craw = (su > 0.0) & (su >= h);
            int cup = up;
            if (!craw && cfg->cusum_variance && r->cvr[i] > 0.0f && (double)r->cvr[i] >= h) {
                craw = 1;
                cup = 1;
            }
            fl8 |= (craw ? CTAS7_ROW_CRAW : 0) | (cup ? CTAS7_ROW_CUP : 0);
        }
        if (cfg->smoothing < 1.0) {
            double zz = cfg->detector ? zr : d / sqrt(ve);
            if (zz == zz) {
                zz = (1.0 - cfg->smoothing) * (double)r->zsm[i] + cfg->smoothing * zz;
                r->zsm[i] = (float)zz;
                d = (double)r->zsm[i] * cfg->smooth_norm;
            }
            z2 = d * d;
        } else {
            z2 = d * d / ve;
        }
        if (cfg->detector != 1 && z2 >= r->z2thr[i])
            fl8 |= CTAS7_ROW_RAW;
        fl8 |= (d > 0.0 ? CTAS7_ROW_DPOS : 0) | (d < 0.0 ? CTAS7_ROW_DNEG : 0);
    }
    r->z2[i] = z2;
    r->flags[i] = (uint8_t)fl8;
}

static inline void ctas7_meter_row_scalar(const ctas7_meter_row_cfg *cfg, const ctas7_meter_row *r,
                                          ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; ++i)
        ctas7_meter_row1(cfg, r, i);
}

#if defined(__x86_64__) && defined(__GNUC__)
/* 4 floats -> 4 doubles */
#define CTAS7_ROW_LD(p) _mm256_cvtps_pd(_mm_loadu_ps(p))


/* 4 x 64-bit lane masks -> 4 x 32-bit lane masks */
__attribute__((target("avx2"))) static inline __m128 ctas7_row_narrow(__m256d m)
{
    __m128 lo = _mm_castpd_ps(_mm256_castpd256_pd128(m)), hi = _mm_castpd_ps(_mm256_extractf128_pd(m, 1));
    return _mm_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
}

/* One CUSUM side on 4 lanes: old + (sgn r) - k, clamped to [0, cap] as the
 * scalar code does (max(0, su) keeps a -0.0 as `su < 0 ? 0 : su` does),
 * rounded to float, kept where ok32 is clear. */
#define CTAS7_ROW_CUSUM(old_ps, sum)                                                       \
    _mm_blendv_ps(old_ps, _mm256_cvtpd_ps(_mm256_min_pd(cap, _mm256_max_pd(zero, sum))), ok32)

__attribute__((target("avx2"))) static void
ctas7_meter_row_avx2(const ctas7_meter_row_cfg *cfg, const ctas7_meter_row *r, ptrdiff_t n)
{
    const __m256d zero = _mm256_setzero_pd(), one = _mm256_set1_pd(1.0);
    const __m256d vpf = _mm256_set1_pd(cfg->poisson_floor), vvf = _mm256_set1_pd(cfg->var_floor);
    const __m256d vk = _mm256_set1_pd(cfg->cusum_k), four = _mm256_set1_pd(4.0);
    const __m256d rs2 = _mm256_set1_pd(0.70710678118654752440), two = _mm256_set1_pd(2.0);
    const __m256d sm = _mm256_set1_pd(cfg->smoothing), sm1 = _mm256_set1_pd(1.0 - cfg->smoothing);
    const __m256d norm = _mm256_set1_pd(cfg->smooth_norm);
    const __m256d absm = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FFFFFFFFFFFFFFFLL));
    const __m128i msv = _mm_set1_epi32((int)cfg->min_samples);
    const int det = cfg->detector, cv = cfg->cusum_variance, tr = cfg->transform;
    const int smooth = cfg->smoothing < 1.0, cm = cfg->common_mode;
    const ptrdiff_t n4 = n & ~(ptrdiff_t)3;
#define CTAS7_ROW_BIT(b) _mm256_castsi256_pd(_mm256_set1_epi64x(b))
    const __m256d bit_raw = CTAS7_ROW_BIT(CTAS7_ROW_RAW), bit_craw = CTAS7_ROW_BIT(CTAS7_ROW_CRAW);
    const __m256d bit_cup = CTAS7_ROW_BIT(CTAS7_ROW_CUP), bit_dpos = CTAS7_ROW_BIT(CTAS7_ROW_DPOS);
    const __m256d bit_dneg = CTAS7_ROW_BIT(CTAS7_ROW_DNEG), bit_warm = CTAS7_ROW_BIT(CTAS7_ROW_WARM);
#undef CTAS7_ROW_BIT
    ptrdiff_t i = 0;
    /* First the divisions alone: a short loop body lets many blocks be in
     * flight, so the divider, not its latency, sets the pace. zr holds
     * d / sqrt(var_eff) (z2 gets d^2 / var_eff when not smoothing). */
    for (i = 0; i < n4; i += 4) {
        const __m256d f = cm ? _mm256_loadu_pd(r->fac + i) : one;
        const __m256d e = _mm256_mul_pd(CTAS7_ROW_LD(r->mean + i), f);
        __m256d ve = _mm256_mul_pd(_mm256_mul_pd(CTAS7_ROW_LD(r->var + i), f), f);
        __m256d fl = tr ? vpf : _mm256_mul_pd(vpf, _mm256_and_pd(e, absm));
        fl = _mm256_max_pd(vvf, fl);   /* fl < vf ? vf : fl */
        ve = _mm256_max_pd(ve, fl);    /* ve >= fl ? ve : fl (NaN ve -> fl) */
        const __m256d d = _mm256_sub_pd(CTAS7_ROW_LD(r->y + i), e);
        if (det || smooth)
            _mm256_storeu_pd(r->zr + i, _mm256_div_pd(d, _mm256_sqrt_pd(ve)));
        if (!smooth)
            _mm256_storeu_pd(r->z2 + i, _mm256_div_pd(_mm256_mul_pd(d, d), ve));
    }
    for (i = 0; i < n4; i += 4) {
        const __m128i c = _mm_loadu_si128((const __m128i *)(r->count + i));
        /* c >= min_samples, unsigned: max(c, ms) == c */
        const __m128i w32 = _mm_cmpeq_epi32(_mm_max_epu32(c, msv), c);
        if (_mm_testz_si128(w32, w32)) { /* no warm node: only upd and zeros */
            for (ptrdiff_t j = i; j < i + 4; ++j)
                ctas7_meter_row1(cfg, r, j);
            continue;
        }
        const __m256d warm = _mm256_castsi256_pd(_mm256_cvtepi32_epi64(w32));
        const __m128 y32 = _mm_loadu_ps(r->y + i);
        const __m256d y = _mm256_cvtps_pd(y32);
        __m256d f = one;
        if (cm) {
            f = _mm256_loadu_pd(r->fac + i);
            _mm_storeu_ps(r->upd + i, _mm256_cvtpd_ps(_mm256_div_pd(y, f)));
        } else {
            _mm_storeu_ps(r->upd + i, y32);
        }
        const __m256d e = _mm256_mul_pd(CTAS7_ROW_LD(r->mean + i), f);
        __m256d d = _mm256_sub_pd(y, e);
        __m256d zr = zero, ok = zero;
        __m128 ok32 = _mm_setzero_ps();
        __m256d fv = zero; /* flag bits per lane, OR-ed as 64-bit integers */
        if (det || smooth) {
            zr = _mm256_loadu_pd(r->zr + i);
            ok = _mm256_and_pd(warm, _mm256_cmp_pd(zr, zr, _CMP_ORD_Q));
            ok32 = ctas7_row_narrow(ok);
        }
        if (det) {
            const __m256d h = _mm256_loadu_pd(r->hthr + i), cap = _mm256_mul_pd(two, h);
            __m128 cu = _mm_loadu_ps(r->cup + i), cd = _mm_loadu_ps(r->cdn + i);
            cu = CTAS7_ROW_CUSUM(cu, _mm256_sub_pd(_mm256_add_pd(_mm256_cvtps_pd(cu), zr), vk));
            cd = CTAS7_ROW_CUSUM(cd, _mm256_sub_pd(_mm256_sub_pd(_mm256_cvtps_pd(cd), zr), vk));
            _mm_storeu_ps(r->cup + i, cu);
            _mm_storeu_ps(r->cdn + i, cd);
            const __m128 up = _mm_cmp_ps(cu, cd, _CMP_GE_OQ);
            const __m256d top = _mm256_cvtps_pd(_mm_blendv_ps(cd, cu, up));
            __m256d craw = _mm256_and_pd(_mm256_cmp_pd(top, zero, _CMP_GT_OQ), _mm256_cmp_pd(top, h, _CMP_GE_OQ));
            __m256d upm = _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm_castps_si128(up)));
            if (cv) {
                __m128 cr = _mm_loadu_ps(r->cvr + i);
                __m256d q = _mm256_mul_pd(zr, zr);
                q = _mm256_blendv_pd(four, q, _mm256_cmp_pd(q, four, _CMP_LE_OQ)); /* !(q <= 4) -> 4 */
                cr = CTAS7_ROW_CUSUM(cr, _mm256_sub_pd(_mm256_add_pd(_mm256_cvtps_pd(cr),
                                                                      _mm256_mul_pd(_mm256_sub_pd(q, one), rs2)), vk));
                _mm_storeu_ps(r->cvr + i, cr);
                const __m256d crd = _mm256_cvtps_pd(cr);
                const __m256d vh = _mm256_andnot_pd(craw, _mm256_and_pd(_mm256_cmp_pd(crd, zero, _CMP_GT_OQ),
                                                                         _mm256_cmp_pd(crd, h, _CMP_GE_OQ)));
                craw = _mm256_or_pd(craw, vh);
                upm = _mm256_or_pd(upm, vh);
            }
            fv = _mm256_or_pd(_mm256_and_pd(craw, bit_craw), _mm256_and_pd(upm, bit_cup));
        }
        __m256d z2;
        if (smooth) {
            __m128 zs = _mm_loadu_ps(r->zsm + i);
            const __m128 nz = _mm256_cvtpd_ps(
                _mm256_add_pd(_mm256_mul_pd(sm1, _mm256_cvtps_pd(zs)), _mm256_mul_pd(sm, zr)));
            zs = _mm_blendv_ps(zs, nz, ok32);
            _mm_storeu_ps(r->zsm + i, zs);
            d = _mm256_blendv_pd(d, _mm256_mul_pd(_mm256_cvtps_pd(zs), norm), ok);
            z2 = _mm256_mul_pd(d, d);
        } else {
            z2 = _mm256_loadu_pd(r->z2 + i);
        }
        z2 = _mm256_and_pd(z2, warm);
        _mm256_storeu_pd(r->z2 + i, z2);
        if (det != 1)
            fv = _mm256_or_pd(fv, _mm256_and_pd(_mm256_cmp_pd(z2, _mm256_loadu_pd(r->z2thr + i), _CMP_GE_OQ), bit_raw));
        fv = _mm256_or_pd(fv, _mm256_and_pd(_mm256_cmp_pd(d, zero, _CMP_GT_OQ), bit_dpos));
        fv = _mm256_or_pd(fv, _mm256_and_pd(_mm256_cmp_pd(d, zero, _CMP_LT_OQ), bit_dneg));
        fv = _mm256_and_pd(warm, _mm256_or_pd(fv, bit_warm)); /* a cold node has no flags */
        /* 4 x 64-bit -> 4 bytes: low dwords, then two unsigned-saturating packs */
        const __m128i f32 = _mm_castps_si128(ctas7_row_narrow(fv));
        const __m128i f8 = _mm_packus_epi16(_mm_packus_epi32(f32, f32), _mm_setzero_si128());
        const uint32_t fl32 = (uint32_t)_mm_cvtsi128_si32(f8);
        memcpy(r->flags + i, &fl32, 4); /* little-endian: byte j is lane j */
    }
    for (; i < n; ++i)
        ctas7_meter_row1(cfg, r, i);
}
#define CTAS7_METER_HAVE_ROW_AVX2 1

/* The same row, 8 nodes a step with AVX-512 F + DQ: half the instructions
 * per node of the AVX2 loop. Same double operations in the same order (FMA
 * contraction is off in this header), so identical bits. */
#define CTAS7_ROW8_LD(p) _mm512_cvtps_pd(_mm256_loadu_ps(p))
#define CTAS7_ROW8_F(v) _mm512_cvtps_pd(_mm512_cvtpd_ps(v)) /* round to float, back to double */

__attribute__((target("avx512f,avx512dq,avx2"))) static void
ctas7_meter_row_avx512(const ctas7_meter_row_cfg *cfg, const ctas7_meter_row *r, ptrdiff_t n)
{
    const __m512d zero = _mm512_setzero_pd(), one = _mm512_set1_pd(1.0);
    const __m512d vpf = _mm512_set1_pd(cfg->poisson_floor), vvf = _mm512_set1_pd(cfg->var_floor);
    const __m512d vk = _mm512_set1_pd(cfg->cusum_k), four = _mm512_set1_pd(4.0);
    const __m512d rs2 = _mm512_set1_pd(0.70710678118654752440), two = _mm512_set1_pd(2.0);
    const __m512d sm = _mm512_set1_pd(cfg->smoothing), sm1 = _mm512_set1_pd(1.0 - cfg->smoothing);
    const __m512d norm = _mm512_set1_pd(cfg->smooth_norm);
    const __m512d absm = _mm512_castsi512_pd(_mm512_set1_epi64(0x7FFFFFFFFFFFFFFFLL));
    const __m512i msv = _mm512_set1_epi64((long long)cfg->min_samples);
    const int det = cfg->detector, cv = cfg->cusum_variance, tr = cfg->transform;
    const int smooth = cfg->smoothing < 1.0, cm = cfg->common_mode;
    const ptrdiff_t n8 = n & ~(ptrdiff_t)7;
    ptrdiff_t i;
    /* The divisions of a block (divider-bound) are issued one block ahead of
     * the rest of the row (ALU-bound), so the two overlap. */
#define CTAS7_ROW8_DIV(b)                                                                      \
    do {                                                                                       \
        const __m512d f_ = cm ? _mm512_loadu_pd(r->fac + (b)) : one;                           \
        const __m512d e_ = _mm512_mul_pd(CTAS7_ROW8_LD(r->mean + (b)), f_);                    \
        __m512d ve_ = _mm512_mul_pd(_mm512_mul_pd(CTAS7_ROW8_LD(r->var + (b)), f_), f_);       \
        __m512d fl_ = tr ? vpf : _mm512_mul_pd(vpf, _mm512_and_pd(e_, absm));                  \
        fl_ = _mm512_max_pd(vvf, fl_);                                                         \
        ve_ = _mm512_max_pd(ve_, fl_);                                                         \
        const __m512d d_ = _mm512_sub_pd(CTAS7_ROW8_LD(r->y + (b)), e_);                       \
        if (det || smooth)                                                                     \
            _mm512_storeu_pd(r->zr + (b), _mm512_div_pd(d_, _mm512_sqrt_pd(ve_)));             \
        if (!smooth)                                                                           \
            _mm512_storeu_pd(r->z2 + (b), _mm512_div_pd(_mm512_mul_pd(d_, d_), ve_));          \
    } while (0)
    if (n8)
        CTAS7_ROW8_DIV(0);
    for (i = 0; i < n8; i += 8) {
        if (i + 8 < n8)
            CTAS7_ROW8_DIV(i + 8);
        const __mmask8 warm = _mm512_cmpge_epu64_mask(
            _mm512_cvtepu32_epi64(_mm256_loadu_si256((const __m256i *)(r->count + i))), msv);
        if (!warm) {
            for (ptrdiff_t j = i; j < i + 8; ++j)
                ctas7_meter_row1(cfg, r, j);
            continue;
        }
        const __m256 y32 = _mm256_loadu_ps(r->y + i);
        const __m512d y = _mm512_cvtps_pd(y32);
        __m512d f = one;
        if (cm) {
            f = _mm512_loadu_pd(r->fac + i);
            _mm256_storeu_ps(r->upd + i, _mm512_cvtpd_ps(_mm512_div_pd(y, f)));
        } else {
            _mm256_storeu_ps(r->upd + i, y32);
        }
        const __m512d e = _mm512_mul_pd(CTAS7_ROW8_LD(r->mean + i), f);
        __m512d d = _mm512_sub_pd(y, e);
        __m512d zr = zero;
        __mmask8 ok = 0;
        __m512i fv = _mm512_setzero_si512();
        if (det || smooth) {
            zr = _mm512_loadu_pd(r->zr + i);
            ok = _mm512_mask_cmp_pd_mask(warm, zr, zr, _CMP_ORD_Q);
        }
        if (det) {
            const __m512d h = _mm512_loadu_pd(r->hthr + i), cap = _mm512_mul_pd(two, h);
            __m512d cu = CTAS7_ROW8_LD(r->cup + i), cd = CTAS7_ROW8_LD(r->cdn + i);
            /* su < 0 ? 0 : (su > cap ? cap : su), as max(0, su) then min(cap, .) */
            cu = _mm512_mask_mov_pd(cu, ok, CTAS7_ROW8_F(_mm512_min_pd(cap, _mm512_max_pd(zero,
                                        _mm512_sub_pd(_mm512_add_pd(cu, zr), vk)))));
            cd = _mm512_mask_mov_pd(cd, ok, CTAS7_ROW8_F(_mm512_min_pd(cap, _mm512_max_pd(zero,
                                        _mm512_sub_pd(_mm512_sub_pd(cd, zr), vk)))));
            _mm256_storeu_ps(r->cup + i, _mm512_cvtpd_ps(cu));
            _mm256_storeu_ps(r->cdn + i, _mm512_cvtpd_ps(cd));
            const __mmask8 up = _mm512_cmp_pd_mask(cu, cd, _CMP_GE_OQ);
            const __m512d top = _mm512_mask_mov_pd(cd, up, cu);
            __mmask8 craw = _mm512_cmp_pd_mask(top, zero, _CMP_GT_OQ) & _mm512_cmp_pd_mask(top, h, _CMP_GE_OQ);
            __mmask8 upm = up;
            if (cv) {
                __m512d cr = CTAS7_ROW8_LD(r->cvr + i);
                __m512d q = _mm512_mul_pd(zr, zr);
                q = _mm512_mask_mov_pd(four, _mm512_cmp_pd_mask(q, four, _CMP_LE_OQ), q); /* !(q <= 4) -> 4 */
                cr = _mm512_mask_mov_pd(cr, ok, CTAS7_ROW8_F(_mm512_min_pd(cap, _mm512_max_pd(zero,
                         _mm512_sub_pd(_mm512_add_pd(cr, _mm512_mul_pd(_mm512_sub_pd(q, one), rs2)), vk)))));
                _mm256_storeu_ps(r->cvr + i, _mm512_cvtpd_ps(cr));
                const __mmask8 vh = (__mmask8)(~craw & _mm512_cmp_pd_mask(cr, zero, _CMP_GT_OQ)
                                                & _mm512_cmp_pd_mask(cr, h, _CMP_GE_OQ));
                craw |= vh;
                upm |= vh;
            }
            fv = _mm512_or_si512(_mm512_maskz_mov_epi64(craw, _mm512_set1_epi64(CTAS7_ROW_CRAW)),
                                 _mm512_maskz_mov_epi64(upm, _mm512_set1_epi64(CTAS7_ROW_CUP)));
        }
        __m512d z2;
        if (smooth) {
            __m512d zs = CTAS7_ROW8_LD(r->zsm + i);
            zs = _mm512_mask_mov_pd(zs, ok, CTAS7_ROW8_F(_mm512_add_pd(_mm512_mul_pd(sm1, zs), _mm512_mul_pd(sm, zr))));
            _mm256_storeu_ps(r->zsm + i, _mm512_cvtpd_ps(zs));
            d = _mm512_mask_mov_pd(d, ok, _mm512_mul_pd(zs, norm));
            z2 = _mm512_mul_pd(d, d);
        } else {
            z2 = _mm512_loadu_pd(r->z2 + i);
        }
        z2 = _mm512_maskz_mov_pd(warm, z2);
        _mm512_storeu_pd(r->z2 + i, z2);
        if (det != 1)
            fv = _mm512_mask_or_epi64(fv, _mm512_cmp_pd_mask(z2, _mm512_loadu_pd(r->z2thr + i), _CMP_GE_OQ), fv,
                                      _mm512_set1_epi64(CTAS7_ROW_RAW));
        fv = _mm512_mask_or_epi64(fv, _mm512_cmp_pd_mask(d, zero, _CMP_GT_OQ), fv, _mm512_set1_epi64(CTAS7_ROW_DPOS));
        fv = _mm512_mask_or_epi64(fv, _mm512_cmp_pd_mask(d, zero, _CMP_LT_OQ), fv, _mm512_set1_epi64(CTAS7_ROW_DNEG));
        fv = _mm512_maskz_or_epi64(warm, fv, _mm512_set1_epi64(CTAS7_ROW_WARM)); /* a cold node has no flags */
        _mm_storel_epi64((__m128i *)(r->flags + i), _mm512_cvtepi64_epi8(fv));
    }
#undef CTAS7_ROW8_DIV
    for (; i < n; ++i)
        ctas7_meter_row1(cfg, r, i);
}
#define CTAS7_METER_HAVE_ROW_AVX512 1
#else
#define ctas7_meter_row_avx2 ctas7_meter_row_scalar
#define ctas7_meter_row_avx512 ctas7_meter_row_scalar
#define CTAS7_METER_HAVE_ROW_AVX2 0
#define CTAS7_METER_HAVE_ROW_AVX512 0
#endif

/* Persistence bits of every node: shift in "raw-hot this tick" (the RAW or
 * CRAW flag). Independent per node; the compiler vectorises it. */
static inline void ctas7_meter_hist(const uint8_t *restrict flags, uint32_t *restrict hist,
                                    ptrdiff_t n, uint32_t mask)
{
    for (ptrdiff_t i = 0; i < n; ++i)
        hist[i] = ((hist[i] << 1) | (uint32_t)((flags[i] & (CTAS7_ROW_RAW | CTAS7_ROW_CRAW)) != 0)) & mask;
}

/* Indices of the nodes whose persistence bits are not all zero (the only
 * ones whose direction, window membership or hotness can change when
 * states are not tracked), in increasing order; returns their number. */
static inline ptrdiff_t ctas7_meter_busy(const uint32_t *restrict hist, ptrdiff_t n, int32_t *restrict idx)
{
    ptrdiff_t i = 0, k = 0;
#if defined(__SSE2__)
    const __m128i z = _mm_setzero_si128();
    for (; i + 8 <= n; i += 8) {
        const __m128i a = _mm_loadu_si128((const __m128i *)(hist + i));
        const __m128i b = _mm_loadu_si128((const __m128i *)(hist + i + 4));
        const int m = _mm_movemask_epi8(_mm_packs_epi32(_mm_cmpeq_epi32(a, z), _mm_cmpeq_epi32(b, z)));
        if (m == 0xFFFF)
            continue;
        for (ptrdiff_t j = i; j < i + 8; ++j)
            if (hist[j])
                idx[k++] = (int32_t)j;
    }
#endif
    for (; i < n; ++i)
        if (hist[i])
            idx[k++] = (int32_t)i;
    return k;
}

#pragma GCC pop_options

#endif /* CTAS7_METER_H */
