/* ctas7/kernels.h -- per-node scoring kernels over float32 arrays.
 *
 * Every kernel exists as scalar C (always built) and, on x86, as AVX2+FMA
 * and AVX-512 variants compiled with function-level target attributes.  The
 * caller picks one variant through ctas7_kernel_table_for() after
 * ctas7_simd_supported() (simd.h) said the CPU can run it.
 *
 * Semantics (shared by all variants; ctas7/kernels.py has the float64
 * numpy reference):
 *
 *   deviation   p = min(|x - b| / max(b, 1), 1); a NaN p (NaN input, or
 *               inf - inf, inf / inf) scores 0.
 *   binary entropy   H(p) = -p log2 p - (1-p) log2(1-p), H(0) = H(1) = 0.
 *   relative score   p * log2(e).
 *   surprisal   s = |x - mean| / sqrt(var) / sqrt(2), out = -log2 erfc(s)
 *               = -log2 P(|Z| >= |z|) in bits.  var <= 0: 0 if x == mean
 *               else +inf.  NaN anywhere, or an undefined s (inf - inf,
 *               inf / inf): 0.  x = +-inf against a finite baseline: +inf.
 *               log erfc uses erfc(s) = t exp(-s^2 + P(t)), t = 1/(1+s/2)
 *               (scalar: Numerical Recipes' Chebyshev fit, relative error
 *               < 1.2e-7 for every s >= 0; SIMD: a shorter refit, below), so
 *               it never underflows.
 *   ewma update per element: non-finite x leaves the element untouched;
 *               a = max(alpha, 1/(count+1)); once count >= min_samples and
 *               var > 0, x is clipped to mean +- outlier_sigma*sqrt(var)
 *               (computed as d = x - mean clipped to +-outlier_sigma*sqrt(var));
 *               mean += a d; var = (1-a)(var + a d^2) (computed as
 *               (1-a) var + ((1-a) a d) d so that a = 1 never forms 0 * inf);
 *               count += 1, saturating at UINT32_MAX.
 *
 * Tails are done with masked loads and stores: no kernel touches memory
 * outside [0, n).  n <= 0 does nothing.
 *
 * Accuracy: the contract is 1e-5 relative, or absolute below 1, against the
 * float64 reference.  The scalar code (libm logf) stays within ~5e-7.  The
 * SIMD code spends that budget on speed: minimax polynomials only as long as
 * the contract needs (see the coefficient blocks), rsqrt + one Newton step
 * for 1/sqrt(var), and FMA throughout; measured worst cases over dense and
 * random grids are 1.9e-6 (surprisal) and 1.0e-6 (binary entropy), ~5x
 * inside the contract.  Relative score and EWMA are plain arithmetic.
 */
#ifndef CTAS7_KERNELS_H
#define CTAS7_KERNELS_H

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "ctas7/simd.h"

#if CTAS7_SIMD_X86
#include <immintrin.h>
#endif

#define CTAS7_LOG2E 1.44269504088896340736f
#define CTAS7_SQRT1_2 0.70710678118654752440f

typedef void (*ctas7_surprisal_fn)(const float *x, const float *mean, const float *var,
                                   float *out, ptrdiff_t n);
typedef void (*ctas7_score2_fn)(const float *x, const float *baseline, float *out, ptrdiff_t n);
typedef void (*ctas7_ewma_fn)(float *mean, float *var, uint32_t *count, const float *x,
                              ptrdiff_t n, float alpha, float outlier_sigma,
                              uint32_t min_samples);

typedef struct {
    ctas7_surprisal_fn surprisal;
    ctas7_score2_fn binary_entropy;
    ctas7_score2_fn relative_score;
    ctas7_ewma_fn ewma_update;
} ctas7_kernel_table;

/* Numerical Recipes erfc fit: erfc(s) = t exp(-s^2 + P(t)), t = 1/(1+s/2). */
#define CTAS7_ERFC_C0 -1.26551223f
#define CTAS7_ERFC_C1 1.00002368f
#define CTAS7_ERFC_C2 0.37409196f
#define CTAS7_ERFC_C3 0.09678418f
#define CTAS7_ERFC_C4 -0.18628806f
#define CTAS7_ERFC_C5 0.27886807f
#define CTAS7_ERFC_C6 -1.13520398f
#define CTAS7_ERFC_C7 1.48851587f
#define CTAS7_ERFC_C8 -0.82215223f
#define CTAS7_ERFC_C9 0.17087277f

/* The SIMD variants use shorter minimax fits, sized to the 1e-5 contract
 * (ctas7.kernels, "Accuracy") rather than to full float32 precision:
 *
 *   -log2 erfc(s) = (s^2 - Q(t)) log2(e) + log2(u), u = 1 + s/2, t = 1/u,
 *   Q of degree 6 (the NR form, refitted): error < 8.8e-7 nats times
 *   max(1, result in bits);
 *   log2(1 + f) = f L(f) on f in [sqrt(1/2) - 1, sqrt(2) - 1]: L of degree 6,
 *   absolute error < 3.1e-7 (surprisal), or degree 5, < 2.2e-6 (binary
 *   entropy, where the error of H is at most that of the logarithm).
 *
 * The coefficients are Lawson (iteratively reweighted least squares) minimax
 * fits, rounded to float32; L(0) != 0 is fine since f = 0 gives exactly 0, so
 * powers of two keep exact logarithms (H(1/2) = 1 exactly). */
