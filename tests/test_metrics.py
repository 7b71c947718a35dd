"""Tests for ctas7.metrics and its kernels (ctas7._core._metrics)."""

from __future__ import annotations

import multiprocessing as mp
import os
import stat

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st

from ctas7._core import _metrics
from ctas7.events import EVENT_DTYPE, KIND_GAP, make_events
from ctas7.metrics import (
    COUNTER_NAMES,
    METRICS_PREFIX,
    PEND_BITS,
    Metrics,
    MetricsReader,
    find_running,
    compact_convergence,
    histogram_geometry,
    latency_summary,
    summarize,
    sweep,
)
from ctas7.stations.worker import KIND_STAMP

H, GEOM = histogram_geometry()


@pytest.fixture
def name():
    n = f"test-{os.getpid()}-{np.random.default_rng().integers(1 << 30)}"
    yield n
    path = f"/dev/shm/{METRICS_PREFIX}{n}"
    if os.path.exists(path):
        os.unlink(path)


# ---------------------------------------------------------------------------
# kernels vs references
# ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 60_000_000_000))
def test_hdr_index_matches_hdrh(v):
    assert _metrics.hdr_index(GEOM, v) == H._counts_index_for(v)


def test_hdr_index_clamps():
    assert _metrics.hdr_index(GEOM, -5) == 0
    assert _metrics.hdr_index(GEOM, 10**15) == GEOM[2] - 1
    with pytest.raises(ValueError):
        _metrics.hdr_index((0, 99, 10), 1)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**7), st.integers(0, 10**6), st.integers(0, 50)), min_size=0, max_size=8),
       st.integers(1, 6), st.integers(0, 10**8))
def test_record_spread_matches_reference(rows, points, t_extra):
    stamps = np.array([(f, f + span, m) for f, span, m in rows] or [(0, 0, 0)], dtype=np.int64)
    k = len(rows)
    t_done = int(stamps[:, 1].max()) + t_extra
    counts = np.zeros(GEOM[2], dtype=np.uint64)
    total, worst = _metrics.record_spread(counts, GEOM, stamps, k, t_done, points)
    ref = HdrHistogram(1, 60_000_000_000, 3)
    ref_total, ref_worst = 0, 0
    for f, last, m in stamps[:k].tolist():
        if m <= 0:
            continue
        p = min(points, m)
        for j in range(p):
            lat = t_done - (f + int((last - f) * (2 * j + 1) / (2 * p)))
            c = m * (j + 1) // p - m * j // p
            ref.record_value(lat, c)
            ref_worst = max(ref_worst, lat)
        ref_total += m
    assert total == ref_total == int(counts.sum())
    assert worst == ref_worst
    assert np.array_equal(counts, np.frombuffer(bytes(ref.counts), dtype=np.uint64)[: GEOM[2]])


def test_record_spread_bad_args():
    counts = np.zeros(GEOM[2], dtype=np.uint64)
    stamps = np.zeros((2, 3), dtype=np.int64)
    with pytest.raises(ValueError):
        _metrics.record_spread(counts, GEOM, stamps, 3, 0)
    with pytest.raises(ValueError):
        _metrics.record_spread(counts[:10], GEOM, stamps, 1, 0)
    with pytest.raises(ValueError):
        _metrics.record_spread(counts, GEOM, stamps, 1, 0, points=0)


def _stamped(rng, n):
    ev = make_events(ts=np.sort(rng.integers(0, 10**9, n)), kind=rng.integers(0, 8, n))
    ctl = rng.random(n) < 0.2
    ev["kind"][ctl] = rng.choice([KIND_STAMP, KIND_GAP, 0xFFFF], ctl.sum())
    ev["sch"] = rng.integers(0, 10**9, n).astype(np.uint64)
    ev["value"] = rng.integers(0, 100, n)
    return ev


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("cap", [1, 3, 1000])
def test_collect_stamps_matches_numpy(seed, cap):
    rng = np.random.default_rng(seed)
    ev = _stamped(rng, 300)
    out = np.zeros((cap, 3), dtype=np.int64)
    k, n_ev, n_ctl = _metrics.collect_stamps(ev, KIND_STAMP, out)
    stamps = ev[ev["kind"] == KIND_STAMP]
    assert n_ev == int((ev["kind"] < 0xFF00).sum())
    assert n_ctl == int((ev["kind"] >= 0xFF00).sum())
    ref = np.stack([stamps["sch"].astype(np.int64), stamps["ts"], stamps["value"].astype(np.int64)], axis=1)
    assert k == min(cap, len(stamps))
    assert np.array_equal(out[: k - 1], ref[: k - 1])
    last = ref[k - 1 :]  # the overflow is merged into the last row
    assert out[k - 1].tolist() == [int(last[:, 0].min()), int(last[:, 1].max()), int(last[:, 2].sum())]


