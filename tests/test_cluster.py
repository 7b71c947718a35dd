"""Tests for ctas7.cluster (``hft-cluster``): real worker processes, signals, crashes, accounting."""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from ctas7 import cluster
from ctas7.metrics import METRICS_PREFIX, PEND_BITS, MetricsReader, find_running

RUN = (
    "import sys, argparse\n"
    "from ctas7 import cluster\n"
    "p = argparse.ArgumentParser(); cluster.add_arguments(p)\n"
    "sys.exit(cluster.run(p.parse_args(sys.argv[1:])))\n"
)


def _leftovers(name: str) -> list:
    return [e for e in os.listdir("/dev/shm") if e in (f"{METRICS_PREFIX}{name}",) or e.startswith(f"ctas7-cluster-{name}-")]


def _start(tmp_path, name, *args):
    return subprocess.Popen(
        [sys.executable, "-c", RUN, "--surreal", "none", "--json", "--metrics-name", name,
         "--dead-letter-dir", str(tmp_path / "dl"), *args],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _finish(proc, timeout=60):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def _wait_for(pred, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            v = pred()
        except (FileNotFoundError, ValueError):
            v = None
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def _snap(name):
    with MetricsReader.attach(name) as r:
        return r.snapshot()


def _check_balanced(s):
    a = s["accounting"]
    assert a["balanced"]
    assert a["produced"] == a["processed"] + sum(a["dropped"].values()) + a["dead_lettered"]
    assert a["produced_events"] == sum(w["produced"] for w in s["per_worker"])
    assert a["dead_lettered"] == sum(a["dead_letter_reasons"].values())


# ---------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------


def test_original_command_line_parses():
    p = argparse.ArgumentParser()
    cluster.add_arguments(p)
    a = p.parse_args("--ground-stations 247 --threads 64 --latency-target 200us --throughput-target 5M".split())
    assert (a.ground_stations, a.threads, a.duration, a.source) == (247, 64, None, "synthetic")
    assert cluster.parse_duration_ns(a.latency_target) == 200_000
    assert cluster.parse_count(a.throughput_target) == 5e6
    ranges, note = cluster.plan_workers(64, 247, "synthetic", cores=2)
    assert ranges == [(0, 247)] and "capped" in note and "pipeline loop" in note  # a core for the loop
    assert cluster.plan_workers(64, 247, "synthetic", cores=3)[0] == [(0, 124), (124, 123)]
    assert cluster.plan_workers(64, 247, "synthetic", cores=1)[0] == [(0, 247)]
    ranges, note = cluster.plan_workers(64, 247, "synthetic", oversubscribe=True, cores=2)
    assert len(ranges) == 64 and sum(k for _, k in ranges) == 247 and "oversubscribed" in note
    assert cluster.plan_workers(8, 247, "udp:9999", cores=2)[0] == [(0, 247)]


@pytest.mark.parametrize("bad", ["", "fast", "-3us", "5 parsecs"])
def test_bad_units_are_refused(bad):
    with pytest.raises(ValueError):
        cluster.parse_duration_ns(bad)
    with pytest.raises(ValueError):
        cluster.parse_count(bad)


def test_bad_arguments_exit_2(tmp_path):
    p = subprocess.run([sys.executable, "-c", RUN, "--rate", "lots", "--duration", "1"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "not a count" in p.stderr


# ---------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------


def test_short_run_balances_and_cleans_up(tmp_path):
    name = f"t-short-{os.getpid()}"
    s = _finish(_start(tmp_path, name, "--duration", "2", "--rate", "100k", "--threads", "2", "--oversubscribe",
                       "--latency-target", "50ms", "--throughput-target", "1k"))
    _check_balanced(s)
    a = s["accounting"]
    assert a["processed"] > 50_000 and a["dropped"]["producer_crash"] == 0 and a["restarts"] == 0
    # Every event got an ingest-to-decision latency (stamps cover all of them).
    assert s["latency_us"]["count"] == a["processed"]
    assert set(s["stage_latency_us_per_batch"]) == {"teth", "meter", "axon", "prism"}
    assert s["targets"]["throughput"]["met"] is True
    assert s["workers"] == 2
    ls = s["loop_scheduling"]
    assert 0 < ls["cpu_s"] <= s["elapsed_s"] * 1.05 and ls["involuntary_switches"] >= 0
    assert _leftovers(name) == []


def test_sigterm_drains_and_metrics_are_readable_meanwhile(tmp_path):
    name = f"t-term-{os.getpid()}"
    proc = _start(tmp_path, name, "--rate", "200k", "--threads", "2", "--oversubscribe")
    try:
        snap = _wait_for(lambda: (s := _snap(name))["counters"]["processed"] > 20_000 and s)
        assert name in find_running()
        assert snap["alive"] and snap["state"] == "running"
        assert sum(w["produced"] for w in snap["workers"]) >= snap["counters"]["processed"] > 0
        assert snap["latency"]["ingest_to_decision"]["count"] > 0
        assert snap["throughput"]["events"], "throughput ring is empty"
        assert all(w["status"] == "running" and w["pid"] > 0 for w in snap["workers"])
    finally:
        proc.send_signal(signal.SIGTERM)
    s = _finish(proc)
    _check_balanced(s)
    assert s["accounting"]["processed"] >= snap["counters"]["processed"]
    assert _leftovers(name) == []


def test_sigkill_of_a_worker_restarts_it_and_records_the_gap(tmp_path):
    name = f"t-kill-{os.getpid()}"
    proc = _start(tmp_path, name, "--rate", "200k", "--threads", "2", "--oversubscribe")
    try:
        snap = _wait_for(lambda: (s := _snap(name))["counters"]["processed"] > 10_000 and s)
        victim = snap["workers"][0]["pid"]
        os.kill(victim, signal.SIGKILL)
        after = _wait_for(lambda: (s := _snap(name))["counters"]["restarts"] >= 1 and
                          s["workers"][0]["pid"] not in (0, victim) and s["workers"][0]["status"] == "running" and s)
        # The restarted worker produces again, on the same stations.
        before = after["workers"][0]["produced"]
        _wait_for(lambda: _snap(name)["workers"][0]["produced"] > before + 1000)
    finally:
        proc.send_signal(signal.SIGINT)
    s = _finish(proc)
    _check_balanced(s)
    a = s["accounting"]
    assert a["restarts"] >= 1 and a["gaps"] >= 1
    assert s["per_worker"][0]["restarts"] >= 1 and s["per_worker"][0]["stations"] == [0, 124]
    assert _leftovers(name) == []


def _die_at(channel, metrics, point):
    from ctas7.channel import Channel
    from ctas7.metrics import Metrics
    from ctas7.stations.worker import FastSyntheticSource

    m, ch = Metrics.attach(metrics), Channel.attach(channel)
    i = m.worker_index(0, "state")
    view = ch.claim(11)
    FastSyntheticSource(n_stations=4).fill(view[:10], 1, 1.0)
    if point != "claimed":
        m.store_atomic(i, 10)  # 10 events in flight, none produced before
    if point == "committed":
        ch.commit(11)
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize("point,produced,dropped,lost_slots,in_ring", [
    ("claimed", 0, 0, 11, 0),     # slots claimed, no event counted yet
    ("in_flight", 10, 10, 0, 0),  # counted, never committed: dropped by the crash
    ("committed", 10, 0, 0, 11),  # committed, counter not yet advanced: produced
])
def test_crash_at_each_point_of_the_publish_protocol(tmp_path, point, produced, dropped, lost_slots, in_ring):
    c = cluster.Cluster(stations=4, workers=[(0, 4)], surreal=None, name=f"t-proto-{os.getpid()}-{point}",
                        dead_letter_dir=tmp_path)
    c._setup()
    try:
        p = mp.get_context("spawn").Process(target=_die_at, args=(c.channels[0].name, c.name, point))
        p.start()
        p.join(60)
        assert p.exitcode == -signal.SIGKILL
        c._resolve(0)
        w = c.metrics.words[c._i["state"][0]]
        assert (w >> PEND_BITS, w & ((1 << PEND_BITS) - 1)) == (produced, 0)
        assert c.dropped_crash[0] == dropped and c.lost_slots[0] == lost_slots
        assert c.channels[0].gaps == 1 and len(c.rings[0]) == in_ring
    finally:
        c._close_segments()
    assert _leftovers(c.name) == []


def test_file_source_bad_lines_are_dead_lettered(tmp_path):
    name = f"t-file-{os.getpid()}"
    path = tmp_path / "feed.jsonl"
    good = [json.dumps({"text": f"report {i}", "station": i % 5}) for i in range(50)]
    bad = ["{oops", "[1, 2]", json.dumps({"text": "x", "station": 9999}), "\xff".encode("latin-1").decode("latin-1"),
           json.dumps({"station": 1})]
    lines = good[:20] + bad + good[20:]
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8").replace("ÿ".encode(), b"\xff"))
    s = _finish(_start(tmp_path, name, "--source", f"file:{path}", "--duration", "2", "--threads", "4"))
    _check_balanced(s)
    a = s["accounting"]
    assert s["workers"] == 1
    assert a["processed"] == 50 and a["dead_lettered"] == 5 and a["produced"] == 55
    assert "unknown station" in a["dead_letter_reasons"]
    assert _leftovers(name) == []


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_udp_source_bad_datagrams_are_dead_lettered(tmp_path):
    name = f"t-udp-{os.getpid()}"
    port = _free_udp_port()
    proc = _start(tmp_path, name, "--source", f"udp:{port}", "--duration", "4")
    try:
        _wait_for(lambda: _snap(name)["workers"][0]["status"] == "running")
        time.sleep(0.3)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(40):
                s.sendto(json.dumps({"text": f"alert {i}"}).encode(), ("127.0.0.1", port))
            for _ in range(3):
                s.sendto(b"\xff\xfe\xfd", ("127.0.0.1", port))
            for _ in range(2):
                s.sendto(b"x" * 9000, ("127.0.0.1", port))
    finally:
        s_ = _finish(proc)
    _check_balanced(s_)
    a = s_["accounting"]
    assert a["processed"] == 40 and a["dead_lettered"] == 5 and a["produced"] == 45
    assert any("larger than" in r for r in a["dead_letter_reasons"])
    assert _leftovers(name) == []


def test_stale_segments_of_a_killed_cluster_are_swept(tmp_path):
    name = f"t-stale-{os.getpid()}"
    proc = _start(tmp_path, name, "--rate", "50k", "--threads", "1")
    _wait_for(lambda: _snap(name)["counters"]["processed"] > 0)
    proc.kill()  # the parent dies without cleaning up
    proc.communicate(timeout=30)
    assert _leftovers(name)
    # Its orphaned workers notice and exit; the next cluster sweeps the segments.
    s = _finish(_start(tmp_path, f"{name}-next", "--duration", "0.5", "--rate", "10k", "--threads", "1"))
    _check_balanced(s)
    assert _leftovers(name) == [] and _leftovers(f"{name}-next") == []


@pytest.mark.parametrize("rate", [3e6, float("inf")])
def test_small_buffers_under_load_still_balance(rate):
    # A small channel and loop buffer make the watermark hold-back, the carry
    # and backpressure on the workers happen all the time.
    c = cluster.Cluster(stations=247, workers=[(0, 124), (124, 123)], rate=rate, surreal=None,
                        name=f"t-small-{os.getpid()}-{int(rate) if rate < 1e9 else 'max'}", max_batch=4096,
                        channel_capacity=8192, max_lag=0.005)
    readers = []
    s = c.run(1.5, handle_signals=False, on_started=lambda cl: readers.append(MetricsReader.attach(cl.name)))
    _check_balanced(s)
    # The segment (still mapped by the reader) holds the final counters and the channel capacity.
    with readers[0] as r:
        snap = r.snapshot()
    a = s["accounting"]
    assert snap["counters"]["produced"] == a["produced"] and snap["counters"]["processed"] == a["processed"]
    assert snap["counters"]["latency_events"] == a["processed"]
    assert snap["counters"]["chain_ns"] == sum(st["time_ns"] for st in snap["stages"].values()) > 0
    assert snap["config"]["channel_capacity"] == 8192
    assert s["accounting"]["processed"] > 100_000
    assert s["latency_us"]["count"] == s["accounting"]["processed"]
    assert _leftovers(c.name) == []


def test_nats_source_feeds_the_cluster(tmp_path):
    nats = pytest.importorskip("ctas7.sinks.nats")
    from ctas7.events import make_events

    try:
        nats.nats_server_path()
    except (FileNotFoundError, RuntimeError) as exc:
        pytest.skip(f"no nats-server binary: {exc}")
    name = f"t-nats-{os.getpid()}"
    with nats.NatsServer(tmp_path / "nats") as server:
        with nats.SyncEventPublisher(server.url, source="st1") as pub:
            for i in range(3):
                pub.publish(make_events(ts=np.arange(1000) + i * 1000, node=i, station=i))
        s = _finish(_start(tmp_path, name, "--source", server.url, "--duration", "3"))
    _check_balanced(s)
    assert s["workers"] == 1 and s["accounting"]["processed"] == 3000
    assert _leftovers(name) == []


def test_a_worker_that_cannot_start_stops_the_cluster_with_an_error(tmp_path):
    name = f"t-busy-{os.getpid()}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        proc = _start(tmp_path, name, "--source", f"udp:{port}", "--duration", "30")
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "failed to start 3 times" in err and "Address already in use" in err
    s = json.loads(out.strip().splitlines()[-1])
    _check_balanced(s)
    assert s["elapsed_s"] < 20
    assert _leftovers(name) == []


# ---------------------------------------------------------------------------
# --metrics-port and --monitor
# ---------------------------------------------------------------------------


def test_metrics_port_serves_prometheus_during_the_run(tmp_path):
    import re
    import urllib.request

    name = f"t-prom-{os.getpid()}"
    proc = _start(tmp_path, name, "--duration", "4", "--rate", "100k", "--threads", "1", "--metrics-port", "0")
    try:
        line = ""
        while "Prometheus metrics at" not in line:
            line = proc.stderr.readline()
            assert line, "the cluster exited without printing the exporter's URL"
        url = line.rsplit(" ", 1)[1].strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")

        def scrape():
            body = urllib.request.urlopen(url, timeout=10).read().decode()
            got = {m.group(1): float(m.group(2)) for m in re.finditer(
                r"^(ctas7_[a-z_]+)\{cluster=\"[^\"]*\"\} (\S+)$", body, re.M)}
            return got if got.get("ctas7_processed_events_total", 0) > 0 else None

        got = _wait_for(scrape, timeout=30)
        assert got["ctas7_up"] == 1 and got["ctas7_produced_events_total"] >= got["ctas7_processed_events_total"] > 0
        assert got["ctas7_chain_batches_total"] > 0
    finally:
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    s = json.loads(out.strip().splitlines()[-1])
    _check_balanced(s)
    assert s["metrics_url"] == url
    with pytest.raises(OSError):  # closed with the run
        urllib.request.urlopen(url, timeout=2)
    assert _leftovers(name) == []


def test_monitor_shows_the_live_view_and_stops_with_the_run(tmp_path):
    name = f"t-monv-{os.getpid()}"
    proc = _start(tmp_path, name, "--duration", "2", "--rate", "100k", "--threads", "1", "--monitor")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    s = json.loads(out.strip().splitlines()[-1])
    _check_balanced(s)
    for heading in ("ctas7 cluster", "throughput (events/s)", "ingest-to-decision latency",
                    "convergence events (PRISM)", "accounting", "stages (per batch)"):
        assert heading in err, heading
    # The final view is the finished cluster, balanced.
    assert "done" in err and "balanced" in err
    assert _leftovers(name) == []


# ---------------------------------------------------------------------------
# watermark across channels: hold-back bound and heartbeats
# ---------------------------------------------------------------------------


def _stamped(ts, first_station=0):
    from ctas7.events import make_events
    from ctas7.stations.worker import KIND_STAMP

    ts = np.asarray(ts, dtype=np.int64)
    b = np.concatenate([make_events(ts=ts, node=first_station, station=first_station), make_events(ts=ts[-1:])])
    b[-1]["kind"], b[-1]["sch"], b[-1]["value"] = KIND_STAMP, ts[0], len(ts)
    return b


@pytest.mark.parametrize("max_hold,passed", [(0.5, 0), (0.002, 100)])
def test_watermark_holds_back_at_most_max_hold(max_hold, passed):
    from ctas7.events import monotonic_ns
    from ctas7.stage import stage

    seen = []

    @stage
    def count(frame):
        seen.append(int((frame.events["kind"] < 0xFF00).sum()))
        return frame

    from ctas7.stage import Pipeline

    c = cluster.Cluster(stations=4, workers=[(0, 2), (2, 2)], rate=1e6, surreal=None, chain=Pipeline([count]),
                        name=f"t-hold-{os.getpid()}-{passed}", max_hold=max_hold, max_lag=5.0)
    c._setup()
    try:
        now = monotonic_ns()
        # Channel 1 was heard from just now, but only up to 10 ms ago: it holds the watermark there.
        assert c.rings[1].put_many(_stamped([now - 10_000_000], 2)) == 2
        assert c._drain_once(0) == 2
        # Channel 0's events are 5 ms old: held while max_hold allows, passed once they are older than it.
        assert c.rings[0].put_many(_stamped(now - 5_000_000 + np.arange(100))) == 101
        c._drain_once(1)
        assert sum(seen) == 1 + passed
        assert c._carry == (0 if passed else 101)
    finally:
        c._close_segments()


def test_idle_workers_send_heartbeats_so_the_watermark_keeps_up():
    # 1,000 events/s per worker: without heartbeats, only one control record per event batch.
    c = cluster.Cluster(stations=8, workers=[(0, 4), (4, 4)], rate=2000, surreal=None, burst_every=0,
                        name=f"t-beat-{os.getpid()}", heartbeat=100e-6)
    s = c.run(1.5, handle_signals=False)
    _check_balanced(s)
    assert c._control > 3 * s["accounting"]["processed"] > 0
    assert s["latency_us"]["count"] == s["accounting"]["processed"]
    assert _leftovers(c.name) == []


def test_a_worker_does_not_livelock_on_the_last_slot_before_the_wrap():
    # A claim is contiguous: with one slot left before the ring wraps it is one slot long, too short
    # for an event and its stamp. Handed back unused it came back the same for ever (the worker looped
    # without producing). A tiny channel wraps thousands of times a second, so it happens at once.
    c = cluster.Cluster(stations=16, workers=[(0, 16)], rate=200_000, surreal=None, burst_every=0,
                        name=f"t-wrap-{os.getpid()}", channel_capacity=256)
    s = c.run(1.5, handle_signals=False)
    _check_balanced(s)
    assert s["accounting"]["processed"] > 0.5 * 200_000 * s["steady_s"]
    assert _leftovers(c.name) == []


# ---------------------------------------------------------------------------
# file source restarts (resume position) and CPU placement
# ---------------------------------------------------------------------------


def test_file_source_restarts_resume_exactly_across_kills_and_a_rotation(tmp_path):
    import random
    import threading

    name = f"t-fresume-{os.getpid()}"
    path = tmp_path / "feed.jsonl"
    path.write_text("")
    rng = random.Random(7)
    counts = {"good": 0, "bad": 0}

    def append(n):
        lines = []
        for _ in range(n):
            if rng.random() < 0.03:
                lines.append("{oops")
                counts["bad"] += 1
            else:
                lines.append(json.dumps({"text": f"report {counts['good']}", "station": counts["good"] % 5}))
                counts["good"] += 1
        with open(path, "a") as f:
            f.write("\n".join(lines) + "\n")

    proc = _start(tmp_path, name, "--source", f"file:{path}")
    try:
        _wait_for(lambda: _snap(name)["workers"][0]["status"] == "running")
        stop = threading.Event()

        def appender():
            while not stop.is_set():
                append(40)
                time.sleep(0.002)

        t = threading.Thread(target=appender)
        t.start()
        try:
            # SIGKILLs while lines keep coming in: whatever point of a poll/commit they hit.
            for k in range(3):
                time.sleep(0.15 + 0.1 * rng.random())
                snap = _snap(name)
                os.kill(snap["workers"][0]["pid"], signal.SIGKILL)
                _wait_for(lambda: (s := _snap(name))["counters"]["restarts"] >= k + 1 and
                          s["workers"][0]["status"] == "running")
        finally:
            stop.set()
            t.join()
        # Stop the worker, let the file grow and rotate under it, then kill it: its successor
        # finds the rest of the old file by inode and goes on with the new one.
        pid = _snap(name)["workers"][0]["pid"]
        os.kill(pid, signal.SIGSTOP)
        append(500)
        os.rename(path, tmp_path / "feed.jsonl.1")
        path.write_text("")
        append(300)
        os.kill(pid, signal.SIGKILL)
        _wait_for(lambda: (s := _snap(name))["counters"]["restarts"] >= 4 and s["workers"][0]["status"] == "running")
        append(200)
        total = counts["good"] + counts["bad"]
        _wait_for(lambda: (s := _snap(name))["counters"]["processed"] + s["counters"]["dead_lettered"]
                  - sum(w["dropped_crash"] for w in s["workers"]) * 0 >= total, timeout=60)
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGINT)
    s = _finish(proc)
    _check_balanced(s)
    a = s["accounting"]
    assert a["restarts"] == 4
    # Every line exactly once: no good line lost or repeated, no bad line dead-lettered twice.
    assert a["processed"] == counts["good"] and a["dead_lettered"] == counts["bad"], (a, counts)
    assert a["dead_letter_reasons"] == {"invalid JSON: Expecting property name enclosed in double quotes": counts["bad"]}
    assert not list((tmp_path / "dl").glob("*.position.json"))  # the resume state goes with the run
    assert _leftovers(name) == []


def test_plan_cpus_and_placement_options():
    assert cluster.plan_cpus(1, cpus=[0, 1]) == (0, [(1,)], "loop on CPU 0, workers on CPU 1")
    assert cluster.plan_cpus(2, cpus=[0, 1])[:2] == (None, [(), ()])  # auto: not one CPU each
    assert cluster.plan_cpus(2, pin=True, cpus=[0, 1])[:2] == (0, [(1,), (1,)])
    assert cluster.plan_cpus(1, pin=False, cpus=[0, 1])[:2] == (None, [()])
    assert cluster.plan_cpus(1, pin=True, cpus=[3])[0] is None
    assert cluster.plan_cpus(2, cpus=[2, 5, 7]) == (2, [(5,), (7,)], "loop on CPU 2, workers on CPUs 5,7")
    with pytest.raises(ValueError, match="worker_wait"):
        cluster.Cluster(surreal=None, worker_wait="nap")
    with pytest.raises(ValueError, match="realtime"):
        cluster.Cluster(surreal=None, realtime=150)
    p = argparse.ArgumentParser()
    cluster.add_arguments(p)
    a = p.parse_args([])
    assert (a.pin, a.worker_wait, a.realtime, a.nice) == ("off", "auto", 0, 0)
    c = cluster.Cluster(surreal=None)  # the defaults: not pinned, paced workers sleep
    assert c.loop_cpu is None and not c.worker_spin and c.pin_note == "not pinned"
    a = p.parse_args("--pin off --worker-wait sleep --realtime".split())
    assert (a.pin, a.worker_wait, a.realtime) == ("off", "sleep", 10)


def _affinity_and_policy(pid):
    return os.sched_getaffinity(pid), os.sched_getscheduler(pid)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs two CPUs")
@pytest.mark.parametrize("pin,wait", [(True, "auto"), (False, "auto"), (True, "sleep")])
def test_pinning_and_worker_wait_are_applied_and_undone(pin, wait):
    cpus = sorted(os.sched_getaffinity(0))
    c = cluster.Cluster(stations=8, workers=[(0, 8)], rate=50_000, surreal=None, pin=pin, worker_wait=wait,
                        name=f"t-pin-{os.getpid()}-{pin}-{wait}")
    seen = {}

    def look(cl):
        # Sampled from a thread while the loop runs: the worker's affinity, and later the loop's.
        def sample():
            w = _wait_for(lambda: (s := _snap(cl.name))["workers"][0]["pid"] and s["workers"][0]["status"] == "running"
                          and s["workers"][0]["pid"])
            seen["worker"] = _affinity_and_policy(w)
            time.sleep(0.2)
            seen["loop"] = os.sched_getaffinity(main_tid)

        import threading

        threading.Thread(target=sample, daemon=True).start()

    import threading

    main_tid = threading.get_native_id()
    before = os.sched_getaffinity(0)
    s = c.run(1.0, handle_signals=False, on_started=look)
    _check_balanced(s)
    assert os.sched_getaffinity(0) == before  # restored after the run
    pl = s["cpu_placement"]
    if pin:
        assert pl["loop_cpu"] == cpus[0] and pl["worker_cpus"] == [[cpus[1]]]
        assert seen["loop"] == {cpus[0]} and seen["worker"][0] == {cpus[1]}
        assert pl["worker_wait"] == ("spin" if wait == "auto" else "sleep")
    else:
        assert pl["loop_cpu"] is None and pl["worker_wait"] == "sleep" and seen["worker"][0] == before
    assert seen["worker"][1] == os.SCHED_OTHER and pl["realtime"] == 0 and pl["refused"] == []
    assert s["accounting"]["processed"] > 20_000


def test_realtime_is_applied_or_its_refusal_reported():
    c = cluster.Cluster(stations=4, workers=[(0, 4)], rate=20_000, surreal=None, pin=False, realtime=5,
                        name=f"t-rt-{os.getpid()}")
    policies = []

    def look(cl):
        import threading

        def sample():
            w = _wait_for(lambda: (s := _snap(cl.name))["workers"][0]["status"] == "running" and s["workers"][0]["pid"])
            time.sleep(0.1)
            policies.append(os.sched_getscheduler(w))

        threading.Thread(target=sample, daemon=True).start()

    before = os.sched_getscheduler(0)
    # long enough for the sampler to see the worker running on a loaded machine
    s = c.run(3.0, handle_signals=False, on_started=look)
    _check_balanced(s)
    assert os.sched_getscheduler(0) == before
    pl = s["cpu_placement"]
    if pl["refused"]:  # no CAP_SYS_NICE here: said, and the run went on
        assert pl["realtime"] == 0 and "SCHED_FIFO" in pl["refused"][0]
    else:
        assert pl["realtime"] == 5 and policies == [os.SCHED_FIFO]
        # Busy-polling under RT throttling stalls for 50 ms a second: said, when it is on.
        assert ("warning" in pl) == (cluster.rt_throttling_note() is not None)


def test_nice_applies_to_the_loop_and_the_workers(tmp_path):
    name = f"t-nice-{os.getpid()}"
    proc = _start(tmp_path, name, "--rate", "20k", "--nice", "3", "--pin", "off", "--duration", "2")
    try:
        snap = _wait_for(lambda: (s := _snap(name))["workers"][0]["status"] == "running" and s)
        time.sleep(0.3)
        loop_nice = int(open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()[16])
        worker_nice = os.getpriority(os.PRIO_PROCESS, snap["workers"][0]["pid"])
    finally:
        s = _finish(proc)
    _check_balanced(s)
    assert (loop_nice, worker_nice) == (3, 3)
    assert s["cpu_placement"]["nice"] == 3 and s["cpu_placement"]["pin"] == "not pinned"
    p = subprocess.run([sys.executable, "-c", RUN, "--nice", "-30", "--duration", "1"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "--nice must lie in [-20, 19]" in p.stderr
