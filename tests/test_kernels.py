"""Scoring kernels: every variant against the float64 references."""

import json
import math
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctas7 import kernels
from ctas7._core import _kernels

ROOT = Path(__file__).resolve().parent.parent
INFO = kernels.simd_info()
UINT32_MAX = 0xFFFFFFFF
FLT_MAX = float(np.finfo(np.float32).max)
TOL = 1e-5

VARIANT_PARAMS = [
    pytest.param(
        v,
        marks=pytest.mark.skipif(
            v not in INFO["supported"],
            reason=f"SIMD variant {v} is not built or this CPU/OS cannot run it "
            f"(supported: {INFO['supported']})",
        ),
    )
    for v in kernels.VARIANTS
]

HYP = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def f32(*values):
    return np.array(values, dtype=np.float32)


def assert_close(got, expected, scale=None):
    """|got - expected| <= 1e-5 * max(1, |expected|, scale); inf must match inf.

    ``expected`` is float64; where it overflows float32 the kernel must give
    inf (or be within tolerance of a value just below FLT_MAX).
    """
    got = np.asarray(got, dtype=np.float64).ravel()
    expected = np.asarray(expected, dtype=np.float64).ravel()
    assert got.shape == expected.shape
    assert not np.isnan(got).any(), f"NaN in kernel output at {np.flatnonzero(np.isnan(got))}"
    assert not np.isnan(expected).any()
    bound = np.maximum(1.0, np.abs(expected))
    if scale is not None:
        bound = np.maximum(bound, np.asarray(scale, dtype=np.float64).ravel())
    with np.errstate(invalid="ignore"):
        err = np.abs(got - expected)
        ok = (got == expected) | (err <= TOL * bound)
        ok |= np.isinf(got) & (got > 0) & (expected > FLT_MAX * (1 - TOL))
    bad = np.flatnonzero(~ok)
    assert bad.size == 0, (
        f"{bad.size} mismatches, first at {bad[0]}: got {got[bad[0]]!r}, expected {expected[bad[0]]!r}"
    )


def placed(values, offset, dtype=np.float32, fill=0.0):
    """``values`` copied into a guarded buffer at an element offset; returns (view, buffer)."""
    n = len(values)
    buf = np.full(offset + n + 5, fill, dtype=dtype)
    view = buf[offset : offset + n]
    view[...] = values
    return view, buf


def assert_guard(buf, offset, n, fill):
    np.testing.assert_array_equal(buf[:offset], np.full(offset, fill, dtype=buf.dtype))
    np.testing.assert_array_equal(buf[offset + n :], np.full(buf.size - offset - n, fill, dtype=buf.dtype))


# ----------------------------------------------------------------------------
# Hypothesis strategies
# ----------------------------------------------------------------------------

SPECIALS = [0.0, -0.0, 1.0, -1.0, 0.5, np.inf, -np.inf, np.nan, 1e-45, 1e-38, FLT_MAX, -FLT_MAX]
any_f32 = st.one_of(
    st.floats(width=32),
    st.sampled_from(SPECIALS),
    st.floats(-100, 100, width=32),
)


def _structured_surprisal(mean, var, z):
    x = np.float32(np.float64(mean) + z * math.sqrt(var))
    return (float(x), mean, var)


surprisal_elem = st.one_of(
    st.tuples(any_f32, any_f32, any_f32),
    st.builds(
        _structured_surprisal,
        st.floats(-1e6, 1e6, width=32),
        st.floats(2.0**-20, 1e6, width=32),
        st.floats(-40, 40),
    ),
)


def _structured_deviation(b, r):
    return (float(np.float32(np.float64(b) * (1 + r))), b)


deviation_elem = st.one_of(
    st.tuples(any_f32, any_f32),
    st.builds(_structured_deviation, st.floats(-10, 1e6, width=32), st.floats(-3, 3)),
)

