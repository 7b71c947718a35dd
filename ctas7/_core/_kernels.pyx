# cython: language_level=3
"""Scoring kernels over float32 arrays, with run-time SIMD dispatch.

Kernels (all element-wise; semantics in ``ctas7/_core/include/ctas7/kernels.h``
and the public ``ctas7.kernels``):

- ``surprisal``: ``-log2 erfc(|x - mean| / sqrt(2 var))`` in bits, i.e.
  ``-log2 P(|Z| >= |z|)``; ``var <= 0`` gives 0 if ``x == mean`` else +inf;
  NaN gives 0; +-inf against a finite baseline gives +inf.
- ``binary_entropy``: ``H(p)`` with ``p = min(|x - b| / max(b, 1), 1)``,
  ``H(0) = H(1) = 0``; NaN gives 0.
- ``relative_score``: ``p * log2(e)``; NaN gives 0.
- ``ewma_update``: in-place EWMA mean/variance/count with warm-up, outlier
  clipping and non-finite samples skipped.

The variant (scalar, avx2, avx512) is chosen once, at import: the widest one
the CPU and OS support, unless ``CTAS7_SIMD=scalar|avx2|avx512|auto`` says
otherwise.  Forcing a variant this CPU cannot run warns (RuntimeWarning) and
falls back to the widest supported one, since running it would crash the
process with SIGILL; an unknown value raises ValueError at import.
"""

import os
import warnings

import numpy as np

from libc.stdint cimport uint32_t


# ----------------------------------------------------------------------------
# Variant selection (once, at import)
# ----------------------------------------------------------------------------

VARIANTS = ("scalar", "avx2", "avx512")

cdef const ctas7_kernel_table* _active = NULL
cdef int _active_variant = 0
# Detected once: cpuid/xgetbv are slow (a VM exit under a hypervisor).
cdef const ctas7_kernel_table* _runnable[3]  # CTAS7_SIMD_COUNT


def _built_variants():
    return [VARIANTS[v] for v in range(CTAS7_SIMD_COUNT)
            if ctas7_simd_built(v) and ctas7_kernel_table_for(v) != NULL]


def _detect():
    cdef int v
    for v in range(CTAS7_SIMD_COUNT):
        _runnable[v] = NULL
        if VARIANTS[v] in _built_variants() and ctas7_simd_supported(v):
            _runnable[v] = ctas7_kernel_table_for(v)


_detect()


def _supported_variants():
    return [VARIANTS[v] for v in range(CTAS7_SIMD_COUNT) if _runnable[v] != NULL]


def _choose(requested, supported):
    """Pick the variant for a ``CTAS7_SIMD`` value.

    Returns ``(variant, forced, warning)``: ``forced`` is True when the
    requested variant is the one that runs, ``warning`` a message (or None)
    when the request could not be honoured.  ``supported`` lists the
    runnable variants widest last.
    """
    req = (requested or "").strip().lower()
    if req in ("", "auto"):
        return supported[len(supported) - 1], False, None
    if req not in VARIANTS:
        raise ValueError(
            f"CTAS7_SIMD={requested!r} is not a SIMD variant; use one of "
            f"{', '.join(VARIANTS)} or auto"
        )
    if req in supported:
        return req, True, None
    return supported[len(supported) - 1], False, (
        f"CTAS7_SIMD={req} was requested but this CPU/OS or build cannot run it "
        f"(supported: {', '.join(supported)}); using {supported[len(supported) - 1]}"
    )


_REQUESTED = os.environ.get("CTAS7_SIMD")
_ACTIVE_NAME, _FORCED, _warning = _choose(_REQUESTED, _supported_variants())
if _warning is not None:
    warnings.warn(_warning, RuntimeWarning, stacklevel=2)
_active_variant = VARIANTS.index(_ACTIVE_NAME)
_active = ctas7_kernel_table_for(_active_variant)


def simd_info():
    """Which SIMD variants were built, which this machine runs, and which is active.

    Returns
    -------
    dict
        ``built`` (list of names compiled in), ``supported`` (built and
        runnable on this CPU/OS), ``active`` (the variant the kernels use),
        ``forced`` (True if ``CTAS7_SIMD`` chose it), ``requested`` (the raw
        ``CTAS7_SIMD`` value or None), ``native_build`` (built with
        ``-march=native``) and ``width`` (floats per vector, per variant).
    """
    return {
        "built": _built_variants(),
        "supported": _supported_variants(),
        "active": _ACTIVE_NAME,
        "forced": _FORCED,
        "requested": _REQUESTED,
        "native_build": bool(CTAS7_NATIVE),
        "width": {name: ctas7_simd_width(VARIANTS.index(name)) for name in _built_variants()},
    }


