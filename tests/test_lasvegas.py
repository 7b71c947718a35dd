import argparse
import json

import numpy as np
import pytest

from ctas7.events import EVENT_DTYPE, KIND_CONTROL_BASE, make_events
from ctas7.sim import lasvegas
from ctas7.sim.lasvegas import DROP_RANGE, INJECT_RANGE, noisy_replay

TICK = 1_000_000


def _stream(n=20_000, n_nodes=12, n_ticks=400, seed=0):
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(0, n_ticks * TICK, size=n))
    return make_events(ts=ts, node=rng.integers(0, n_nodes, size=n), kind=rng.integers(0, 5, size=n),
                       value=rng.choice([1.0, 2.0], size=n), station=rng.integers(0, 7, size=n),
                       sch=rng.integers(0, 2**63, size=n, dtype=np.uint64))


# ---------------------------------------------------------------------------
# Noise model
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(20))
def test_noise_rates_within_bounds(seed):
    ev = _stream()
    n = ev.shape[0]
    out, noise = noisy_replay(ev, np.random.default_rng(seed), tick_ns=TICK, n_nodes=12, n_ticks=400)
    assert DROP_RANGE[0] <= noise.drop_rate <= DROP_RANGE[1]
    assert INJECT_RANGE[0] <= noise.inject_rate <= INJECT_RANGE[1]
    assert noise.dropped == round(noise.drop_rate * n)
    assert noise.injected == round(noise.inject_rate * n)
    assert out.shape[0] == n - noise.dropped + noise.injected
    assert out.dtype == EVENT_DTYPE and out.flags.c_contiguous
    assert (np.diff(out["ts"]) >= 0).all()
    assert out["ts"].min() >= 0 and out["ts"].max() < 400 * TICK
    assert out["node"].max() < 12


def test_drop_and_inject_are_identifiable():
    # Originals carry unique sch values, so the survivors and the injected
    # events can be told apart exactly.
    ev = _stream(n=10_000)
    ev["sch"] = np.arange(ev.shape[0], dtype=np.uint64) + 1
    ev["seq"] = np.arange(ev.shape[0])
    out, noise = noisy_replay(ev, np.random.default_rng(3), tick_ns=TICK, n_nodes=12, n_ticks=400)
    orig = np.isin(out["sch"], ev["sch"])
    assert int(orig.sum()) == ev.shape[0] - noise.dropped
    assert int((~orig).sum()) == noise.injected
    # Injected events draw kinds and values from the run's own events.
    fake = out[~orig]
    assert set(np.unique(fake["kind"])) <= set(np.unique(ev["kind"]))
    assert set(np.unique(fake["value"])) <= {1.0, 2.0}
    # Injected times are spread over the whole run.
    assert fake["ts"].min() < 40 * TICK and fake["ts"].max() > 360 * TICK


def test_jitter_is_gaussian_with_documented_sigma():
    ev = _stream(n=20_000)
    ev["seq"] = np.arange(ev.shape[0])
    ev["sch"] = np.arange(ev.shape[0], dtype=np.uint64) + 1
    out, noise = noisy_replay(ev, np.random.default_rng(5), tick_ns=TICK, n_nodes=12, n_ticks=400,
                              inject=(0.0, 0.0))
    assert noise.jitter_sigma_ns == pytest.approx(lasvegas.JITTER_TICKS * TICK)
    orig_ts = ev["ts"][(out["sch"] - 1).astype(np.int64)]
    shift = out["ts"].astype(np.int64) - orig_ts
    interior = (orig_ts > 5 * TICK) & (orig_ts < 395 * TICK)  # away from the clipped edges
    s = shift[interior]
    assert abs(s.mean()) < 0.01 * TICK
    assert s.std() == pytest.approx(0.1 * TICK, rel=0.05)


def test_no_jitter_keeps_times_and_input_untouched():
    ev = _stream(n=2_000)
    before = ev.copy()
    out, _ = noisy_replay(ev, np.random.default_rng(1), tick_ns=TICK, n_nodes=12, n_ticks=400,
                          jitter_ticks=0.0, inject=(0.0, 0.0))
    assert np.array_equal(ev, before)
    assert np.isin(out["ts"], ev["ts"]).all()


def test_noise_is_deterministic_per_generator():
    ev = _stream(n=3_000)
    a, na = noisy_replay(ev, np.random.default_rng(9), tick_ns=TICK, n_nodes=12, n_ticks=400)
    b, nb = noisy_replay(ev, np.random.default_rng(9), tick_ns=TICK, n_nodes=12, n_ticks=400)
    assert na == nb and a.tobytes() == b.tobytes()


def test_noise_rejects_bad_input():
    with pytest.raises(TypeError):
        noisy_replay(np.zeros(3), np.random.default_rng(0), tick_ns=TICK, n_nodes=2, n_ticks=2)
    ev = _stream(n=10)
    with pytest.raises(ValueError, match="noise ranges"):
        noisy_replay(ev, np.random.default_rng(0), tick_ns=TICK, n_nodes=12, n_ticks=400, drop=(0.3, 0.2))
    with pytest.raises(ValueError, match="jitter"):
        noisy_replay(ev, np.random.default_rng(0), tick_ns=TICK, n_nodes=12, n_ticks=400, jitter_ticks=-1)