ewma_elem = st.tuples(
    st.floats(-1e6, 1e6, width=32),  # mean
    st.one_of(st.just(0.0), st.floats(0, 2.0**40, width=32)),  # var
    st.one_of(
        st.integers(0, 12),
        st.sampled_from([2**24 + 1, 2**31 - 1, 2**31, UINT32_MAX - 1, UINT32_MAX]),
    ),  # count
    st.one_of(  # (is a z-score around the baseline, value)
        st.tuples(st.just(False), st.floats(-1e7, 1e7, width=32)),
        st.tuples(st.just(False), st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0])),
        st.tuples(st.just(True), st.floats(-10, 10)),
    ),
)



# ----------------------------------------------------------------------------
# simd_info and the C-level API
# ----------------------------------------------------------------------------


def test_simd_info_contract():
    info = kernels.simd_info()
    assert set(info) >= {"built", "supported", "active", "forced", "native_build"}
    assert info["built"][0] == "scalar" and "scalar" in info["supported"]
    assert set(info["supported"]) <= set(info["built"]) <= set(kernels.VARIANTS)
    assert info["active"] in info["supported"]
    assert info["width"]["scalar"] == 1
    if os.environ.get("CTAS7_SIMD", "").strip().lower() in ("", "auto"):
        assert info["active"] == info["supported"][-1]
        assert info["forced"] is False


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="needs /proc/cpuinfo")
def test_supported_matches_cpuinfo():
    text = Path("/proc/cpuinfo").read_text()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), None)
    if line is None or os.uname().machine not in ("x86_64", "amd64", "i686"):
        pytest.skip("not an x86 Linux machine")
    flags = set(line.split(":", 1)[1].split())
    assert ("avx2" in INFO["supported"]) == ({"avx2", "fma"} <= flags)
    assert ("avx512" in INFO["supported"]) == ({"avx512f", "avx512dq"} <= flags)


def test_c_api_is_exported_for_cimport():
    capi = _kernels.__pyx_capi__
    for name in ("surprisal_f32", "binary_entropy_f32", "relative_score_f32", "ewma_update_f32"):
        assert name in capi


# ----------------------------------------------------------------------------
# Hand-checked values and special cases
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANT_PARAMS)
def test_surprisal_known_values(variant):
    z = f32(0.0, 1.0, -1.96, 1.96, 3.0, 14.0, 30.0)
    got = kernels.surprisal(z, np.zeros_like(z), np.ones_like(z), variant=variant)
    assert got[0] == 0.0
    assert abs(got[3] - (-math.log2(0.05))) < 2e-4  # the textbook 5% two-sided tail
    assert got[2] == pytest.approx(got[3], abs=1e-6)
    for zi, gi in zip(z[1:], got[1:]):
        exact = -math.log2(math.erfc(abs(float(zi)) / math.sqrt(2)))
        assert gi == pytest.approx(exact, rel=TOL, abs=TOL)
    # a naive float32 erfc underflows to 0 (score inf) near |z| = 14
    assert np.isfinite(got[5]) and got[5] > 140


@pytest.mark.parametrize("variant", VARIANT_PARAMS)
def test_surprisal_special_cases(variant):
    inf, nan = np.inf, np.nan
    cases = [  # (x, mean, var, expected)
        (nan, 0, 1, 0.0),
        (0, nan, 1, 0.0),
        (0, 0, nan, 0.0),
        (5, 5, 0, 0.0),  # degenerate baseline, no deviation
        (5, 4, 0, inf),  # degenerate baseline, any deviation
        (5, 4, -0.0, inf),
        (5, 5, -3, 0.0),
        (nan, 5, 0, 0.0),
        (inf, 0, 1, inf),
        (-inf, 0, 1, inf),
        (inf, 0, 0, inf),
        (inf, inf, 1, 0.0),  # inf - inf is undefined: no evidence
        (3, 0, inf, 0.0),
        (inf, 0, inf, 0.0),  # inf / inf
        (3e38, -3e38, 1, inf),
        (1, 0, 1e-45, inf),
    ]
    x, m, v, expected = (np.array(c, dtype=np.float32) for c in zip(*cases))
    got = kernels.surprisal(x, m, v, variant=variant)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("variant", VARIANT_PARAMS)
