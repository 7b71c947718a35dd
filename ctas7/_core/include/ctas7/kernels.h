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
 *               (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7
 *               for every s >= 0), so it never underflows.
 *   ewma update per element: non-finite x leaves the element untouched;
 *               a = max(alpha, 1/(count+1)); once count >= min_samples and
 *               var > 0, x is clipped to mean +- outlier_sigma*sqrt(var);
 *               d = x - mean; mean += a d; var = (1-a)(var + a d^2);
 *               count += 1, saturating at UINT32_MAX.
 *
 * Tails are done with masked loads and stores: no kernel touches memory
 * outside [0, n).  n <= 0 does nothing.
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
    if (c >= min_samples && v > 0.0f) {
        float half = outlier_sigma * sqrtf(v);
        float lo = m - half, hi = m + half;
        x = x < lo ? lo : (x > hi ? hi : x);
    }
    float d = x - m;
    *mean = m + a * d;
    *var = (1.0f - a) * (v + a * d * d);
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
 * Dispatch table
 * ------------------------------------------------------------------------ */

/* The kernels of one variant, or NULL if that variant is not built.  Only
 * call a non-scalar table after ctas7_simd_supported(variant). */
static inline const ctas7_kernel_table *ctas7_kernel_table_for(int variant)
{
    switch (variant) {
    case CTAS7_SIMD_SCALAR: return &ctas7_kernels_scalar;
    default: return NULL;
    }
}

#endif /* CTAS7_KERNELS_H */
