"""Per-node scoring kernels over float32 arrays, with SIMD dispatch.

Every kernel works element by element on equally shaped, C-contiguous
float32 arrays (``count`` is uint32) and runs compiled C with the GIL
released.  Three variants are built -- ``scalar`` (always), ``avx2``
(AVX2 + FMA) and ``avx512`` (AVX-512 F + DQ) -- and the widest one the CPU
and operating system can run is chosen once, at import.  The environment
variable ``CTAS7_SIMD=scalar|avx2|avx512|auto`` overrides the choice;
forcing a variant this machine cannot run emits a ``RuntimeWarning`` and
falls back to the widest supported one (running it would kill the process
with SIGILL), and an unknown value raises ``ValueError`` at import.
:func:`simd_info` says what was built and what runs.  Every function takes
``variant=`` to run one specific built variant (tests, benchmarks).

Semantics
---------
Deviation (binary entropy and relative score)
    ``p = min(|x - b| / max(b, 1), 1)``.  ``max(b, 1)`` makes zero and
    negative baselines well defined.  If ``p`` is NaN (a NaN input, or
    ``inf - inf`` / ``inf / inf`` when ``b = +inf``) the score is 0: no
    evidence.  ``x = +-inf`` against a finite baseline gives ``p = 1``.
Binary entropy
    ``H(p) = -p log2 p - (1 - p) log2(1 - p)`` bits, ``H(0) = H(1) = 0``.
    It tops out at 1 bit at ``p = 1/2`` and falls back to 0 at the
    largest deviation, which is why the meter scores surprisal instead.
Relative score
    ``p * log2(e)``, in ``[0, log2(e)]``.
Surprisal
    ``z = (x - mean) / sqrt(var)``, score ``-log2 P(|Z| >= |z|) =
    -log2 erfc(|z| / sqrt(2))`` bits for a standard normal ``Z``: 0 at
    ``z = 0``, 4.32 bits at ``|z| = 1.96``, growing like
    ``z**2 / (2 ln 2)``.  The kernels compute ``log erfc`` directly
    (``erfc(s) = t exp(-s**2 + P(t))``, ``t = 1 / (1 + s/2)``), so large
    ``|z|`` stays finite and accurate instead of underflowing.  ``var <= 0``
    (degenerate baseline): 0 if ``x == mean`` else ``+inf``.  A NaN input,
    or an undefined ``z`` (``inf - inf``, ``inf / inf``), gives 0.
    ``x = +-inf`` against a finite baseline gives ``+inf``.
EWMA update (in place, per element)
    A non-finite ``x`` changes nothing.  Otherwise
    ``a = max(alpha, 1 / (count + 1))`` (a plain running mean during
    warm-up); once ``count >= min_samples`` and ``var > 0``, ``x`` is
    clipped to ``mean +- outlier_sigma * sqrt(var)`` so that an incident
    does not poison the baseline; ``d = x - mean``; ``mean += a d``;
    ``var = (1 - a) (var + a d**2)``; ``count += 1``, saturating at
    ``2**32 - 1``.

Accuracy
--------
All variants agree with the float64 references in :class:`reference`
within ``1e-5 * max(1, |expected|)`` (the expected value rounded to
float32, so an overflow to ``inf`` is expected as ``inf``).  They are not
bit-identical across variants: the scalar code uses libm (within ~5e-7),
the SIMD code minimax polynomials sized to that contract, ``rsqrt`` plus a
Newton step and FMA (worst cases measured: 1.9e-6 for surprisal, 1.0e-6
for binary entropy).  The EWMA mean update is float32 arithmetic: when ``x`` and ``mean``
are large and of opposite sign the new mean is accurate relative to the
old one, not to itself.

Examples
--------
>>> import numpy as np
>>> from ctas7 import kernels
>>> x = np.array([10.0, 11.96, 10.0], dtype=np.float32)
>>> mean = np.full(3, 10.0, dtype=np.float32)
>>> var = np.array([1.0, 1.0, 0.0], dtype=np.float32)
>>> np.round(kernels.surprisal(x, mean, var), 3)
array([0.   , 4.322, 0.   ], dtype=float32)
"""

from __future__ import annotations

import math

import numpy as np

from ctas7._core import _kernels

