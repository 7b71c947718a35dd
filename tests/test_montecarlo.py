import argparse
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ctas7.sim import montecarlo as mc
from ctas7.sim.montecarlo import Case, Counts, evaluate_cases, select_best

ROOT = Path(__file__).resolve().parent.parent

# A small search: 3 scenarios, 2 null runs per point, top 3 on 2 held-out seeds.
SMALL = ["--scenarios", "3", "--search-null-runs", "2", "--top-k", "3", "--val-seeds", "2",
         "--val-null-per-scenario", "2", "--seed", "5"]


def _same(a, b):
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # NaN-safe


def _parser():
    p = argparse.ArgumentParser()
    mc.add_arguments(p)
    return p


def _run(argv):
    return mc.run(_parser().parse_args(argv))


# ---------------------------------------------------------------------------
# Pure pieces: seeds, counting, selection, CSV
# ---------------------------------------------------------------------------

def test_run_parameters_depend_only_on_seed_and_run_id():
    a = mc.sample_params(3, 17)
    assert a == mc.sample_params(3, 17)
    assert a != mc.sample_params(3, 18)
    assert a != mc.sample_params(4, 17)
    # Drawing other runs first changes nothing (no shared generator).
    [mc.sample_params(3, i) for i in range(5)]
    assert mc.sample_params(3, 17) == a


def test_seed_streams_are_disjoint():
    seeds = {mc.derive_seed(1, p, k) for p in range(6) for k in range(50)}
    assert len(seeds) == 300


def _case(windows, n_ticks=100, tick_ns=60_000_000_000):
    return Case("fake", np.zeros((n_ticks, 4), np.float32), np.zeros(4, np.int32),
                np.asarray(windows, np.int64).reshape(-1, 2), tick_ns)


def test_evaluate_cases_counts_detections_delays_and_spurious_alarms():
    alarms = {
        0: np.array([5, 52, 90]),  # detects [50, 60] at 52; 5 and 90 are spurious
        1: np.array([], np.int64),  # misses [20, 30]
        2: np.array([21]),  # one alarm inside two overlapping windows
        3: np.array([], np.int64),  # null, quiet
        4: np.array([7, 8]),  # null, two alarms
    }
    cases = [_case([(50, 60)]), _case([(20, 30)]), _case([(20, 30), (15, 25)]), _case([]), _case([])]
    for i, c in enumerate(cases):
        c.activity[0, 0] = i  # tag, read back by the fake evaluator

    def fake(activity, groups, params):
        return alarms[int(activity[0, 0])]

    c = evaluate_cases(cases[:3], cases[3:], params=None, evaluate=fake)
    assert (c.incidents, c.detected, c.incident_runs) == (4, 3, 3)
    assert (c.spurious_runs, c.spurious_alarms, c.early_alarms) == (1, 2, 0)
    assert (c.null_runs, c.null_alarm_runs, c.null_alarms) == (2, 1, 2)
    assert c.delays_s == [2 * 60.0, 1 * 60.0, 6 * 60.0]
    assert c.null_node_hours == pytest.approx(2 * 4 * 100 * 60 / 3600)


def test_alarms_during_a_lead_are_early_warnings_not_false_alarms():
    # Incident onset 50, deadline 60, first indicator at 40: an alarm at 45
    # is an early warning (neither a detection nor spurious), one at 30 is
    # spurious, one at 55 detects; metrics.score_run agrees.
    from ctas7.sim import metrics
    from ctas7.sim.scenarios import Incident, Truth

    inc = Incident(onset=50, deadline=60, nodes=(0, 1, 2), group=0, lead_ticks=10, shape="step", magnitude=1.0,
                   duration=5, node_onsets=(50, 50, 50), node_shapes=("step",) * 3, node_magnitudes=(1.0,) * 3,
                   indicators=(3, 4), indicator_ticks=(40, 50))
    truth = Truth(name="fake", seed=0, null=False, tick_ns=60_000_000_000, n_ticks=100, n_nodes=4,
                  groups=(0, 0, 0, 0), group_names=("g",), quorum=3, incidents=(inc,), decoys=())
    case = _case([(50, 60)])
    case.truth = truth
    for alarms, want in (([45], (0, 0, 1)), ([30, 45, 55], (1, 1, 1)), ([49, 50], (1, 0, 1))):
        c = evaluate_cases([case], [], params=None, evaluate=lambda *a, al=alarms: np.array(al, np.int64))
        assert (c.detected, c.spurious_alarms, c.early_alarms) == want
        r = metrics.score_run(np.array(alarms), truth)
        assert (r.n_detected, r.early_alarms, r.n_alarms - r.tp_alarms - r.early_alarms) == (want[0], want[2],
                                                                                            want[1])


