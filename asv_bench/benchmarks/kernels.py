"""Scoring kernels: each kernel x SIMD variant x size, against a numpy peer.

The ``numpy`` implementation is the same math written as vectorised float32
numpy (for surprisal the scalar kernel's log-erfc fit, numpy having no erfc),
so the ratio against it measures the compiled kernels, not a different
formula; the SIMD variants evaluate shorter fits of the same functions,
sized to the 1e-5 accuracy contract (``ctas7/_core/include/ctas7/kernels.h``).
Variants this machine cannot run are skipped (``NotImplementedError``).

``cd asv_bench && python -m benchmarks.kernels`` prints the same comparison
as medians of interleaved runs in one process (kernel variants and numpy
taking turns), with throughput and the ratio against numpy.
"""

import threading
import time

import numpy as np

from ctas7 import kernels

from .common import rng

SIZES = [1_000, 65_536, 1_048_576]
IMPLS = [*kernels.VARIANTS, "numpy"]
_SUPPORTED = set(kernels.simd_info()["supported"])

_F = np.float32
_LOG2E = _F(1.4426950408889634)
_ERFC = [_F(c) for c in (
    0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807,
    -0.18628806, 0.09678418, 0.37409196, 1.00002368, -1.26551223,
)]


def numpy_surprisal(x, mean, var):
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ad = np.abs(x - mean)
        s = ad / np.sqrt(var) * _F(0.70710678)
        u = _F(1) + _F(0.5) * s
        t = _F(1) / u
        p = np.full_like(t, _ERFC[0])
        for c in _ERFC[1:]:
            p = p * t + c
        r = np.maximum((np.log(u) + s * s - p) * _LOG2E, _F(0))
        r = np.where(s > 0, r, _F(0))
        return np.where(var <= 0, np.where(ad > 0, _F(np.inf), _F(0)), r)


def _numpy_deviation(x, b):
    with np.errstate(invalid="ignore"):
        p = np.abs(x - b) / np.maximum(b, _F(1))
    valid = ~np.isnan(p)
    return np.where(valid, np.minimum(p, _F(1)), _F(0))


def numpy_binary_entropy(x, b):
    p = _numpy_deviation(x, b)
    q = _F(1) - p
    tiny = _F(np.finfo(np.float32).tiny)
    h = -(p * np.log(np.maximum(p, tiny)) + q * np.log(np.maximum(q, tiny))) * _LOG2E
    return np.maximum(h, _F(0))


def numpy_relative_score(x, b):
    return _numpy_deviation(x, b) * _LOG2E


def numpy_ewma_update(mean, var, count, x, alpha, outlier_sigma, min_samples):
    finite = np.isfinite(x)
    a = np.maximum(_F(alpha), _F(1) / (count.astype(np.float32) + _F(1)))
    d = x - mean
    clip = (count >= min_samples) & (var > 0)
    half = _F(outlier_sigma) * np.sqrt(var)
    d = np.where(clip, np.clip(d, -half, half), d)
    b = _F(1) - a
    np.copyto(mean, mean + a * d, where=finite)
    np.copyto(var, b * var + (b * a * d) * d, where=finite)
    np.copyto(count, np.maximum(count + np.uint32(1), count), where=finite)


class _Kernel:
    params = (IMPLS, SIZES)
    param_names = ["impl", "n"]

    def setup(self, impl, n):
        if impl != "numpy" and impl not in _SUPPORTED:
            raise NotImplementedError(f"{impl} is not supported on this machine")
        g = rng(n)
        self.mean = g.normal(100.0, 10.0, n).astype(np.float32)
        self.var = g.uniform(1.0, 25.0, n).astype(np.float32)
        self.x = (self.mean + g.normal(0.0, 3.0, n) * np.sqrt(self.var)).astype(np.float32)
        self.out = np.empty(n, np.float32)


class Surprisal(_Kernel):
    def time_surprisal(self, impl, n):
        if impl == "numpy":
            numpy_surprisal(self.x, self.mean, self.var)
        else:
            kernels.surprisal(self.x, self.mean, self.var, out=self.out, variant=impl)


class BinaryEntropy(_Kernel):
    def time_binary_entropy(self, impl, n):
        if impl == "numpy":
            numpy_binary_entropy(self.x, self.mean)
        else:
            kernels.binary_entropy(self.x, self.mean, out=self.out, variant=impl)


class RelativeScore(_Kernel):
    def time_relative_score(self, impl, n):
        if impl == "numpy":
            numpy_relative_score(self.x, self.mean)
        else:
            kernels.relative_score(self.x, self.mean, out=self.out, variant=impl)


