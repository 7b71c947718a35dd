"""Tests for ctas7.console: exact text of the renderables on a fixed snapshot, numpy summaries vs hdrh,
snapshots of a real segment, and the live loop (stop, finish, death of the cluster)."""

from __future__ import annotations

import copy
import io
import multiprocessing as mp
import os
import threading
import time

import numpy as np
import pytest
from rich.console import Console

from ctas7 import console as cm
from ctas7.metrics import Metrics, MetricsReader, histogram_geometry, summarize

SNAP = {
    "name": "fixed",
    "creator_pid": 4242,
    "alive": True,
    "state": "running",
    "uptime_s": 75.4,
    "config": {"source": "synthetic", "latency_target_ns": 200_000, "channel_capacity": 1000},
    "counters": {"processed": 1_234_000, "reports": 12, "dropped_crash": 5, "restarts": 1, "gaps": 0},
    "workers": [
        {"pid": 11, "status": "running", "first_station": 0, "n_stations": 4, "ring_occupancy": 250,
         "produced": 700_000, "dead_lettered": 0, "restarts": 1, "lost_records": 0},
        {"pid": 12, "status": "running", "first_station": 4, "n_stations": 4, "ring_occupancy": 0,
         "produced": 540_000, "dead_lettered": 20, "restarts": 0, "lost_records": 0},
    ],
    "station_produced": [1, 2, 3, 4, 5, 6, 7, 8],
    "stages": {"teth": {"events": 1_234_000, "batches": 1234, "time_ns": 61_700_000, "max_ns": 90_000},
               "meter": {"events": 1_234_000, "batches": 1234, "time_ns": 123_400_000, "max_ns": 400_000}},
    "latency": {
        "ingest_to_decision": {"count": 1_000, "mean_us": 150.5, "p50_us": 120.0, "p90_us": 300.0,
                               "p99_us": 480.0, "p99.9_us": 950.0, "max_us": 1900.0},
        "stage:teth": {"count": 1234, "mean_us": 50.0, "p50_us": 40.0, "p90_us": 60.0, "p99_us": 80.0,
                       "p99.9_us": 85.0, "max_us": 90.0},
        "stage:meter": {"count": 1234, "mean_us": 100.0, "p50_us": 90.0, "p90_us": 150.0, "p99_us": 300.0,
                        "p99.9_us": 390.0, "max_us": 400.0},
    },
    "latency_histogram": {"upper_us": [50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0],
                          "counts": [100, 250, 400, 240, 9, 1]},
    "throughput": {"interval_s": 0.1, "events": [0, 5_000, 10_000, 20_000, 40_000, 20_000, 10_000, 5_000, 0, 20_000]},
    "convergences": [
        {"ts": 2_637_531_000_000, "tick": 2637530, "nodes": [41, 5, 62], "groups": [0], "confidence": 0.92,
         "threat_level": "HIGH", "tier": "INTERDICT", "pattern_matches": 11,
         "recommendation": "HIGH threat, tier INTERDICT: 3 nodes converged. Recommendation: interdict nodes 41, 5 and 62."},
        {"truncated": '{"confidence": 1.0, "groups": [0], "nodes": [127, 125, 3, 126, 124], "pattern_matches": 15, '
                      '"recommendation": "CRITICAL threat, tier NEUTRALIZE: 5 nodes in 1 group converged. '
                      'Recommendation: neutralize now: contain nodes 127, 125'},
    ],
}


