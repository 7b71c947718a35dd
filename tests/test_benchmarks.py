"""The asv suite imports, is well formed, and every benchmark's setup runs.

Benchmarks are discovered the way asv discovers them (``asv_runner``), their
call signatures are checked, each ``setup_cache`` runs once (and its result
pickles, as asv needs), and ``setup``/``teardown`` run for the cheapest
parameter combination that this machine does not skip. Nothing is timed.
The side-by-side script ``asv_bench/peers.py`` is checked on tiny inputs.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import json
import numbers
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

asv_runner = pytest.importorskip("asv_runner")
from asv_runner.discovery import disc_benchmarks  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ASV_DIR = ROOT / "asv_bench"
BENCH_DIR = ASV_DIR / "benchmarks"
if str(ASV_DIR) not in sys.path:
    sys.path.insert(0, str(ASV_DIR))

MODULES = sorted(p.stem for p in BENCH_DIR.glob("*.py") if p.stem not in ("__init__", "common"))
MAX_TRIES = 16  # parameter combinations tried before a benchmark counts as always skipped


def _benchmarks():
    return list(disc_benchmarks(str(BENCH_DIR)))


def _module_of(b) -> str:
    return b.name.split(".")[0]


def _cheapest_first(params) -> list:
    """Indices into itertools.product(*params), cheapest combination first.

    Numeric parameters rank by value (sizes, counts); others keep their order.
    """
    ranks = []
    for values in params:
        if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
            order = sorted(range(len(values)), key=lambda i: values[i])
        else:
            order = list(range(len(values)))
        ranks.append({i: r for r, i in enumerate(order)})
    sizes = [len(v) for v in params]
    combos = sorted(itertools.product(*[range(n) for n in sizes]),
                    key=lambda c: (sum(ranks[k][i] for k, i in enumerate(c)), c))
    out = []
    for c in combos:
        idx = 0
        for k, i in enumerate(c):
            idx = idx * sizes[k] + i
        out.append(idx)
    return out


def test_asv_conf_points_at_the_suite():
    conf = json.loads((ASV_DIR / "asv.conf.json").read_text())
    assert (ASV_DIR / conf["benchmark_dir"]).resolve() == BENCH_DIR
    assert (ASV_DIR / conf["repo"]).resolve() == ROOT
    assert conf["environment_type"] in ("virtualenv", "existing", "conda", "mamba")


@pytest.mark.parametrize("module", MODULES)
def test_module_imports(module):
    mod = importlib.import_module(f"benchmarks.{module}")
    names = [n for n in dir(mod) if n.startswith(("time_", "peakmem_", "track_", "mem_", "timeraw_"))]
    classes = [getattr(mod, n) for n in dir(mod) if isinstance(getattr(mod, n), type)
               and any(a.startswith(("time_", "peakmem_", "track_", "mem_", "timeraw_")) for a in dir(getattr(mod, n)))]
    assert names or classes, f"benchmarks.{module} defines no benchmark"


def test_suite_covers_the_areas():
    names = {b.name for b in _benchmarks()}
    mods = {n.split(".")[0] for n in names}
    for area in ("rings", "kernels", "meter", "teth", "response", "chain", "scenarios"):
        assert area in mods, f"no asv benchmarks for {area}"
    assert any(n.split(".")[-1].startswith("peakmem_") for n in names), "no peak-memory benchmark"
    assert any(n.startswith("chain.") and "peakmem_" in n for n in names)


def test_bodies_skip_the_asv_way():
    # a NotImplementedError raised in a benchmark body (not in setup) is a
    # failure in asv; bodies must raise asv_runner's SkipNotImplemented
    for b in _benchmarks():
        src = inspect.getsource(b.func)
        assert "raise NotImplementedError" not in src, f"{b.name}: raise SkipNotImplemented in a benchmark body"


@pytest.mark.parametrize("module", MODULES)
def test_setup_runs_for_cheapest_params(module):
    benches = [b for b in _benchmarks() if _module_of(b) == module]
    assert benches, f"no benchmarks discovered in benchmarks.{module}"
    caches = {}
    ran = 0
    for b in benches:
        assert b.check(str(BENCH_DIR)), f"{b.name}: setup/benchmark/teardown argument counts do not match params"
        if b.setup_cache_key is not None:
            if b.setup_cache_key not in caches:
                cache = b.do_setup_cache()
                pickle.dumps(cache)  # asv hands the cache to the benchmark process as a pickle
                caches[b.setup_cache_key] = cache
        cache = caches.get(b.setup_cache_key)
        order = _cheapest_first(b._params) if b._params else [None]  # the values, not their reprs
        for idx in order[:MAX_TRIES]:
            if idx is not None:
                b.set_param_idx(idx)
            b.set_cache(cache)
            skipped = b.do_setup()
            if skipped:
                continue
            b.do_teardown()
            ran += 1
            break
    assert ran, f"every benchmark in benchmarks.{module} skipped its setup"


# ---------------------------------------------------------------------------
# peers.py
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def peers():
    return importlib.import_module("peers")


def test_peers_alarm_scoring(peers):
    # one series of 10 rows, warm-up 2, windows [3, 5) and [7, 9)
    series = [("f.csv", np.zeros(10), 2, [(3, 5), (7, 9)])]
    alarm = np.zeros(10, bool)
    alarm[[1, 4, 5, 6]] = True  # 1 is in the warm-up; 4 catches the first window; 5 and 6 are outside
    q = peers._score_alarms([alarm], series)
    assert q == {"windows": 2, "caught": 1, "false_alarms": 2, "alarms": 3}
    assert peers._onsets(np.array([0, 1, 1, 0, 1], bool)).tolist() == [False, True, False, False, True]


def test_peers_best_within_budget(peers):
    curve = [(1, {"caught": 9, "false_alarms": 50}), (2, {"caught": 7, "false_alarms": 10}),
             (3, {"caught": 7, "false_alarms": 4}), (4, {"caught": 2, "false_alarms": 1})]
    assert peers._best_within(curve, 10)[0] == 3
    assert peers._best_within(curve, 0) is None


def test_peers_contenders_move_every_event(peers):
    # functional, not timed: each cross-process contender returns a positive rate
    assert peers.ctas7_channel(40_000, 4096) > 0
    assert peers.ctas7_channel(40_000, 4096, zero_copy=True) > 0
    assert peers.ctas7_channel(2_000, 1) > 0
    assert peers.mpqueue_channel(8192, 4096) > 0
    assert peers.shm_lock_channel(8192, 4096) > 0
    assert peers.shm_lock_channel(500, 1) > 0
    if importlib.util.find_spec("faster_fifo"):
        assert peers.faster_fifo_channel(8192, 4096) > 0
    if importlib.util.find_spec("zmq"):
        assert peers.zmq_channel(8192, 4096, "ipc") > 0
        assert peers.zmq_channel(8192, 4096, "inproc") > 0


def test_peers_numba_matches_kernels(peers):
    pytest.importorskip("numba")
    from ctas7 import kernels

    sur, be = peers._numba_kernels()
    g = np.random.default_rng(3)
    mean = g.normal(100.0, 10.0, 4096).astype(np.float32)
    var = g.uniform(0.0, 25.0, 4096).astype(np.float32)
    var[:8] = 0.0
    x = (mean + g.normal(0.0, 3.0, 4096) * np.sqrt(var + 1)).astype(np.float32)
    x[:4] = mean[:4]
    out = np.empty_like(x)
    # the numba peer computes the same thing as the kernels (else the ratio would be meaningless)
    np.testing.assert_allclose(sur(x, mean, var, out.copy()), kernels.reference.surprisal(x, mean, var),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(be(x, mean, out.copy()), kernels.reference.binary_entropy(x, mean),
                               rtol=1e-4, atol=1e-4)


def test_peers_report_targets(peers):
    rows = [
        {"group": "channel per event", "who": "ctas7", "median": 1e6},
        {"group": "channel per event", "who": "mp.Queue", "median": 2e4},
        {"group": "channel batched", "who": "ctas7", "median": 1e8},
        {"group": "channel batched", "who": "faster-fifo", "median": 2e7},
        {"group": "channel batched", "who": "faster-fifo", "median": 4e7},
    ]
    t = {r["target"]: r for r in peers.targets(rows, [("x", False, 3, 4)])}
    assert t["channel per event vs mp.Queue"]["ratio"] == pytest.approx(50.0)
    assert t["channel per event vs mp.Queue"]["met"] is True
    assert t["channel batched vs best faster-fifo"]["ratio"] == pytest.approx(2.5)  # against the best config
    assert t["channel batched vs best faster-fifo"]["met"] is False
    assert t["kernel surprisal n=65536 vs numpy float32"]["status"] == "not measured"
    assert t["NAB windows caught: ctas7 3 vs x 4"]["met"] is False


def test_peers_cli_rejects_unknown_section(peers):
    with pytest.raises(SystemExit):
        peers.main(["--only", "nope"])