class EwmaUpdate(_Kernel):
    def setup(self, impl, n):
        super().setup(impl, n)
        self.count = np.full(n, 50, np.uint32)

    def time_ewma_update(self, impl, n):
        # the state drifts between repeats, but stays in the same regime
        if impl == "numpy":
            numpy_ewma_update(self.mean, self.var, self.count, self.x, 0.05, 4.0, 20)
        else:
            kernels.ewma_update(self.mean, self.var, self.count, self.x, 0.05, 4.0, 20, variant=impl)


class SurprisalMemory:
    params = (["active", "numpy"],)
    param_names = ["impl"]

    def setup(self, impl):
        g = rng(7)
        n = 1_048_576
        self.mean = np.zeros(n, np.float32)
        self.var = np.ones(n, np.float32)
        self.x = g.normal(0.0, 3.0, n).astype(np.float32)

    def peakmem_surprisal(self, impl):
        if impl == "numpy":
            numpy_surprisal(self.x, self.mean, self.var)
        else:
            kernels.surprisal(self.x, self.mean, self.var)


class SurprisalThreads:
    """The same 2M values split over 1 or 2 threads: faster with 2 only if the GIL is released."""

    params = ([1, 2],)
    param_names = ["threads"]
    timeout = 120

    def setup(self, threads):
        g = rng(11)
        n = 2_097_152
        self.mean = g.normal(0.0, 1.0, n).astype(np.float32)
        self.var = g.uniform(0.5, 2.0, n).astype(np.float32)
        self.x = g.normal(0.0, 3.0, n).astype(np.float32)
        self.out = np.empty(n, np.float32)
        step = n // threads
        self.chunks = [slice(i * step, (i + 1) * step) for i in range(threads)]

    def _work(self, sl):
        kernels.surprisal(self.x[sl], self.mean[sl], self.var[sl], out=self.out[sl])

    def time_surprisal_threads(self, threads):
        workers = [threading.Thread(target=self._work, args=(sl,)) for sl in self.chunks]
        for w in workers:
            w.start()
        for w in workers:
            w.join()


def interleaved(sizes=(65_536, 1_048_576), rounds=40):
    """Median seconds per call for every kernel, variant and numpy, runs interleaved."""
    rows = []
    impls = [v for v in kernels.VARIANTS if v in _SUPPORTED] + ["numpy"]
    for n in sizes:
        g = rng(n)
        mean = g.normal(100.0, 10.0, n).astype(np.float32)
        var = g.uniform(1.0, 25.0, n).astype(np.float32)
        x = (mean + g.normal(0.0, 3.0, n) * np.sqrt(var)).astype(np.float32)
        out = np.empty(n, np.float32)
        count = np.full(n, 50, np.uint32)
        cases = {
            "surprisal": (lambda v: kernels.surprisal(x, mean, var, out=out, variant=v),
                          lambda: numpy_surprisal(x, mean, var)),
            "binary_entropy": (lambda v: kernels.binary_entropy(x, mean, out=out, variant=v),
                               lambda: numpy_binary_entropy(x, mean)),
            "relative_score": (lambda v: kernels.relative_score(x, mean, out=out, variant=v),
                               lambda: numpy_relative_score(x, mean)),
            "ewma_update": (lambda v: kernels.ewma_update(mean, var, count, x, 0.05, 4.0, 20, variant=v),
                            lambda: numpy_ewma_update(mean, var, count, x, 0.05, 4.0, 20)),
        }
        for name, (kernel, peer) in cases.items():
            times = {impl: [] for impl in impls}
            for _ in range(rounds):
                for impl in impls:
                    t0 = time.perf_counter()
                    peer() if impl == "numpy" else kernel(impl)
                    times[impl].append(time.perf_counter() - t0)
            med = {impl: float(np.median(t)) for impl, t in times.items()}
            for impl in impls:
                rows.append((name, n, impl, med[impl], n / med[impl], med["numpy"] / med[impl]))
    return rows


if __name__ == "__main__":
    print(f"{'kernel':15s} {'n':>8s} {'impl':7s} {'median':>10s} {'values/s':>9s} {'vs numpy':>8s}")
    for name, n, impl, sec, rate, ratio in interleaved():
        print(f"{name:15s} {n:8d} {impl:7s} {sec * 1e6:8.1f}us {rate / 1e9:7.2f}G {ratio:7.1f}x")