EXPECTED_VIEW = """\
ctas7 cluster fixed  pid 4242  running  up 0:01:15  synthetic  2 workers, 8 stations  now 130.0k/s  
processed 1,234,000
╭─ throughput (events/s) ──────────────────────────────────────────────────────────────────────────╮
│  400.0k/s ┤     █                                                                                │
│           ┤     █                                                                                │
│           ┤     █                                                                                │
│           ┤    ███   █                                                                           │
│           ┤   ▄███▄  █                                                                           │
│       0/s ┤  ▆█████▆ █                                                                           │
│            -0:00:01 now                                                                          │
│            last 1 s 130.0k/s   mean 130.0k/s   peak 400.0k/s   0.1 s/col                         │
╰──────────────────────────────────────────────────────────────────────────────────────────────────╯
╭─ ingest-to-decision latency ─────────────────────────────────────────────────────────────────────╮
│ p50 120 µs   p99 480 µs   p99.9 950 µs   max 1.90 ms   mean 150 µs   samples 1,000               │
│ p99 target 200 µs: missed                                                                        │
│  ≤ 50 µs ████████████▌                                      100 10.0%                            │
│ ≤ 100 µs ███████████████████████████████                    250 25.0%                            │
│ ≤ 200 µs ██████████████████████████████████████████████████ 400 40.0%                            │
│ ≤ 500 µs ██████████████████████████████                     240 24.0%                            │
│   ≤ 1 ms █                                                    9  0.9%                            │
│   ≤ 2 ms                                                      1  0.1%                            │
╰──────────────────────────────────────────────────────────────────────────────────────────────────╯
╭─ convergence events (PRISM) ─────────────────────────────────────────────────────────────────────╮
│ ┏━━━━━━━━━━━━━┳━━━━━━━┳━━━━━━┳━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┓ │
│ ┃ event time  ┃ nodes ┃ conf ┃ level    ┃ tier       ┃ recommendation                          ┃ │
│ ┡━━━━━━━━━━━━━╇━━━━━━━╇━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┩ │
│ │ 2,637.531 s │     3 │ 0.92 │ HIGH     │ INTERDICT  │ interdict nodes 41, 5 and 62.           │ │
│ │ -           │     5 │ 1.00 │ CRITICAL │ NEUTRALIZE │ neutralize now: contain nodes 127, 125… │ │
│ └─────────────┴───────┴──────┴──────────┴────────────┴─────────────────────────────────────────┘ │
│                                                                            2 shown of 12 reports │
╰──────────────────────────────────────────────────────────────────────────────────────────────────╯
                                               rings                                                
┏━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━┳━━━━━━━━━━┓
┃  worker ┃ status   ┃  stations ┃  occupancy ┃ fill                        ┃  produced ┃ restarts ┃
┡━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━━━┩
│       0 │ running  │       0-3 │        250 │ █████··············· 25%    │   700,000 │        1 │
│       1 │ running  │       4-7 │          0 │ ···················· 0%     │   540,000 │        0 │
└─────────┴──────────┴───────────┴────────────┴─────────────────────────────┴───────────┴──────────┘
                                             accounting                                             
┌────────────────────────────────────────────────────────────────────┬─────────────────────────────┐
│ produced                                                           │                   1,240,020 │
│ processed                                                          │                   1,234,000 │
│ dropped: producer crash                                            │                           5 │
│ dead-lettered                                                      │                          20 │
│ in transit                                                         │                       5,995 │
│ restarts/gaps/lost                                                 │                   1 / 0 / 0 │
└────────────────────────────────────────────────────────────────────┴─────────────────────────────┘
                                         stages (per batch)                                         
┏━━━━━━━━━━━┳━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━━━━━┓
┃ stage     ┃         events ┃     batches ┃      ns/event ┃         p50 ┃        p99 ┃        max ┃
┡━━━━━━━━━━━╇━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━━┩
│ teth      │      1,234,000 │       1,234 │          50.0 │     40.0 µs │    80.0 µs │    90.0 µs │
│ meter     │      1,234,000 │       1,234 │         100.0 │     90.0 µs │     300 µs │     400 µs │
└───────────┴────────────────┴─────────────┴───────────────┴─────────────┴────────────┴────────────┘
"""

EXPECTED_HIST = """\
p50 120 µs   p99 480 µs   p99.9 950 µs   max 1.90 ms   mean 150 µs   samples 
1,000
p99 target 200 µs: missed
 ≤ 50 µs █████                100 10.0%
≤ 100 µs ████████████▌        250 25.0%
≤ 200 µs ████████████████████ 400 40.0%
≤ 500 µs ████████████         240 24.0%
  ≤ 1 ms                        9  0.9%
  ≤ 2 ms                        1  0.1%
"""

EXPECTED_TPUT = """\
 400.0k/s ┤     █     
          ┤    ▄█▄   ▄
      0/s ┤  ▃▆███▆▃ █
           -0:00:01 now
           last 1 s 130.0k/s   mean 130.0k/s   peak 400.0k/s   0.1 s/col
"""


def render(renderable, width=100) -> str:
    c = Console(width=width, color_system=None, record=True, file=io.StringIO())
    c.print(renderable)
    return c.export_text()


# ---------------------------------------------------------------------------
# exact text on a fixed snapshot
# ---------------------------------------------------------------------------


def test_view_exact_text():
    assert render(cm.MonitorView(copy.deepcopy(SNAP))) == EXPECTED_VIEW


def test_latency_histogram_exact_text():
    assert render(cm.latency_histogram(SNAP, bar_width=20), 80) == EXPECTED_HIST


def test_throughput_graph_exact_text():
    assert render(cm.throughput_graph(SNAP, width=40, height=3), 80) == EXPECTED_TPUT