#define CTAS7_ERFCQ_C0 -1.2683833837509155f
#define CTAS7_ERFCQ_C1 1.0439225435256958f
#define CTAS7_ERFCQ_C2 0.11881304532289505f
#define CTAS7_ERFCQ_C3 0.8220446705818176f
#define CTAS7_ERFCQ_C4 -1.1773631572723389f
#define CTAS7_ERFCQ_C5 0.5471513867378235f
#define CTAS7_ERFCQ_C6 -0.08618436008691788f

#define CTAS7_LOG2D6_C0 1.442699670791626f
#define CTAS7_LOG2D6_C1 -0.7213758826255798f
#define CTAS7_LOG2D6_C2 0.48046502470970154f
#define CTAS7_LOG2D6_C3 -0.3589618504047394f
#define CTAS7_LOG2D6_C4 0.297262579202652f
#define CTAS7_LOG2D6_C5 -0.2726980447769165f
#define CTAS7_LOG2D6_C6 0.17063473165035248f

#define CTAS7_LOG2D5_C0 1.4427134990692139f
#define CTAS7_LOG2D5_C1 -0.7211318612098694f
#define CTAS7_LOG2D5_C2 0.47934800386428833f
#define CTAS7_LOG2D5_C3 -0.3674899637699127f
#define CTAS7_LOG2D5_C4 0.3221549391746521f
#define CTAS7_LOG2D5_C5 -0.20659206807613373f

/* -(1 - r) log2(1 - r) = r G(r) on r in [0, 1/2], G of degree 5 constrained
 * to G(1/2) = 1 (so H(1/2) = 1 exactly): absolute error < 2.7e-7. */
#define CTAS7_HG_C0 1.4427250623703003f
#define CTAS7_HG_C1 -0.722423255443573f
#define CTAS7_HG_C2 -0.22775503993034363f
#define CTAS7_HG_C3 -0.18744288384914398f
#define CTAS7_HG_C4 0.0986936092376709f
#define CTAS7_HG_C5 -0.2340051382780075f

/* ------------------------------------------------------------------------
 * Scalar (always built)
 * ------------------------------------------------------------------------ */

/* -log2 erfc(s) for s > 0 (s = +inf gives +inf). */
static inline float ctas7_neglog2_erfc_f32(float s)
{
    float u = 1.0f + 0.5f * s;
    float t = 1.0f / u;
    float p = CTAS7_ERFC_C9;
    p = p * t + CTAS7_ERFC_C8;
    p = p * t + CTAS7_ERFC_C7;
    p = p * t + CTAS7_ERFC_C6;
    p = p * t + CTAS7_ERFC_C5;
    p = p * t + CTAS7_ERFC_C4;
    p = p * t + CTAS7_ERFC_C3;
    p = p * t + CTAS7_ERFC_C2;
    p = p * t + CTAS7_ERFC_C1;
    p = p * t + CTAS7_ERFC_C0;
    float r = (logf(u) + (s * s - p)) * CTAS7_LOG2E;
    return r > 0.0f ? r : 0.0f;
}

static inline float ctas7_surprisal1_f32(float x, float mean, float var)
{
    float ad = fabsf(x - mean);
    if (var <= 0.0f)
        return ad > 0.0f ? INFINITY : 0.0f; /* NaN ad -> 0 */
    float s = ad / sqrtf(var) * CTAS7_SQRT1_2;
    if (!(s > 0.0f)) /* 0 or NaN */
        return 0.0f;
    return ctas7_neglog2_erfc_f32(s);
}

/* Deviation p before the min(., 1): may be NaN or > 1. */
static inline float ctas7_deviation1_f32(float x, float b)
{
    float den = b > 1.0f ? b : 1.0f;
    return fabsf(x - b) / den;
}

static inline float ctas7_binary_entropy1_f32(float x, float b)
{
    float p = ctas7_deviation1_f32(x, b);
    if (isnan(p))
        return 0.0f;
    p = p < 1.0f ? p : 1.0f;
    float q = 1.0f - p;
    /* max(., FLT_MIN) keeps 0 * log(0) at 0 instead of NaN */
    float h = -(p * logf(p > FLT_MIN ? p : FLT_MIN) + q * logf(q > FLT_MIN ? q : FLT_MIN))
              * CTAS7_LOG2E;
    return h > 0.0f ? h : 0.0f;
}

