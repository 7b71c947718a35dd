/* Convergence meter helpers (ctas7._core._meter). */
#ifndef CTAS7_METER_H
#define CTAS7_METER_H

#include <math.h>
#include <stddef.h>
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

#endif /* CTAS7_METER_H */