def test_view_numbers_follow_the_snapshot():
    snap = copy.deepcopy(SNAP)
    snap["counters"]["processed"] = 1_240_020 - 25
    snap["state"] = "done"
    text = render(cm.MonitorView(snap))
    assert "in transit" in text and "balanced" in text and "yes" in text
    snap["counters"]["processed"] -= 1
    text = render(cm.MonitorView(snap))
    assert "NO" in text.split("balanced")[1].splitlines()[0]


def test_sections_can_be_hidden():
    text = render(cm.MonitorView(SNAP, sections=("convergence_events",)))
    assert "convergence events (PRISM)" in text and "accounting" in text
    assert "throughput (events/s)" not in text and "ingest-to-decision" not in text and "rings" not in text
    with pytest.raises(ValueError, match="unknown section"):
        cm.MonitorView(SNAP, sections=("latency",))


def test_empty_snapshot_renders():
    text = render(cm.MonitorView({"name": "empty", "state": "starting", "workers": []}))
    assert "no throughput samples yet" in text and "no latency samples yet" in text
    assert "no convergence yet" in text


def test_wide_console_puts_rings_beside_accounting():
    lines = render(cm.MonitorView(SNAP), width=140).splitlines()
    assert any("rings" in ln and "accounting" in ln for ln in lines)


def test_throughput_graph_groups_long_history():
    snap = {"throughput": {"interval_s": 0.1, "events": [1000] * 3000}}
    text = render(cm.throughput_graph(snap, width=80, height=2), 80)
    assert "-0:04:57" in text and "10.0k/s" in text and "4.5 s/col" in text


# ---------------------------------------------------------------------------
# numpy summaries and bins against hdrh
# ---------------------------------------------------------------------------


def test_index_ranges_match_hdrh():
    h, geom = histogram_geometry()
    low, size = cm._index_ranges(geom)
    for i in list(range(0, 4096)) + list(range(4096, geom[2], 37)) + [geom[2] - 1]:
        v = h.get_value_from_index(i)
        assert low[i] == h.get_lowest_equivalent_value(v), i
        assert low[i] + size[i] - 1 == h.get_highest_equivalent_value(v), i


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_latency_summary_equals_metrics_summarize(seed):
    rng = np.random.default_rng(seed)
    h, geom = histogram_geometry()
    for v in rng.lognormal(10 + seed, 1.5, 2000).astype(np.int64) + 1:
        h.record_value(int(v))
    h.record_value(7, 3)
    counts = np.frombuffer(h.counts, dtype=np.uint64)
    assert cm.latency_summary(counts, geom) == summarize(h)
    bins = cm.latency_bins(counts, geom)
    assert sum(bins["counts"]) == h.get_total_count()
    assert bins["upper_us"][-1] * 1e3 >= h.get_max_value()
    assert cm.latency_summary(np.zeros_like(counts), geom) == {"count": 0}
    with pytest.raises(ValueError, match="geometry"):
        cm.latency_summary(counts[:10], geom)


# ---------------------------------------------------------------------------
# collect() on a real segment
# ---------------------------------------------------------------------------


@pytest.fixture
def segment():
    m = Metrics.create(f"tcons-{os.getpid()}-{time.monotonic_ns()}", n_workers=2, n_stations=4,
                       stages=["teth", "meter"], config={"source": "synthetic"})
    m.set_state("running")
    m.add(m.PROCESSED, 900)
    m.store_atomic(m.worker_index(0, "state"), 600 << 24)
    m.store_atomic(m.worker_index(1, "state"), 400 << 24)
    rng = np.random.default_rng(5)
    for v in rng.lognormal(11, 1, 500):
        m.record_latency(0, int(v), count=2)
    for v in rng.lognormal(9, 1, 50):
        m.record_latency(1, int(v))
    for k in (100, 400, 400):
        m.push_throughput(k)
    m.push_convergence({"ts": 1, "nodes": list(range(300)), "recommendation": "HIGH threat, tier INTERDICT: x"})
    m.push_convergence({"ts": 1, "nodes": list(range(60)), "recommendation": "HIGH threat, tier INTERDICT: " + "x" * 400})
    m.push_convergence({"ts": 2, "nodes": [1, 2], "threat_level": "LOW", "tier": "WATCH", "confidence": 0.5,
                        "recommendation": "LOW threat, tier WATCH: y. Recommendation: watch."})
    yield m
    m.close()