static inline float ctas7_relative_score1_f32(float x, float b)
{
    float p = ctas7_deviation1_f32(x, b);
    if (isnan(p))
        return 0.0f;
    return (p < 1.0f ? p : 1.0f) * CTAS7_LOG2E;
}

static inline void ctas7_ewma1_f32(float *mean, float *var, uint32_t *count, float x,
                                   float alpha, float outlier_sigma, uint32_t min_samples)
{
    if (!isfinite(x))
        return;
    uint32_t c = *count;
    float m = *mean, v = *var;
    float w = 1.0f / ((float)c + 1.0f);
    float a = alpha > w ? alpha : w;
    float d = x - m;
    if (c >= min_samples && v > 0.0f) {
        /* clipping d, not x, avoids cancellation in (m - half) - m */
        float half = outlier_sigma * sqrtf(v);
        d = d < -half ? -half : (d > half ? half : d);
    }
    float b = 1.0f - a;
    *mean = m + a * d;
    /* (b a d) d rather than b (v + a d^2): a = 1 gives 0, not 0 * inf */
    *var = b * v + (b * a * d) * d;
    *count = c == UINT32_MAX ? c : c + 1u;
}

static void ctas7_surprisal_scalar(const float *x, const float *mean, const float *var,
                                   float *out, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; ++i)
        out[i] = ctas7_surprisal1_f32(x[i], mean[i], var[i]);
}

static void ctas7_binary_entropy_scalar(const float *x, const float *b, float *out, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; ++i)
        out[i] = ctas7_binary_entropy1_f32(x[i], b[i]);
}

static void ctas7_relative_score_scalar(const float *x, const float *b, float *out, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; ++i)
        out[i] = ctas7_relative_score1_f32(x[i], b[i]);
}

static void ctas7_ewma_update_scalar(float *mean, float *var, uint32_t *count, const float *x,
                                     ptrdiff_t n, float alpha, float outlier_sigma,
                                     uint32_t min_samples)
{
    for (ptrdiff_t i = 0; i < n; ++i)
        ctas7_ewma1_f32(&mean[i], &var[i], &count[i], x[i], alpha, outlier_sigma, min_samples);
}

static const ctas7_kernel_table ctas7_kernels_scalar = {
    ctas7_surprisal_scalar,
    ctas7_binary_entropy_scalar,
    ctas7_relative_score_scalar,
    ctas7_ewma_update_scalar,
};

/* ------------------------------------------------------------------------
 * AVX2 + FMA (8 floats)
 * ------------------------------------------------------------------------ */
#if CTAS7_SIMD_X86

#define CTAS7_AVX2_INLINE static inline __attribute__((always_inline)) CTAS7_TARGET_AVX2
#define CTAS7_AVX512_INLINE static inline __attribute__((always_inline)) CTAS7_TARGET_AVX512

/* x = 2^e (1 + f) with 1 + f in [sqrt(1/2), sqrt(2)): returns e (as a float)
 * and sets f.  Offsetting the bits by those of sqrt(1/2) picks e without a
 * compare.  Every input gives finite e and f in that range (0 and subnormals
 * about e = -127, +inf e = 128), which the callers either multiply by 0 or
 * make irrelevant. */
CTAS7_AVX2_INLINE __m256 ctas7_avx2_logsplit(__m256 x, __m256 *f)
{
    const __m256i off = _mm256_set1_epi32(0x3F3504F3);
    __m256i tmp = _mm256_sub_epi32(_mm256_castps_si256(x), off);
    __m256i mbits = _mm256_add_epi32(_mm256_and_si256(tmp, _mm256_set1_epi32(0x007FFFFF)), off);
    *f = _mm256_sub_ps(_mm256_castsi256_ps(mbits), _mm256_set1_ps(1.0f));
    return _mm256_cvtepi32_ps(_mm256_srai_epi32(tmp, 23));
}

/* log2 x, absolute error < 3.5e-7 for positive normal x. */
CTAS7_AVX2_INLINE __m256 ctas7_avx2_log2(__m256 x)
{
    __m256 f;
    __m256 e = ctas7_avx2_logsplit(x, &f);
    __m256 y = _mm256_set1_ps(CTAS7_LOG2D6_C6);
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(CTAS7_LOG2D6_C5));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(CTAS7_LOG2D6_C4));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(CTAS7_LOG2D6_C3));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(CTAS7_LOG2D6_C2));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(CTAS7_LOG2D6_C1));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(CTAS7_LOG2D6_C0));
    return _mm256_fmadd_ps(y, f, e);
}

/* log2 x, absolute error < 2.3e-6 for positive normal x. */
CTAS7_AVX2_INLINE __m256 ctas7_avx2_log2_d5(__m256 x)
{
    __m256 f;
    __m256 e = ctas7_avx2_logsplit(x, &f);
    __m256 y = _mm256_set1_ps(CTAS7_LOG2D5_C5);
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(CTAS7_LOG2D5_C4));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(CTAS7_LOG2D5_C3));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(CTAS7_LOG2D5_C2));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(CTAS7_LOG2D5_C1));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(CTAS7_LOG2D5_C0));
    return _mm256_fmadd_ps(y, f, e);
}