def test_collect_stamps_rejects_bad_input():
    with pytest.raises(TypeError):
        _metrics.collect_stamps(np.zeros(4), KIND_STAMP, np.zeros((1, 3), dtype=np.int64))
    with pytest.raises(ValueError):
        _metrics.collect_stamps(make_events(ts=[1]), KIND_STAMP, np.zeros((1, 2), dtype=np.int64))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.integers(0, 50), max_size=30), min_size=1, max_size=6))
def test_merge_runs_is_a_stable_sort(runs):
    parts = [make_events(ts=sorted(r), node=len(r)) for r in runs]
    for i, p in enumerate(parts):
        p["station"] = i
        p["seq"] = np.arange(len(p))
    src = np.concatenate(parts) if parts else make_events(ts=[])
    bounds = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
    dst = np.zeros(len(src) + 3, dtype=EVENT_DTYPE)
    assert _metrics.merge_runs(src, bounds, dst) == len(src)
    ref = src[np.argsort(src["ts"], kind="stable")]
    assert np.array_equal(dst[: len(src)], ref)


def test_merge_runs_bad_bounds():
    src = make_events(ts=[1, 2, 3])
    dst = np.zeros(3, dtype=EVENT_DTYPE)
    for b in ([0], [1, 3], [0, 4], [0, 2, 1, 3]):
        with pytest.raises(ValueError):
            _metrics.merge_runs(src, np.array(b, dtype=np.int64), dst)


# ---------------------------------------------------------------------------
# the segment
# ---------------------------------------------------------------------------


def test_create_attach_snapshot(name):
    with Metrics.create(name, n_workers=3, n_stations=5, stages=["teth", "meter"], tput_slots=4, conv_slots=2,
                        config={"source": "synthetic"}) as m:
        path = f"/dev/shm/{METRICS_PREFIX}{name}"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        m.add(m.PROCESSED, 7)
        m.add(m.PROCESSED, 5)
        m.set(m.CONVERGENCES, 2)
        m.store_atomic(m.worker_index(1, "state"), (1234 << PEND_BITS) | 17)
        m.set(m.worker_index(2, "status"), 3)
        m.station_produced[:] = [1, 2, 3, 4, 5]
        m.stage_words[1, :] = [100, 2, 5000, 3000]
        values = [1_000, 2_000, 150_000, 3_000_000]
        ref = HdrHistogram(1, 60_000_000_000, 3)
        for v in values:
            m.record_latency(0, v, count=3)
            ref.record_value(v, 3)
        m.record_latency(2, 42_000)
        for k in range(6):  # wraps the 4-slot ring
            m.push_throughput(10 * k)
        for k in range(3):  # wraps the 2-slot ring
            m.push_convergence({"tick": k, "nodes": [1, 2]})
        with MetricsReader.attach(name) as r:
            snap = r.snapshot()
            h = r.histogram("ingest_to_decision")
        assert snap["counters"]["processed"] == 12
        assert snap["counters"]["convergences"] == 2
        assert snap["config"] == {"source": "synthetic"}
        assert snap["workers"][1]["produced"] == 1234 and snap["workers"][1]["in_flight"] == 17
        assert snap["workers"][2]["status"] == "dead"
        assert snap["station_produced"] == [1, 2, 3, 4, 5]
        assert snap["stages"]["meter"] == {"events": 100, "batches": 2, "time_ns": 5000, "max_ns": 3000}
        assert snap["latency"]["ingest_to_decision"] == summarize(ref)
        assert snap["latency"]["stage:meter"]["count"] == 1
        assert snap["latency"]["stage:teth"] == {"count": 0}
        assert h.get_value_at_percentile(99) == ref.get_value_at_percentile(99)
        assert snap["throughput"]["events"] == [20, 30, 40, 50]
        assert [c["tick"] for c in snap["convergences"]] == [1, 2]
        assert snap["alive"] and name in find_running()
        assert set(snap["counters"]) == set(COUNTER_NAMES)
    assert not os.path.exists(path)


