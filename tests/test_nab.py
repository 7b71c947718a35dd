"""NAB scorer (ctas7.sim.nab): hand-computed scores, a per-row reference of
NAB's sweeper, bad input, the command and the real corpus."""

import argparse
import json
import math
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctas7.sim import nab
from ctas7.sim.nab import (PROFILES, STANDARD, NabCorpus, NabFile, Profile, load_corpus, meter_hot, onsets,
                           persistent, probation_length, row_weights, scaled_sigmoid, score_corpus, sweep)
from ctas7.stages.meter import MeterParams


def S(x):
    """NAB's scaled sigmoid, written out: 2 sigmoid(-5x) - 1, and -1 beyond 3."""
    return -1.0 if x > 3.0 else 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


def _file(n, windows, name="f.csv"):
    return NabFile(name, np.arange(n).astype("datetime64[s]"), np.zeros(n), np.array(windows, np.int64).reshape(-1, 2))


def _corpus(*files, pct=0.0):
    return NabCorpus(tuple(files), probation_percent=pct)


def _det(n, rows):
    d = np.zeros(n, bool)
    d[list(rows)] = True
    return d


# ---------------------------------------------------------------------------
# Formulas
# ---------------------------------------------------------------------------


def test_scaled_sigmoid_constants():
    # the values quoted in NAB's sweeper.scaledSigmoid docstring
    got = scaled_sigmoid(np.array([-1.0, -0.5, 0.0, 1.0]))
    np.testing.assert_allclose(got, [0.98661, 0.84828, 0.0, -0.98661], atol=5e-6)
    assert scaled_sigmoid(3.0) == pytest.approx(S(3.0)) and scaled_sigmoid(3.0) > -1.0
    assert scaled_sigmoid(3.0001) == -1.0 and scaled_sigmoid(1e6) == -1.0
    assert scaled_sigmoid(-0.75) == pytest.approx(S(-0.75), abs=1e-15)


@pytest.mark.parametrize("n,pct,expected", [(100, 0.0, 0), (100, 1.0, 100), (100, 0.1, 10), (100, 0.15, 15),
                                             (4032, 0.15, 604), (5000, 0.15, 750), (22695, 0.15, 750),
                                             (5000, 0.1, 500), (6000, 0.1, 500), (7, 0.15, 1)])
def test_probation_length(n, pct, expected):
    assert probation_length(n, pct) == expected


def test_probation_bad_percent():
    with pytest.raises(ValueError, match="probation percent"):
        probation_length(10, 1.5)


def test_row_weights_by_hand():
    tp, fp = 1.3, 0.2
    prof = Profile("x", tp=tp, fp=fp, fn=1.0)
    w, win = row_weights(30, [[4, 8]], prof)  # width 5
    assert win.tolist() == [-1] * 4 + [0] * 5 + [-1] * 21
    assert w[:4].tolist() == [-fp] * 4  # before any window
    assert w[4] == pytest.approx(tp)  # first row of the window: exactly tp
    for i in range(4, 9):
        assert w[i] == pytest.approx(tp * S(-(8 - i + 1) / 5) / S(-1.0))
    for i in range(9, 30):
        assert w[i] == pytest.approx(fp * S((i - 8) / 4))
    assert w[20] > -fp and w[21] == -fp  # (20 - 8) / 4 = 3 is still on the sigmoid, 13 / 4 > 3 is not


def test_row_weights_two_windows_use_the_previous_one():
    w, win = row_weights(30, [[2, 5], [12, 21]])
    assert w[8] == pytest.approx(0.11 * S(3 / 3))  # after the first window
    assert w[23] == pytest.approx(0.11 * S(2 / 9))  # after the second
    assert win[12] == 1 and win[11] == -1


def test_one_row_window_later_false_alarm_at_distance_two():
    w, _ = row_weights(10, [[3, 3]])
    assert w[3] == pytest.approx(1.0)
    assert w[5] == pytest.approx(0.11 * S(2.0))


# ---------------------------------------------------------------------------
# Scoring fixed detections
# ---------------------------------------------------------------------------


def test_only_the_first_detection_in_a_window_counts():
    c = _corpus(_file(40, [[10, 19]]))
    first = score_corpus([_det(40, [13])], c)
    more = score_corpus([_det(40, [13, 14, 17, 19])], c)
    assert first.raw == pytest.approx(S(-(19 - 13 + 1) / 10) / S(-1.0))
    assert more.raw == pytest.approx(first.raw)
    assert more.caught == first.caught == 1 and more.false_alarms == 0 and more.detections == 4