CTAS7_AVX2_INLINE __m256 ctas7_avx2_abs(__m256 x)
{
    return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
}

/* Lanes [0, r) set, for the masked tail (0 < r < 8). */
CTAS7_AVX2_INLINE __m256i ctas7_avx2_tail(ptrdiff_t r)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* -log2 erfc(s) for s >= 0; a NaN s gives 0, +inf gives +inf, 0 exactly 0. */
CTAS7_AVX2_INLINE __m256 ctas7_avx2_neglog2_erfc(__m256 s)
{
    const __m256 zero = _mm256_setzero_ps();
    __m256 u = _mm256_fmadd_ps(s, _mm256_set1_ps(0.5f), _mm256_set1_ps(1.0f));
    /* a true division here measured faster than rcp + Newton (+ the cap that
     * u = inf needs): the divider is otherwise idle */
    __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f), u);
    __m256 q = _mm256_set1_ps(CTAS7_ERFCQ_C6);
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(CTAS7_ERFCQ_C5));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(CTAS7_ERFCQ_C4));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(CTAS7_ERFCQ_C3));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(CTAS7_ERFCQ_C2));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(CTAS7_ERFCQ_C1));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(CTAS7_ERFCQ_C0));
    __m256 r = _mm256_fmadd_ps(_mm256_fmsub_ps(s, s, q), _mm256_set1_ps(CTAS7_LOG2E), ctas7_avx2_log2(u));
    r = _mm256_max_ps(r, zero); /* a NaN r (second operand rule) becomes 0 too */
    return _mm256_and_ps(_mm256_cmp_ps(s, zero, _CMP_GT_OQ), r); /* exactly 0 at s == 0 */
}

CTAS7_AVX2_INLINE __m256 ctas7_avx2_surprisal(__m256 x, __m256 mean, __m256 var)
{
    __m256 ad = ctas7_avx2_abs(_mm256_sub_ps(x, mean));
    __m256 s;
    if (__builtin_expect(_mm256_movemask_ps(_mm256_cmp_ps(var, _mm256_set1_ps(FLT_MIN), _CMP_LT_OQ)), 0)) {
        /* a variance <= 0 or subnormal in the vector: divide.  max(0, var) keeps
         * a NaN var (second operand) and maps var <= 0 to +-0, so the degenerate
         * baseline falls out of the division: |d|/0 = inf, 0/0 = NaN -> 0 */
        __m256 sd = _mm256_sqrt_ps(_mm256_max_ps(_mm256_setzero_ps(), var));
        s = _mm256_mul_ps(ctas7_avx2_abs(_mm256_div_ps(ad, sd)), _mm256_set1_ps(CTAS7_SQRT1_2));
    } else {
        /* s = |d| rsqrt(var) / sqrt(2): rsqrt and one Newton step (a few ulp).
         * var = +inf gives inf * 0 = NaN, hence 0, as |d| / inf = 0 (or
         * inf / inf) would; a NaN var stays NaN */
        __m256 y = _mm256_rsqrt_ps(var);
        __m256 vyy = _mm256_mul_ps(_mm256_mul_ps(var, y), y);
        __m256 c = _mm256_fnmadd_ps(vyy, _mm256_set1_ps(0.5f * CTAS7_SQRT1_2),
                                    _mm256_set1_ps(1.5f * CTAS7_SQRT1_2));
        s = _mm256_mul_ps(_mm256_mul_ps(ad, y), c);
    }
    return ctas7_avx2_neglog2_erfc(s);
}

CTAS7_TARGET_AVX2 static void ctas7_surprisal_avx2(const float *x, const float *mean,
                                                   const float *var, float *out, ptrdiff_t n)
{
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, ctas7_avx2_surprisal(_mm256_loadu_ps(x + i),
                                                       _mm256_loadu_ps(mean + i),
                                                       _mm256_loadu_ps(var + i)));
    if (i < n) {
        __m256i k = ctas7_avx2_tail(n - i);
        _mm256_maskstore_ps(out + i, k, ctas7_avx2_surprisal(_mm256_maskload_ps(x + i, k),
                                                             _mm256_maskload_ps(mean + i, k),
                                                             _mm256_maskload_ps(var + i, k)));
    }
}

/* p = min(|x - b| / max(b, 1), 1), 0 where that is NaN. */
CTAS7_AVX2_INLINE __m256 ctas7_avx2_deviation(__m256 x, __m256 b)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 p = _mm256_div_ps(ctas7_avx2_abs(_mm256_sub_ps(x, b)), _mm256_max_ps(b, one));
    /* max(NaN, 0) is 0 (second operand): no compare and mask */
    return _mm256_min_ps(_mm256_max_ps(p, _mm256_setzero_ps()), one);
}