def test_worker_attach_writes_its_block(name):
    with Metrics.create(name, n_workers=2, n_stations=2) as m:
        w = Metrics.attach(name)
        w.set(w.worker_index(1, "dead_lettered"), 9)
        w.close()
        assert os.path.exists(m.path)  # only the creator unlinks
        with MetricsReader.attach(name) as r:
            assert r.snapshot()["workers"][1]["dead_lettered"] == 9


def test_bad_segments_are_refused(name, tmp_path):
    path = f"/dev/shm/{METRICS_PREFIX}{name}"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.ftruncate(fd, 8192)
    os.close(fd)
    with pytest.raises(ValueError, match="bad magic"):
        MetricsReader.attach(name)
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError):
        MetricsReader.attach(name)
    with pytest.raises(FileNotFoundError):
        MetricsReader.attach(name + "-none")
    with pytest.raises(ValueError):
        Metrics.create("bad/name", n_workers=1, n_stations=1)
    with pytest.raises(ValueError):
        Metrics.create(name + "x", n_workers=0, n_stations=1)
    with pytest.raises(TypeError):
        MetricsReader()


def test_index_errors(name):
    with Metrics.create(name, n_workers=1, n_stations=1) as m:
        with pytest.raises(IndexError):
            m.worker_index(1, "pid")
        with pytest.raises(ValueError):
            m.worker_index(0, "nope")


def _create_and_die(name):
    Metrics.create(name, n_workers=1, n_stations=1)
    os._exit(0)


def test_sweep_removes_segments_of_dead_creators(name):
    p = mp.get_context("spawn").Process(target=_create_and_die, args=(name,))
    p.start()
    p.join(30)
    assert os.path.exists(f"/dev/shm/{METRICS_PREFIX}{name}")
    assert name not in find_running()
    with Metrics.create(name + "-live", n_workers=1, n_stations=1):
        removed = sweep()
        assert name in removed and name + "-live" not in removed
    assert not os.path.exists(f"/dev/shm/{METRICS_PREFIX}{name}")


def _read_in_child(name, q):
    with MetricsReader.attach(name) as r:
        s = r.snapshot()
    q.put((s["counters"]["processed"], s["latency"]["ingest_to_decision"]["count"], s["workers"][0]["produced"]))


def test_readable_from_another_process(name):
    with Metrics.create(name, n_workers=1, n_stations=1) as m:
        m.set(m.PROCESSED, 99)
        m.record_latency(0, 5_000, 4)
        m.store_atomic(m.worker_index(0, "state"), 77 << PEND_BITS)
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        p = ctx.Process(target=_read_in_child, args=(name, q))
        p.start()
        assert q.get(timeout=60) == (99, 4, 77)
        p.join(30)


@pytest.mark.parametrize("seed", range(4))
def test_step_recorder_matches_the_separate_kernels(seed):
    rng = np.random.default_rng(seed)
    n_stages = 3
    ev = _stamped(rng, 400)
    hists = np.zeros((1 + n_stages, GEOM[2]), dtype=np.uint64)
    acc = np.zeros((n_stages, 4), dtype=np.uint64)
    stamps = np.zeros((16, 3), dtype=np.int64)
    rec = _metrics.StepRecorder(hists, GEOM, stamps, acc, n_stages, KIND_STAMP)
    ref_h = np.zeros_like(hists)
    ref_acc = np.zeros_like(acc)
    ref_stamps = np.zeros_like(stamps)
    for _ in range(3):
        k, n_ev, n_ctl = rec.collect(ev)
        assert (k, n_ev, n_ctl) == _metrics.collect_stamps(ev, KIND_STAMP, ref_stamps)
        assert np.array_equal(stamps[:k], ref_stamps[:k])
        dts = [int(x) for x in rng.integers(0, 10**6, n_stages)]
        t_done = int(ev["ts"].max()) + int(rng.integers(0, 10**6))
        got = rec.record(dts, n_ev, k, t_done)
        _metrics.record_stage_times(ref_h, GEOM, np.array(dts, dtype=np.int64), ref_acc, n_ev)
        assert got == _metrics.record_spread(ref_h[0], GEOM, ref_stamps, k, t_done)[0]
    assert np.array_equal(hists, ref_h) and np.array_equal(acc, ref_acc)
    with pytest.raises(ValueError):
        rec.record([1], 0, 0, 0)
    with pytest.raises(ValueError):
        _metrics.StepRecorder(hists[:2], GEOM, stamps, acc, n_stages, KIND_STAMP)