@pytest.mark.parametrize("at", [0, 5, 17, 31])
def test_surprisal_special_cases_without_degenerate_variance(variant, at):
    """The SIMD kernels take a rsqrt path when no variance in a vector is below
    FLT_MIN; the special values must come out the same there."""
    inf, nan, tiny = np.inf, np.nan, float(np.finfo(np.float32).tiny)
    cases = [  # (x, mean, var, exact result or None): no var <= 0 or subnormal anywhere
        (nan, 0, 1, 0.0), (0, nan, 1, 0.0), (0, 0, nan, 0.0), (inf, 0, 1, inf), (-inf, 0, 1, inf),
        (inf, inf, 1, 0.0), (3, 0, inf, 0.0), (inf, 0, inf, 0.0), (3e38, -3e38, 1, inf),
        (7, 7, 2, 0.0), (1, 0, tiny, None), (1e-19, 0, tiny, None), (1e19, 0, FLT_MAX, None),
        (2, 0, FLT_MAX, None), (-3, 0, 1, None),
    ]
    n = 32
    for *case, exact in cases:
        x = np.full(n, 0.5, np.float32)
        m = np.zeros(n, np.float32)
        v = np.ones(n, np.float32)
        x[at], m[at], v[at] = case
        got = kernels.surprisal(x, m, v, variant=variant)
        assert_close(got, kernels.reference.surprisal(x, m, v))
        if exact is not None:
            assert got[at] == exact, case


@pytest.mark.parametrize("variant", VARIANT_PARAMS)
def test_entropy_stays_in_unit_interval_near_the_peak(variant):
    p = np.linspace(0.49, 0.51, 20001).astype(np.float32)
    got = kernels.binary_entropy(p, np.zeros_like(p), variant=variant)  # b = 0: p = |x|
    assert got.max() <= 1.0 and got[np.flatnonzero(p == 0.5)] == 1.0
    assert_close(got, kernels.reference.binary_entropy(p, np.zeros_like(p)))


@pytest.mark.parametrize("variant", VARIANT_PARAMS)
def test_entropy_and_relative_known_values(variant):
    b = f32(4, 4, 4, 4, 4, 0, -3, 0.5, 4, 4, 4, 1, 1)
    x = f32(4, 6, 8, 100, 5, 0.5, -2.5, 1.0, np.inf, -np.inf, np.nan, 1, 1.25)
    p = np.array([0, 0.5, 1, 1, 0.25, 0.5, 0.5, 0.5, 1, 1, 0, 0, 0.25])
    h = np.array([0, 1, 0, 0, 0.8112781244591328, 1, 1, 1, 0, 0, 0, 0, 0.8112781244591328])
    assert_close(kernels.binary_entropy(x, b, variant=variant), h)
    assert_close(kernels.relative_score(x, b, variant=variant), p / math.log(2))
    nan_b = f32(np.nan, np.inf, -np.inf)
    xb = f32(1, 1, 1)
    np.testing.assert_array_equal(kernels.binary_entropy(xb, nan_b, variant=variant), [0, 0, 0])
    assert_close(kernels.relative_score(xb, nan_b, variant=variant), [0, 0, 1 / math.log(2)])


def test_reference_asymptotic_branch_matches_erfc():
    s = np.linspace(10.0, 26.0, 101)  # erfc still representable in float64 here
    exact = np.array([-math.log2(math.erfc(v)) for v in s])
    np.testing.assert_allclose(kernels._neglog2_erfc(s), exact, rtol=1e-10)


# ----------------------------------------------------------------------------
# Properties: every variant against the float64 reference (tails, offsets)
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANT_PARAMS)
@HYP
@given(rows=st.lists(surprisal_elem, max_size=67), offset=st.integers(0, 3))
def test_surprisal_matches_reference(variant, rows, offset):
    x, m, v = (np.array([r[i] for r in rows], dtype=np.float32) for i in range(3))
    xs, _ = placed(x, offset)
    out, obuf = placed(np.zeros(len(rows)), offset, fill=-7.0)
    kernels.surprisal(xs, m, v, out=out, variant=variant)
    assert_guard(obuf, offset, len(rows), -7.0)
    assert_close(out, kernels.reference.surprisal(x, m, v))