def test_early_detection_beats_late():
    c = _corpus(_file(40, [[10, 19]]))
    early = score_corpus([_det(40, [10])], c).raw
    mid = score_corpus([_det(40, [15])], c).raw
    late = score_corpus([_det(40, [19])], c).raw
    assert early == pytest.approx(1.0)
    assert mid == pytest.approx(S(-0.5) / S(-1.0))
    assert late == pytest.approx(S(-0.1) / S(-1.0))
    assert early > mid > late > 0


def test_false_alarm_just_after_a_window_costs_less_than_far_away():
    c = _corpus(_file(100, [[10, 19]]))
    hit = [10]
    base = score_corpus([_det(100, hit)], c).raw
    near = score_corpus([_det(100, hit + [20])], c)
    far = score_corpus([_det(100, hit + [60])], c)
    before = score_corpus([_det(100, hit + [3])], c)
    assert near.raw - base == pytest.approx(0.11 * S(1 / 9))
    assert far.raw - base == pytest.approx(-0.11)  # (60 - 19) / 9 > 3
    assert before.raw - base == pytest.approx(-0.11)
    assert near.false_alarms == far.false_alarms == 1
    assert 0 > near.raw - base > far.raw - base


def test_missed_window_costs_fn():
    prof = Profile("p", tp=1.0, fp=0.11, fn=2.5)
    c = _corpus(_file(60, [[5, 9], [30, 39]]))
    r = score_corpus([_det(60, [30])], c, prof)
    assert r.raw == pytest.approx(1.0 - 2.5)
    assert r.caught == 1 and r.windows == 2


def test_null_detector_is_0_and_perfect_is_100():
    c = _corpus(_file(60, [[5, 9], [30, 39]]), _file(50, [[20, 24]], "g.csv"), _file(30, [], "h.csv"))
    null = score_corpus([np.zeros(f.n_rows, bool) for f in c.files], c)
    assert null.raw == null.null == -3.0 and null.perfect == 3.0 and null.normalised == 0.0
    perfect = score_corpus([_det(60, [5, 30]), _det(50, [20]), np.zeros(30, bool)], c)
    assert perfect.raw == pytest.approx(3.0) and perfect.normalised == pytest.approx(100.0)
    half = score_corpus([_det(60, [5]), _det(50, [20]), np.zeros(30, bool)], c)
    assert half.normalised == pytest.approx(100 * (1 + 1 - 1 + 3) / 6)


def test_probation_rows_are_not_scored_and_null_counts_scorable_windows():
    # 100 rows at 15%: rows 0-14 are probation; window [2, 6] lies inside it
    c = _corpus(_file(100, [[2, 6], [40, 49]]), pct=0.15)
    r = score_corpus([_det(100, [3, 10, 40])], c)
    assert r.windows == 1 and r.windows_labelled == 2
    assert r.null == -1.0 and r.perfect == 2.0  # NAB's runner: tp per labelled window
    assert r.caught == 1 and r.false_alarms == 0 and r.detections == 1  # rows 3 and 10 are in probation
    assert r.raw == pytest.approx(1.0)
    assert r.normalised == pytest.approx(100 * 2 / 3)


def test_probation_false_alarm_weight_uses_the_probation_window():
    # a window that ended in probation still sets the distance of later false alarms
    c = _corpus(_file(100, [[2, 6]]), pct=0.15)
    r = score_corpus([_det(100, [16])], c)
    assert r.raw == pytest.approx(0.11 * S(10 / 4))


# ---------------------------------------------------------------------------
# Threshold sweep
# ---------------------------------------------------------------------------


def test_sweep_picks_the_best_threshold():
    c = _corpus(_file(100, [[40, 49]]))
    s = np.zeros(100)
    s[[10, 20]] = 0.9  # two false alarms before the window
    s[45] = 0.7  # mid-window
    s[41] = 0.5  # earlier in the window, lower score
    s[60] = 0.3  # (60 - 49) / 9 past the window
    sw = sweep([s], c)
    tp45, tp41 = S(-0.5) / S(-1.0), S(-0.9) / S(-1.0)
    expected = [-1.0, -1.0 - 0.22, -0.22 + tp45, -0.22 + tp41, -0.22 + tp41 + 0.11 * S(11 / 9)]
    np.testing.assert_allclose(sw.raw[:5], expected, rtol=1e-12)
    assert sw.thresholds[:5].tolist() == [np.inf, 0.9, 0.7, 0.5, 0.3]
    assert sw.best.threshold == 0.5 and sw.best.caught == 1 and sw.best.false_alarms == 2
    assert sw.best.raw == pytest.approx(max(expected))