def test_alarms_while_an_incident_lasts_past_its_deadline_are_late_not_false():
    # Onset 50, deadline 60; node effects start at 50, 52 and 58 and last 10
    # ticks (a burst: 4 decay constants of 3), so the incident goes on to
    # tick 67 (effect_end 68). An alarm at 65 is late (a node joining a
    # long incident): neither a detection nor spurious, nor in F1's
    # precision; one at 68 is spurious. metrics.score_run agrees.
    from ctas7.sim import metrics
    from ctas7.sim.scenarios import Incident, Truth

    inc = Incident(onset=50, deadline=60, nodes=(0, 1, 2), group=0, lead_ticks=0, shape="step", magnitude=1.0,
                   duration=10, node_onsets=(50, 52, 58), node_shapes=("step", "step", "step"),
                   node_magnitudes=(1.0,) * 3, indicators=(), indicator_ticks=())
    assert inc.effect_end == 68
    burst = dataclasses.replace(inc, duration=3, node_shapes=("step", "burst", "step"))
    assert burst.effect_end == max(50 + 3, 52 + 12, 58 + 3)
    truth = Truth(name="fake", seed=0, null=False, tick_ns=60_000_000_000, n_ticks=100, n_nodes=4,
                  groups=(0, 0, 0, 0), group_names=("g",), quorum=3, incidents=(inc,), decoys=())
    case = _case([(50, 60)])
    case.truth = truth
    for alarms, want in (([65], (0, 0, 0, 1)), ([55, 61, 67, 68], (1, 1, 0, 2)), ([30, 59], (1, 1, 0, 0))):
        c = evaluate_cases([case], [], params=None, evaluate=lambda *a, al=alarms: np.array(al, np.int64))
        assert (c.detected, c.spurious_alarms, c.early_alarms, c.late_alarms) == want
        assert c.spurious_runs == (want[1] > 0)
        r = metrics.score_run(np.array(alarms), truth)
        assert (r.n_detected, r.late_alarms) == (want[0], want[3])
        assert r.n_alarms - r.tp_alarms - r.early_alarms - r.late_alarms == want[1]
        f1 = metrics.Tally()
        f1.add(np.array(alarms), truth)
        assert f1.report().precision == (r.tp_alarms / (r.tp_alarms + want[1]) if r.tp_alarms + want[1] else 1.0)


def test_summary_agrees_with_the_metrics_module():
    # The search's additive counts must give the figures ctas7.sim.metrics
    # computes from (alarms, truth) pairs.
    from ctas7.sim import metrics
    from ctas7.stages.meter import MeterParams, evaluate_activity

    spec = mc.SearchSpec(2, mc.select_scenarios(6), val_seeds=1, val_null_per_scenario=2)
    inc, null = mc.build_cases(spec, "validation", 0)
    early = 0
    for params in (MeterParams(score_threshold=6.0, min_hot_nodes=2, convergence_threshold=0.3, window_ticks=8),
                   mc.sample_params(2, 0),
                   MeterParams(min_hot_nodes=2, corroboration_bonus=20.0, pattern_bonus=3.0)):
        tally = metrics.Tally()
        for case in inc + null:
            tally.add(evaluate_activity(case.activity, case.groups, params, evidence=case.evidence,
                                        corroboration=case.corroboration), case.truth)
        ref = tally.report()
        s = mc.summarize(evaluate_cases(inc, null, params))
        assert (s["incidents"], s["detected"]) == (ref.n_incidents, ref.n_detected)
        assert (s["null_runs"], s["null_alarm_runs"]) == (ref.n_null_runs, ref.n_null_alarmed)
        assert (s["detection_lo"], s["false_alarm_hi"]) == (ref.detection_ci[0], ref.false_alarm_ci[1])
        assert s["alarms_per_node_hour"] == pytest.approx(ref.alarms_per_node_hour)
        assert s["f1"] == pytest.approx(ref.f1)
        assert _same(s["ttd_median_s"], ref.ttd_median_s)
        early += s["early_alarms"]
    assert ref.n_incidents >= 6 and ref.n_null_runs == 12
    assert early > 0  # the corroboration point warns during some lead: not counted as false