positive_var = st.one_of(
    st.floats(float(np.finfo(np.float32).tiny), FLT_MAX, width=32),
    st.sampled_from([np.inf, np.nan, 1.0]),
)


@pytest.mark.parametrize("variant", VARIANT_PARAMS)
@HYP
@given(
    rows=st.lists(
        st.one_of(
            st.tuples(any_f32, any_f32, positive_var),
            surprisal_elem.filter(lambda r: r[2] >= 2.0**-126),
        ),
        min_size=8,
        max_size=40,
    )
)
def test_surprisal_matches_reference_without_degenerate_variance(variant, rows):
    # every vector takes the rsqrt path (no var <= 0 or subnormal)
    x, m, v = (np.array([r[i] for r in rows], dtype=np.float32) for i in range(3))
    assert_close(kernels.surprisal(x, m, v, variant=variant), kernels.reference.surprisal(x, m, v))


@pytest.mark.parametrize("variant", VARIANT_PARAMS)
@pytest.mark.parametrize("kernel", ["binary_entropy", "relative_score"])
@HYP
@given(rows=st.lists(deviation_elem, max_size=67), offset=st.integers(0, 3))
def test_deviation_scores_match_reference(kernel, variant, rows, offset):
    x, b = (np.array([r[i] for r in rows], dtype=np.float32) for i in range(2))
    bs, _ = placed(b, offset)
    out, obuf = placed(np.zeros(len(rows)), offset, fill=-7.0)
    getattr(kernels, kernel)(x, bs, out=out, variant=variant)
    assert_guard(obuf, offset, len(rows), -7.0)
    assert_close(out, getattr(kernels.reference, kernel)(x, b))


@pytest.mark.parametrize("variant", VARIANT_PARAMS)
@HYP
@given(
    rows=st.lists(ewma_elem, max_size=67),
    offset=st.integers(0, 3),
    alpha=st.one_of(st.floats(1e-6, 1.0), st.just(1.0)),
    sigma=st.one_of(st.floats(0.5, 10.0), st.just(math.inf)),
    min_samples=st.integers(0, 6),
)
def test_ewma_matches_reference(variant, rows, offset, alpha, sigma, min_samples):
    n = len(rows)
    m0 = np.array([r[0] for r in rows], dtype=np.float32)
    v0 = np.array([r[1] for r in rows], dtype=np.float32)
    c0 = np.array([r[2] for r in rows], dtype=np.uint32)
    x = np.array(
        [r[0] + r[3][1] * math.sqrt(r[1]) if r[3][0] else r[3][1] for r in rows], dtype=np.float32
    )
    mean, mbuf = placed(m0, offset, fill=-7.0)
    var, vbuf = placed(v0, offset + 1, fill=-7.0)
    count, cbuf = placed(c0, offset, dtype=np.uint32, fill=7)
    kernels.ewma_update(mean, var, count, x, alpha, sigma, min_samples, variant=variant)
    assert_guard(mbuf, offset, n, -7.0)
    assert_guard(vbuf, offset + 1, n, -7.0)
    assert_guard(cbuf, offset, n, 7)
    em, ev, ec = kernels.reference.ewma_update(m0, v0, c0, x, alpha, sigma, min_samples)
    # float32 d = x - mean rounds relative to |x| + |mean|, so that is the scale of mean's error
    scale = np.maximum(np.abs(m0), np.where(np.isfinite(x), np.abs(x), 0.0))
    assert_close(mean, em, scale=scale)
    assert_close(var, ev)
    np.testing.assert_array_equal(count, ec)
    skipped = ~np.isfinite(x)
    np.testing.assert_array_equal(mean[skipped], m0[skipped])
    np.testing.assert_array_equal(var[skipped], v0[skipped])
    np.testing.assert_array_equal(count[skipped], c0[skipped])