CTAS7_AVX2_INLINE __m256 ctas7_avx2_entropy(__m256 x, __m256 b)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    /* min(NaN, 1) is 1 (second operand) and H(1) = 0: a NaN p scores 0 unmasked */
    __m256 p = _mm256_min_ps(_mm256_div_ps(ctas7_avx2_abs(_mm256_sub_ps(x, b)), _mm256_max_ps(b, one)), one);
    /* H is symmetric: with r = min(p, 1 - p) in [0, 1/2], H = r (G(r) - log2 r)
     * needs one logarithm, and its error is halved by r <= 1/2 */
    __m256 r = _mm256_min_ps(p, _mm256_sub_ps(one, p));
    __m256 g = _mm256_set1_ps(CTAS7_HG_C5);
    g = _mm256_fmadd_ps(g, r, _mm256_set1_ps(CTAS7_HG_C4));
    g = _mm256_fmadd_ps(g, r, _mm256_set1_ps(CTAS7_HG_C3));
    g = _mm256_fmadd_ps(g, r, _mm256_set1_ps(CTAS7_HG_C2));
    g = _mm256_fmadd_ps(g, r, _mm256_set1_ps(CTAS7_HG_C1));
    g = _mm256_fmadd_ps(g, r, _mm256_set1_ps(CTAS7_HG_C0));
    /* G > 0 > log2 r, so h >= 0; log2 0 comes out finite, so r = 0 gives 0.
     * The min keeps H <= 1 where the fits round above the peak */
    __m256 h = _mm256_mul_ps(r, _mm256_sub_ps(g, ctas7_avx2_log2_d5(r)));
    return _mm256_min_ps(h, one);
}

CTAS7_AVX2_INLINE __m256 ctas7_avx2_relative(__m256 x, __m256 b)
{
    return _mm256_mul_ps(ctas7_avx2_deviation(x, b), _mm256_set1_ps(CTAS7_LOG2E));
}

CTAS7_TARGET_AVX2 static void ctas7_binary_entropy_avx2(const float *x, const float *b,
                                                        float *out, ptrdiff_t n)
{
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, ctas7_avx2_entropy(_mm256_loadu_ps(x + i), _mm256_loadu_ps(b + i)));
    if (i < n) {
        __m256i k = ctas7_avx2_tail(n - i);
        _mm256_maskstore_ps(out + i, k, ctas7_avx2_entropy(_mm256_maskload_ps(x + i, k),
                                                           _mm256_maskload_ps(b + i, k)));
    }
}

CTAS7_TARGET_AVX2 static void ctas7_relative_score_avx2(const float *x, const float *b,
                                                        float *out, ptrdiff_t n)
{
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, ctas7_avx2_relative(_mm256_loadu_ps(x + i), _mm256_loadu_ps(b + i)));
    if (i < n) {
        __m256i k = ctas7_avx2_tail(n - i);
        _mm256_maskstore_ps(out + i, k, ctas7_avx2_relative(_mm256_maskload_ps(x + i, k),
                                                            _mm256_maskload_ps(b + i, k)));
    }
}

/* One EWMA step on 8 lanes; lanes with non-finite x keep their state. */
CTAS7_AVX2_INLINE void ctas7_avx2_ewma(__m256 *mean, __m256 *var, __m256i *count, __m256 x,
                                       __m256 alpha, __m256 sigma, __m256i min_samples)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 m = *mean, v = *var;
    __m256i c = *count;
    __m256 finite = _mm256_cmp_ps(ctas7_avx2_abs(x), _mm256_set1_ps(INFINITY), _CMP_LT_OQ);
    /* exact uint32 -> float: no unsigned convert before AVX-512 */
    __m256 cf = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(c, 16)), _mm256_set1_ps(65536.0f),
                                _mm256_cvtepi32_ps(_mm256_and_si256(c, _mm256_set1_epi32(0xFFFF))));
    __m256 a = _mm256_max_ps(alpha, _mm256_div_ps(one, _mm256_add_ps(cf, one)));
    __m256i warm = _mm256_cmpeq_epi32(_mm256_max_epu32(c, min_samples), c); /* c >= min_samples */
    __m256 clip = _mm256_and_ps(_mm256_castsi256_ps(warm),
                                _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GT_OQ));
    __m256 half = _mm256_mul_ps(sigma, _mm256_sqrt_ps(v));
    __m256 d = _mm256_sub_ps(x, m);
    __m256 dc = _mm256_min_ps(_mm256_max_ps(d, _mm256_sub_ps(_mm256_setzero_ps(), half)), half);
    d = _mm256_blendv_ps(d, dc, clip);
    __m256 b = _mm256_sub_ps(one, a);
    __m256 m2 = _mm256_fmadd_ps(a, d, m);
    __m256 v2 = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_mul_ps(b, a), d), d, _mm256_mul_ps(b, v));
    __m256i c2 = _mm256_max_epu32(_mm256_add_epi32(c, _mm256_set1_epi32(1)), c); /* saturate */
    *mean = _mm256_blendv_ps(m, m2, finite);
    *var = _mm256_blendv_ps(v, v2, finite);
    *count = _mm256_blendv_epi8(c, c2, _mm256_castps_si256(finite));
}

