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
#pragma GCC optimize("fp-contract=off")

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

/* z[t]: the standardised (smoothed) residual the surprisal is taken of
 * (0 during warm-up and where it is NaN); s[t]: the largest CUSUM after
 * the update (0 during warm-up or without CUSUM). */
static inline void ctas7_meter_series(const float *restrict y, ptrdiff_t n,
                                      const ctas7_meter_series_cfg *cfg,
                                      ctas7_meter_series_state *st,
                                      float *restrict z, float *restrict s)
{
    const float alpha = cfg->alpha, sigma = cfg->outlier_sigma;
    const uint32_t ms = cfg->min_samples;
    const double vf = cfg->var_floor, pf = cfg->poisson_floor, sm = cfg->smoothing;
    const double norm = cfg->smooth_norm, k = cfg->cusum_k, cap = cfg->cusum_cap;
    const int tr = cfg->transform, det = cfg->detector, cv = cfg->cusum_variance, smooth = sm < 1.0;
    float mean = st->mean, var = st->var, zsm = st->zsm, cup = st->cup, cdn = st->cdn, cvr = st->cvr;
    uint32_t cnt = st->count;
    for (ptrdiff_t t = 0; t < n; ++t) {
        const float x = y[t];
        float zo = 0.0f, so = 0.0f;
        if (cnt >= ms) {
            const double e = (double)mean;
            double ve = (double)var;
            double fl = pf * (tr ? 1.0 : fabs(e));
            if (fl < vf)
                fl = vf;
            if (!(ve >= fl))
                ve = fl;
            const double d = (double)x - e;
            const double zr = d / sqrt(ve);
            double zz = zr;
            if (det && zr == zr) {
                double su = (double)cup + zr - k;
                su = su < 0.0 ? 0.0 : (su > cap ? cap : su);
                cup = (float)su;
                su = (double)cdn - zr - k;
                su = su < 0.0 ? 0.0 : (su > cap ? cap : su);
                cdn = (float)su;
                if (cv) {
                    double q = zr * zr;
                    if (!(q <= 4.0)) /* VAR_CLIP */
                        q = 4.0;
                    su = (double)cvr + (q - 1.0) * 0.70710678118654752440 - k;
                    su = su < 0.0 ? 0.0 : (su > cap ? cap : su);
                    cvr = (float)su;
                }
            }
            if (det) {
                so = cup > cdn ? cup : cdn;
                if (cv && cvr > so)
                    so = cvr;
            }
            if (smooth && zr == zr) {
                zsm = (float)((1.0 - sm) * (double)zsm + sm * zr);
                zz = (double)zsm * norm;
            }
            zo = zz == zz ? (float)zz : 0.0f;
        }
        z[t] = zo;
        s[t] = so;
        /* EWMA, as _ref_ewma: non-finite values leave the baseline alone */
        if (fabsf(x) < INFINITY) {
            const float w = 1.0f / ((float)cnt + 1.0f);
            const float a = alpha > w ? alpha : w;
            float d = x - mean;
            if (cnt >= ms && var > 0.0f) {
                const float half = sigma * sqrtf(var);
                const float lo = mean - half, hi = mean + half;
                if (__builtin_expect(x < lo || x > hi, 0))
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
    st->zsm = zsm;
    st->cup = cup;
    st->cdn = cdn;
    st->cvr = cvr;
}

#pragma GCC pop_options

#endif /* CTAS7_METER_H */
