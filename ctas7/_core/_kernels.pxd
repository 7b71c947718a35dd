# cython: language_level=3
"""C-level API of the scoring kernels (``cimport`` it from other kernels).

The four ``*_f32`` functions run the SIMD variant chosen once at import
(``ctas7.simd_info()``); they take raw pointers of ``n`` float32 (or uint32)
elements, never read or write outside them, and are safe without the GIL.
Semantics are documented in ``ctas7/_core/include/ctas7/kernels.h`` and
``ctas7.kernels``.
"""

from libc.stdint cimport uint32_t


cdef extern from "ctas7/simd.h" nogil:
    int CTAS7_SIMD_SCALAR
    int CTAS7_SIMD_AVX2
    int CTAS7_SIMD_AVX512
    int CTAS7_SIMD_COUNT
    const char* ctas7_simd_name(int variant)
    int ctas7_simd_width(int variant)
    int ctas7_simd_built(int variant)
    int ctas7_simd_supported(int variant)
    int ctas7_simd_best()


cdef extern from "ctas7/kernels.h" nogil:
    ctypedef void (*ctas7_surprisal_fn)(const float* x, const float* mean, const float* var,
                                        float* out, Py_ssize_t n) noexcept nogil
    ctypedef void (*ctas7_score2_fn)(const float* x, const float* baseline, float* out,
                                     Py_ssize_t n) noexcept nogil
    ctypedef void (*ctas7_ewma_fn)(float* mean, float* var, uint32_t* count, const float* x,
                                   Py_ssize_t n, float alpha, float outlier_sigma,
                                   uint32_t min_samples) noexcept nogil

    ctypedef struct ctas7_kernel_table:
        ctas7_surprisal_fn surprisal
        ctas7_score2_fn binary_entropy
        ctas7_score2_fn relative_score
        ctas7_ewma_fn ewma_update

    const ctas7_kernel_table* ctas7_kernel_table_for(int variant)


# ----------------------------------------------------------------------------
# Dispatching kernels (the active variant)
# ----------------------------------------------------------------------------

cdef void surprisal_f32(const float* x, const float* mean, const float* var, float* out,
                        Py_ssize_t n) noexcept nogil
cdef void binary_entropy_f32(const float* x, const float* baseline, float* out,
                             Py_ssize_t n) noexcept nogil
cdef void relative_score_f32(const float* x, const float* baseline, float* out,
                             Py_ssize_t n) noexcept nogil
cdef void ewma_update_f32(float* mean, float* var, uint32_t* count, const float* x,
                          Py_ssize_t n, float alpha, float outlier_sigma,
                          uint32_t min_samples) noexcept nogil