@pytest.mark.parametrize("n", range(0, 68))
def test_all_variants_agree_on_every_tail_length(n):
    rng = np.random.default_rng(1000 + n)
    mean = rng.normal(0, 10, n).astype(np.float32)
    var = rng.uniform(0, 4, n).astype(np.float32)
    x = (mean + rng.normal(0, 6, n) * np.sqrt(var)).astype(np.float32)
    x[rng.random(n) < 0.1] = np.nan
    ref_s = kernels.reference.surprisal(x, mean, var)
    ref_h = kernels.reference.binary_entropy(x, mean)
    for variant in INFO["supported"]:
        assert_close(kernels.surprisal(x, mean, var, variant=variant), ref_s)
        assert_close(kernels.binary_entropy(x, mean, variant=variant), ref_h)


# ----------------------------------------------------------------------------
# EWMA behaviour
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANT_PARAMS)
def test_ewma_warmup_clipping_and_saturation(variant):
    mean = np.zeros(4, np.float32)
    var = np.zeros(4, np.float32)
    count = np.array([0, 0, UINT32_MAX - 1, 0], np.uint32)
    samples = [1.0, 2.0, 3.0, 6.0]
    for s in samples:  # warm-up: a plain running mean while 1/(count+1) > alpha
        x = np.array([s, s, s, np.nan], np.float32)
        kernels.ewma_update(mean, var, count, x, 0.01, 3.0, 100, variant=variant)
    assert mean[0] == pytest.approx(np.mean(samples), rel=1e-6)
    assert var[0] == pytest.approx(np.var(samples), rel=1e-5)
    assert count.tolist() == [4, 4, UINT32_MAX, 0]
    assert (mean[3], var[3]) == (0.0, 0.0)
    # after warm-up an outlier moves the baseline as if it were 3 sigma out
    mean = f32(10.0, 10.0)
    var = f32(4.0, 4.0)
    count = np.array([50, 5], np.uint32)
    kernels.ewma_update(mean, var, count, f32(1e6, 1e6), 0.1, 3.0, 20, variant=variant)
    assert mean[0] == pytest.approx(10.0 + 0.1 * 6.0, rel=1e-6)
    assert var[0] == pytest.approx(0.9 * (4.0 + 0.1 * 36.0), rel=1e-6)
    assert mean[1] == pytest.approx(10.0 + (1e6 - 10.0) / 6, rel=1e-6)  # warming up: a = 1/(5+1)