__all__ = [
    "VARIANTS",
    "binary_entropy",
    "ewma_update",
    "reference",
    "relative_score",
    "simd_info",
    "surprisal",
]

VARIANTS: tuple[str, ...] = tuple(_kernels.VARIANTS)

_LN2 = math.log(2.0)
_UINT32_MAX = 0xFFFFFFFF


def simd_info() -> dict:
    """Report the SIMD variants built, supported and active.

    Returns
    -------
    dict
        ``built``: variants compiled into this build (``scalar`` always);
        ``supported``: the built ones this CPU and OS can run;
        ``active``: the variant the kernels use; ``forced``: True if
        ``CTAS7_SIMD`` chose it; ``requested``: the raw ``CTAS7_SIMD`` value
        or None; ``native_build``: built with ``-march=native``
        (``CTAS7_NATIVE=1``); ``width``: floats per vector for each built
        variant.

    Examples
    --------
    >>> from ctas7.kernels import simd_info
    >>> info = simd_info()
    >>> "scalar" in info["supported"] and info["active"] in info["supported"]
    True
    """
    return _kernels.simd_info()


def surprisal(x, mean, var, out=None, variant=None):
    """Surprisal in bits of ``x`` under the normal baseline ``N(mean, var)``.

    ``-log2 P(|Z| >= |z|)`` with ``z = (x - mean) / sqrt(var)``; see the
    module docstring for the special cases (``var <= 0``, NaN, inf).

    Parameters
    ----------
    x, mean, var : numpy.ndarray
        float32, C-contiguous, all of the same shape.
    out : numpy.ndarray, optional
        float32 C-contiguous array of the same shape to write into (it may
        be one of the inputs, but must not partially overlap one).
    variant : {"scalar", "avx2", "avx512"}, optional
        Run this variant instead of the active one.

    Returns
    -------
    numpy.ndarray
        ``out``, or a new float32 array.

    Raises
    ------
    TypeError
        An argument is not a numpy array of dtype float32.
    ValueError
        Shapes differ, an array is not C-contiguous, or ``out`` overlaps
        an input; an unknown ``variant``.
    RuntimeError
        ``variant`` is not built or this CPU cannot run it.

    Examples
    --------
    >>> import numpy as np
    >>> from ctas7.kernels import surprisal
    >>> z = np.array([0.0, 1.0, 1.96, 3.0, 14.0], dtype=np.float32)
    >>> bits = surprisal(z, np.zeros(5, np.float32), np.ones(5, np.float32))
    >>> [round(float(b), 2) for b in bits]
    [0.0, 1.66, 4.32, 8.53, 145.52]
    """
    return _kernels.surprisal(x, mean, var, out, variant)


def binary_entropy(x, baseline, out=None, variant=None):
    """Binary entropy in bits of the relative deviation of ``x`` from ``baseline``.

    ``H(p)`` with ``p = min(|x - b| / max(b, 1), 1)``; 0 for NaN.

    Parameters
    ----------
    x, baseline : numpy.ndarray
        float32, C-contiguous, same shape.
    out : numpy.ndarray, optional
        float32 output array of the same shape (may be an input).
    variant : {"scalar", "avx2", "avx512"}, optional
        Run this variant instead of the active one.

    Returns
    -------
    numpy.ndarray
        ``out``, or a new float32 array, values in ``[0, 1]``.

    Raises
    ------
    TypeError, ValueError, RuntimeError
        As for :func:`surprisal`.

    Examples
    --------
    >>> import numpy as np
    >>> from ctas7.kernels import binary_entropy
    >>> x = np.array([4.0, 6.0, 8.0, 100.0], dtype=np.float32)
    >>> binary_entropy(x, np.full(4, 4.0, dtype=np.float32))
    array([0., 1., 0., 0.], dtype=float32)
    """
    return _kernels.binary_entropy(x, baseline, out, variant)