CTAS7_TARGET_AVX2 static void ctas7_ewma_update_avx2(float *mean, float *var, uint32_t *count,
                                                     const float *x, ptrdiff_t n, float alpha,
                                                     float outlier_sigma, uint32_t min_samples)
{
    const __m256 va = _mm256_set1_ps(alpha), vs = _mm256_set1_ps(outlier_sigma);
    const __m256i vms = _mm256_set1_epi32((int)min_samples);
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 m = _mm256_loadu_ps(mean + i), v = _mm256_loadu_ps(var + i);
        __m256i c = _mm256_loadu_si256((const __m256i *)(count + i));
        ctas7_avx2_ewma(&m, &v, &c, _mm256_loadu_ps(x + i), va, vs, vms);
        _mm256_storeu_ps(mean + i, m);
        _mm256_storeu_ps(var + i, v);
        _mm256_storeu_si256((__m256i *)(count + i), c);
    }
    if (i < n) {
        __m256i k = ctas7_avx2_tail(n - i);
        __m256 m = _mm256_maskload_ps(mean + i, k), v = _mm256_maskload_ps(var + i, k);
        __m256i c = _mm256_maskload_epi32((const int *)(count + i), k);
        ctas7_avx2_ewma(&m, &v, &c, _mm256_maskload_ps(x + i, k), va, vs, vms);
        _mm256_maskstore_ps(mean + i, k, m);
        _mm256_maskstore_ps(var + i, k, v);
        _mm256_maskstore_epi32((int *)(count + i), k, c);
    }
}

static const ctas7_kernel_table ctas7_kernels_avx2 = {
    ctas7_surprisal_avx2,
    ctas7_binary_entropy_avx2,
    ctas7_relative_score_avx2,
    ctas7_ewma_update_avx2,
};

/* ------------------------------------------------------------------------
 * AVX-512 F + DQ (16 floats); same algorithms, native masks for the tails
 * ------------------------------------------------------------------------ */

/* As ctas7_avx2_logsplit. */
CTAS7_AVX512_INLINE __m512 ctas7_avx512_logsplit(__m512 x, __m512 *f)
{
    const __m512i off = _mm512_set1_epi32(0x3F3504F3);
    __m512i tmp = _mm512_sub_epi32(_mm512_castps_si512(x), off);
    __m512i mbits = _mm512_add_epi32(_mm512_and_si512(tmp, _mm512_set1_epi32(0x007FFFFF)), off);
    *f = _mm512_sub_ps(_mm512_castsi512_ps(mbits), _mm512_set1_ps(1.0f));
    return _mm512_cvtepi32_ps(_mm512_srai_epi32(tmp, 23));
}

CTAS7_AVX512_INLINE __m512 ctas7_avx512_log2(__m512 x)
{
    __m512 f;
    __m512 e = ctas7_avx512_logsplit(x, &f);
    __m512 y = _mm512_set1_ps(CTAS7_LOG2D6_C6);
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(CTAS7_LOG2D6_C5));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(CTAS7_LOG2D6_C4));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(CTAS7_LOG2D6_C3));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(CTAS7_LOG2D6_C2));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(CTAS7_LOG2D6_C1));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(CTAS7_LOG2D6_C0));
    return _mm512_fmadd_ps(y, f, e);
}

CTAS7_AVX512_INLINE __m512 ctas7_avx512_log2_d5(__m512 x)
{
    __m512 f;
    __m512 e = ctas7_avx512_logsplit(x, &f);
    __m512 y = _mm512_set1_ps(CTAS7_LOG2D5_C5);
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(CTAS7_LOG2D5_C4));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(CTAS7_LOG2D5_C3));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(CTAS7_LOG2D5_C2));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(CTAS7_LOG2D5_C1));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(CTAS7_LOG2D5_C0));
    return _mm512_fmadd_ps(y, f, e);
}

CTAS7_AVX512_INLINE __m512 ctas7_avx512_abs(__m512 x)
{
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7FFFFFFF)));
}

CTAS7_AVX512_INLINE __mmask16 ctas7_avx512_tail(ptrdiff_t r)
{
    return (__mmask16)((1u << r) - 1u);
}

/* As ctas7_avx2_neglog2_erfc. */
CTAS7_AVX512_INLINE __m512 ctas7_avx512_neglog2_erfc(__m512 s)
{
    const __m512 zero = _mm512_setzero_ps();
    __m512 u = _mm512_fmadd_ps(s, _mm512_set1_ps(0.5f), _mm512_set1_ps(1.0f));
    __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f), u);
    __m512 q = _mm512_set1_ps(CTAS7_ERFCQ_C6);
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(CTAS7_ERFCQ_C5));
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(CTAS7_ERFCQ_C4));
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(CTAS7_ERFCQ_C3));
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(CTAS7_ERFCQ_C2));
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(CTAS7_ERFCQ_C1));
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(CTAS7_ERFCQ_C0));
    __m512 r = _mm512_fmadd_ps(_mm512_fmsub_ps(s, s, q), _mm512_set1_ps(CTAS7_LOG2E), ctas7_avx512_log2(u));
    r = _mm512_max_ps(r, zero); /* a NaN r (second operand rule) becomes 0 too */
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(s, zero, _CMP_GT_OQ), r); /* exactly 0 at s == 0 */
}