def test_sweep_ties_keep_the_highest_threshold():
    c = _corpus(_file(30, [[10, 19]]))
    s = np.zeros(30)
    s[10], s[15] = 0.8, 0.6  # at 0.6 the window's term is still row 10's
    sw = sweep([s], c)
    assert sw.raw[1] == sw.raw[2] == pytest.approx(1.0)
    assert sw.best.threshold == 0.8


def test_constant_score_sweeps_to_the_null_score():
    # NAB's null detector: a constant score; alarming everywhere is worse than never
    c = _corpus(_file(300, [[100, 109]]), pct=0.15)
    sw = sweep([np.full(300, 0.5)], c)
    assert sw.thresholds.tolist() == [np.inf, 0.5] and sw.raw[1] < sw.raw[0]
    assert sw.best.threshold == np.inf and sw.best.normalised == 0.0 and sw.best.detections == 0


def test_onset_sweep_counts_run_onsets_only():
    c = _corpus(_file(60, [[20, 29]]))
    s = np.zeros(60)
    s[5:9] = 10.0  # one run before the window: one false alarm with onsets
    s[21:27] = 10.0  # a run inside the window starting at row 21
    rows, ons = sweep([s], c), sweep([s], c, alarm="onset")
    hit = S(-(29 - 21 + 1) / 10) / S(-1.0)
    assert rows.best.threshold == 10.0 and rows.best.false_alarms == 4 and rows.best.detections == 10
    assert rows.best.raw == pytest.approx(-4 * 0.11 + hit)
    assert ons.best.threshold == 10.0 and ons.best.false_alarms == 1 and ons.best.detections == 2
    assert ons.best.raw == pytest.approx(-0.11 + hit)
    assert ons.exhaustive


# ---------------------------------------------------------------------------
# Against a per-row reference of NAB's sweeper
# ---------------------------------------------------------------------------


def reference_sweep(files, profile, pct):
    """Row by row, as NAB's Sweeper.calcSweepScore and calcScoreByThreshold run:
    windows entered and left by timestamp, scores sorted descending, one
    score per distinct threshold."""
    points = []
    for name, ts, scores, limits in files:
        ts = list(ts)
        limits = list(limits)
        prob = min(math.floor(pct * len(ts)), pct * 5000)
        cur = prev_right = prev_width = None
        for i, (t, s) in enumerate(zip(ts, scores)):
            if limits and t == limits[0][0]:
                cur = limits.pop(0)
                right = ts.index(cur[1])
                width = right - ts.index(cur[0]) + 1
            if cur is not None:
                w = profile.tp * S(-(right - i + 1) / width) / S(-1.0)
                wname = (name, cur[0])
            else:
                w = -profile.fp if prev_right is None else profile.fp * S(abs(prev_right - i) / (prev_width - 1))
                wname = None
            points.append((s, w, wname if i >= prob else "probation"))
            if cur is not None and t == cur[1]:
                prev_right, prev_width, cur = i, width, None
    pts = sorted((p for p in points if p[2] != "probation"), key=lambda p: p[0], reverse=True)
    parts = {"fp": 0.0}
    for _, _, wn in pts:
        if wn is not None:
            parts[wn] = -profile.fn
    out, cur_t = [], math.inf
    for s, w, wn in pts:
        if s != cur_t:
            out.append((cur_t, sum(parts.values())))
            cur_t = s
        if wn is None:
            parts["fp"] += w
        else:
            parts[wn] = max(parts[wn], w)
    out.append((cur_t, sum(parts.values())))
    return out


@st.composite
def corpora(draw):
    files, scores = [], []
    for k in range(draw(st.integers(1, 3))):
        n = draw(st.integers(4, 70))
        cuts = sorted(draw(st.lists(st.integers(0, n - 1), max_size=6, unique=True)))
        windows = [[a, b] for a, b in zip(cuts[::2], cuts[1::2]) if b > a]  # width >= 2
        files.append(_file(n, windows, f"f{k}.csv"))
        scores.append(np.array(draw(st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9, 1.0, 2.0]),
                                             min_size=n, max_size=n))))
    pct = draw(st.sampled_from([0.0, 0.1, 0.15, 0.4]))
    prof = draw(st.sampled_from(list(PROFILES.values()) + [Profile("odd", tp=2.0, fp=0.5, fn=0.3)]))
    return NabCorpus(tuple(files), probation_percent=pct), scores, prof