def test_noise_on_empty_and_control_only_streams():
    out, noise = noisy_replay(np.zeros(0, EVENT_DTYPE), np.random.default_rng(0), tick_ns=TICK, n_nodes=3,
                              n_ticks=10)
    assert out.shape[0] == 0 and noise.dropped == 0 and noise.injected == 0
    ctl = make_events(ts=np.arange(100) * TICK // 10, kind=KIND_CONTROL_BASE + 1)
    out, noise = noisy_replay(ctl, np.random.default_rng(0), tick_ns=TICK, n_nodes=3, n_ticks=10)
    assert out.shape[0] == 100 - noise.dropped + noise.injected


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def _parser():
    p = argparse.ArgumentParser()
    lasvegas.add_arguments(p)
    return p


@pytest.mark.parametrize(
    "content, key",
    [
        ('{"score_treshold": 9}', "score_treshold"),
        ('{"min_hot_nodes": 1e9}', "min_hot_nodes"),
        ('{"window_ticks": "ten"}', "window_ticks"),
        ('{"persistence_n": 2.5}', "persistence_n"),
        ("[1, 2]", "JSON object"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_params_file_names_the_key(tmp_path, capsys, content, key):
    path = tmp_path / "p.json"
    path.write_text(content)
    rc = lasvegas.run(_parser().parse_args(["--params", str(path), "--runs", "1", "--scenarios", "1"]))
    err = capsys.readouterr().err
    assert rc != 0
    assert key in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_missing_params_file(tmp_path, capsys):
    rc = lasvegas.run(_parser().parse_args(["--params", str(tmp_path / "nope.json")]))
    err = capsys.readouterr().err
    assert rc != 0 and "nope.json" in err and len(err.strip().splitlines()) == 1


def test_parallel_flag_forms():
    p = _parser()
    assert p.parse_args(["--params", "x", "--parallel", "false"]).parallel is False
    assert p.parse_args(["--params", "x", "--parallel"]).parallel is True
    with pytest.raises(SystemExit):
        p.parse_args(["--params", "x", "--parallel", "maybe"])


# ---------------------------------------------------------------------------
# End to end on real scenarios
# ---------------------------------------------------------------------------

def _params_file(tmp_path):
    from ctas7.stages.meter import MeterParams

    path = tmp_path / "best.json"
    MeterParams(min_samples=10, score_threshold=9.0, min_hot_nodes=3, convergence_threshold=0.75,
                window_ticks=12, lookback_ticks=48.0).to_file(path)
    return path


def test_las_vegas_json_report(tmp_path, capsys):
    path = _params_file(tmp_path)
    args = _parser().parse_args(["--params", str(path), "--runs", "6", "--null-runs", "3", "--scenarios", "2",
                                 "--seed", "4", "--parallel", "false", "--json"])
    assert lasvegas.run(args) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["runs"] == 6 and len(rep["scenarios"]) == 2
    for r in rep["scenarios"]:
        assert r["replays"] == 6 and r["null_replays"] == 3
        assert r["trials"] == 6 * r["incidents"]
        assert 0 <= r["successes"] <= r["trials"]
        assert r["success_lo"] - 1e-12 <= r["success_rate"] <= r["success_hi"] + 1e-12
        assert len(r["delays_ticks"]) == r["successes"]
        assert all(d >= 0 for d in r["delays_ticks"])
        assert DROP_RANGE[0] <= r["drop_rate_min"] <= r["drop_rate_max"] <= DROP_RANGE[1]
        assert INJECT_RANGE[0] <= r["inject_rate_min"] <= r["inject_rate_max"] <= INJECT_RANGE[1]
    o = rep["overall"]
    assert o["trials"] == sum(r["trials"] for r in rep["scenarios"])
    assert o["null_replays"] == 6


def test_las_vegas_deterministic_and_schedule_free(tmp_path):
    path = _params_file(tmp_path)
    a = lasvegas.las_vegas(path, runs=4, null_runs=2, scenarios=2, seed=11, cores=1)
    b = lasvegas.las_vegas(path, runs=4, null_runs=2, scenarios=2, seed=11, cores=2)
    assert json.dumps(a["scenarios"]) == json.dumps(b["scenarios"])  # NaN-safe equality
    c = lasvegas.las_vegas(path, runs=4, null_runs=2, scenarios=2, seed=12, cores=1)
    assert [r["delays_ticks"] for r in c["scenarios"]] != [r["delays_ticks"] for r in a["scenarios"]] or \
        [r["drop_rate_min"] for r in c["scenarios"]] != [r["drop_rate_min"] for r in a["scenarios"]]


def test_las_vegas_rich_table(tmp_path, capsys):
    path = _params_file(tmp_path)
    args = _parser().parse_args(["--params", str(path), "--runs", "2", "--null-runs", "1", "--scenarios", "1",
                                 "--parallel", "false"])
    assert lasvegas.run(args) == 0
    out = capsys.readouterr().out
    assert "Las Vegas" in out and "overall:" in out and "incident replays detected" in out


def test_noise_free_replay_matches_clean_run(tmp_path):
    # With every noise switched off a replay is the run itself: the binned
    # activity equals the scenario's activity matrix.
    from ctas7.sim.scenarios import SCENARIOS, bin_activity

    sc = next(iter(SCENARIOS.values()))
    run = sc.generate(5)
    out, _ = noisy_replay(run.events, np.random.default_rng(0), tick_ns=run.tick_ns, n_nodes=run.n_nodes,
                          n_ticks=run.n_ticks, drop=(0.0, 0.0), inject=(0.0, 0.0), jitter_ticks=0.0)
    act = bin_activity(out, run.tick_ns, run.n_nodes, run.n_ticks)
    assert np.array_equal(act, run.activity)


def test_ctas7_intel_accepts_monte_carlo_best_params_and_rejects_bad_ones(tmp_path, capsys):
    from ctas7.cli import main
    from ctas7.sim import montecarlo as mc

    best = tmp_path / "best.json"
    mc.sample_params(1, 7).to_file(best)
    assert main(["hft-las-vegas", "--runs", "2", "--null-runs", "1", "--params", str(best), "--scenarios", "1",
                 "--parallel", "false", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["overall"]["trials"] >= 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**json.loads(best.read_text()), "convergence_threshold": 1.5}))
    assert main(["hft-las-vegas", "--params", str(bad)]) != 0
    err = capsys.readouterr().err
    assert "convergence_threshold" in err and "Traceback" not in err


def test_playbook_evidence_is_recomputed_on_the_noisy_stream():
    # (Evidence = playbook matches; corroboration = 3 nodes on any indicator,
    # 2 on a final step.) Noise off: the replay's evidence is the clean run's. Noise on: drops,
    # jitter and injected events change the matches, and the replay's alarms
    # are those of evaluate_activity with the noisy stream's own evidence.
    from ctas7.sim import lasvegas as lv
    from ctas7.sim import montecarlo as mc
    from ctas7.sim.scenarios import SCENARIOS, bin_activity
    from ctas7.stages.meter import MeterParams, evaluate_activity

    name = "notpetya_2017"
    run = SCENARIOS[name].generate(2)
    geo = dict(tick_ns=run.tick_ns, n_nodes=run.n_nodes, n_ticks=run.n_ticks)
    clean = mc.pattern_evidence(run.events, mc.playbook(name), run.tick_ns, run.n_nodes, run.n_ticks)
    same, _ = noisy_replay(run.events, np.random.default_rng(0), drop=(0.0, 0.0), inject=(0.0, 0.0),
                           jitter_ticks=0.0, **geo)
    np.testing.assert_array_equal(mc.pattern_evidence(same, mc.playbook(name), run.tick_ns, run.n_nodes,
                                                      run.n_ticks), clean)
    noisy, _ = noisy_replay(run.events, np.random.default_rng(1), **geo)
    ev = mc.pattern_evidence(noisy, mc.playbook(name), run.tick_ns, run.n_nodes, run.n_ticks)
    assert clean.sum() > 0 and not np.array_equal(ev, clean)
    cor = mc.corroboration_evidence(noisy, run.tick_ns, run.n_nodes, run.n_ticks)
    cor += mc.corroboration_evidence(noisy, run.tick_ns, run.n_nodes, run.n_ticks, kinds=mc.playbook_finals(name),
                                     min_nodes=mc.FINAL_CORROBORATION_NODES)
    p = MeterParams(pattern_bonus=10.0, corroboration_bonus=10.0).compile()
    act = bin_activity(noisy, run.tick_ns, run.n_nodes, run.n_ticks)
    want = evaluate_activity(act, run.groups, p, evidence=ev, corroboration=cor)
    assert not np.array_equal(want, evaluate_activity(act, run.groups, p, evidence=ev))
    np.testing.assert_array_equal(lv._alarms(noisy, run, p, name), want)
    np.testing.assert_array_equal(lv._alarms(noisy, run, p), evaluate_activity(act, run.groups, p))


def test_las_vegas_playbooks_switch():
    from ctas7.stages.meter import MeterParams

    p = MeterParams(pattern_bonus=16.0)
    on = lasvegas.las_vegas(p, runs=3, null_runs=2, scenarios="pandemic_influenza,stuxnet")
    off = lasvegas.las_vegas(p, runs=3, null_runs=2, scenarios="pandemic_influenza,stuxnet", playbooks=False)
    assert on["playbooks"] is True and off["playbooks"] is False
    assert on["overall"]["trials"] == off["overall"]["trials"] == 6
    assert on["overall"]["successes"] > off["overall"]["successes"]