CTAS7_AVX512_INLINE __m512 ctas7_avx512_surprisal(__m512 x, __m512 mean, __m512 var)
{
    __m512 ad = ctas7_avx512_abs(_mm512_sub_ps(x, mean));
    __m512 s;
    if (__builtin_expect(_mm512_cmp_ps_mask(var, _mm512_set1_ps(FLT_MIN), _CMP_LT_OQ) != 0, 0)) {
        __m512 sd = _mm512_sqrt_ps(_mm512_max_ps(_mm512_setzero_ps(), var));
        s = _mm512_mul_ps(ctas7_avx512_abs(_mm512_div_ps(ad, sd)), _mm512_set1_ps(CTAS7_SQRT1_2));
    } else {
        __m512 y = _mm512_rsqrt14_ps(var);
        __m512 vyy = _mm512_mul_ps(_mm512_mul_ps(var, y), y);
        __m512 c = _mm512_fnmadd_ps(vyy, _mm512_set1_ps(0.5f * CTAS7_SQRT1_2),
                                    _mm512_set1_ps(1.5f * CTAS7_SQRT1_2));
        s = _mm512_mul_ps(_mm512_mul_ps(ad, y), c);
    }
    return ctas7_avx512_neglog2_erfc(s);
}

CTAS7_TARGET_AVX512 static void ctas7_surprisal_avx512(const float *x, const float *mean,
                                                       const float *var, float *out, ptrdiff_t n)
{
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(out + i, ctas7_avx512_surprisal(_mm512_loadu_ps(x + i),
                                                         _mm512_loadu_ps(mean + i),
                                                         _mm512_loadu_ps(var + i)));
    if (i < n) {
        __mmask16 k = ctas7_avx512_tail(n - i);
        _mm512_mask_storeu_ps(out + i, k, ctas7_avx512_surprisal(_mm512_maskz_loadu_ps(k, x + i),
                                                                 _mm512_maskz_loadu_ps(k, mean + i),
                                                                 _mm512_maskz_loadu_ps(k, var + i)));
    }
}

CTAS7_AVX512_INLINE __m512 ctas7_avx512_deviation(__m512 x, __m512 b)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 p = _mm512_div_ps(ctas7_avx512_abs(_mm512_sub_ps(x, b)), _mm512_max_ps(b, one));
    return _mm512_min_ps(_mm512_max_ps(p, _mm512_setzero_ps()), one);
}

/* As ctas7_avx2_entropy. */
CTAS7_AVX512_INLINE __m512 ctas7_avx512_entropy(__m512 x, __m512 b)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 p = _mm512_min_ps(_mm512_div_ps(ctas7_avx512_abs(_mm512_sub_ps(x, b)), _mm512_max_ps(b, one)), one);
    __m512 r = _mm512_min_ps(p, _mm512_sub_ps(one, p));
    __m512 g = _mm512_set1_ps(CTAS7_HG_C5);
    g = _mm512_fmadd_ps(g, r, _mm512_set1_ps(CTAS7_HG_C4));
    g = _mm512_fmadd_ps(g, r, _mm512_set1_ps(CTAS7_HG_C3));
    g = _mm512_fmadd_ps(g, r, _mm512_set1_ps(CTAS7_HG_C2));
    g = _mm512_fmadd_ps(g, r, _mm512_set1_ps(CTAS7_HG_C1));
    g = _mm512_fmadd_ps(g, r, _mm512_set1_ps(CTAS7_HG_C0));
    __m512 h = _mm512_mul_ps(r, _mm512_sub_ps(g, ctas7_avx512_log2_d5(r)));
    return _mm512_min_ps(h, one);
}

CTAS7_AVX512_INLINE __m512 ctas7_avx512_relative(__m512 x, __m512 b)
{
    return _mm512_mul_ps(ctas7_avx512_deviation(x, b), _mm512_set1_ps(CTAS7_LOG2E));
}

CTAS7_TARGET_AVX512 static void ctas7_binary_entropy_avx512(const float *x, const float *b,
                                                            float *out, ptrdiff_t n)
{
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(out + i, ctas7_avx512_entropy(_mm512_loadu_ps(x + i), _mm512_loadu_ps(b + i)));
    if (i < n) {
        __mmask16 k = ctas7_avx512_tail(n - i);
        _mm512_mask_storeu_ps(out + i, k, ctas7_avx512_entropy(_mm512_maskz_loadu_ps(k, x + i),
                                                               _mm512_maskz_loadu_ps(k, b + i)));
    }
}