cdef extern from *:
    int CTAS7_NATIVE


# ----------------------------------------------------------------------------
# C-level dispatching kernels
# ----------------------------------------------------------------------------

cdef void surprisal_f32(const float* x, const float* mean, const float* var, float* out,
                        Py_ssize_t n) noexcept nogil:
    _active.surprisal(x, mean, var, out, n)


cdef void binary_entropy_f32(const float* x, const float* baseline, float* out,
                             Py_ssize_t n) noexcept nogil:
    _active.binary_entropy(x, baseline, out, n)


cdef void relative_score_f32(const float* x, const float* baseline, float* out,
                             Py_ssize_t n) noexcept nogil:
    _active.relative_score(x, baseline, out, n)


cdef void ewma_update_f32(float* mean, float* var, uint32_t* count, const float* x,
                          Py_ssize_t n, float alpha, float outlier_sigma,
                          uint32_t min_samples) noexcept nogil:
    _active.ewma_update(mean, var, count, x, n, alpha, outlier_sigma, min_samples)


# ----------------------------------------------------------------------------
# Python wrappers (validation, then one nogil call)
# ----------------------------------------------------------------------------

cdef const ctas7_kernel_table* _table(object variant) except NULL:
    if variant is None:
        return _active
    if not isinstance(variant, str):
        raise TypeError(f"variant must be a str or None, not {type(variant).__name__}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown SIMD variant {variant!r}; expected one of {VARIANTS}")
    cdef int v = VARIANTS.index(variant)
    if _runnable[v] == NULL:
        if not ctas7_simd_built(v) or ctas7_kernel_table_for(v) == NULL:
            raise RuntimeError(f"SIMD variant {variant!r} is not built into this module")
        raise RuntimeError(f"SIMD variant {variant!r} is not supported by this CPU/OS")
    return _runnable[v]


cdef object _F32 = np.dtype(np.float32)
cdef object _U32 = np.dtype(np.uint32)