def _ref_files(c, scores):
    return [(f.name, f.timestamps.tolist(), s.tolist(), [(f.timestamps[a], f.timestamps[b]) for a, b in f.windows])
            for f, s in zip(c.files, scores)]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corpora())
def test_row_sweep_matches_reference(case):
    c, scores, prof = case
    sw = sweep(scores, c, prof)
    ref = reference_sweep(_ref_files(c, scores), prof, c.probation_percent)
    assert sw.thresholds.tolist() == [t for t, _ in ref]
    np.testing.assert_allclose(sw.raw, [r for _, r in ref], rtol=1e-12, atol=1e-12)
    for t, raw in zip(sw.thresholds, sw.raw):  # and every state agrees with scoring the detections
        assert score_corpus([s >= t for s in scores], c, prof).raw == pytest.approx(raw, abs=1e-12)
    best = max(ref, key=lambda r: r[1])  # first max, as NAB's optimizer (stable sort)
    assert sw.best.threshold == best[0]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corpora())
def test_onset_sweep_matches_brute_force(case):
    c, scores, prof = case
    sw = sweep(scores, c, prof, alarm="onset")
    assert sw.exhaustive
    for t, raw in zip(sw.thresholds, sw.raw):
        assert score_corpus([onsets(s >= t) for s in scores], c, prof).raw == pytest.approx(raw, abs=1e-12)
    # every distinct score (and one above all) is covered by the candidates' states
    for t in np.unique(np.concatenate(scores)):
        want = score_corpus([onsets(s >= t) for s in scores], c, prof).raw
        assert want <= sw.best.raw + 1e-12


def test_onset_grid_search_on_many_candidates():
    rng = np.random.default_rng(7)
    n = 20_000
    f = _file(n, [[3000 + 2000 * k, 3200 + 2000 * k] for k in range(8)])
    c = _corpus(f, pct=0.15)
    s = rng.exponential(2.0, n)
    for k in range(8):
        s[3050 + 2000 * k: 3060 + 2000 * k] += 12.0
    grid = sweep([s], c, alarm="onset")
    assert not grid.exhaustive and grid.thresholds.size < 4000
    cand = np.unique(s)
    full = sweep([s], c, alarm="onset", thresholds=cand[::-1][:3000])  # every candidate above the 3000th
    assert grid.best.raw == pytest.approx(full.best.raw, abs=1e-9)
    assert score_corpus([onsets(s >= grid.best.threshold)], c).raw == pytest.approx(grid.best.raw)


# ---------------------------------------------------------------------------
# Alarm rules
# ---------------------------------------------------------------------------


def test_persistent_and_onsets():
    raw = np.array([1, 0, 1, 1, 0, 0, 1, 1, 1, 1], bool)
    assert persistent(raw, 2, 3).astype(int).tolist() == [0, 0, 1, 1, 1, 0, 0, 1, 1, 1]
    assert persistent(raw, 1, 1).tolist() == raw.tolist()
    assert onsets(persistent(raw, 2, 3)).astype(int).tolist() == [0, 0, 1, 0, 0, 0, 0, 1, 0, 0]
    with pytest.raises(ValueError):
        persistent(raw, 4, 3)


def test_meter_hot_uses_node0_override_and_persistence():
    s = np.array([5.0, 5.0, 9.0, 9.0, 9.0])
    p = MeterParams(score_threshold=4.9, persistence_m=2, persistence_n=2)
    assert meter_hot(s, p).astype(int).tolist() == [0, 1, 1, 1, 1]
    q = p.replace(node_thresholds={0: 8.0})
    assert meter_hot(s, q).astype(int).tolist() == [0, 0, 0, 1, 1]


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