CTAS7_TARGET_AVX512 static void ctas7_relative_score_avx512(const float *x, const float *b,
                                                            float *out, ptrdiff_t n)
{
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(out + i, ctas7_avx512_relative(_mm512_loadu_ps(x + i), _mm512_loadu_ps(b + i)));
    if (i < n) {
        __mmask16 k = ctas7_avx512_tail(n - i);
        _mm512_mask_storeu_ps(out + i, k, ctas7_avx512_relative(_mm512_maskz_loadu_ps(k, x + i),
                                                                _mm512_maskz_loadu_ps(k, b + i)));
    }
}

CTAS7_AVX512_INLINE void ctas7_avx512_ewma(__m512 *mean, __m512 *var, __m512i *count, __m512 x,
                                           __m512 alpha, __m512 sigma, __m512i min_samples)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 m = *mean, v = *var;
    __m512i c = *count;
    __mmask16 finite = _mm512_cmp_ps_mask(ctas7_avx512_abs(x), _mm512_set1_ps(INFINITY), _CMP_LT_OQ);
    __m512 a = _mm512_max_ps(alpha, _mm512_div_ps(one, _mm512_add_ps(_mm512_cvtepu32_ps(c), one)));
    __mmask16 clip = _mm512_cmpge_epu32_mask(c, min_samples)
                     & _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GT_OQ);
    __m512 half = _mm512_mul_ps(sigma, _mm512_sqrt_ps(v));
    __m512 d = _mm512_sub_ps(x, m);
    __m512 dc = _mm512_min_ps(_mm512_max_ps(d, _mm512_sub_ps(_mm512_setzero_ps(), half)), half);
    d = _mm512_mask_mov_ps(d, clip, dc);
    __m512 b = _mm512_sub_ps(one, a);
    *mean = _mm512_mask_mov_ps(m, finite, _mm512_fmadd_ps(a, d, m));
    *var = _mm512_mask_mov_ps(v, finite, _mm512_fmadd_ps(_mm512_mul_ps(_mm512_mul_ps(b, a), d), d,
                                                         _mm512_mul_ps(b, v)));
    *count = _mm512_mask_mov_epi32(c, finite,
                                   _mm512_max_epu32(_mm512_add_epi32(c, _mm512_set1_epi32(1)), c));
}

CTAS7_TARGET_AVX512 static void ctas7_ewma_update_avx512(float *mean, float *var, uint32_t *count,
                                                         const float *x, ptrdiff_t n, float alpha,
                                                         float outlier_sigma, uint32_t min_samples)
{
    const __m512 va = _mm512_set1_ps(alpha), vs = _mm512_set1_ps(outlier_sigma);
    const __m512i vms = _mm512_set1_epi32((int)min_samples);
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 m = _mm512_loadu_ps(mean + i), v = _mm512_loadu_ps(var + i);
        __m512i c = _mm512_loadu_si512((const void *)(count + i));
        ctas7_avx512_ewma(&m, &v, &c, _mm512_loadu_ps(x + i), va, vs, vms);
        _mm512_storeu_ps(mean + i, m);
        _mm512_storeu_ps(var + i, v);
        _mm512_storeu_si512((void *)(count + i), c);
    }
    if (i < n) {
        __mmask16 k = ctas7_avx512_tail(n - i);
        __m512 m = _mm512_maskz_loadu_ps(k, mean + i), v = _mm512_maskz_loadu_ps(k, var + i);
        __m512i c = _mm512_maskz_loadu_epi32(k, count + i);
        ctas7_avx512_ewma(&m, &v, &c, _mm512_maskz_loadu_ps(k, x + i), va, vs, vms);
        _mm512_mask_storeu_ps(mean + i, k, m);
        _mm512_mask_storeu_ps(var + i, k, v);
        _mm512_mask_storeu_epi32(count + i, k, c);
    }
}

static const ctas7_kernel_table ctas7_kernels_avx512 = {
    ctas7_surprisal_avx512,
    ctas7_binary_entropy_avx512,
    ctas7_relative_score_avx512,
    ctas7_ewma_update_avx512,
};

#endif /* CTAS7_SIMD_X86 */

/* ------------------------------------------------------------------------
 * Dispatch table
 * ------------------------------------------------------------------------ */

/* The kernels of one variant, or NULL if that variant is not built.  Only
 * call a non-scalar table after ctas7_simd_supported(variant). */
static inline const ctas7_kernel_table *ctas7_kernel_table_for(int variant)
{
    switch (variant) {
    case CTAS7_SIMD_SCALAR: return &ctas7_kernels_scalar;
#if CTAS7_SIMD_X86
    case CTAS7_SIMD_AVX2: return &ctas7_kernels_avx2;
    case CTAS7_SIMD_AVX512: return &ctas7_kernels_avx512;
#endif
    default: return NULL;
    }
}

#endif /* CTAS7_KERNELS_H */