# ---------------------------------------------------------------------------
# numpy summaries vs hdrh; compact convergence records
# ---------------------------------------------------------------------------


def _hdrh_summary(h):
    """The summary as hdrh's own (slow, per-index Python) methods give it: the reference."""
    n = h.get_total_count()
    if not n:
        return {"count": 0}
    return {"count": int(n), "mean_us": round(h.get_mean_value() / 1e3, 3),
            **{f"p{p:g}_us": round(h.get_value_at_percentile(p) / 1e3, 3) for p in (50, 90, 99, 99.9)},
            "max_us": round(h.get_max_value() / 1e3, 3)}


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60_000_000_000), st.integers(1, 1000)), min_size=0, max_size=40))
def test_summarize_equals_hdrh(values):
    h, geom = histogram_geometry()
    for v, c in values:
        h.record_value(v, c)
    assert summarize(h) == _hdrh_summary(h)
    assert latency_summary(np.frombuffer(h.counts, dtype=np.uint64), geom) == _hdrh_summary(h)


@pytest.mark.parametrize("seed", [0, 1])
def test_snapshot_latency_equals_hdrh(name, seed):
    rng = np.random.default_rng(seed)
    with Metrics.create(name, n_workers=1, n_stations=1, stages=["meter"]) as m:
        ref = HdrHistogram(1, 60_000_000_000, 3)
        for v in rng.lognormal(11, 2, 3000).astype(np.int64):
            m.record_latency(0, int(v), count=2)
            ref.record_value(int(v), 2)
        with MetricsReader.attach(name) as r:
            assert r.snapshot()["latency"]["ingest_to_decision"] == _hdrh_summary(ref)
            assert np.array_equal(r.counts(0), np.frombuffer(ref.counts, dtype=np.uint64))
            with pytest.raises(IndexError):
                r.counts(5)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 2**32 - 1), max_size=400), st.text(max_size=2000), st.integers(64, 1024),
       st.sampled_from([None, "LOW", "CRITICAL"]))
def test_compact_convergence_is_whole_json_within_the_slot(nodes, rec, limit, level):
    import json

    full = {"ts": 12_345_678_901, "tick": 7, "nodes": nodes, "groups": [1, 2, 3], "confidence": 0.875,
            "weighted_count": 3.5, "pattern_matches": 2, "threat_level": level, "tier": "WATCH",
            "recommendation": rec}
    data = compact_convergence(full, limit)
    assert len(data) <= limit
    d = json.loads(data)
    # Every field but a shortened recommendation needs up to 290 bytes (8 ten-digit node ids,
    # "CRITICAL", an 11-digit ts): a smaller slot may lose fields, but never holds broken JSON.
    if limit < 296:
        assert set(d) <= set(compact_convergence(full, 4096) and json.loads(compact_convergence(full, 4096)))
        return
    assert list(d)[-1] == "recommendation"
    assert {k: d[k] for k in ("ts", "tick", "confidence", "threat_level", "tier")} == \
        {k: full[k] for k in ("ts", "tick", "confidence", "threat_level", "tier")}
    assert d["nodes"] == len(nodes) and d["node_ids"] == nodes[:8]
    if d["recommendation"] != rec:
        assert d["recommendation"] == "" or (d["recommendation"].endswith("…") and rec.startswith(d["recommendation"][:-1]))


def test_pushed_convergences_are_never_cut(name):
    with Metrics.create(name, n_workers=1, n_stations=1, conv_slots=2) as m:
        m.push_convergence({"ts": 1, "tick": 2, "nodes": list(range(500)), "confidence": 0.9, "threat_level": "HIGH",
                            "tier": "INTERDICT", "recommendation": "HIGH threat, tier INTERDICT: " + "é" * 900})
        with MetricsReader.attach(name) as r:
            (c,) = r.snapshot()["convergences"]
    assert "truncated" not in c and c["nodes"] == 500 and c["threat_level"] == "HIGH" and c["tier"] == "INTERDICT"
    assert c["recommendation"].endswith("…")
