"""The replay command end to end, through the real CLI entry point."""

import json
import subprocess
import sys

import numpy as np
import pytest

from ctas7.cli import main
from ctas7.sim.scenarios import SCENARIOS, write_events
from ctas7.sim.synthetic import synthetic_stream


@pytest.fixture
def burst_file(tmp_path):
    ev = synthetic_stream(60_000, n_stations=12, burst_nodes=(1, 4, 7, 9), burst_start=0.7, seed=3)
    return write_events(tmp_path / "burst.csv", ev), ev


def _replay(tmp_path, path, out_name, *extra):
    out = tmp_path / out_name
    rc = main(["replay", str(path), "--out", str(out), "--json", *extra])
    return rc, out


def test_replay_finds_the_burst_and_is_byte_identical(tmp_path, burst_file, capsys):
    path, ev = burst_file
    rc, out1 = _replay(tmp_path, path, "a.jsonl")
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == summary["processed"] == ev.shape[0] and summary["dead_lettered"] == 0
    alarms = [json.loads(line) for line in out1.read_text().splitlines()]
    assert summary["convergences"] == len(alarms) >= 1
    burst_ts = np.sort(ev["ts"])[int(0.7 * ev.shape[0])]
    hits = [a for a in alarms if a["ts"] >= burst_ts]
    assert hits, "no convergence after the burst started"
    assert set(hits[0]["nodes"]) & {1, 4, 7, 9}
    for key in ("ts", "nodes", "confidence", "threat_level", "tier", "recommendation"):
        assert key in alarms[0]
    rc, out2 = _replay(tmp_path, path, "b.jsonl")
    assert rc == 0 and out1.read_bytes() == out2.read_bytes()


@pytest.mark.parametrize("suffix", [".jsonl", ".npy"])
def test_replay_formats_agree(tmp_path, burst_file, suffix, capsys):
    path, ev = burst_file
    other = write_events(tmp_path / f"burst{suffix}", ev)
    _, out_csv = _replay(tmp_path, path, "csv.jsonl")
    _, out_other = _replay(tmp_path, other, "other.jsonl")
    assert out_csv.read_bytes() == out_other.read_bytes()


def test_malformed_rows_are_dead_lettered_and_counted(tmp_path, burst_file, capsys):
    path, ev = burst_file
    lines = path.read_text().splitlines()
    lines.insert(5, "not,a,valid,row")
    lines.insert(9, "1,2,notakind,1.0,0,0,0")
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    dead = tmp_path / "dead.jsonl"
    rc, _ = _replay(tmp_path, bad, "bad-alarms.jsonl", "--dead-letter", str(dead))
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert summary["dead_lettered"] == 2 and summary["processed"] == ev.shape[0]
    assert summary["rows"] == summary["processed"] + summary["dead_lettered"]
    rows = [json.loads(x) for x in dead.read_text().splitlines()]
    assert [r["line"] for r in rows] == [6, 10] and all(r["reason"] for r in rows)


def test_missing_file_is_one_line_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "ctas7", "replay", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o")],
        capture_output=True, text=True,
    )
    assert proc.returncode != 0
    assert "nope.csv" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_bad_params_name_the_key(tmp_path, burst_file, capsys):
    path, _ = burst_file
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"no_such_knob": 1}))
    rc, _ = _replay(tmp_path, path, "o.jsonl", "--params", str(params))
    assert rc == 2
    assert "no_such_knob" in capsys.readouterr().err


def test_replay_reads_a_written_scenario(tmp_path, capsys):
    scenario = next(iter(SCENARIOS.values()))
    run = scenario.generate(seed=11)
    path = write_events(tmp_path / "scenario.npy", run.events)
    rc, out = _replay(tmp_path, path, "s.jsonl")
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["processed"] == run.events.shape[0]