def test_collect_equals_reader_snapshot(segment):
    with MetricsReader.attach(segment.name) as r:
        ours, theirs = cm.collect(r), r.snapshot()
    for k in ("uptime_s", "updated_age_s"):
        ours.pop(k), theirs.pop(k)
    extra = {k: ours.pop(k) for k in ("latency_histogram", "accounting", "snapshot_s")}
    assert ours == theirs
    assert extra["accounting"]["produced"] == 1000 and extra["accounting"]["in_transit"] == 100
    assert sum(extra["latency_histogram"]["counts"]) == 1000


def test_collected_convergences_read_back(segment):
    with MetricsReader.attach(segment.name) as r:
        snap = cm.collect(r)
    recs = [cm.convergence_record(c) for c in snap["convergences"]]
    # The segment keeps compact records (ctas7.metrics.compact_convergence): a long node list is
    # stored as its count and first ids, and only the recommendation is ever shortened.
    assert not recs[0]["cut"] and recs[0]["nodes"] == 300 and recs[0]["ts"] == 1
    assert recs[0]["recommendation"] == "HIGH threat, tier INTERDICT: x"
    assert snap["convergences"][0]["node_ids"] == list(range(8))
    assert not recs[1]["cut"] and recs[1]["nodes"] == 60 and recs[1]["ts"] == 1
    assert recs[1]["recommendation"].startswith("HIGH threat, tier INTERDICT: xxx") and recs[1]["recommendation"][-1] == "…"
    assert recs[2] == {"ts": 2, "tick": None, "nodes": 2, "confidence": 0.5, "threat_level": "LOW", "tier": "WATCH",
                       "recommendation": "LOW threat, tier WATCH: y. Recommendation: watch.", "cut": False}
    assert "watch." in render(cm.convergence_table(snap))


# ---------------------------------------------------------------------------
# the live loop
# ---------------------------------------------------------------------------


def _run_live(reader, **kw):
    out = {}
    c = Console(width=100, color_system=None, file=io.StringIO(), force_terminal=False)
    stop = threading.Event()
    t = threading.Thread(target=lambda: out.setdefault("r", cm.live(reader, 20, stop, console=c, **kw)))
    t.start()
    return t, stop, out, c


def test_live_returns_when_stopped(segment):
    with MetricsReader.attach(segment.name) as r:
        t, stop, out, c = _run_live(r)
        time.sleep(0.3)
        stop.set()
        t.join(5)
    assert out["r"] == "stopped"
    assert "ctas7 cluster" in c.file.getvalue()


def test_live_returns_when_cluster_finishes(segment):
    with MetricsReader.attach(segment.name) as r:
        t, stop, out, c = _run_live(r)
        time.sleep(0.2)
        segment.set_state("done")
        t.join(5)
        assert not t.is_alive()
    assert out["r"] == f"cluster {segment.name} finished"
    assert out["r"] in c.file.getvalue()


def test_run_live_view_waits_for_stop(segment):
    segment.set_state("done")
    out = {}
    stop = threading.Event()
    with MetricsReader.attach(segment.name) as r:
        c = Console(width=100, color_system=None, file=io.StringIO())
        t = threading.Thread(target=lambda: out.setdefault("r", cm.run_live_view(r, stop, console=c)))
        t.start()
        time.sleep(0.4)
        assert t.is_alive()  # the finished view stays on screen until told to stop
        stop.set()
        t.join(5)
    assert out["r"] == "stopped" and "finished" in c.file.getvalue()


def _orphan(name):
    m = Metrics.create(name, n_workers=1, n_stations=1)
    m.set_state("running")
    os._exit(0)  # dies without closing: the segment stays, its creator is gone


def test_live_returns_when_cluster_dies():
    name = f"tcons-orphan-{os.getpid()}"
    ctx = mp.get_context("fork")
    p = ctx.Process(target=_orphan, args=(name,))
    p.start()
    p.join(10)
    assert p.exitcode == 0
    path = f"/dev/shm/ctas7-metrics-{name}"
    try:
        with MetricsReader.attach(name) as r:
            t, stop, out, c = _run_live(r)
            t.join(5)
        assert out["r"] == f"cluster {name} (pid {p.pid}) died without finishing"
        assert cm.gone_reason({"name": "x", "state": "running", "alive": True}) is None
    finally:
        os.unlink(path)


def test_monitor_never_writes(segment):
    with MetricsReader.attach(segment.name) as r:
        before = bytes(r._mm[:])
        cm.collect(r)
        with pytest.raises(TypeError):
            r._mm[0:1] = b"x"  # the mapping is read-only
        assert bytes(r._mm[:]) == before