cdef object _check(object a, str name, object dtype, object shape):
    """Validate one array argument; return it as a flat (1-D view) array."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, not {type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, not {a.dtype}")
    flags = a.flags
    if not flags.c_contiguous or not flags.aligned:
        raise ValueError(f"{name} must be C-contiguous and aligned")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}, expected {shape} like the first argument")
    return a if a.ndim == 1 else a.reshape(-1)


cdef object _check_out(object a, str name, object dtype, object shape):
    flat = _check(a, name, dtype, shape)
    if not a.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    return flat


cdef inline bint _overlap(const void* a, const void* b, Py_ssize_t nbytes) noexcept nogil:
    """True if two buffers of nbytes share bytes without starting at the same place."""
    cdef const char* pa = <const char*>a
    cdef const char* pb = <const char*>b
    if nbytes == 0 or pa == pb:
        return False
    return pa < pb + nbytes and pb < pa + nbytes


cdef inline const float* _fptr(const float[::1] v) noexcept nogil:
    return &v[0] if v.shape[0] > 0 else NULL


cdef inline float* _fptr_out(float[::1] v) noexcept nogil:
    return &v[0] if v.shape[0] > 0 else NULL


def surprisal(x, mean, var, out=None, variant=None):
    """Surprisal in bits of ``x`` under the baseline ``N(mean, var)``.

    See ``ctas7.kernels.surprisal`` for the full documentation.
    """
    cdef const ctas7_kernel_table* t = _table(variant)
    fx = _check(x, "x", _F32, None)
    fm = _check(mean, "mean", _F32, x.shape)
    fv = _check(var, "var", _F32, x.shape)
    if out is None:
        out = np.empty(x.shape, dtype=np.float32)
    fo = _check_out(out, "out", _F32, x.shape)
    cdef const float[::1] xv = fx  # IN
    cdef const float[::1] mv = fm  # IN
    cdef const float[::1] vv = fv  # IN
    cdef float[::1] ov = fo  # OUT
    cdef Py_ssize_t n = xv.shape[0]
    cdef Py_ssize_t nbytes = n * sizeof(float)
    if (_overlap(_fptr_out(ov), _fptr(xv), nbytes) or _overlap(_fptr_out(ov), _fptr(mv), nbytes)
            or _overlap(_fptr_out(ov), _fptr(vv), nbytes)):
        raise ValueError("out partially overlaps an input (it may be an input, not a shifted view)")
    with nogil:
        t.surprisal(_fptr(xv), _fptr(mv), _fptr(vv), _fptr_out(ov), n)
    return out


cdef object _score2(int which, x, baseline, out, variant):
    cdef const ctas7_kernel_table* t = _table(variant)
    fx = _check(x, "x", _F32, None)
    fb = _check(baseline, "baseline", _F32, x.shape)
    if out is None:
        out = np.empty(x.shape, dtype=np.float32)
    fo = _check_out(out, "out", _F32, x.shape)
    cdef const float[::1] xv = fx  # IN
    cdef const float[::1] bv = fb  # IN
    cdef float[::1] ov = fo  # OUT
    cdef Py_ssize_t n = xv.shape[0]
    cdef Py_ssize_t nbytes = n * sizeof(float)
    if _overlap(_fptr_out(ov), _fptr(xv), nbytes) or _overlap(_fptr_out(ov), _fptr(bv), nbytes):
        raise ValueError("out partially overlaps an input (it may be an input, not a shifted view)")
    cdef ctas7_score2_fn fn = t.binary_entropy if which == 0 else t.relative_score
    with nogil:
        fn(_fptr(xv), _fptr(bv), _fptr_out(ov), n)
    return out


def binary_entropy(x, baseline, out=None, variant=None):
    """Binary entropy in bits of the relative deviation of ``x`` from ``baseline``.

    See ``ctas7.kernels.binary_entropy`` for the full documentation.
    """
    return _score2(0, x, baseline, out, variant)


def relative_score(x, baseline, out=None, variant=None):
    """Clipped relative deviation of ``x`` from ``baseline``, times log2(e).

    See ``ctas7.kernels.relative_score`` for the full documentation.
    """
    return _score2(1, x, baseline, out, variant)


def ewma_update(mean, var, count, x, alpha, outlier_sigma, min_samples, variant=None):
    """Update EWMA baselines in place with one sample per element.

    See ``ctas7.kernels.ewma_update`` for the full documentation.
    """
    cdef const ctas7_kernel_table* t = _table(variant)
    fm = _check_out(mean, "mean", _F32, None)
    fv = _check_out(var, "var", _F32, mean.shape)
    fc = _check_out(count, "count", _U32, mean.shape)
    fx = _check(x, "x", _F32, mean.shape)
    a = float(alpha)
    s = float(outlier_sigma)
    if not (0.0 < a <= 1.0):
        raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
    if not (s > 0.0):
        raise ValueError(f"outlier_sigma must be > 0 (inf disables clipping), got {outlier_sigma!r}")
    if isinstance(min_samples, (bool, np.bool_)) or not isinstance(min_samples, (int, np.integer)):
        raise TypeError(f"min_samples must be an int, not {type(min_samples).__name__}")
    if not (0 <= min_samples <= 0xFFFFFFFF):
        raise ValueError(f"min_samples must be in [0, 2**32 - 1], got {min_samples!r}")
    cdef float[::1] mv = fm  # OUT (in place)
    cdef float[::1] vv = fv  # OUT (in place)
    cdef uint32_t[::1] cv = fc  # OUT (in place)
    cdef const float[::1] xv = fx  # IN
    cdef Py_ssize_t n = mv.shape[0]
    cdef float fa = a
    cdef float fs = s
    if not (fa > 0.0):
        raise ValueError(f"alpha {alpha!r} underflows float32")
    cdef uint32_t ms = min_samples
    if n == 0:
        return None
    cdef const char* ptrs[4]
    ptrs[0] = <const char*>&mv[0]
    ptrs[1] = <const char*>&vv[0]
    ptrs[2] = <const char*>&cv[0]
    ptrs[3] = <const char*>&xv[0]
    cdef Py_ssize_t nbytes = n * 4
    cdef int i, j
    for i in range(4):
        for j in range(i + 1, 4):
            if ptrs[i] < ptrs[j] + nbytes and ptrs[j] < ptrs[i] + nbytes:
                names = ("mean", "var", "count", "x")
                raise ValueError(f"{names[i]} and {names[j]} share memory")
    with nogil:
        t.ewma_update(&mv[0], &vv[0], &cv[0], &xv[0], n, fa, fs, ms)
    return None