def test_bad_scores_and_detections():
    c = _corpus(_file(20, [[5, 9]]), _file(10, [], "g.csv"))
    with pytest.raises(ValueError, match="NaN"):
        sweep([np.full(20, np.nan), np.zeros(10)], c)
    with pytest.raises(ValueError, match="one array per file"):
        sweep([np.zeros(20)], c)
    with pytest.raises(ValueError, match=r"g.csv: expected shape \(10,\)"):
        score_corpus([np.zeros(20, bool), np.zeros(11, bool)], c)
    with pytest.raises(ValueError, match="alarm must be"):
        sweep([np.zeros(20), np.zeros(10)], c, alarm="peak")
    with pytest.raises(ValueError, match="onset"):
        sweep([np.zeros(20), np.zeros(10)], c, thresholds=[1.0])


@pytest.mark.parametrize("windows,match", [([[5, 3]], "0 <= lo <= hi"), ([[0, 20]], "0 <= lo <= hi"),
                                           ([[2, 6], [6, 8]], "must not overlap"), ([[8, 9], [2, 4]], "sorted")])
def test_bad_windows(windows, match):
    with pytest.raises(ValueError, match=match):
        _file(20, windows)


def test_bad_profile():
    with pytest.raises(ValueError, match="fp must be"):
        Profile("x", tp=1.0, fp=-0.1, fn=1.0)
    with pytest.raises(ValueError, match="tp must be > 0"):
        Profile("x", tp=0.0, fp=0.1, fn=1.0)


def _write_corpus(root, series, windows):
    (root / "labels").mkdir(parents=True)
    for key, rows in series.items():
        p = root / "data" / key
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("timestamp,value\n" + "".join(f"{t},{v}\n" for t, v in rows))
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    return root


def _minutes(n, start="2020-01-01 00:00:00"):
    t0 = np.datetime64(start.replace(" ", "T"), "s")
    return [str(t0 + np.timedelta64(60 * k, "s")).replace("T", " ") for k in range(n)]


def test_load_corpus_maps_windows_to_first_matching_row(tmp_path):
    ts = _minutes(40)
    ts[12] = ts[11]  # a duplicated timestamp, as in some NAB files
    rows = [(t, float(k % 7)) for k, t in enumerate(ts)]
    root = _write_corpus(tmp_path / "nab", {"cat/a.csv": rows},
                         {"cat/a.csv": [[ts[11] + ".000000", ts[20] + ".000000"]]})
    c = load_corpus(root)
    f = c.files[0]
    assert f.name == "cat/a.csv" and f.n_rows == 40 and f.windows.tolist() == [[11, 20]]
    assert f.values[:3].tolist() == [0.0, 1.0, 2.0]
    assert c.n_windows == 1 and c.path == root


def test_load_corpus_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="NAB corpus not found"):
        load_corpus(tmp_path / "nowhere")
    ts = _minutes(10)
    root = _write_corpus(tmp_path / "a", {"c/x.csv": [(t, 1.0) for t in ts]},
                         {"c/x.csv": [[ts[2], "2031-01-01 00:00:00"]]})
    with pytest.raises(ValueError, match="not a row timestamp"):
        load_corpus(root)
    root = _write_corpus(tmp_path / "b", {"c/x.csv": [(t, 1.0) for t in ts]}, {"c/x.csv": []})
    with pytest.raises(ValueError, match="no labels for c/y.csv"):
        load_corpus(root, files=["c/y.csv"])
    (root / "data" / "c" / "x.csv").write_text("time,val\n" + ts[0] + ",1\n")
    with pytest.raises(ValueError, match="timestamp,value"):
        load_corpus(root)
    (root / "data" / "c" / "x.csv").write_text("timestamp,value\n" + ts[0] + ",abc\n")
    with pytest.raises(ValueError, match="bad value"):
        load_corpus(root)


# ---------------------------------------------------------------------------
# Command
# ---------------------------------------------------------------------------


def _toy_corpus(root):
    rng = np.random.default_rng(3)
    series, windows = {}, {}
    for k in range(2):
        n = 600
        ts = _minutes(n)
        v = rng.normal(10.0, 1.0, n)
        v[400 + 20 * k: 420 + 20 * k] += 15.0
        series[f"cat/s{k}.csv"] = list(zip(ts, v.round(4)))
        windows[f"cat/s{k}.csv"] = [[ts[380 + 20 * k], ts[440 + 20 * k]]]
    return _write_corpus(root, series, windows)


def _args(**kw):
    p = argparse.ArgumentParser()
    nab.add_arguments(p)
    argv = []
    for k, v in kw.items():
        flag = "--" + k.replace("_", "-")
        argv += [flag] if v is True else [flag, str(v)]
    return p.parse_args(argv)


