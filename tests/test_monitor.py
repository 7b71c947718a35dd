"""Tests for ctas7.monitor (``hft-monitor``): flags, the no-cluster path, and a real cluster watched from
other processes (``--once --json``, repeated attach/detach, a pty terminal) without changing its accounting."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

import pexpect
import pytest

from ctas7 import monitor
from ctas7.console import collect
from ctas7.metrics import METRICS_PREFIX, MetricsReader

RUN_CLUSTER = (
    "import sys, argparse\n"
    "from ctas7 import cluster\n"
    "p = argparse.ArgumentParser(); cluster.add_arguments(p)\n"
    "sys.exit(cluster.run(p.parse_args(sys.argv[1:])))\n"
)
ORIGINAL = "--latency-histogram true --throughput-graph true --convergence-events true".split()


def _monitor(*args, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "ctas7.monitor", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


# ---------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------


def test_original_command_line_parses():
    p = argparse.ArgumentParser(prog="ctas7-intel")
    sub = p.add_subparsers(dest="command")
    monitor.add_arguments(sub.add_parser("hft-monitor"))
    a = p.parse_args(["hft-monitor", *ORIGINAL])
    assert (a.latency_histogram, a.throughput_graph, a.convergence_events) == (True, True, True)
    assert monitor.sections(a) == ("latency_histogram", "throughput_graph", "convergence_events")
    from ctas7 import cli

    if "hft-monitor" in cli.COMMANDS:  # once the lead wires it, the real parser must take it too
        a = cli.build_parser().parse_args(["hft-monitor", *ORIGINAL])
        assert a.latency_histogram is True and a.convergence_events is True


def test_boolean_flags_bare_and_valued():
    p = argparse.ArgumentParser()
    monitor.add_arguments(p)
    a = p.parse_args(["--latency-histogram", "--throughput-graph", "false", "--once", "--json"])
    assert a.latency_histogram is True and a.throughput_graph is False and a.convergence_events is None
    assert monitor.sections(a) == ("latency_histogram",)
    assert monitor.sections(p.parse_args([])) == ("latency_histogram", "throughput_graph", "convergence_events",
                                                  "rings", "stages")
    assert monitor.sections(p.parse_args(["--rings", "no", "--stages", "off"])) == (
        "latency_histogram", "throughput_graph", "convergence_events")
    with pytest.raises(SystemExit):
        p.parse_args(["--latency-histogram", "maybe"])


def test_no_cluster_one_line_nonzero(tmp_path):
    code = ("import sys, ctas7.metrics as m; m.SHM_DIR = sys.argv[1]\n"
            "from ctas7.monitor import main; sys.exit(main(sys.argv[2:]))\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path), *ORIGINAL], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "no ctas7 cluster is running" in r.stderr
    r = _monitor("--name", f"absent-{os.getpid()}", "--once", "--json")
    assert r.returncode == 1 and r.stdout == "" and r.stderr.count("\n") == 1
    assert f"no cluster named 'absent-{os.getpid()}' is running" in r.stderr and "Traceback" not in r.stderr
    r = _monitor("--name", "bad/name", "--once")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    r = _monitor("--refresh", "0")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_wait_gives_up_after_the_timeout():
    t0 = time.monotonic()
    r = _monitor("--name", f"never-{os.getpid()}", "--wait", "0.5")
    assert r.returncode == 1 and time.monotonic() - t0 >= 0.5


# ---------------------------------------------------------------------------
# a real cluster, watched from other processes
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mon")
    name = f"tmon-{os.getpid()}"
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN_CLUSTER, "--surreal", "none", "--json", "--metrics-name", name, "--duration", "7",
         "--ground-stations", "64", "--threads", "1", "--rate", "200k", "--burst-every", "1",
         "--dead-letter-dir", str(tmp / "dl")],
        cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    end = time.monotonic() + 30
    while not os.path.exists(f"/dev/shm/{METRICS_PREFIX}{name}"):
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < end, "the cluster did not start"
        time.sleep(0.05)
    state = {"proc": proc, "name": name}
    yield state
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=30)


def test_once_json_from_another_process(cluster_run):
    end = time.monotonic() + 20
    while True:
        r = _monitor("--name", cluster_run["name"], "--once", "--json")
        assert r.returncode == 0, r.stderr
        snap = json.loads(r.stdout)
        if snap["accounting"]["processed"] > 0 or time.monotonic() > end:
            break
        time.sleep(0.2)
    assert snap["name"] == cluster_run["name"] and snap["alive"] and snap["state"] == "running"
    a = snap["accounting"]
    assert a["produced"] > 0 and a["processed"] > 0 and a["in_transit"] >= 0
    assert snap["latency"]["ingest_to_decision"]["count"] > 0
    assert sum(snap["latency_histogram"]["counts"]) == snap["latency"]["ingest_to_decision"]["count"]
    assert snap["throughput"]["events"] and snap["workers"][0]["produced"] > 0


def test_attach_detach_repeatedly(cluster_run):
    name = cluster_run["name"]
    seen = []
    for _ in range(10):
        with MetricsReader.attach(name) as r:
            seen.append(collect(r)["accounting"]["processed"])
    for _ in range(2):
        r = _monitor("--name", name, "--once")
        assert r.returncode == 0 and "ctas7 cluster" in r.stdout and "accounting" in r.stdout
    assert seen == sorted(seen) and seen[-1] > 0


def test_terminal_view_under_pty(cluster_run):
    name = cluster_run["name"]
    child = pexpect.spawn(sys.executable, ["-m", "ctas7.monitor", "--name", name, "--refresh", "8", *ORIGINAL],
                          dimensions=(60, 110), encoding="utf-8", timeout=30,
                          env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "110", "LINES": "60"})
    try:
        child.expect("throughput \\(events/s\\)")  # the first frame is up while the cluster runs
        assert os.path.exists(f"/dev/shm/{METRICS_PREFIX}{name}")
        child.expect(pexpect.EOF, timeout=40)  # ... and the monitor leaves by itself when it finishes
        screen = child.before
    finally:
        child.close()
    assert child.exitstatus == 0
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert "Traceback" not in text
    assert text.count("ingest-to-decision latency") >= 2  # redrawn live, not printed once
    assert "convergence events (PRISM)" in text and "accounting" in text
    assert re.search(r"p50 [0-9.]+ (µs|ms)", text) and re.search(r"p99\.9 [0-9.]+ (µs|ms)", text)
    produced = [int(m.replace(",", "")) for m in re.findall(r"produced\s+│\s+([0-9,]+)", text)]
    assert produced and produced[-1] > 0
    assert f"hft-monitor: cluster {name} finished" in text


def test_cluster_accounting_unaffected(cluster_run):
    proc = cluster_run["proc"]
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    s = json.loads(out.strip().splitlines()[-1])
    a = s["accounting"]
    assert a["balanced"] and a["produced"] > 0
    assert a["produced"] == a["processed"] + sum(a["dropped"].values()) + a["dead_lettered"]
    assert not os.path.exists(f"/dev/shm/{METRICS_PREFIX}{cluster_run['name']}")
    r = _monitor("--name", cluster_run["name"], "--once")
    assert r.returncode == 1 and "Traceback" not in r.stderr  # gone for good: a clear line


def test_json_stream_ends_when_the_cluster_finishes(capsys):
    from ctas7.metrics import Metrics

    m = Metrics.create(f"tmon-json-{os.getpid()}", n_workers=1, n_stations=1)
    try:
        m.add(m.PROCESSED, 3)
        m.set_state("done")
        p = argparse.ArgumentParser()
        monitor.add_arguments(p)
        assert monitor.run(p.parse_args(["--name", m.name, "--json", "--refresh", "20"])) == 0
        out, err = capsys.readouterr()
        lines = out.strip().splitlines()
        assert len(lines) == 1 and json.loads(lines[0])["counters"]["processed"] == 3
        assert err == f"hft-monitor: cluster {m.name} finished\n"
    finally:
        m.close()
