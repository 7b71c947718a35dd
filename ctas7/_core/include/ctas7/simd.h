/* ctas7/simd.h -- SIMD variants and run-time CPU detection.
 *
 * The build has no -march flag by default, so every SIMD variant is compiled
 * with a function-level target attribute and may only run after
 * ctas7_simd_supported() said yes.  Detection asks the CPU (cpuid through
 * __builtin_cpu_supports) AND the operating system (XCR0 through xgetbv): a
 * kernel that does not save the upper vector state on a context switch makes
 * AVX/AVX-512 unusable even on a CPU that has it.
 */
#ifndef CTAS7_SIMD_H
#define CTAS7_SIMD_H

#include <stdint.h>

typedef enum {
    CTAS7_SIMD_SCALAR = 0,
    CTAS7_SIMD_AVX2 = 1,   /* AVX2 + FMA, 8 floats per vector */
    CTAS7_SIMD_AVX512 = 2, /* AVX-512 F + DQ, 16 floats per vector */
    CTAS7_SIMD_COUNT = 3
} ctas7_simd_variant;

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define CTAS7_SIMD_X86 1
#include <cpuid.h>
#else
#define CTAS7_SIMD_X86 0
#endif

#define CTAS7_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define CTAS7_TARGET_AVX512 __attribute__((target("avx512f,avx512dq,avx2,fma")))

/* XCR0 bits: 1 SSE, 2 AVX (upper ymm), 5 opmask, 6 ZMM_Hi256, 7 Hi16_ZMM. */
#define CTAS7_XCR0_AVX 0x06u
#define CTAS7_XCR0_AVX512 0xE6u

static inline const char *ctas7_simd_name(int variant)
{
    switch (variant) {
    case CTAS7_SIMD_SCALAR: return "scalar";
    case CTAS7_SIMD_AVX2: return "avx2";
    case CTAS7_SIMD_AVX512: return "avx512";
    default: return "unknown";
    }
}

/* Floats per vector; the scalar kernels process one at a time. */
static inline int ctas7_simd_width(int variant)
{
    switch (variant) {
    case CTAS7_SIMD_AVX2: return 8;
    case CTAS7_SIMD_AVX512: return 16;
    default: return 1;
    }
}

#if CTAS7_SIMD_X86
/* xgetbv spelled as bytes: it must not need -mxsave, and it is only executed
 * after cpuid reported OSXSAVE (otherwise it would fault). */
static inline uint64_t ctas7_simd_xcr0(void)
{
    uint32_t eax, edx;
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

static inline int ctas7_simd_os_saves(uint64_t needed)
{
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    if (!((c >> 27) & 1u)) /* OSXSAVE: the OS enabled xgetbv/XSAVE */
        return 0;
    return (ctas7_simd_xcr0() & needed) == needed;
}
#endif

/* 1 if the variant's code is present in this build. */
static inline int ctas7_simd_built(int variant)
{
    if (variant == CTAS7_SIMD_SCALAR)
        return 1;
    if (variant == CTAS7_SIMD_AVX2 || variant == CTAS7_SIMD_AVX512)
        return CTAS7_SIMD_X86;
    return 0;
}

/* 1 if the variant is built AND this CPU + OS can run it. */
static inline int ctas7_simd_supported(int variant)
{
    if (!ctas7_simd_built(variant))
        return 0;
    if (variant == CTAS7_SIMD_SCALAR)
        return 1;
#if CTAS7_SIMD_X86
    __builtin_cpu_init();
    if (variant == CTAS7_SIMD_AVX2)
        return __builtin_cpu_supports("avx") && __builtin_cpu_supports("avx2")
               && __builtin_cpu_supports("fma") && ctas7_simd_os_saves(CTAS7_XCR0_AVX);
    if (variant == CTAS7_SIMD_AVX512)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
               && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
               && ctas7_simd_os_saves(CTAS7_XCR0_AVX512);
#endif
    return 0;
}

/* The widest supported variant. */
static inline int ctas7_simd_best(void)
{
    int v;
    for (v = CTAS7_SIMD_COUNT - 1; v > CTAS7_SIMD_SCALAR; --v)
        if (ctas7_simd_supported(v))
            return v;
    return CTAS7_SIMD_SCALAR;
}

#endif /* CTAS7_SIMD_H */