def relative_score(x, baseline, out=None, variant=None):
    """Clipped relative deviation ``p * log2(e)`` of ``x`` from ``baseline``.

    ``p = min(|x - b| / max(b, 1), 1)``; 0 for NaN.

    Parameters
    ----------
    x, baseline : numpy.ndarray
        float32, C-contiguous, same shape.
    out : numpy.ndarray, optional
        float32 output array of the same shape (may be an input).
    variant : {"scalar", "avx2", "avx512"}, optional
        Run this variant instead of the active one.

    Returns
    -------
    numpy.ndarray
        ``out``, or a new float32 array, values in ``[0, log2(e)]``.

    Raises
    ------
    TypeError, ValueError, RuntimeError
        As for :func:`surprisal`.

    Examples
    --------
    >>> import numpy as np
    >>> from ctas7.kernels import relative_score
    >>> x = np.array([4.0, 6.0, 100.0], dtype=np.float32)
    >>> np.round(relative_score(x, np.full(3, 4.0, dtype=np.float32)), 4)
    array([0.    , 0.7213, 1.4427], dtype=float32)
    """
    return _kernels.relative_score(x, baseline, out, variant)


def ewma_update(mean, var, count, x, alpha, outlier_sigma, min_samples, variant=None):
    """Fold one sample per element into EWMA baselines, in place.

    See the module docstring for the update rule (warm-up, outlier
    clipping, non-finite samples skipped, saturating count).

    Parameters
    ----------
    mean, var : numpy.ndarray
        float32 C-contiguous baseline state, updated in place.
    count : numpy.ndarray
        uint32 C-contiguous sample counts, updated in place.
    x : numpy.ndarray
        float32 C-contiguous samples, same shape.
    alpha : float
        Smoothing factor in ``(0, 1]``.
    outlier_sigma : float
        Clip samples to ``mean +- outlier_sigma * sqrt(var)`` after warm-up;
        ``> 0``, ``inf`` disables clipping.
    min_samples : int
        Warm-up length before clipping starts, ``0 <= min_samples < 2**32``.
    variant : {"scalar", "avx2", "avx512"}, optional
        Run this variant instead of the active one.

    Returns
    -------
    None

    Raises
    ------
    TypeError
        Wrong array types or dtypes, or a non-integer ``min_samples``.
    ValueError
        Shapes differ, arrays overlap or are not C-contiguous, parameters
        out of range; an unknown ``variant``.
    RuntimeError
        ``variant`` is not built or this CPU cannot run it.

    Examples
    --------
    >>> import numpy as np
    >>> from ctas7.kernels import ewma_update
    >>> mean = np.zeros(2, np.float32); var = np.zeros(2, np.float32)
    >>> count = np.zeros(2, np.uint32)
    >>> for v in (1.0, 3.0):
    ...     ewma_update(mean, var, count, np.array([v, np.nan], np.float32),
    ...                 alpha=0.1, outlier_sigma=4.0, min_samples=10)
    >>> mean, var, count
    (array([2., 0.], dtype=float32), array([1., 0.], dtype=float32), array([2, 0], dtype=uint32))
    """
    return _kernels.ewma_update(mean, var, count, x, alpha, outlier_sigma, min_samples, variant)


# ----------------------------------------------------------------------------
# float64 numpy references
# ----------------------------------------------------------------------------

_erfc = np.frompyfunc(math.erfc, 1, 1)


def _neglog2_erfc(s: np.ndarray) -> np.ndarray:
    """``-log2 erfc(s)`` for ``s >= 0`` in float64, without underflow."""
    s = np.asarray(s, dtype=np.float64)
    out = np.empty_like(s)
    small = s < 10.0
    out[small] = -np.log2(_erfc(s[small]).astype(np.float64))
    big = s[~small]
    with np.errstate(over="ignore", invalid="ignore"):
        # erfc(s) = exp(-s^2) / (s sqrt(pi)) * (1 - 1/(2s^2) + 3/(4s^4) - ...),
        # truncation error < 1e-8 relative for s >= 10
        w = 1.0 / (2.0 * big * big)
        series = 1.0 - w * (1.0 - 3.0 * w * (1.0 - 5.0 * w * (1.0 - 7.0 * w * (1.0 - 9.0 * w))))
        out[~small] = (big * big + np.log(big * math.sqrt(math.pi)) - np.log(series)) / _LN2
    return out