def test_counts_merge_and_round_trip():
    a = Counts(incidents=3, detected=2, null_runs=4, null_alarm_runs=1, delays_s=[1.0, 2.0])
    b = Counts(incidents=1, detected=1, null_runs=2, null_alarm_runs=0, delays_s=[5.0])
    a.add(b)
    assert (a.incidents, a.detected, a.null_runs, a.delays_s) == (4, 3, 6, [1.0, 2.0, 5.0])
    assert Counts.from_dict(json.loads(json.dumps(a.to_dict()))) == a


def _v(run_id, det_lo, fa_hi):
    return {"run_id": run_id, "detection_lo": det_lo, "false_alarm_hi": fa_hi}


def test_select_best_prefers_detection_under_the_false_alarm_cap():
    rows = [_v(1, 0.99, 0.20), _v(2, 0.90, 0.04), _v(3, 0.93, 0.05), _v(4, 0.50, 0.01)]
    best, ok = select_best(rows)
    assert ok and best["run_id"] == 3
    best, ok = select_best([_v(1, 0.99, 0.20), _v(2, 0.40, 0.08), _v(3, 0.90, 0.08)])
    assert not ok and best["run_id"] == 3  # lowest FA bound, then detection
    assert select_best([]) == (None, False)


def test_read_results_drops_a_torn_last_line(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text("run_id,score\n0,0.5\n1,0.25\n2,0.")
    cols, rows = mc.read_results(p)
    assert cols == ["run_id", "score"] and [r["run_id"] for r in rows] == [0, 1]
    p.write_text("run_id,score\n0,0.5\n1\n")
    assert [r["run_id"] for r in mc.read_results(p)[1]] == [0]


def test_parquet_only_with_pyarrow(tmp_path):
    rows = [{"run_id": 0, "score": 0.5}, {"run_id": 1, "score": 0.25}]
    try:
        import pyarrow.parquet as pq
    except ImportError:
        assert mc.write_parquet(rows, ["run_id", "score"], tmp_path / "r.parquet") is False
        assert not (tmp_path / "r.parquet").exists()
        return
    assert mc.write_parquet(rows, ["run_id", "score"], tmp_path / "r.parquet") is True
    assert pq.read_table(tmp_path / "r.parquet").to_pylist() == rows


def test_parse_bool_and_parallel_forms():
    p = _parser()
    assert p.parse_args(["--parallel", "true"]).parallel is True
    assert p.parse_args(["--parallel", "false"]).parallel is False
    assert p.parse_args(["--parallel"]).parallel is True
    assert p.parse_args([]).parallel is True
    with pytest.raises(SystemExit):
        p.parse_args(["--parallel", "perhaps"])


def test_cores_capped_with_one_line():
    lines = []
    n = mc.resolve_cores(10_000, True, lines.append)
    assert n == os.cpu_count() and len(lines) == 1
    assert "10000" in lines[0] and str(os.cpu_count()) in lines[0]
    lines.clear()
    assert mc.resolve_cores(1, True, lines.append) == 1 and lines == []
    assert mc.resolve_cores(64, False, lines.append) == 1 and lines == []
    with pytest.raises(ValueError):
        mc.resolve_cores(0)


# ---------------------------------------------------------------------------
# Whole searches on real scenarios
# ---------------------------------------------------------------------------

def test_original_command_line_parses():
    args = _parser().parse_args(["--runs", "10000", "--scenarios", "41", "--parallel", "true", "--cores", "64"])
    assert (args.runs, args.scenarios, args.parallel, args.cores) == (10000, "41", True, 64)


def test_cli_caps_cores_with_one_line_and_writes_outputs(tmp_path, capsys):
    out = tmp_path / "mc"
    rc = _run(["--runs", "4", "--cores", "4096", "--parallel", "true", "--out", str(out), "--json", *SMALL])
    cap = capsys.readouterr()
    assert rc == 0
    capped = [ln for ln in cap.err.splitlines() if "4096" in ln]
    assert len(capped) == 1 and str(os.cpu_count()) in capped[0]
    summary = json.loads(cap.out)
    assert summary["complete"] and summary["runs"] == 4 and len(summary["scenarios"]) == 3
    assert isinstance(summary["targets_met"], bool)
    assert ("NO sampled point" in summary["verdict"]) == (not summary["targets_met"])
    assert summary["held_out"] == {"incident_runs": 6, "null_runs": 6}
    best_v = summary["best"]
    assert f"in {best_v['null_decoy_quorum_runs']}/6 held-out null runs; {best_v['null_decoy_alarm_runs']} of the " \
           f"{best_v['null_alarm_runs']} alarmed" in summary["decoys"]
    assert best_v["null_decoy_alarm_runs"] <= min(best_v["null_decoy_quorum_runs"], best_v["null_alarm_runs"])
    # Outputs parse: the table, validation, summary and the best parameters.
    cols, rows = mc.read_results(out / mc.RESULTS_FILE)
    assert [r["run_id"] for r in rows] == [0, 1, 2, 3]
    assert "score" in cols and "p_score_threshold" in cols
    validated = mc.read_results(out / mc.VALIDATION_FILE)[1]
    start_id = 4 + 3 * 9 * 12  # after the refinement ids (3 rounds of up to 8 + 1 parents x 12)
    assert len(validated) in (3, 4) and start_id in [v["run_id"] for v in validated]
    assert summary["start"]["run_id"] == start_id
    assert json.loads((out / mc.SUMMARY_FILE).read_text())["best"]["run_id"] == summary["best"]["run_id"]
    from ctas7.stages.meter import MeterParams

    best = MeterParams.from_file(out / mc.BEST_FILE)
    assert best == MeterParams.from_dict(summary["best"]["params"])
    refined = {r["run_id"] for r in mc.read_results(out / mc.REFINED_FILE)[1]}
    # round 0 has the 4 search points and the incumbent as parents, later rounds 8 (+ the incumbent)
    assert len(refined) == summary["refined_points"] + 1 and start_id in refined and min(refined) == 4
    assert (4 + 1 + 8 + 8) * 12 <= summary["refined_points"] <= (4 + 1 + 9 + 9) * 12
    if summary["best"]["run_id"] < 4:
        assert best == mc.sample_params(5, summary["best"]["run_id"])
    else:
        assert summary["best"]["run_id"] in refined and summary["best"]["refined"]


def test_rich_summary(tmp_path, capsys):
    rc = _run(["--runs", "2", "--parallel", "false", "--out", str(tmp_path / "o"), *SMALL])
    out = capsys.readouterr().out
    assert rc == 0 and "Held-out validation" in out and ("targets met" in out or "NO sampled point" in out)
    assert "chosen point: decoys alone put" in out


def test_deterministic_and_independent_of_scheduling(tmp_path):
    kw = dict(scenarios=3, seed=5, search_null_runs=2, top_k=3, val_seeds=2, val_null_per_scenario=2)
    a = mc.monte_carlo(6, cores=1, out=tmp_path / "a", chunk_size=6, **kw)
    b = mc.monte_carlo(6, cores=2, out=tmp_path / "b", chunk_size=1, **kw)
    ta = (tmp_path / "a" / mc.RESULTS_FILE).read_text()
    assert ta == (tmp_path / "b" / mc.RESULTS_FILE).read_text()
    assert (tmp_path / "a" / mc.REFINED_FILE).read_text() == (tmp_path / "b" / mc.REFINED_FILE).read_text()
    assert _same(a.validation, b.validation) and _same(a.best, b.best)
    mc.monte_carlo(6, cores=1, out=tmp_path / "c", **{**kw, "seed": 6})
    assert (tmp_path / "c" / mc.RESULTS_FILE).read_text() != ta


def test_resume_equals_uninterrupted(tmp_path):
    kw = dict(scenarios=3, seed=5, search_null_runs=2, top_k=3, val_seeds=2, val_null_per_scenario=2, cores=1)
    full = mc.monte_carlo(8, out=tmp_path / "full", chunk_size=2, **kw)
    part = mc.monte_carlo(8, out=tmp_path / "part", chunk_size=2, stop_after_chunks=2, **kw)
    assert not part.complete and len(part.rows) == 4
    assert len(mc.read_results(tmp_path / "part" / mc.RESULTS_FILE)[1]) == 4
    # A torn write at the moment of the interruption is tolerated.
    with open(tmp_path / "part" / mc.RESULTS_FILE, "a") as fh:
        fh.write("9,0.1,")
    notes = []
    res = mc.monte_carlo(8, out=tmp_path / "part", chunk_size=2, resume=True, say=notes.append, **kw)
    assert res.complete and res.summary["runs_resumed"] == 4
    assert any("resuming: 4 runs" in n for n in notes)
    assert (tmp_path / "part" / mc.RESULTS_FILE).read_text() == (tmp_path / "full" / mc.RESULTS_FILE).read_text()
    assert _same(res.validation, full.validation) and _same(res.best, full.best)
    assert (tmp_path / "part" / mc.BEST_FILE).read_text() == (tmp_path / "full" / mc.BEST_FILE).read_text()
    assert (tmp_path / "part" / mc.REFINED_FILE).read_text() == (tmp_path / "full" / mc.REFINED_FILE).read_text()


def test_resume_rejects_a_different_search(tmp_path, capsys):
    out = tmp_path / "o"
    assert _run(["--runs", "2", "--parallel", "false", "--out", str(out), "--stop-after-chunks", "1",
                 "--chunk-size", "1", *SMALL]) == 3
    capsys.readouterr()
    rc = _run(["--runs", "2", "--parallel", "false", "--out", str(out), "--resume", *SMALL[:-2], "--seed", "6"])
    err = capsys.readouterr().err
    assert rc == 2 and "seed" in err and "Traceback" not in err


def test_resume_without_out_is_an_error(capsys):
    with pytest.raises(ValueError, match="--resume needs --out"):
        mc.monte_carlo(2, scenarios=1, resume=True, out=None)
    assert _run(["--runs", "2", "--out", "", *SMALL]) == 2
    assert "--out" in capsys.readouterr().err


@pytest.mark.slow
def test_killed_search_resumes_to_the_same_table(tmp_path):
    argv = [sys.executable, "-c", "import sys; from ctas7.sim import montecarlo as m; import argparse; "
            "p = argparse.ArgumentParser(); m.add_arguments(p); sys.exit(m.run(p.parse_args(sys.argv[1:])))",
            "--runs", "60", "--chunk-size", "3", "--parallel", "false", "--json", *SMALL]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([*argv, "--out", str(tmp_path / "k")], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    res = tmp_path / "k" / mc.RESULTS_FILE
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if res.exists() and len(mc.read_results(res)[1]) >= 6:
            break
        assert proc.poll() is None, "the search ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_done = len(mc.read_results(res)[1])
    assert 6 <= n_done < 60
    assert subprocess.run([*argv, "--out", str(tmp_path / "k"), "--resume"], cwd=ROOT, env=env,
                          capture_output=True).returncode == 0
    assert subprocess.run([*argv, "--out", str(tmp_path / "u")], cwd=ROOT, env=env,
                          capture_output=True).returncode == 0
    assert res.read_text() == (tmp_path / "u" / mc.RESULTS_FILE).read_text()
    assert json.loads((tmp_path / "k" / mc.SUMMARY_FILE).read_text())["runs_resumed"] == n_done


# ---------------------------------------------------------------------------
# Dask
# ---------------------------------------------------------------------------

def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_unreachable_scheduler_fails_fast_and_clearly(tmp_path, capsys):
    addr = f"tcp://127.0.0.1:{_free_port()}"
    t = time.monotonic()
    rc = _run(["--runs", "2", "--scheduler", addr, "--connect-timeout", "2", "--out", str(tmp_path / "o"), *SMALL])
    elapsed = time.monotonic() - t
    err = capsys.readouterr().err
    assert rc == 2 and elapsed < 8
    assert addr in err and "cannot reach Dask scheduler" in err and "Traceback" not in err


@pytest.mark.slow
def test_dask_local_cluster_equals_local_run(tmp_path):
    from distributed import LocalCluster

    kw = dict(scenarios=3, seed=5, search_null_runs=2, top_k=3, val_seeds=2, val_null_per_scenario=2)
    local = mc.monte_carlo(6, cores=1, out=tmp_path / "local", **kw)
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster:
        res = mc.monte_carlo(6, scheduler=cluster.scheduler_address, out=tmp_path / "dask", chunk_size=2, **kw)
    assert res.summary["executor"] == "dask"
    assert (tmp_path / "dask" / mc.RESULTS_FILE).read_text() == (tmp_path / "local" / mc.RESULTS_FILE).read_text()
    assert _same(res.validation, local.validation) and _same(res.best, local.best)


def test_original_command_through_ctas7_intel(tmp_path, capsys):
    from ctas7.cli import main

    rc = main(["hft-monte-carlo", "--runs", "3", "--scenarios", "41", "--parallel", "true", "--cores", "64",
               "--top-k", "2", "--val-seeds", "1", "--val-null-per-scenario", "1", "--out", str(tmp_path / "o"),
               "--json"])
    cap = capsys.readouterr()
    assert rc == 0
    assert len([ln for ln in cap.err.splitlines() if "--cores 64" in ln]) == (1 if os.cpu_count() < 64 else 0)
    summary = json.loads(cap.out)
    assert len(summary["scenarios"]) == 41 and summary["evaluations_search"] == 3 * (41 + 8)
    assert summary["held_out"] == {"incident_runs": 41, "null_runs": 41}


def test_perturb_is_a_pure_local_step():
    from ctas7.stages.meter import PARAM_SPACE

    base = mc.sample_params(3, 17)
    a = [mc.perturb(base, 3, 0, 17, j) for j in range(40)]
    assert a == [mc.perturb(base, 3, 0, 17, j) for j in range(40)]
    assert all(p != base for p in a) and len(set(a)) > 30
    assert mc.perturb(base, 4, 0, 17, 0) != a[0] or mc.perturb(base, 3, 1, 17, 0) != a[0]
    for p in a:
        assert 1 <= p.persistence_m <= p.persistence_n
        changed = [k for k in PARAM_SPACE if getattr(p, k) != getattr(base, k)]
        assert 1 <= len(changed)
        for k in changed:
            r = PARAM_SPACE[k]
            if r.kind in ("float", "log"):
                assert r.low <= getattr(p, k) <= r.high
            elif r.kind == "int" and k != "persistence_m":
                assert abs(getattr(p, k) - getattr(base, k)) == 1
    # Later rounds take smaller steps.
    def steps(rnd):
        d = [abs(mc.perturb(base, 3, rnd, 1, j).score_threshold - base.score_threshold) for j in range(300)]
        return np.median([x for x in d if x > 0])

    assert steps(2) < steps(0)


def test_the_incumbent_is_scored_refined_and_always_validated(tmp_path):
    from ctas7.stages.meter import MeterParams

    kw = dict(scenarios=3, seed=5, search_null_runs=2, top_k=1, val_seeds=1, val_null_per_scenario=2, cores=1,
              refine_rounds=1, refine_top=1, refine_steps=2)
    # a poor point (no CUSUM, no corroboration, a 6-node quorum): never in the top 1
    start = MeterParams(score_threshold=20.0, min_hot_nodes=6, corroboration_bonus=0.0, corroboration_weight=1.0,
                        detector="surprisal")
    res = mc.monte_carlo(4, out=tmp_path / "a", start=start, **kw)
    start_id = 4 + 1 * 2 * 2
    rows = {r["run_id"]: r for r in mc.read_results(tmp_path / "a" / mc.REFINED_FILE)[1]}
    assert set(rows) == {4, 5, 6, 7, start_id}  # the best search point's and the incumbent's perturbations
    inc = mc.search_row(mc.SearchSpec(5, mc.select_scenarios(3), search_null_runs=2), start_id, params=start)
    assert float(rows[start_id]["score"]) == pytest.approx(inc["score"])
    assert [v["run_id"] for v in res.validation][-1] == start_id and res.validation[-1]["start"]
    assert res.summary["start"]["detected"] == res.validation[-1]["detected"]
    # From a file, by default the MeterParams defaults, or none at all.
    start.to_file(tmp_path / "start.json")
    res_f = mc.monte_carlo(4, out=tmp_path / "b", start=tmp_path / "start.json", **kw)
    assert res_f.summary["start"] == res.summary["start"]
    assert mc.monte_carlo(4, start=None, **kw).summary["start"] is None
    (tmp_path / "bad.json").write_text('{"score_treshold": 3}')
    with pytest.raises(ValueError, match="score_treshold"):
        mc.monte_carlo(4, start=tmp_path / "bad.json", **kw)


def test_refinement_improves_or_keeps_the_search_best_and_can_be_off(tmp_path):
    kw = dict(scenarios=3, seed=5, search_null_runs=2, top_k=3, val_seeds=1, val_null_per_scenario=2, cores=1,
              start=None)
    off = mc.monte_carlo(6, out=tmp_path / "off", refine_rounds=0, **kw)
    assert off.summary["refined_points"] == 0 and all(v["run_id"] < 6 for v in off.validation)
    on = mc.monte_carlo(6, out=tmp_path / "on", refine_rounds=2, refine_top=2, refine_steps=3, **kw)
    assert on.summary["refined_points"] == 12
    assert [r["run_id"] for r in mc.read_results(tmp_path / "on" / mc.REFINED_FILE)[1]] == list(range(6, 18))
    assert max(r["score"] for r in on.rows) <= max(v["search_score"] for v in on.validation)
    with pytest.raises(ValueError, match="refine"):
        mc.monte_carlo(2, scenarios=1, refine_steps=0)


def test_search_score_weighs_false_alarms():
    s = {"detection_rate": 0.9, "run_false_alarm_rate": 0.1}
    assert mc.search_score(s) == pytest.approx(0.9 - mc.FA_WEIGHT * 0.1)
    assert mc.FA_WEIGHT > 1


# ---------------------------------------------------------------------------
# Scenario playbooks: TETH pattern evidence beside the activity
# ---------------------------------------------------------------------------


def test_playbooks_come_from_the_indicator_sequences():
    from ctas7.sim.scenarios import KINDS, SCENARIOS
    from ctas7.stages.teth import accepts, compile_pattern

    kinds = mc.playbook_kinds()
    for name, sc in SCENARIOS.items():
        texts = mc.playbook(name)
        seqs = [s for s in sc.indicator_sequences if len(s) >= 2]
        assert len(texts) == len(set(texts)) and (texts or not seqs), name
        for spec in sc.incidents:
            seq = tuple(spec.indicators)
            if len(seq) < 2:
                continue
            full = compile_pattern(f"{' ~> '.join(seq)} within {(spec.lead[1] + 1) * sc.tick_ns}ns", kinds)
            assert any(compile_pattern(t, kinds) == full for t in texts), name
            codes = [KINDS[k] for k in seq]
            noise = [KINDS["report"], KINDS["netflow"]]
            assert accepts(full, codes) and accepts(full, [x for c in codes for x in (c, *noise)])
            # A near miss carries the sequence minus its last step: no rule completes.
            for t in texts:
                assert not accepts(compile_pattern(t, kinds), codes[:-1]), (name, t)
            assert full.within_ns == (spec.lead[1] + 1) * sc.tick_ns


@pytest.mark.parametrize("name", ["cyber_attack", "madrid_2004", "stuxnet"])
def test_pattern_evidence_bins_the_teth_matches(name):
    from ctas7.sim.scenarios import SCENARIOS
    from ctas7.stages.teth import reference_match

    run = SCENARIOS[name].generate(3)
    pats = mc.playbook(name)
    ev = mc.pattern_evidence(run.events, pats, run.tick_ns, run.n_nodes, run.n_ticks)
    ref, _ = reference_match(run.events, pats, kinds=mc.playbook_kinds())
    want = np.zeros_like(ev)
    np.add.at(want, (ref["ts"] // run.tick_ns, ref["node"].astype(np.int64)), 1)
    assert ev.dtype == np.uint32 and ev.shape == run.activity.shape
    np.testing.assert_array_equal(ev, want)
    # The incidents' involved nodes complete their chain at the last step (onset):
    inc = run.incidents[0]
    near = ev[max(0, inc.onset - 1) : inc.onset + 2][:, list(inc.nodes)].sum()
    assert near >= 1


def test_cases_carry_evidence_and_incident_runs_have_more_of_it():
    spec = mc.SearchSpec(4, mc.select_scenarios(41), search_null_runs=41)
    inc, null = mc.build_cases(spec, "search")
    on_inc = sum(int(c.evidence.sum()) for c in inc if c.evidence is not None)
    on_null = sum(int(c.evidence.sum()) for c in null if c.evidence is not None)
    # Null runs keep the decoys and the background, so they have matches too;
    # the incidents add theirs, on their own nodes, at their onset.
    assert on_inc > 1.5 * on_null > 0
    at_onset = 0
    for c in inc:
        for i in (c.truth.incidents if c.evidence is not None else ()):
            at_onset += c.evidence[max(0, i.onset - 1) : i.onset + 2][:, list(i.nodes)].sum() > 0
    assert at_onset >= 30
    off = mc.SearchSpec(4, mc.select_scenarios(41), search_null_runs=41, playbooks=False)
    inc_off, _ = mc.build_cases(off, "search")
    assert all(c.evidence is None for c in inc_off)
    assert all(np.array_equal(a.activity, b.activity) for a, b in zip(inc, inc_off))


def test_evaluate_cases_passes_the_evidence():
    from ctas7.stages.meter import MeterParams, evaluate_activity

    seen = []

    def fake(activity, groups, params, evidence=None, corroboration=None):
        seen.append(tuple(None if m is None else int(m.sum()) for m in (evidence, corroboration)))
        return np.array([], np.int64)

    a, b, c = _case([(20, 30)]), _case([]), _case([])
    a.evidence = np.ones(a.activity.shape, np.uint32)
    c.corroboration = 2 * np.ones(c.activity.shape, np.uint32)
    evaluate_cases([a], [b, c], params=None, evaluate=fake)
    assert seen == [(a.activity.size, None), (None, None), (None, 2 * c.activity.size)]
    # And the real evaluator: the counts are those of evaluate_activity(..., evidence=, corroboration=).
    spec = mc.SearchSpec(0, mc.select_scenarios(41), search_null_runs=4)
    inc, null = mc.build_cases(spec, "search")
    p = MeterParams(pattern_bonus=12.0, corroboration_bonus=12.0)
    hits = sum(
        len(evaluate_activity(c.activity, c.groups, p, evidence=c.evidence, corroboration=c.corroboration)) > 0
        for c in null
    )
    assert evaluate_cases([], null, p).null_alarm_runs == hits
    none = p.replace(pattern_bonus=0.0, corroboration_bonus=0.0)
    assert evaluate_cases(inc, [], none.replace(pattern_bonus=12.0)).detected > evaluate_cases(inc, [], none).detected
    assert (evaluate_cases(inc, [], none.replace(corroboration_bonus=12.0)).detected
            > evaluate_cases(inc, [], none).detected)


def test_resume_rejects_a_search_with_other_playbooks(tmp_path, capsys):
    out = tmp_path / "mc"
    assert _run(["--runs", "2", *SMALL, "--out", str(out), "--parallel", "false", "--refine-rounds", "0",
                 "--json", "--stop-after-chunks", "1", "--chunk-size", "1"]) == 3
    capsys.readouterr()
    assert _run(["--runs", "2", *SMALL, "--out", str(out), "--parallel", "false", "--refine-rounds", "0",
                 "--json", "--resume", "--no-playbooks"]) == 2
    assert "playbooks" in capsys.readouterr().err


def test_null_alarms_on_decoy_coincidences_are_counted_when_asked():
    # A near miss on nodes 0-1 over [20, 30) and a spike on node 3 at 33:
    # with a 9-tick window, decoys alone fill a 3-node window at ticks
    # 33..37 (the near miss reaches 37, the spike 33..41).
    from ctas7.sim.scenarios import Decoy, Truth

    decoys = (Decoy("near_miss", 20, 30, (0, 1), "step", 1.0), Decoy("spike", 33, 34, (3,), "step", 5.0))
    case = _case([])
    case.truth = Truth(name="fake", seed=0, null=True, tick_ns=60_000_000_000, n_ticks=100, n_nodes=4,
                       groups=(0, 0, 0, 0), group_names=("g",), quorum=3, incidents=(), decoys=decoys)
    for alarms, want in (([], (1, 0)), ([35, 80], (1, 1)), ([80, 35], (1, 0)), ([38], (1, 0))):
        c = evaluate_cases([], [case], None, evaluate=lambda *a, al=alarms: np.array(al, np.int64), decoys=(9, 3))
        assert (c.null_decoy_quorum_runs, c.null_decoy_alarm_runs) == want, alarms
    c = evaluate_cases([], [case], None, evaluate=lambda *a: np.array([35]), decoys=(2, 3))
    assert (c.null_decoy_quorum_runs, c.null_decoy_alarm_runs) == (0, 0)
    c = evaluate_cases([], [case], None, evaluate=lambda *a: np.array([35]))
    assert (c.null_decoy_quorum_runs, c.null_decoy_alarm_runs) == (0, 0)  # not asked: the search's hot loop
    s = mc.summarize(evaluate_cases([], [case], None, evaluate=lambda *a: np.array([35]), decoys=(9, 3)))
    assert (s["null_decoy_quorum_runs"], s["null_decoy_alarm_runs"]) == (1, 1)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 2026])
def test_the_default_meter_meets_both_targets_on_a_full_held_out_set(seed):
    # Issue 3 of 7's targets on Wilson 95% bounds, over the default held-out
    # set (32 seeds x 41 scenarios, 1,312 null runs): seed 0 is the Monte
    # Carlo's own, 2026 one nobody tuned on.
    from concurrent.futures import ProcessPoolExecutor

    from ctas7.stages.meter import MeterParams

    spec = mc.SearchSpec(seed, mc.select_scenarios(41))
    total = Counts()
    with ProcessPoolExecutor(2) as ex:
        jobs = [ex.submit(mc._validate_shard, spec, shard, [(0, MeterParams())]) for shard in range(spec.val_seeds)]
        for job in jobs:
            total.add(Counts.from_dict(job.result()[0]))
    s = mc.summarize(total)
    assert (total.incidents, total.null_runs) == (1568, 1312)
    assert s["detection_lo"] >= 0.95, s
    assert s["false_alarm_hi"] <= 0.05, s
