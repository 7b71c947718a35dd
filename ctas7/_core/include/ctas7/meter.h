/* Convergence meter helpers (ctas7._core._meter). */
#ifndef CTAS7_METER_H
#define CTAS7_METER_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
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

/* Pass 1 (sequential): the baseline each value is scored against, then the
 * EWMA step. mb/vb get mean and var before the update; returns the first
 * index scored (count >= min_samples; warm-up never ends once begun). */
static inline ptrdiff_t ctas7_meter_series_baseline(const float *restrict y, ptrdiff_t n,
                                                    const ctas7_meter_series_cfg *cfg,
                                                    ctas7_meter_series_state *st,
                                                    float *restrict mb, float *restrict vb)
{
    const float alpha = cfg->alpha, sigma = cfg->outlier_sigma;
    const uint32_t ms = cfg->min_samples;
    float mean = st->mean, var = st->var;
    uint32_t cnt = st->count;
    ptrdiff_t first = n;
    /* From a_cnt values on, 1 / (count + 1) < alpha: the rate is alpha. */
    const double inv = 1.0 / (double)alpha;
    const uint32_t a_cnt = inv < 4.0e9 ? (uint32_t)inv + 3u : 0xFFFFFFFFu;
    const double clip2 = 0.998 * (double)sigma * (double)sigma;
    for (ptrdiff_t t = 0; t < n; ++t) {
        const float x = y[t];
        if (first == n && cnt >= ms)
            first = t;
        mb[t] = mean;
        vb[t] = var;
        /* EWMA, as _ref_ewma: non-finite values leave the baseline alone */
        if (fabsf(x) < INFINITY) {
            float a = alpha;
            if (__builtin_expect(cnt < a_cnt, 0)) {
                const float w = 1.0f / ((float)cnt + 1.0f);
                a = alpha > w ? alpha : w;
            }
            float d = x - mean;
            /* Clip test: no sqrt unless d is near or past the clip (the
             * margin covers the roundings of d, half, lo and hi). */
            if (cnt >= ms && var > 0.0f && (double)d * (double)d > clip2 * (double)var) {
                const float half = sigma * sqrtf(var);
                const float lo = mean - half, hi = mean + half;
                if (x < lo || x > hi)
                    d = (x < lo ? lo : hi) - mean;
            }
            mean = mean + a * d;
            var = (1.0f - a) * (var + a * d * d);
            cnt += cnt != 0xFFFFFFFFu;
        }
    }
    st->mean = mean;
    st->var = var;
    st->count = cnt;
    return first;
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

/* Pass 3 (sequential): smoothing and CUSUMs of zr. z[t]: the standardised
 * (smoothed) residual the surprisal is taken of (0 where NaN); s[t]: the
 * largest CUSUM after the update (0 without CUSUM). */
static inline void ctas7_meter_series_chains(const double *restrict zr, ptrdiff_t n,
                                             const ctas7_meter_series_cfg *cfg,
                                             ctas7_meter_series_state *st,
                                             float *restrict z, float *restrict s)
{
    const double sm = cfg->smoothing, norm = cfg->smooth_norm, k = cfg->cusum_k, cap = cfg->cusum_cap;
    const int det = cfg->detector, cv = cfg->cusum_variance;
    float zsm = st->zsm, cup = st->cup, cdn = st->cdn, cvr = st->cvr;
    if (!det && !(sm < 1.0)) {
        for (ptrdiff_t t = 0; t < n; ++t) {
            const double v = zr[t];
            z[t] = v == v ? (float)v : 0.0f;
            s[t] = 0.0f;
        }
        return;
    }
    for (ptrdiff_t t = 0; t < n; ++t) {
        const double r = zr[t];
        double zz = r;
        float so = 0.0f;
        if (det) {
            if (r == r) {
                /* A CUSUM at 0 stays there while r <= k (its common case):
                 * the branch keeps the conversions off the chain. */
                if (cup != 0.0f || r > k) {
                    double su = (double)cup + r - k;
                    su = su < 0.0 ? 0.0 : (su > cap ? cap : su);
                    cup = (float)su;
                }
                if (cdn != 0.0f || -r > k) {
                    double su = (double)cdn - r - k;
                    su = su < 0.0 ? 0.0 : (su > cap ? cap : su);
                    cdn = (float)su;
                }
                if (cv) {
                    double q = r * r;
                    if (!(q <= 4.0)) /* VAR_CLIP */
                        q = 4.0;
                    double su = (double)cvr + (q - 1.0) * 0.70710678118654752440 - k;
                    su = su < 0.0 ? 0.0 : (su > cap ? cap : su);
                    cvr = (float)su;
                }
            }
            so = cup > cdn ? cup : cdn;
            if (cv && cvr > so)
                so = cvr;
        }
        if (sm < 1.0 && r == r) {
            zsm = (float)((1.0 - sm) * (double)zsm + sm * r);
            zz = (double)zsm * norm;
        }
        z[t] = zz == zz ? (float)zz : 0.0f;
        s[t] = so;
    }
    st->zsm = zsm;
    st->cup = cup;
    st->cdn = cdn;
    st->cvr = cvr;
}

#pragma GCC pop_options

#endif /* CTAS7_METER_H */