def test_cli_json(tmp_path, capsys):
    root = _toy_corpus(tmp_path / "nab")
    assert nab.run(_args(nab=root, json=True, no_peer=True)) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["corpus"]["files"] == 2 and rep["corpus"]["windows_labelled"] == 2
    assert rep["profile"]["fp"] == 0.11
    samples = [r["sample"] for r in rep["rows"]]
    assert samples[0] == "out-of-sample" and "in-sample" in samples
    for r in rep["rows"]:
        assert r["normalised"] == pytest.approx(100 * (r["raw"] - r["null"]) / (r["perfect"] - r["null"]))
        assert r["null"] == -2.0 and r["perfect"] == 2.0
    best = max(r["normalised"] for r in rep["rows"])
    assert best == pytest.approx(100.0, abs=5.0)  # a 15-sigma step 20 rows into each window


def test_cli_table_and_params_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # one line per row
    root = _toy_corpus(tmp_path / "nab")
    pfile = tmp_path / "p.json"
    pfile.write_text(json.dumps({"score_threshold": 12.0}))
    assert nab.run(_args(nab=root, params=pfile, profile="reward_low_FN_rate")) == 0
    out = capsys.readouterr().out
    assert "reward_low_FN_rate profile" in out and "params p.json" in out and "PageHinkley" in out
    assert ">= 12 bits on 4 of 4 rows" in out


def test_cli_bad_params(tmp_path, capsys):
    root = _toy_corpus(tmp_path / "nab")
    pfile = tmp_path / "p.json"
    pfile.write_text(json.dumps({"score_treshold": 12.0}))
    assert nab.run(_args(nab=root, params=pfile)) == 2
    assert "score_treshold" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# The real corpus
# ---------------------------------------------------------------------------


def test_real_corpus(nab_dir, capsys):
    t0 = time.perf_counter()
    c = load_corpus(nab_dir)
    assert len(c.files) == 58 and c.n_rows == 365_558 and c.n_windows == 116
    small = [f for f in c.files if f.n_rows <= 1700][:3]  # faithful on real files too
    sub = NabCorpus(tuple(small), probation_percent=0.15)
    rng = np.random.default_rng(0)
    sc = [rng.random(f.n_rows).round(2) for f in small]
    sw = sweep(sc, sub)
    ref = reference_sweep(_ref_files(sub, sc), STANDARD, 0.15)
    np.testing.assert_allclose(sw.raw, [r for _, r in ref], rtol=1e-12, atol=1e-12)

    # the onset sweep's coarse-to-fine search finds the best of all thresholds above 8 bits
    from ctas7.stages.meter import score_series

    tuned = [score_series(f.values.astype(np.float32)).astype(np.float64) for f in c.files]
    grid = sweep(tuned, c, alarm="onset")
    every = np.unique(np.concatenate(tuned))
    full = sweep(tuned, c, alarm="onset", thresholds=every[every >= 8.0])
    assert not grid.exhaustive and grid.best.raw == pytest.approx(full.best.raw, abs=1e-9)

    rep = nab.nab_report(c)
    rows = {(r["detector"].split(",")[0] + "|" + r["sample"] + "|" + r["rule"]): r for r in rep["rows"]}
    for r in rep["rows"]:
        assert r["null"] == -116.0 and r["perfect"] == 116.0 and r["windows"] == 116
        assert 0 <= r["caught"] <= 116 and r["false_alarms"] <= r["detections"]
    tuned_own = rep["rows"][0]
    assert tuned_own["sample"] == "out-of-sample" and tuned_own["threshold"] == MeterParams().score_threshold
    scaled_rows = [r for r in rep["rows"] if r["detector"].startswith("meter, scale-aware")]
    at20, swept_rows, swept_onset = scaled_rows
    assert {r["sample"] for r in scaled_rows} == {"in-sample"}
    assert swept_onset["raw"] >= at20["raw"] - 1e-9  # the sweep finds at least the fixed point
    ph_default, ph_best = [r for r in rep["rows"] if r["detector"].startswith("River")]
    assert ph_best["raw"] >= ph_default["raw"]
    assert swept_onset["normalised"] > 0  # better than never alarming
    nab.print_report(rep)
    out = capsys.readouterr().out
    assert "116 windows" in out and "null -116" in out
    assert rows and time.perf_counter() - t0 < 60