@pytest.mark.parametrize("variant", VARIANT_PARAMS)
def test_ewma_stream_tracks_float64_reference(variant):
    rng = np.random.default_rng(7)
    nodes, steps = 37, 400
    mean = np.zeros(nodes, np.float32)
    var = np.zeros(nodes, np.float32)
    count = np.zeros(nodes, np.uint32)
    rm, rv, rc = mean.astype(np.float64), var.astype(np.float64), count.copy()
    loc = rng.uniform(-50, 50, nodes)
    for _ in range(steps):
        x = (loc + rng.normal(0, 2, nodes)).astype(np.float32)
        x[rng.random(nodes) < 0.05] = np.nan
        kernels.ewma_update(mean, var, count, x, 0.02, 4.0, 30, variant=variant)
        rm, rv, rc = kernels.reference.ewma_update(rm, rv, rc, x, 0.02, 4.0, 30)
    np.testing.assert_allclose(mean, rm, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(var, rv, rtol=1e-3)
    np.testing.assert_array_equal(count, rc)
    np.testing.assert_allclose(mean, loc, atol=1.5)
    np.testing.assert_allclose(var, 4.0, rtol=0.6)


# ----------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------


def test_bad_arguments_raise_clear_errors():
    a = np.zeros(8, np.float32)
    with pytest.raises(TypeError, match="numpy array"):
        kernels.surprisal([0.0] * 8, a, a)
    with pytest.raises(TypeError, match="float32"):
        kernels.surprisal(a.astype(np.float64), a, a)
    with pytest.raises(TypeError, match="float32"):
        kernels.binary_entropy(a, a.astype(">f4"))
    with pytest.raises(ValueError, match="shape"):
        kernels.surprisal(a, a[:7], a)
    with pytest.raises(ValueError, match="contiguous"):
        kernels.relative_score(np.zeros(16, np.float32)[::2], a)
    with pytest.raises(ValueError, match="overlaps"):
        buf = np.zeros(9, np.float32)
        kernels.surprisal(buf[:8], a, a, out=buf[1:])
    ro = np.zeros(8, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        kernels.binary_entropy(a, a, out=ro)
    with pytest.raises(ValueError, match="unknown SIMD variant"):
        kernels.surprisal(a, a, a, variant="sse9")
    with pytest.raises(TypeError, match="variant"):
        kernels.surprisal(a, a, a, variant=2)


def test_ewma_bad_arguments():
    m, v, x = (np.zeros(4, np.float32) for _ in range(3))
    c = np.zeros(4, np.uint32)
    ok = dict(alpha=0.1, outlier_sigma=3.0, min_samples=5)
    with pytest.raises(TypeError, match="uint32"):
        kernels.ewma_update(m, v, c.astype(np.int64), x, **ok)
    with pytest.raises(ValueError, match="share memory"):
        kernels.ewma_update(m, m, c, x, **ok)
    for alpha in (0.0, -0.1, 1.5, math.nan, 1e-60):
        with pytest.raises(ValueError, match="alpha"):
            kernels.ewma_update(m, v, c, x, alpha, 3.0, 5)
    for sigma in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="outlier_sigma"):
            kernels.ewma_update(m, v, c, x, 0.1, sigma, 5)
    for ms in (-1, 2**32):
        with pytest.raises(ValueError, match="min_samples"):
            kernels.ewma_update(m, v, c, x, 0.1, 3.0, ms)
    with pytest.raises(TypeError, match="min_samples"):
        kernels.ewma_update(m, v, c, x, 0.1, 3.0, 2.5)
    with pytest.raises(ValueError, match="shape"):
        kernels.ewma_update(m, v, c, np.zeros(3, np.float32), **ok)


@pytest.mark.parametrize("variant", VARIANT_PARAMS)
def test_in_place_and_multidimensional(variant):
    rng = np.random.default_rng(3)
    x = rng.normal(0, 3, (5, 13)).astype(np.float32)
    mean = np.zeros_like(x)
    var = np.ones_like(x)
    expected = kernels.reference.surprisal(x, mean, var)
    out = kernels.surprisal(x, mean, var, out=x, variant=variant)
    assert out is x and out.shape == (5, 13)
    assert_close(out, expected)


@pytest.mark.skipif(len(INFO["supported"]) == len(kernels.VARIANTS), reason="this CPU runs every variant")
def test_unsupported_variant_is_refused():
    missing = [v for v in kernels.VARIANTS if v not in INFO["supported"]][0]
    a = np.zeros(4, np.float32)
    with pytest.raises(RuntimeError, match=missing):
        kernels.surprisal(a, a, a, variant=missing)


# ----------------------------------------------------------------------------
# Variant selection: CTAS7_SIMD
# ----------------------------------------------------------------------------


def test_choose_policy():
    full = ["scalar", "avx2", "avx512"]
    assert _kernels._choose(None, full) == ("avx512", False, None)
    assert _kernels._choose("", ["scalar", "avx2"]) == ("avx2", False, None)
    assert _kernels._choose("auto", full) == ("avx512", False, None)
    assert _kernels._choose(" AVX2 ", full) == ("avx2", True, None)
    assert _kernels._choose("scalar", ["scalar"]) == ("scalar", True, None)
    variant, forced, warning = _kernels._choose("avx512", ["scalar", "avx2"])
    assert (variant, forced) == ("avx2", False) and "avx512" in warning
    with pytest.raises(ValueError, match="CTAS7_SIMD"):
        _kernels._choose("neon", full)


def _run_with_simd(value, code="import json, ctas7.kernels as k; print(json.dumps(k.simd_info()))"):
    env = {k: v for k, v in os.environ.items() if k != "CTAS7_SIMD"}
    if value is not None:
        env["CTAS7_SIMD"] = value
    return subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", code],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize("variant", VARIANT_PARAMS)
def test_env_forces_variant(variant):
    code = (
        "import json, numpy as np, ctas7.kernels as k\n"
        "z = np.array([1.96, 0.0, 14.0], np.float32)\n"
        "s = k.surprisal(z, np.zeros(3, np.float32), np.ones(3, np.float32))\n"
        "print(json.dumps([k.simd_info(), s.tolist()]))"
    )
    proc = _run_with_simd(variant, code)
    assert proc.returncode == 0, proc.stderr
    info, scores = json.loads(proc.stdout)
    assert info["active"] == variant and info["forced"] is True and info["requested"] == variant
    assert scores[1] == 0.0 and abs(scores[0] - 4.32205) < 1e-4 and 145 < scores[2] < 146


def test_env_unknown_value_fails_at_import():
    proc = _run_with_simd("avx1024")
    assert proc.returncode != 0
    assert "ValueError" in proc.stderr and "CTAS7_SIMD" in proc.stderr


@pytest.mark.skipif(len(INFO["supported"]) == len(kernels.VARIANTS), reason="this CPU runs every variant")
def test_env_unsupported_variant_warns_and_falls_back():
    missing = [v for v in kernels.VARIANTS if v not in INFO["supported"]][-1]
    proc = _run_with_simd(missing)
    assert proc.returncode != 0 and "RuntimeWarning" in proc.stderr  # -W error turns it fatal
    env = {k: v for k, v in os.environ.items()}
    env["CTAS7_SIMD"] = missing
    ok = subprocess.run(
        [sys.executable, "-c", "import json, ctas7.kernels as k; print(json.dumps(k.simd_info()))"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    info = json.loads(ok.stdout)
    assert info["active"] == INFO["supported"][-1] and info["forced"] is False


# ----------------------------------------------------------------------------
# Threads: the GIL is released, and concurrent calls stay correct
# ----------------------------------------------------------------------------


def test_concurrent_calls_are_correct():
    rng = np.random.default_rng(11)
    n = 1 << 20
    x = rng.normal(0, 4, n).astype(np.float32)
    mean = np.zeros(n, np.float32)
    var = np.ones(n, np.float32)
    expected = kernels.surprisal(x, mean, var)
    results, errors = {}, []

    def work(i):
        try:
            out = np.empty(n, np.float32)
            for _ in range(5):
                kernels.surprisal(x, mean, var, out=out)
            results[i] = out
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for out in results.values():
        np.testing.assert_array_equal(out, expected)


# ----------------------------------------------------------------------------
# -march=native build
# ----------------------------------------------------------------------------


@pytest.mark.slow
def test_native_build_agrees(tmp_path):
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler")
    core = tmp_path / "ctas7" / "_core"
    core.mkdir(parents=True)
    shutil.copy(ROOT / "setup.py", tmp_path / "setup.py")
    for name in ("_kernels.pyx", "_kernels.pxd"):
        shutil.copy(ROOT / "ctas7" / "_core" / name, core / name)
    shutil.copytree(ROOT / "ctas7" / "_core" / "include", core / "include")
    for pkg in (core.parent, core):  # Cython finds the twin .pxd through the package layout
        (pkg / "__init__.py").touch()
    env = dict(os.environ, CTAS7_NATIVE="1", CTAS7_EXTENSIONS="_kernels")
    build = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=500,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    so = next(core.glob("_kernels*.so"))
    code = (
        "import importlib.util, json, numpy as np\n"
        f"spec = importlib.util.spec_from_file_location('ctas7._core._kernels', {str(so)!r})\n"
        "k = importlib.util.module_from_spec(spec); spec.loader.exec_module(k)\n"
        "rng = np.random.default_rng(5)\n"
        "x = rng.normal(0, 5, 1001).astype(np.float32)\n"
        "m = np.zeros_like(x); v = np.ones_like(x)\n"
        "print(json.dumps([k.simd_info(), {vv: k.surprisal(x, m, v, variant=vv).tolist() "
        "for vv in k.simd_info()['supported']}]))"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    info, outs = json.loads(run.stdout)
    assert info["native_build"] is True
    rng = np.random.default_rng(5)
    x = rng.normal(0, 5, 1001).astype(np.float32)
    expected = kernels.reference.surprisal(x, np.zeros_like(x), np.ones_like(x))
    for got in outs.values():
        assert_close(np.array(got), expected)