def _deviation(x, baseline):
    x = np.asarray(x, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        p = np.abs(x - b) / np.maximum(b, 1.0)
    valid = ~np.isnan(p)
    return np.where(valid, np.minimum(p, 1.0), 0.0), valid


class reference:
    """Float64 numpy implementations of the kernels: the specification.

    Each takes array-likes (converted to float64) and returns new arrays;
    nothing is modified in place.  The compiled kernels are tested against
    these.

    Examples
    --------
    >>> import numpy as np
    >>> from ctas7.kernels import reference
    >>> round(float(reference.surprisal([1.96], [0.0], [1.0])[0]), 4)  # -log2(0.05)
    4.322
    """

    @staticmethod
    def surprisal(x, mean, var) -> np.ndarray:
        """Float64 surprisal ``-log2 erfc(|x - mean| / sqrt(2 var))`` in bits.

        Examples
        --------
        >>> from ctas7.kernels import reference
        >>> reference.surprisal([0.0, 5.0, 1.0], [0.0, 5.0, 0.0], [1.0, 0.0, 0.0]).tolist()
        [0.0, 0.0, inf]
        """
        x, mean, var = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (x, mean, var)))
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            ad = np.abs(x - mean)
            s = ad / np.sqrt(var) / math.sqrt(2.0)  # var <= 0 is overwritten below
        out = np.zeros(x.shape, dtype=np.float64)
        degenerate = var <= 0
        out[degenerate & (ad > 0)] = np.inf
        live = ~degenerate & (s > 0)  # NaN s (NaN input, inf - inf, inf / inf) stays 0
        out[live] = _neglog2_erfc(s[live])
        return out

    @staticmethod
    def binary_entropy(x, baseline) -> np.ndarray:
        """Float64 binary entropy ``H(p)`` of the deviation, in bits.

        Examples
        --------
        >>> from ctas7.kernels import reference
        >>> reference.binary_entropy([1.5, 2.0, float("nan")], [1.0, 1.0, 1.0]).tolist()
        [1.0, 0.0, 0.0]
        """
        p, _ = _deviation(x, baseline)
        q = 1.0 - p
        with np.errstate(divide="ignore", invalid="ignore"):
            h = -(np.where(p > 0, p * np.log2(p), 0.0) + np.where(q > 0, q * np.log2(q), 0.0))
        return np.maximum(h, 0.0)

    @staticmethod
    def relative_score(x, baseline) -> np.ndarray:
        """Float64 relative score ``p * log2(e)``.

        Examples
        --------
        >>> from ctas7.kernels import reference
        >>> reference.relative_score([2.0, 1.0], [1.0, 1.0]).tolist()  # doctest: +ELLIPSIS
        [1.44269504..., 0.0]
        """
        p, _ = _deviation(x, baseline)
        return p / _LN2

    @staticmethod
    def ewma_update(mean, var, count, x, alpha, outlier_sigma, min_samples):
        """Float64 EWMA step; returns ``(mean, var, count)`` as new arrays.

        ``alpha`` and ``outlier_sigma`` are rounded to float32 first, like
        the compiled kernels receive them.

        Examples
        --------
        >>> from ctas7.kernels import reference
        >>> m, v, c = reference.ewma_update([0.0], [0.0], [0], [4.0], 0.1, 3.0, 5)
        >>> m.tolist(), v.tolist(), c.tolist()
        ([4.0], [0.0], [1])
        """
        m = np.asarray(mean, dtype=np.float64)
        v = np.asarray(var, dtype=np.float64)
        c = np.asarray(count, dtype=np.uint64)
        x = np.asarray(x, dtype=np.float64)
        alpha = float(np.float32(alpha))
        sigma = float(np.float32(outlier_sigma))
        finite = np.isfinite(x)
        a = np.maximum(alpha, 1.0 / (c.astype(np.float64) + 1.0))
        with np.errstate(invalid="ignore", over="ignore"):
            d = np.where(finite, x - m, 0.0)
            clip = (c >= min_samples) & (v > 0)
            half = sigma * np.sqrt(np.where(clip, v, 0.0))
            d = np.where(clip, np.clip(d, -half, half), d)
            m2 = m + a * d
            v2 = (1.0 - a) * (v + a * d * d)
        c2 = np.where(c >= _UINT32_MAX, c, c + 1).astype(np.uint32)
        return (
            np.where(finite, m2, m),
            np.where(finite, v2, v),
            np.where(finite, c2, c.astype(np.uint32)),
        )
