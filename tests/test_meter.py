"""Tests for the convergence meter (ctas7.stages.meter, ctas7._core._meter)."""

import doctest
import json
import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctas7 import checks
from ctas7._core import _meter
from ctas7.events import KIND_HEARTBEAT, empty, make_events
from ctas7.records import MATCH_DTYPE
from ctas7.sim.synthetic import batches, synthetic_stream
from ctas7.stage import Frame
from ctas7.stages import meter as meter_mod
from ctas7.stages.meter import (
    LIMITS,
    PARAM_SPACE,
    Meter,
    MeterParams,
    NodeState,
    evaluate_activity,
    reference_evaluate,
    reference_score_series,
    sample,
    score_series,
)


#: The raw-count semantics the hand-computed cases below were worked out in:
#: no transform, no common-mode correction, no smoothing, no correction, no CUSUM.
RAW = dict(transform="none", common_mode="none", smoothing=1.0, min_groups=1, family_correction=0.0,
           lookback_ticks=32.0, min_samples=10, outlier_sigma=4.0, score_threshold=10.0, min_hot_nodes=3.0,
           convergence_threshold=0.8, window_ticks=10, persistence_m=1, persistence_n=1,
           confidence_half_life=8.0, pattern_bonus=2.0, detector="surprisal", corroboration_weight=1.0,
           refire_new_nodes=0)


def RawParams(**kw):
    return MeterParams(**{**RAW, **kw})


def bits(z):
    return -math.log2(math.erfc(abs(z) / math.sqrt(2.0)))


def run_steps(activity, groups=None, params=None):
    """Drive the streaming core tick by tick; collect its per-tick traces."""
    p = params or MeterParams()
    core = _meter.MeterCore(p.compile(), groups, activity.shape[1])
    out = {k: [] for k in ("alarms", "scores", "hot", "states", "count", "conf")}
    for t, row in enumerate(np.ascontiguousarray(activity, dtype=np.float32)):
        if core.step(row):
            out["alarms"].append(t)
        out["scores"].append(core.scores())
        out["hot"].append(core.array("hot").astype(bool))
        out["states"].append(core.array("state"))
        out["count"].append(core.window_count)
        out["conf"].append(core.confidence)
    return core, {k: (np.array(v) if k != "alarms" else v) for k, v in out.items()}


def activity_of(stream, tick_ns, n_nodes):
    """Activity matrix of the ticks a streaming meter has closed."""
    t = stream["ts"] // tick_ns
    t0, t1 = int(t.min()), int(t.max())
    a = np.zeros((t1 - t0, n_nodes), dtype=np.float32)
    live = (t < t1) & (stream["kind"] < 0xFF00)
    np.add.at(a, (t[live] - t0, stream["node"][live].astype(np.int64)), stream["value"][live])
    return a, t0


# ---------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------


def test_params_roundtrip_file(tmp_path):
    p = MeterParams(lookback_ticks=32.0, score_threshold=12.5, node_thresholds={4: 6.0}, node_weights=[(1, 0.5), (0, 2.0)],
                    persistence_m=2, persistence_n=3)
    assert p.node_weights == ((0, 2.0), (1, 0.5))
    path = tmp_path / "meter.json"
    p.to_file(path)
    assert json.loads(path.read_text())["node_thresholds"] == {"4": 6.0}
    assert MeterParams.from_file(path) == p
    path.write_text(json.dumps({"meter": p.to_dict()}))
    assert MeterParams.from_file(path) == p
    assert p.alpha == pytest.approx(2 / 33)


@pytest.mark.parametrize(
    "data, exc, key",
    [
        ({"windw_ticks": 5}, ValueError, "windw_ticks"),
        ({"window_ticks": 2.5}, TypeError, "window_ticks"),
        ({"window_ticks": "5"}, TypeError, "window_ticks"),
        ({"min_samples": True}, TypeError, "min_samples"),
        ({"convergence_threshold": 1.5}, ValueError, "convergence_threshold"),
        ({"score_threshold": 0.2}, ValueError, "score_threshold"),
        ({"lookback_ticks": 0}, ValueError, "lookback_ticks"),
        ({"node_weights": {"3": 500.0}}, ValueError, "node_weights"),
        ({"node_weights": {"x": 1.0}}, TypeError, "node_weights"),
        ({"node_thresholds": [[1, 2, 3]]}, TypeError, "node_thresholds"),
        ({"node_thresholds": 3}, TypeError, "node_thresholds"),
        ({"persistence_m": 3, "persistence_n": 2}, ValueError, "persistence_m"),
        ({"persistence_n": 33}, ValueError, "persistence_n"),
    ],
)
def test_params_errors_name_the_key(data, exc, key, tmp_path):
    with pytest.raises(exc, match=key):
        MeterParams.from_dict(data)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    with pytest.raises(exc, match=key):
        MeterParams.from_file(path)


def test_params_file_rejects_nan_and_non_objects(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"outlier_sigma": NaN}')
    with pytest.raises(ValueError, match="NaN"):
        MeterParams.from_file(path)
    path.write_text("[1, 2]")
    with pytest.raises(TypeError, match="JSON object"):
        MeterParams.from_file(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        MeterParams.from_file(path)


def test_sample_within_space_and_deterministic():
    for seed in range(50):
        p = sample(np.random.default_rng(seed), n_nodes=12)
        assert p == sample(seed, n_nodes=12)
        for key, r in PARAM_SPACE.items():
            if r.kind == "choice":
                assert getattr(p, key) in r.choices, key
            elif r.per_node:
                vals = [v for _, v in getattr(p, key)]
                assert all(r.low <= v <= r.high for v in vals)
            else:
                assert r.low <= getattr(p, key) <= r.high, key
        assert len(p.node_weights) == 12
        assert p.persistence_m <= p.persistence_n
        assert set(LIMITS) <= set(p.to_dict())
    assert sample(1).node_weights == ()


# ---------------------------------------------------------------------------
# Hand-computed cases
# ---------------------------------------------------------------------------

# lookback 3 -> alpha 0.5; constant 4 per tick gives mean 4, var 0 (the first
# update takes a = 1). At tick 4 var_eff = max(0, var_floor 1, 1 * |4|) = 4,
# so x = 20 gives z = 16 / 2 = 8 and x = 0 gives z = -2.
HAND = RawParams(tick_ns=10, lookback_ticks=3.0, min_samples=2, score_threshold=10.0,
                   min_hot_nodes=3, convergence_threshold=0.8, window_ticks=3,
                   confidence_half_life=1.0, min_state_ticks=1)


def hand_activity():
    a = np.full((6, 4), 4.0, dtype=np.float32)
    a[4, :3] = 20.0
    a[4, 3] = 0.0
    return a


def test_hand_computed_scores_baseline_and_rising_edge():
    a = hand_activity()
    core, tr = run_steps(a, params=HAND)
    # Ticks 0-1: warm-up (score 0); 2-3: at baseline (score 0).
    assert np.all(tr["scores"][:4] == 0)
    assert tr["scores"][4][:3] == pytest.approx([bits(8.0)] * 3, rel=1e-5)
    assert bits(8.0) == pytest.approx(49.51, abs=0.01)
    assert tr["scores"][4][3] == pytest.approx(bits(2.0), rel=1e-5)  # 4.46 bits < 10: not hot
    assert tr["hot"][4].tolist() == [True, True, True, False]
    # Window {0,1,2}, all up, all fresh: count 3, confidence 1 -> fires at 4.
    assert tr["count"][4] == 3.0 and tr["conf"][4] == 1.0
    assert tr["alarms"] == [4]
    # Tick 5: still in the window but one half-life old: confidence 0.5.
    assert tr["count"][5] == 3.0 and tr["conf"][5] == pytest.approx(0.5)
    # Baseline after tick 4: var was 0 so no clipping: mean 4 + 0.5*16 = 12,
    # var 0.5 * (0 + 0.5 * 256) = 64; tick 5 (x=4) then clips nothing:
    # mean 12 - 4 = 8, var 0.5 * (64 + 0.5 * 64) = 48.
    mean, var = core.array("mean"), core.array("var")
    assert mean[:3].tolist() == [8.0] * 3 and var[:3].tolist() == [48.0] * 3
    assert tr["scores"][5][0] == pytest.approx(bits(1.0), rel=1e-5)  # z = -8/8
    assert tr["states"][4].tolist() == [NodeState.HIGH] * 3 + [NodeState.CALM]
    assert tr["states"][5].tolist() == [NodeState.CALM] * 4  # min_state_ticks=1
    assert evaluate_activity(a, None, HAND).tolist() == [4]
    assert reference_evaluate(a, None, HAND).alarms == [4]


def test_hand_computed_disagreement_weights_and_groups():
    a = hand_activity()
    # Node 3 made hot (z=-2 is 4.46 bits >= 4): 3 nodes up, 1 down, all fresh:
    # confidence = up weight / all weight = 3/4.
    p = HAND.replace(node_thresholds={3: 4.0})
    _, tr = run_steps(a, params=p)
    assert tr["hot"][4].tolist() == [True] * 4
    assert tr["count"][4] == 4.0 and tr["conf"][4] == pytest.approx(0.75)
    assert tr["alarms"] == []
    assert evaluate_activity(a, None, p.replace(convergence_threshold=0.7)).tolist() == [4]
    # Halving node 3's weight: count 3.5, confidence 3 / 3.5.
    pw = p.replace(node_weights={3: 0.5})
    _, tr = run_steps(a, params=pw)
    assert tr["count"][4] == 3.5 and tr["conf"][4] == pytest.approx(3 / 3.5)
    assert tr["alarms"] == [4]
    # Groups corroborate instead of splitting: node 1 in group 1 leaves the
    # confidence at 3 / 3.5 (agreement is on direction only).
    _, tr = run_steps(a, groups=[0, 1, 0, 0], params=pw)
    assert tr["conf"][4] == pytest.approx(3 / 3.5) and tr["alarms"] == [4]
    # min_groups=2: the up nodes {0, 1, 2} must span two groups.
    pg = pw.replace(min_groups=2)
    assert evaluate_activity(a, None, pg).tolist() == []
    assert evaluate_activity(a, [0, 1, 0, 0], pg).tolist() == [4]
    assert reference_evaluate(a, [0, 1, 0, 0], pg).alarms == [4]
    # Node 3 (down) alone in group 1 does not count for the up direction.
    assert evaluate_activity(a, [0, 0, 0, 1], pg).tolist() == []
    assert reference_evaluate(a, [0, 0, 0, 1], pg).alarms == []


def test_hand_computed_anscombe_transform():
    # y = 2 sqrt(x + 3/8): 4 -> 2 sqrt(4.375) = 4.18330, 20 -> 2 sqrt(20.375)
    # = 9.02774. Baseline mean 4.18330, var 0, so var_eff = max(var_floor 1,
    # poisson_floor 1 (the Poisson variance after the transform is 1)) = 1
    # and z = 9.02774 - 4.18330 = 4.84444; x = 0 -> y = 1.22474, z = -2.95856.
    a = hand_activity()
    p = HAND.replace(transform="anscombe")
    _, tr = run_steps(a, params=p)
    y4, y20, y0 = (2 * math.sqrt(v + 0.375) for v in (4.0, 20.0, 0.0))
    assert tr["scores"][4][:3] == pytest.approx([bits(y20 - y4)] * 3, rel=1e-5)
    assert tr["scores"][4][3] == pytest.approx(bits(y0 - y4), rel=1e-5)
    assert bits(y20 - y4) == pytest.approx(19.59, abs=0.01)  # hot at 10 bits
    assert tr["alarms"] == [4]
    # Drops and rises are symmetric: 4 -> 0 scores like 4 -> 8.2 would, far
    # more than under the raw z (2.0).
    assert abs(y0 - y4) > 2.9
    # The 4 nodes light up at tick 4 and the transform leaves the raw
    # semantics of everything downstream unchanged.
    assert reference_evaluate(a, None, p).alarms == [4]
    np.testing.assert_allclose(reference_evaluate(a, None, p).scores, tr["scores"], rtol=1e-5, atol=1e-6)


def test_hand_computed_common_mode_and_smoothing():
    # Every node quintuples at tick 4 (common mode): the global median ratio
    # is 5, expected = mean * 5, only node 0 is hot; without the correction
    # all are (z = 16 / 2 = 8).
    a = np.full((6, 5), 4.0, dtype=np.float32)
    a[4, :] = 20.0
    a[4, 0] = 100.0  # node 0 also has its own excess: 100 vs 4 * 5 -> z = 80 / sqrt(20)
    p = HAND.replace(min_hot_nodes=1, convergence_threshold=0.5)
    _, tr = run_steps(a, params=p.replace(common_mode="global"))
    assert tr["hot"][4].tolist() == [True, False, False, False, False]
    assert tr["scores"][4][0] == pytest.approx(bits(80 / math.sqrt(20.0)), rel=1e-5)
    _, tr = run_steps(a, params=p)
    assert tr["hot"][4].tolist() == [True] * 5
    # Smoothing s: z_s = (1 - s) z_s + s z, scored as z_s / sqrt(s / (2 - s)).
    # s = 0.5: one z = 8 tick gives z_s = 4, scored 4 * sqrt(3) = 6.93.
    _, tr = run_steps(hand_activity(), params=HAND.replace(smoothing=0.5))
    assert tr["scores"][4][0] == pytest.approx(bits(4 * math.sqrt(3.0)), rel=1e-5)


def test_family_correction_raises_the_threshold():
    # 4 nodes, correction 1: threshold 10 + log2(4) = 12 bits; z = 2 for node
    # 3 is 4.46 bits, under an override of 4 + 2 = 6.
    a = hand_activity()
    p = HAND.replace(node_thresholds={3: 4.0}, family_correction=1.0)
    _, tr = run_steps(a, params=p)
    assert tr["hot"][4].tolist() == [True, True, True, False]
    assert _meter.MeterCore(p.compile(), None, 4).array("mean").shape == (4,)
    assert reference_evaluate(a, None, p).hot[4].tolist() == [True, True, True, False]
    # 49.5 bits vs 12: the burst still fires; at 60 bits it would not.
    assert evaluate_activity(a, None, p).tolist() == [4]
    assert evaluate_activity(a, None, p.replace(score_threshold=48.0)).tolist() == []


def test_pattern_bonus_makes_a_matched_node_hot():
    # Node 3's drop (4.46 bits) is under 10; 2 matches at 3 bits each in the
    # window lift it to 10.46: hot. A match at tick 0 has left the window.
    a = hand_activity()
    p = HAND.replace(pattern_bonus=3.0)
    core = _meter.MeterCore(p.compile(), None, 4)
    core.add_matches(np.array([0, 3, 4], np.int64), np.array([3, 3, 3], np.int64))
    hot = []
    for row in a:
        core.step(row)
        hot.append(core.array("hot").astype(bool))
    assert hot[4].tolist() == [True] * 4
    m = np.zeros(a.shape, np.int64)
    m[[0, 3, 4], 3] = 1
    assert reference_evaluate(a, None, p, matches=m).hot[4].tolist() == [True] * 4
    # One match (3 bits) is not enough, and without the bonus nothing changes.
    m[3, 3] = 0
    assert reference_evaluate(a, None, p, matches=m).hot[4].tolist() == [True, True, True, False]
    assert reference_evaluate(a, None, p.replace(pattern_bonus=0.0), matches=m * 9).hot[4, 3] == False  # noqa: E712


def test_hysteresis_min_state_ticks():
    a = np.vstack([hand_activity(), np.full((3, 4), 4.0, np.float32)])
    _, tr = run_steps(a, params=HAND.replace(min_state_ticks=2))
    # HIGH is entered at once, left only after 2 ticks in it.
    assert tr["states"][4, 0] == NodeState.HIGH
    assert tr["states"][5, 0] == NodeState.HIGH
    assert tr["states"][6, 0] != NodeState.HIGH


def test_trend_states():
    a = np.full((30, 2), 5.0, dtype=np.float32)
    a[20:24, 0] = [6.0, 7.0, 8.0, 9.0]  # small steady rise: not hot
    a[20:24, 1] = [4.0, 3.0, 2.0, 1.0]
    p = RawParams(min_samples=5, min_state_ticks=1, score_threshold=20.0)
    _, tr = run_steps(a, params=p)
    assert tr["states"][22, 0] == NodeState.INCREASING
    assert tr["states"][22, 1] == NodeState.REDUCING
    assert reference_evaluate(a, None, p).states[22].tolist() == tr["states"][22].tolist()


def test_warm_up_is_not_scored():
    a = np.full((10, 3), 2.0, dtype=np.float32)
    a[3, :] = 500.0
    p = RawParams(min_samples=5, min_hot_nodes=1, convergence_threshold=0.5)
    core, tr = run_steps(a, params=p)
    assert np.all(tr["scores"][:5] == 0) and not tr["hot"][:5].any()
    assert tr["alarms"] == [] and evaluate_activity(a, None, p).size == 0
    assert core.array("count").tolist() == [10, 10, 10]


def test_outlier_clipping_protects_the_baseline():
    rng = np.random.default_rng(3)
    a = rng.normal(100.0, 5.0, size=(60, 1)).astype(np.float32)
    a[50, 0] = 10_000.0
    p = RawParams(min_samples=10, outlier_sigma=3.0, var_floor=1e-6, poisson_floor=0.0)
    core = _meter.MeterCore(p.compile(), None, 1)
    for row in a[:50]:
        core.step(row)
    m, v = core.array("mean")[0], core.array("var")[0]
    core.step(a[50])
    alpha = np.float32(p.alpha)
    expected = m + alpha * (m + np.float32(3.0) * np.sqrt(v) - m)
    assert core.array("mean")[0] == pytest.approx(expected, rel=1e-6)
    assert core.array("mean")[0] < 110.0  # unclipped it would be ~ 400
    ref = reference_evaluate(a[:51], None, p)
    assert core.array("mean")[0] == pytest.approx(ref.mean[0], rel=1e-6)


def test_persistence_m_of_n():
    a = np.full((40, 3), 3.0, dtype=np.float32)
    a[30, 0] = 60.0  # one tick only
    a[30:32, 1] = 60.0  # two ticks
    p = RawParams(min_samples=5, persistence_m=2, persistence_n=3, outlier_sigma=1.0)
    _, tr = run_steps(a, params=p)
    assert not tr["hot"][:, 0].any()
    assert not tr["hot"][30, 1] and tr["hot"][31, 1]


def test_rising_edge_only_and_rearm():
    a = np.full((80, 5), 4.0, dtype=np.float32)
    a[20:26, :4] = 60.0  # sustained: one alarm
    a[50:53, :4] = 60.0  # again after it fell: a second alarm
    p = RawParams(min_samples=5, min_hot_nodes=3, window_ticks=5, outlier_sigma=1.0,
                    confidence_half_life=1e6)
    _, tr = run_steps(a, params=p)
    assert tr["hot"][20:26, :4].sum() > 12  # it did stay hot for several ticks
    assert tr["alarms"] == [20, 50]
    assert evaluate_activity(a, None, p).tolist() == [20, 50]
    assert reference_evaluate(a, None, p).alarms == [20, 50]


def test_confidence_decays_with_age():
    # Nodes lighting up 4 ticks apart do not converge; together they do.
    a = np.full((40, 4), 4.0, dtype=np.float32)
    for k, node in enumerate(range(3)):
        a[20 + 4 * k, node] = 80.0
    p = RawParams(min_samples=5, min_hot_nodes=3, window_ticks=12, confidence_half_life=2.0)
    assert evaluate_activity(a, None, p).tolist() == []
    assert evaluate_activity(a, None, p.replace(confidence_half_life=1e6)).tolist() == [28]


# ---------------------------------------------------------------------------
# Cython against the reference
# ---------------------------------------------------------------------------


def _random_case(seed, n_nodes, n_ticks):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.5, 20.0, size=n_nodes)
    a = rng.poisson(base, size=(n_ticks, n_nodes)).astype(np.float32)
    for _ in range(rng.integers(1, 4)):
        t = int(rng.integers(n_ticks // 3, n_ticks))
        nodes = rng.choice(n_nodes, size=min(n_nodes, int(rng.integers(1, 6))), replace=False)
        a[t : t + int(rng.integers(1, 4)), nodes] *= rng.uniform(2.0, 8.0)
        a[t : t + 1, nodes] += rng.uniform(5, 40)
    if rng.random() < 0.3:
        a[rng.integers(0, n_ticks), rng.integers(0, n_nodes)] = np.nan
    groups = rng.integers(0, 3, size=n_nodes) if rng.random() < 0.5 else None
    p = sample(rng, n_nodes=n_nodes if rng.random() < 0.5 else 0,
               base=MeterParams(var_floor=float(rng.uniform(0.1, 2.0)), poisson_floor=float(rng.choice([0.0, 1.0]))))
    p = p.replace(score_threshold=float(rng.uniform(4.0, 12.0)), min_hot_nodes=float(rng.integers(1, 4)),
                  common_mode=str(rng.choice(["none", "global", "group"])))
    return a, groups, p


@settings(max_examples=60, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), n_nodes=st.integers(1, 12), n_ticks=st.integers(15, 90))
def test_cython_matches_reference(seed, n_nodes, n_ticks):
    a, groups, p = _random_case(seed, n_nodes, n_ticks)
    ref = reference_evaluate(a, groups, p)
    core, tr = run_steps(a, groups, p)
    assert tr["alarms"] == ref.alarms
    assert evaluate_activity(a, groups, p).tolist() == ref.alarms
    np.testing.assert_array_equal(tr["hot"], ref.hot)
    np.testing.assert_array_equal(tr["states"], ref.states)
    np.testing.assert_allclose(tr["scores"], ref.scores, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tr["count"], ref.weighted_count, rtol=1e-12)
    np.testing.assert_allclose(tr["conf"], ref.confidence, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(core.array("mean"), ref.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(core.array("var"), ref.var, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(core.array("count"), ref.count)


def test_score_series_matches_reference():
    rng = np.random.default_rng(11)
    x = (rng.normal(50, 3, 400) + np.r_[np.zeros(300), np.full(100, 25.0)]).astype(np.float32)
    x[10] = np.nan
    p = RawParams(min_samples=20, var_floor=1e-3, poisson_floor=0.0)
    s = score_series(x, p)
    assert s.dtype == np.float32 and s.shape == x.shape
    np.testing.assert_allclose(s, reference_score_series(x, p), rtol=1e-5, atol=1e-5)
    assert np.all(s[:20] == 0) and s[300] > 20
    assert score_series(np.zeros(0, np.float32), p).shape == (0,)


@pytest.mark.parametrize("kw", [
    {},  # the defaults: Anscombe, smoothing, CUSUM "both"
    dict(detector="cusum", cusum_offset=0.0, score_threshold=30.0),
    dict(detector="both", cusum_variance=1, cusum_k=0.5, transform="none", poisson_floor=0.0, var_floor=1e-2),
    dict(detector="surprisal", smoothing=0.2, node_thresholds={0: 12.0}),
    dict(detector="both", node_thresholds={0: 40.0}, lookback_ticks=8.0, outlier_sigma=0.5),
])
def test_score_series_matches_reference_all_detectors(kw):
    rng = np.random.default_rng(len(kw))
    x = rng.poisson(20.0, 700).astype(np.float32)
    x[300:420] += 12.0           # a step
    x[500:] *= rng.uniform(0.2, 3.0, 200).astype(np.float32)  # variance change
    x[[40, 41, 600]] = [np.nan, np.inf, -np.inf]
    x[450] = 1e7
    p = MeterParams(min_samples=20, **kw)
    s = score_series(x, p)
    ref = reference_score_series(x, p)
    np.testing.assert_allclose(s, ref, rtol=1e-5, atol=1e-5)
    assert np.all(s[:20] == 0) and np.all(s >= 0) and not np.isnan(s).any()
    if p.detector != "surprisal":
        assert (s > 0).any()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e4, 1e4, width=32), min_size=0, max_size=300),
       st.sampled_from(["surprisal", "cusum", "both"]), st.floats(0.05, 1.0), st.sampled_from(["none", "anscombe"]))
def test_score_series_property(values, detector, smoothing, transform):
    x = np.array(values, dtype=np.float32)
    p = MeterParams(min_samples=5, lookback_ticks=16.0, detector=detector, smoothing=smoothing, transform=transform,
                    poisson_floor=0.0, var_floor=1e-3, cusum_offset=0.0)
    np.testing.assert_allclose(score_series(x, p), reference_score_series(x, p), rtol=1e-5, atol=1e-4)


def test_score_series_is_the_meters_hot_test():
    # A one-node meter is raw-hot exactly where score_series reaches the node's threshold.
    rng = np.random.default_rng(5)
    x = rng.poisson(30.0, 600).astype(np.float32)
    x[350:] += 25.0
    for det in ("surprisal", "cusum", "both"):
        p = MeterParams(min_samples=20, detector=det, family_correction=0.0, score_threshold=9.0)
        tr = reference_evaluate(x.reshape(-1, 1), None, p)
        s = score_series(x, p)
        margin = np.abs(s - 9.0) > 1e-3  # away from the boundary (float32 scores)
        np.testing.assert_array_equal((s >= 9.0)[margin], tr.raw_hot[:, 0][margin])
        assert tr.raw_hot[:, 0].any()


# ---------------------------------------------------------------------------
# Streaming stage
# ---------------------------------------------------------------------------

STREAM_PARAMS = RawParams(tick_ns=1_000_000, min_samples=8, score_threshold=12.0, min_hot_nodes=3,
                            window_ticks=6)


@pytest.mark.parametrize("n_nodes, burst", [(6, (1, 3, 4)), (247, (5, 17, 80, 200))])
def test_stream_equals_matrix(n_nodes, burst):
    s = synthetic_stream(60_000, n_stations=n_nodes, burst_nodes=burst, burst_start=0.7, burst_factor=6.0, seed=5)
    m = Meter(STREAM_PARAMS)
    convs = [c for b in batches(s, 1000) for c in m.process(Frame(b)).convergences]
    a, t0 = activity_of(s, STREAM_PARAMS.tick_ns, n_nodes)
    alarms = evaluate_activity(a, None, STREAM_PARAMS)
    assert len(alarms) >= 1
    assert [c.tick - t0 for c in convs] == alarms.tolist()
    assert reference_evaluate(a, None, STREAM_PARAMS).alarms == alarms.tolist()
    assert any(len(set(burst) & set(c.nodes)) >= 3 for c in convs)  # the burst is caught
    assert m.ticks_closed == a.shape[0]


def test_hundred_thousand_nodes():
    n = 100_000
    rng = np.random.default_rng(9)
    n_ticks, per_tick = 24, 20_000
    ts = np.sort(rng.integers(0, n_ticks * 1000, size=n_ticks * per_tick))
    node = rng.integers(0, n, size=ts.shape[0])
    burst = np.array([7, 31_337, 77_777, 99_999])
    late = ts >= 20 * 1000
    node[np.flatnonzero(late)[: 4 * 40]] = np.repeat(burst, 40)
    s = make_events(ts=ts, node=node)
    p = RawParams(tick_ns=1000, min_samples=5, min_hot_nodes=4, window_ticks=3, score_threshold=16.0)
    m = Meter(p)
    convs = [c for b in batches(s, 4096) for c in m.process(Frame(b)).convergences]
    assert m.baseline[0].shape == (n,)
    a, t0 = activity_of(s, p.tick_ns, n)
    assert [c.tick - t0 for c in convs] == evaluate_activity(a, None, p).tolist() == [20]
    assert set(burst.tolist()) <= set(convs[0].nodes)  # plus any background node hot by chance


def test_nodes_appearing_late_match_the_matrix():
    rng = np.random.default_rng(2)
    a = rng.poisson(3.0, size=(50, 10)).astype(np.float32)
    a[:25, 6:] = 0.0  # nodes 6.. silent at first
    a[40, [1, 2, 7, 8]] += 40.0
    ts, node, value = [], [], []
    for t, row in enumerate(a):
        for i in np.flatnonzero(row):
            ts.append(t * 10 + 1)
            node.append(i)
            value.append(row[i])
    ts.append(50 * 10)
    node.append(0)
    value.append(0.0)
    s = make_events(ts=ts, node=node, value=value)
    p = RawParams(tick_ns=10, min_samples=5, min_hot_nodes=4, convergence_threshold=0.6)
    m = Meter(p)
    convs = m.process(Frame(s)).convergences
    # 30: the late nodes' first events are surprising (they were silent since tick 0).
    assert [c.tick for c in convs] == evaluate_activity(a, None, p).tolist() == [30, 40]
    assert reference_evaluate(a, None, p).alarms == [30, 40]


def test_convergence_record_fields():
    p = RawParams(tick_ns=100, min_samples=5, min_hot_nodes=3, window_ticks=4, convergence_threshold=0.6)
    quiet = make_events(ts=np.repeat(np.arange(30) * 100, 5), node=np.tile(np.arange(5), 30), value=2.0)
    burst = make_events(ts=np.full(40, 3_050), node=np.r_[np.full(10, 0), np.full(12, 2), np.full(18, 4)])
    hb = make_events(ts=[3_150], kind=KIND_HEARTBEAT)  # closes tick 30 without activity
    matches = np.zeros(3, dtype=MATCH_DTYPE)
    matches["ts"] = [3_060, 3_070, 1_000]  # the third is outside the window
    matches["node"] = [2, 4, 2]
    m = Meter(p, groups=[0, 1, 1, 0, 1])
    out = m.process(Frame(np.concatenate([quiet, burst, hb]), matches=matches))
    (c,) = out.convergences
    assert c.tick == 30 and c.ts == 3_100 and c.window_start_ts == 2_700
    assert c.nodes == (4, 2, 0)  # 18, 12, 10 events above a baseline of 2
    assert c.groups == (1, 1, 0) and c.directions == (1, 1, 1)
    assert c.first_hot_ts == (3_100,) * 3
    assert c.scores[0] > c.scores[1] > c.scores[2] >= p.score_threshold
    assert c.weighted_count == 3.0
    # Confidence: all three agree on the direction (up) and are fresh: 1.
    assert c.confidence == pytest.approx(1.0)
    assert c.pattern_matches == 2
    # Events on nodes 0, 2, 4 in ticks 27..30: 3 quiet ticks x 3 nodes x 1 + 40.
    assert c.event_count == 9 + 40
    assert m.late_events == 0 and m.open_tick == 31


def test_control_events_move_time_and_late_events_are_counted():
    p = RawParams(tick_ns=10)
    m = Meter(p)
    m.process(Frame(make_events(ts=[0, 5, 35], node=[1, 1, 0], kind=[0, 0, KIND_HEARTBEAT])))
    assert m.ticks_closed == 3 and m.open_tick == 3
    assert m.baseline[2].tolist() == [3, 3]  # node 0 only saw the heartbeat
    m.process(Frame(make_events(ts=[12], node=[1])))
    assert m.late_events == 1 and m.ticks_closed == 3


def test_huge_time_gap_is_bounded():
    m = Meter(RawParams(tick_ns=1), max_gap_ticks=100)
    m.process(Frame(make_events(ts=[0, 10**15], node=[0, 0])))
    assert m.ticks_closed == 101 and m.skipped_ticks == 10**15 - 101
    assert m.open_tick == 10**15


def test_conformance():
    checks.check_stage(Meter(RawParams(min_samples=5, score_threshold=8.0)))
    checks.check_stage(Meter(groups=np.arange(12) % 3))


def test_pickle_mid_stream_with_pending_records():
    p = RawParams(min_samples=5, min_hot_nodes=3)
    a = np.full((30, 4), 4.0, np.float32)
    a[20, :3] = 60.0
    core = _meter.MeterCore(p.compile(), None, 4)
    for row in a[:21]:
        core.step(row)
    twin = pickle.loads(pickle.dumps(core))
    assert [f[0] for f in twin.take_fired()] == [20]
    assert [f[0] for f in core.take_fired()] == [20]
    for row in a[21:]:
        core.step(row)
        twin.step(row)
    np.testing.assert_array_equal(core.array("mean"), twin.array("mean"))
    np.testing.assert_array_equal(core.array("state"), twin.array("state"))


def test_bad_input_is_rejected():
    m = Meter(max_nodes=1000)
    with pytest.raises(ValueError, match="max_nodes"):
        m.process(Frame(make_events(ts=[0, 1], node=[3, 5000])))
    assert m.open_tick is None and m.baseline[0].shape == (0,)  # nothing applied
    with pytest.raises(TypeError, match="matches"):
        m.process(Frame(empty(2), matches=np.zeros(2)))
    with pytest.raises(TypeError):
        m.process(Frame(np.zeros(4, np.float32)))
    with pytest.raises(ValueError, match="2-d"):
        evaluate_activity(np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="groups"):
        evaluate_activity(np.zeros((5, 3), np.float32), [0, 1])
    with pytest.raises(ValueError, match="groups"):
        evaluate_activity(np.zeros((5, 2), np.float32), [0, -1])
    with pytest.raises(TypeError, match="params"):
        Meter(params=3.5)
    with pytest.raises(TypeError, match="n_nodes"):
        Meter(n_nodes=2.0)
    with pytest.raises(ValueError, match="1-d"):
        score_series(np.zeros((2, 2)))


def test_evaluate_activity_accepts_compiled_and_other_dtypes():
    a = np.full((30, 4), 4.0)
    a[20, :3] = 60.0
    p = RawParams(min_samples=5)
    assert evaluate_activity(a, None, p.compile()).tolist() == evaluate_activity(a.astype(np.float32), None, p).tolist() == [20]
    assert evaluate_activity(np.zeros((0, 3), np.float32), None, p).size == 0
    assert evaluate_activity(np.zeros((5, 0), np.float32), None, p).size == 0


def test_doctests():
    res = doctest.testmod(meter_mod, optionflags=doctest.ELLIPSIS)
    assert res.failed == 0 and res.attempted >= 8


# ---------------------------------------------------------------------------
# CUSUM detector
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0.05, 0.25, 0.5, 1.0, 2.0, 5.0])
def test_cusum_threshold_mapping(k):
    prev = -1.0
    for b in (0.5, 4.0, 10.0, 15.4, 20.0, 40.0):
        h = _meter.cusum_threshold(b, k)
        assert h == meter_mod.reference_cusum_threshold(b, k)
        assert h >= prev
        prev = h
        if h > 0:
            assert _meter.cusum_score(h, k) >= b > _meter.cusum_score(h * (1 - 1e-9), k)
            assert _meter.cusum_score(h, k) == pytest.approx(meter_mod.reference_cusum_score(h, k), rel=1e-12)
    # Siegmund: ARL0 of h = 5 with k = 0.5 is ~938 ticks, i.e. ~9.87 bits.
    assert _meter.cusum_score(5.0, 0.5) == pytest.approx(math.log2(938.0), abs=0.01)
    assert _meter.cusum_threshold(math.inf, k) == math.inf
    with pytest.raises(ValueError):
        _meter.cusum_threshold(10.0, 0.0)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_cusum_small_step_hand_computed(sign):
    # A flat baseline (variance 0, so clipping keeps it flat and var_eff = var_floor = 1)
    # then a persistent 1.5 sd shift on three nodes: z = 1.5 every tick, 2.9 bits,
    # far below the 10-bit surprisal threshold. The CUSUM grows by z - k = 1 a tick
    # and is hot from the first tick it reaches h.
    a = np.full((60, 4), 10.0, dtype=np.float32)
    a[30:, :3] += np.float32(sign * 1.5)
    # lookback 1e6: the baseline barely moves after warm-up (with variance 0 it is not clipped)
    base = RawParams(poisson_floor=0.0, var_floor=1.0, cusum_k=0.5, cusum_offset=0.0, window_ticks=4, lookback_ticks=1e6)
    h = _meter.cusum_threshold(10.0, 0.5)
    expect = 30 + math.ceil(h) - 1
    assert evaluate_activity(a, None, base.replace(detector="surprisal")).tolist() == []
    for det in ("cusum", "both"):
        p = base.replace(detector=det)
        assert evaluate_activity(a, None, p).tolist() == [expect]
        tr = reference_evaluate(a, None, p)
        assert tr.alarms == [expect]
        assert tr.hot[expect, :3].all() and not tr.hot[expect - 1].any() and not tr.hot[:, 3].any()
        core, steps = run_steps(a, None, p)
        assert steps["alarms"] == [expect]
        want = NodeState.HIGH if sign > 0 else NodeState.LOW
        assert steps["states"][expect][:3].tolist() == [want] * 3
        # capped at 2h, so the node cools down within 2h / k ticks after the shift ends
        np.testing.assert_allclose(core.array("cup" if sign > 0 else "cdn")[:3], 2 * h, rtol=1e-6)
    assert evaluate_activity(a, None, base.replace(detector="cusum", cusum_offset=20.0)).tolist() == []


@pytest.mark.parametrize("seed", range(12))
def test_cusum_cython_matches_reference(seed):
    rng = np.random.default_rng(seed)
    T, N = 160, 9
    a = rng.poisson(rng.uniform(0.5, 6, N), size=(T, N)).astype(np.float32)
    a[100:, :4] *= np.float32(rng.uniform(1.2, 2.5))
    a[90:, 5:7] *= np.float32(0.4)
    a[120:140, 7] = np.float32(rng.uniform(0, 20, 20).round())
    p = MeterParams(min_samples=8, min_hot_nodes=3, detector=("cusum", "both")[seed % 2],
                    cusum_k=float(rng.uniform(0.2, 1.0)), cusum_offset=float(rng.uniform(-2, 4)),
                    cusum_variance=seed % 4 // 2, score_threshold=float(rng.uniform(4, 12)),
                    smoothing=float(rng.uniform(0.2, 1)), persistence_m=1, persistence_n=2,
                    family_correction=float(rng.uniform(0, 1)), transform=("none", "anscombe")[seed % 3 == 0],
                    node_thresholds={2: 7.0})
    ref = reference_evaluate(a, None, p)
    core, tr = run_steps(a, None, p)
    assert tr["alarms"] == ref.alarms == evaluate_activity(a, None, p).tolist()
    np.testing.assert_array_equal(tr["hot"], ref.hot)
    np.testing.assert_array_equal(tr["states"], ref.states)
    for name in ("cup", "cdn", "cvr"):
        np.testing.assert_allclose(core.array(name), getattr(ref, name), rtol=1e-5, atol=1e-4)
    assert ref.hot.any()


# ---------------------------------------------------------------------------
# Pattern evidence in the matrix path (evaluate_activity(..., evidence=...))
# ---------------------------------------------------------------------------


def run_steps_with_matches(activity, groups, params, evidence, corroboration=None):
    """The streaming core, tick by tick, given each tick's matches before it
    closes (pattern and corroboration matches interleaved)."""
    core = _meter.MeterCore(params.compile(), groups, activity.shape[1])
    alarms, hot, dirs = [], [], []
    n = activity.shape[1]
    for t, row in enumerate(np.ascontiguousarray(activity, dtype=np.float32)):
        nodes = np.repeat(np.arange(n), evidence[t].astype(np.int64))
        src = np.zeros(nodes.shape[0], np.uint8)
        if corroboration is not None:
            cn = np.repeat(np.arange(n), corroboration[t].astype(np.int64))
            nodes, src = np.r_[cn, nodes], np.r_[np.ones(cn.shape[0], np.uint8), src]
        core.add_matches(np.full(nodes.shape[0], t, np.int64), nodes.astype(np.int64), src)
        if core.step(row):
            alarms.append(t)
        hot.append(core.array("hot").astype(bool))
        dirs.append(core.array("hot_dir").copy())
    return alarms, np.array(hot), np.array(dirs)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), n_nodes=st.integers(1, 12), n_ticks=st.integers(15, 90))
def test_evidence_cython_matches_reference_and_stream(seed, n_nodes, n_ticks):
    a, groups, p = _random_case(seed, n_nodes, n_ticks)
    rng = np.random.default_rng(seed ^ 0x5EED)
    p = p.replace(pattern_bonus=float(rng.choice([0.0, 0.5, 3.0, 8.0, 16.0])),
                  corroboration_bonus=float(rng.choice([0.0, 2.0, 9.0, 24.0])),
                  corroboration_weight=float(rng.choice([1.0, 1.5, 2.0])),
                  refire_new_nodes=int(rng.integers(0, 2)),
                  corroboration_ticks=int(rng.choice([p.window_ticks, 1, 5, 18, 40])))
    ev = (rng.random(a.shape) < rng.uniform(0.0, 0.2)) * rng.integers(1, 4, size=a.shape)
    ev = ev.astype(np.float32)
    cor = ((rng.random(a.shape) < rng.uniform(0.0, 0.1)) * rng.integers(1, 3, size=a.shape)).astype(np.uint32)
    ref = reference_evaluate(a, groups, p, evidence=ev, corroboration=cor)
    assert evaluate_activity(a, groups, p, evidence=ev, corroboration=cor).tolist() == ref.alarms
    alarms, hot, _ = run_steps_with_matches(a, groups, p, ev, cor)
    assert alarms == ref.alarms
    np.testing.assert_array_equal(hot, ref.hot)
    # Corroboration alone, and swapping the roles of the two bonuses.
    ref_c = reference_evaluate(a, groups, p, corroboration=cor)
    assert evaluate_activity(a, groups, p, corroboration=cor).tolist() == ref_c.alarms
    # (one window for both, and no refire: corroborations have their own
    # window length, and new ones make their nodes fresh for a refire)
    p = p.replace(corroboration_weight=1.0, corroboration_ticks=p.window_ticks, refire_new_nodes=0)
    swapped = p.replace(pattern_bonus=p.corroboration_bonus, corroboration_bonus=p.pattern_bonus)
    assert (evaluate_activity(a, groups, swapped, evidence=cor, corroboration=ev).tolist()
            == evaluate_activity(a, groups, p, evidence=ev, corroboration=cor).tolist())


def test_corroboration_weight_lets_two_corroborated_nodes_converge():
    # min_hot_nodes 4: two nodes hot on activity and corroborated count 2 x 2
    # with corroboration_weight 2; uncorroborated, or with weight 1, they
    # are 2 < 4. Hand-checked against the reference and the streaming core.
    rng = np.random.default_rng(4)
    a = rng.poisson(20.0, size=(60, 6)).astype(np.float32)
    a[50:54, [1, 4]] += 80.0
    p = RawParams(min_samples=10, window_ticks=5, min_hot_nodes=4, corroboration_weight=2.0)
    cor = np.zeros(a.shape, np.uint32)
    cor[50, [1, 4]] = 1
    assert evaluate_activity(a, None, p).tolist() == []
    assert evaluate_activity(a, None, p.replace(corroboration_weight=1.0), corroboration=cor).tolist() == []
    ref = reference_evaluate(a, None, p, corroboration=cor)
    assert ref.alarms == [50] and ref.weighted_count[50] == 4.0
    assert evaluate_activity(a, None, p, corroboration=cor).tolist() == [50]
    alarms, _, _ = run_steps_with_matches(a, None, p, np.zeros(a.shape), cor)
    assert alarms == [50]
    with pytest.raises(ValueError, match="corroboration_weight"):
        p.replace(corroboration_weight=0.5)


def test_convergence_holds_while_the_confidence_decays():
    # Nodes 0-2 burst from tick 40 to 80, nodes 3-5 join at 52. The
    # confidence (half-life 8 ticks) falls under 0.6 from tick 46 and is back
    # at 0.68 at 52, but the convergence never ended (3+ nodes hot to tick 60
    # and beyond): no second alarm for the same incident. Before the hold,
    # the meter re-armed at 46 and fired again at 52. Nodes 3-5 do fire on
    # their own with refire_new_nodes (a fresh quorum).
    rng = np.random.default_rng(5)
    a = rng.poisson(20.0, size=(100, 8)).astype(np.float32)
    a[40:80, :3] += 60.0
    a[52:80, 3:6] += 60.0
    for refire, want in ((0, [40]), (1, [40, 52])):
        p = RawParams(min_samples=10, min_hot_nodes=3, convergence_threshold=0.6, confidence_half_life=8.0,
                      refire_new_nodes=refire)
        ref = reference_evaluate(a, None, p)
        assert ref.alarms == want
        assert ref.confidence[46] < 0.6 <= ref.confidence[52] and ref.weighted_count[40:60].min() >= 3
        assert evaluate_activity(a, None, p).tolist() == want
        assert run_steps_with_matches(a, None, p, np.zeros(a.shape))[0] == want


def two_jump_one_dips():
    """Poisson(20) activity, 60 ticks x 5 nodes: nodes 0 and 1 jump by 60 at
    ticks 50-53, node 2 dips to 14 there (no surprisal worth a hot tick)."""
    rng = np.random.default_rng(8)
    a = rng.poisson(20.0, size=(60, 5)).astype(np.float32)
    a[50:54, [0, 1]] += 60.0
    a[50:54, 2] = 14.0
    return a


def test_corroboration_ticks_is_the_corroborations_own_window():
    # Nodes 0 and 1 jump at tick 50; node 2 has no hot tick of its own. Its
    # corroboration at tick 38 makes it hot (30 bits) while the
    # corroboration counts, and a member of the 5-tick window for 4 ticks
    # more: the third node of a convergence at 50 when corroborations count
    # for 9 ticks or more (ticks 38-46), not for 8. A pattern match at tick
    # 38 never does (pattern matches keep window_ticks). Same in the
    # reference, evaluate_activity and the streaming core.
    a = two_jump_one_dips()
    p = RawParams(min_samples=10, window_ticks=5, min_hot_nodes=3, corroboration_bonus=30.0,
                  confidence_half_life=1e6)
    cor = np.zeros(a.shape, np.uint32)
    cor[38, 2] = 1
    for ticks, fires in ((5, False), (8, False), (9, True), (40, True)):
        q = p.replace(corroboration_ticks=ticks)
        ref = reference_evaluate(a, None, q, corroboration=cor)
        assert ref.alarms == ([50] if fires else [])
        assert evaluate_activity(a, None, q, corroboration=cor).tolist() == ref.alarms
        alarms, hot, _ = run_steps_with_matches(a, None, q, np.zeros(a.shape), cor)
        assert alarms == ref.alarms
        np.testing.assert_array_equal(hot, ref.hot)
    pp = p.replace(corroboration_bonus=0.0, pattern_bonus=30.0, corroboration_ticks=40)
    assert evaluate_activity(a, None, pp, evidence=cor).tolist() == []
    with pytest.raises(ValueError, match="corroboration_ticks"):
        p.replace(corroboration_ticks=0)


@pytest.mark.parametrize("corroboration_ticks", [2, 5, 9])
def test_pickle_mid_stream_with_matches_of_both_windows(corroboration_ticks):
    # Matches of both sources queued, some counted, some expired from one
    # window only, some still to come: a pickled twin goes on exactly as the
    # original (window 5; corroborations shorter, equal or longer).
    rng = np.random.default_rng(11)
    a = rng.poisson(20.0, size=(70, 6)).astype(np.float32)
    a[40:46, :3] += 30.0
    a[55:60, 3:] += 30.0
    p = RawParams(min_samples=10, window_ticks=5, pattern_bonus=6.0, corroboration_bonus=6.0,
                  corroboration_weight=2.0, refire_new_nodes=1, corroboration_ticks=corroboration_ticks)
    ev = (rng.random(a.shape) < 0.15).astype(np.uint32)
    cor = (rng.random(a.shape) < 0.1).astype(np.uint32)
    core = _meter.MeterCore(p.compile(), None, 6)
    alarms = []

    def step(c, t):
        n_ev, n_co = ev[t].astype(np.int64), cor[t].astype(np.int64)
        nodes = np.r_[np.repeat(np.arange(6), n_co), np.repeat(np.arange(6), n_ev)].astype(np.int64)
        src = np.r_[np.ones(n_co.sum(), np.uint8), np.zeros(n_ev.sum(), np.uint8)]
        c.add_matches(np.full(nodes.shape[0], t, np.int64), nodes, src)
        return c.step(a[t])

    for t in range(44):
        if step(core, t):
            alarms.append(t)
    core.add_matches(np.array([47, 48], np.int64), np.array([4, 5], np.int64), np.array([1, 0], np.uint8))
    twin = pickle.loads(pickle.dumps(core))
    ticks, nodes, n_in, sources = twin.pending_matches()
    assert ticks.tolist()[n_in:] == [47, 48] and sources.tolist()[n_in:] == [1, 0]
    np.testing.assert_array_equal(twin.array("cwin"), core.array("cwin"))
    np.testing.assert_array_equal(twin.array("mwin"), core.array("mwin"))
    for t in range(44, 70):
        fired = step(core, t)
        assert step(twin, t) == fired
        if fired:
            alarms.append(t)
        np.testing.assert_array_equal(twin.array("cwin"), core.array("cwin"))
        np.testing.assert_array_equal(twin.array("mwin"), core.array("mwin"))
    extra_ev, extra_cor = ev.copy(), cor.copy()
    extra_ev[48, 5] += 1
    extra_cor[47, 4] += 1
    ref = reference_evaluate(a, None, p, evidence=extra_ev, corroboration=extra_cor)
    assert alarms == ref.alarms and len(alarms) >= 2


def test_refire_new_nodes_fires_for_a_second_quorum_not_for_a_long_burst():
    # Nodes 0-2 burst from tick 40 to 70; nodes 3-5 from tick 50, while the
    # first convergence is still on. One rising edge: one alarm; with
    # refire_new_nodes a second at the second quorum. A long burst on the
    # same nodes never refires.
    rng = np.random.default_rng(6)
    a = rng.poisson(20.0, size=(90, 8)).astype(np.float32)
    a[40:70, 0:3] += 80.0
    a[50:65, 3:6] += 80.0
    p = RawParams(min_samples=10, window_ticks=5, min_hot_nodes=3, lookback_ticks=1e6, convergence_threshold=0.5,
                  confidence_half_life=1e6)
    once = evaluate_activity(a, None, p).tolist()
    twice = evaluate_activity(a, None, p.replace(refire_new_nodes=1)).tolist()
    assert once == [40] and twice == [40, 50]
    for q in (p, p.replace(refire_new_nodes=1)):
        assert reference_evaluate(a, None, q).alarms == evaluate_activity(a, None, q).tolist()
        assert run_steps_with_matches(a, None, q, np.zeros(a.shape))[0] == evaluate_activity(a, None, q).tolist()
    b = a.copy()
    b[50:65, 3:6] -= 80.0
    assert evaluate_activity(b, None, p.replace(refire_new_nodes=1)).tolist() == [40]


def test_refire_on_new_corroboration_of_converged_nodes():
    # Nodes 0-2 burst from tick 40 (one convergence). A corroboration on
    # nodes 0 and 1 at tick 46, while it lasts, is new intel: with refire_new_nodes it
    # fires again (2 nodes x weight 2 >= 3), without it does not; the same
    # corroboration before the first firing changes nothing later.
    rng = np.random.default_rng(6)
    a = rng.poisson(20.0, size=(90, 8)).astype(np.float32)
    a[40:70, 0:3] += 80.0
    p = RawParams(min_samples=10, window_ticks=5, min_hot_nodes=3, lookback_ticks=1e6, convergence_threshold=0.5,
                  confidence_half_life=1e6, corroboration_bonus=4.0, corroboration_weight=2.0)
    cor = np.zeros(a.shape, np.uint32)
    cor[46, [0, 1]] = 1
    early = np.zeros(a.shape, np.uint32)
    early[38, [0, 1]] = 1
    for q, c, want in ((p, cor, [40]), (p.replace(refire_new_nodes=1), cor, [40, 46]),
                       (p.replace(refire_new_nodes=1), early, [40])):
        got = evaluate_activity(a, None, q, corroboration=c).tolist()
        assert got == want
        assert reference_evaluate(a, None, q, corroboration=c).alarms == want
        assert run_steps_with_matches(a, None, q, np.zeros(a.shape), c)[0] == want


def test_refires_agree_across_implementations_on_overlapping_incidents():
    # Staggered bursts on disjoint node sets, corroborations on some of them,
    # random parameters with refire on: the Cython core, the streaming core
    # and the reference fire at the same ticks, and the refires do happen.
    refired = 0
    for seed in range(40):
        rng = np.random.default_rng(1000 + seed)
        n, T = int(rng.integers(6, 16)), int(rng.integers(60, 120))
        a = rng.poisson(rng.uniform(2.0, 20.0, n), (T, n)).astype(np.float32)
        cor = np.zeros((T, n), np.uint32)
        order = rng.permutation(n)
        for k in range(int(rng.integers(2, 4))):
            nodes, t0 = order[3 * k : 3 * k + 3], int(rng.integers(T // 2, T // 2 + 12))
            a[t0 : t0 + int(rng.integers(6, 16)), nodes] *= rng.uniform(3.0, 6.0)
            if rng.random() < 0.5:
                cor[t0 + int(rng.integers(-3, 4)), nodes[: int(rng.integers(1, 4))]] = 1
        p = sample(rng).replace(refire_new_nodes=1, min_hot_nodes=float(rng.integers(2, 4)),
                                score_threshold=float(rng.uniform(4.0, 10.0)), family_correction=0.0)
        want = reference_evaluate(a, None, p, corroboration=cor)
        assert evaluate_activity(a, None, p, corroboration=cor).tolist() == want.alarms
        assert run_steps_with_matches(a, None, p, np.zeros(a.shape), cor)[0] == want.alarms
        once = evaluate_activity(a, None, p.replace(refire_new_nodes=0), corroboration=cor).tolist()
        assert set(once) <= set(want.alarms)
        refired += len(want.alarms) > len(once)
    assert refired >= 10


def test_evidence_hot_nodes_are_neutral_on_direction():
    # Nodes 0 and 1 jump up; node 2 dips a little (no surprisal of its own
    # worth a hot tick) but is corroborated: it joins the upward convergence
    # (state HIGH, direction 0; as a "down" node it would cap the confidence
    # at 2/3), in every implementation.
    a = two_jump_one_dips()
    p = RawParams(min_samples=10, window_ticks=5, min_hot_nodes=3, convergence_threshold=0.95,
                  corroboration_bonus=30.0)
    cor = np.zeros(a.shape, np.uint32)
    cor[49, 2] = 1
    assert evaluate_activity(a, None, p).tolist() == []
    ref = reference_evaluate(a, None, p, corroboration=cor)
    assert ref.alarms and 50 <= ref.alarms[0] <= 51
    assert evaluate_activity(a, None, p, corroboration=cor).tolist() == ref.alarms
    t = ref.alarms[0]
    _, nodes = ref.fired[0][0], ref.fired[0][3]
    assert nodes[2][1] == 0 and nodes[0][1] == 1 and ref.confidence[t] >= 0.95
    assert ref.states[t, 2] == NodeState.HIGH
    alarms, hot, dirs = run_steps_with_matches(a, None, p, np.zeros(a.shape), cor)
    assert alarms == ref.alarms and dirs[t, 2] == 0 and hot[t, 2]
    # The same dip with pattern evidence of the same weight: same alarms.
    pp = p.replace(corroboration_bonus=0.0, pattern_bonus=30.0)
    assert evaluate_activity(a, None, pp, evidence=cor).tolist() == ref.alarms


def test_evidence_window_and_hand_computed_bonus():
    # hand_activity: node 3's drop at tick 4 is 4.46 bits, under 10. Matches
    # count from their tick for window_ticks ticks: at tick 0 one has left
    # the window by tick 4 (window 3), at ticks 3 and 4 both are in it.
    a = hand_activity()
    p = HAND.replace(pattern_bonus=3.0)
    ev = np.zeros(a.shape, np.float32)
    ev[[0, 3, 4], 3] = 1
    assert reference_evaluate(a, None, p, evidence=ev).hot[4, 3]
    np.testing.assert_array_equal(evaluate_activity(a, None, p, evidence=ev),
                                  reference_evaluate(a, None, p, evidence=ev).alarms)
    uint = ev.astype(np.uint32)
    for e in (ev, uint, ev.astype(np.int64), ev.tolist()):
        assert evaluate_activity(a, None, p, evidence=e).tolist() == evaluate_activity(a, None, p, evidence=uint).tolist()
    # pattern_bonus 0 and an all-zero evidence matrix are the no-evidence path.
    zero = np.zeros(a.shape, np.float32)
    assert evaluate_activity(a, None, p, evidence=zero).tolist() == evaluate_activity(a, None, p).tolist()
    assert (evaluate_activity(a, None, p.replace(pattern_bonus=0.0), evidence=ev * 9).tolist()
            == evaluate_activity(a, None, p.replace(pattern_bonus=0.0)).tolist())


def test_evidence_makes_the_difference():
    # Three nodes jump, the third only weakly: no convergence without its
    # matches, a convergence at the jump with them; matches on a quiet node
    # alone do nothing (the bonus needs a warm node's own deviation to add to).
    rng = np.random.default_rng(3)
    a = rng.poisson(6.0, size=(80, 6)).astype(np.float32)
    a[60:64, [0, 1]] += 40.0
    a[60:64, 2] += 4.0
    p = RawParams(min_samples=10, pattern_bonus=4.0, window_ticks=5)
    ev = np.zeros(a.shape, np.float32)
    assert evaluate_activity(a, None, p).tolist() == []
    ev[58, 2] = 2
    got = evaluate_activity(a, None, p, evidence=ev).tolist()
    assert got and 60 <= got[0] <= 62
    assert got == reference_evaluate(a, None, p, evidence=ev).alarms
    ev[58, 2] = 0
    ev[40:45, 4] = 3
    assert evaluate_activity(a, None, p, evidence=ev).tolist() == []


def test_evidence_bad_input():
    a = np.zeros((10, 3), np.float32)
    p = RawParams(min_samples=2)
    with pytest.raises(ValueError, match="shape"):
        evaluate_activity(a, None, p, evidence=np.zeros((10, 4), np.float32))
    with pytest.raises(ValueError, match="whole"):
        evaluate_activity(a, None, p, evidence=np.full((10, 3), 0.5, np.float32))
    with pytest.raises(ValueError, match="finite"):
        evaluate_activity(a, None, p, evidence=np.full((10, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"\[0, 2\*\*31\)"):
        evaluate_activity(a, None, p, evidence=np.full((10, 3), -1, np.int64))
    with pytest.raises(TypeError, match="numbers"):
        evaluate_activity(a, None, p, evidence=np.full((10, 3), "x"))
    with pytest.raises(ValueError, match="shape"):
        _meter.evaluate_activity(a, None, p.compile(), np.zeros((9, 3), np.uint32))
    with pytest.raises(TypeError, match="evidence or matches"):
        reference_evaluate(a, None, p, matches=np.zeros((10, 3)), evidence=np.zeros((10, 3)))


@pytest.mark.parametrize("n_nodes, burst", [(6, (1, 3, 4)), (247, (5, 17, 80, 200))])
def test_stream_with_matches_equals_matrix_with_evidence(n_nodes, burst):
    # frame.matches through the streaming Meter == evaluate_activity(evidence=
    # the same matches binned by tick); the matches change the alarms.
    s = synthetic_stream(60_000, n_stations=n_nodes, burst_nodes=burst, burst_start=0.7, burst_factor=1.6, seed=5)
    p = STREAM_PARAMS.replace(pattern_bonus=6.0)
    rng = np.random.default_rng(11)
    m = Meter(p)
    convs, all_matches = [], []
    for b in batches(s, 1000):
        live = np.flatnonzero(b["kind"] < 0xFF00)
        w = np.where(np.isin(b["node"][live], burst), 0.02, 0.0005)
        pick = live[rng.random(live.shape[0]) < w]
        mt = np.zeros(pick.shape[0], dtype=MATCH_DTYPE)
        mt["ts"], mt["node"] = b["ts"][pick], b["node"][pick]
        all_matches.append(mt)
        convs += m.process(Frame(b, matches=mt)).convergences
    a, t0 = activity_of(s, p.tick_ns, n_nodes)
    mt = np.concatenate(all_matches)
    ev = np.zeros(a.shape, np.float32)
    t = mt["ts"] // p.tick_ns - t0
    keep = t < a.shape[0]
    np.add.at(ev, (t[keep], mt["node"][keep].astype(np.int64)), 1.0)
    alarms = evaluate_activity(a, None, p, evidence=ev)
    assert [c.tick - t0 for c in convs] == alarms.tolist()
    assert reference_evaluate(a, None, p, evidence=ev).alarms == alarms.tolist()
    assert alarms.tolist() != evaluate_activity(a, None, p).tolist()
    assert any(c.pattern_matches > 0 for c in convs)


# ---------------------------------------------------------------------------
# Wide (AVX2) and scalar paths give identical bits
# ---------------------------------------------------------------------------


def _meter_outputs(seed):
    rng = np.random.default_rng(seed)
    n, T = int(rng.integers(3, 40)), int(rng.integers(40, 200))
    p = sample(seed, n_nodes=n if seed % 2 else 0)
    if seed % 3 == 0:
        p = p.replace(transform="none", common_mode="global")
    if seed % 4 == 0:
        p = p.replace(detector="both", cusum_variance=1, common_mode="group")
    a = rng.poisson(rng.uniform(0.5, 30, n), (T, n)).astype(np.float32)
    a[T // 2:T // 2 + 4, : n // 3] *= 3
    a[rng.integers(0, T, 3), rng.integers(0, n, 3)] = np.nan
    g = np.arange(n) % 3
    ev = (rng.random((T, n)) < 0.03).astype(np.uint32)
    out = [evaluate_activity(a, g, p).tolist(),
           evaluate_activity(a, g, p.replace(pattern_bonus=3.0), evidence=ev).tolist(),
           score_series(a[:, 0], p).tobytes()]
    core = _meter.MeterCore(p.compile(), g, n)
    for row in a:
        out.append((core.step(row), core.scores().tobytes(), core.array("state").tobytes(), core.window_count))
    out.extend(core.array(name).tobytes() for name, _ in _meter._STATE_ARRAYS)
    return out


@pytest.mark.skipif(_meter._wide_paths() == (False, False), reason="no AVX2 on this CPU (or CTAS7_SIMD=scalar)")
def test_wide_paths_match_scalar():
    first = _meter._row_variant()
    wide = [_meter_outputs(seed) for seed in range(60)]
    try:
        runs = {}
        if first == "avx512":  # the AVX2 row as well
            _meter._wide_paths(row512=False)
            assert _meter._row_variant() == "avx2"
            runs["avx2"] = [_meter_outputs(seed) for seed in range(60)]
        assert _meter._wide_paths(row=False, series=False) == (False, False)
        assert _meter._row_variant() == "scalar"
        runs["scalar"] = [_meter_outputs(seed) for seed in range(60)]
    finally:
        _meter._wide_paths(row=True, series=True, row512=True)
    assert _meter._row_variant() == first
    for name, narrow in runs.items():
        for seed, (w, s) in enumerate(zip(wide, narrow)):
            assert w == s, f"{first} vs {name}, seed {seed}"


@pytest.mark.parametrize("k", [0.05, 0.25, 0.5, 1.0, 1.46, 3.0, 5.0])
def test_cusum_score_block_matches_libm(k):
    # score_series's CUSUM scores come from a libm-free exp/log2; within 1e-12 of the reference.
    s = np.r_[0.0, np.geomspace(1e-6, 690.0 / (2.0 * k), 3000)]  # up to x = 690 (libm past 700)
    got = _meter._cusum_score_block(s, k)
    ref = np.array([meter_mod.reference_cusum_score(v, k) for v in s])
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(not _meter._wide_paths()[1], reason="no AVX2 on this CPU (or CTAS7_SIMD=scalar)")
@pytest.mark.parametrize("k,h0,offset", [(0.5, 0.0, 0.0), (1.46, 1.0, 7.0), (0.05, 3.0, -2.0), (5.0, 0.0, 30.0)])
def test_cusum_scores_wide_matches_scalar(k, h0, offset):
    rng = np.random.default_rng(int(k * 100))
    s = np.abs(rng.normal(0, 20, 1003)).astype(np.float32)
    s[::7] = 0.0
    s[5:40] = s[5]  # a CUSUM held at its cap
    s[50] = 3e4     # past the polynomial range: libm
    base = rng.uniform(0, 20, s.shape[0]).astype(np.float32)
    a, b = base.copy(), base.copy()
    _meter._cusum_scores(s, k, h0, offset, a, True)
    _meter._cusum_scores(s, k, h0, offset, b, False)
    np.testing.assert_array_equal(a, b)
    ref = base.astype(np.float64)
    for i, v in enumerate(s.astype(np.float64)):
        if v > 0 and v >= h0:
            ref[i] = max(ref[i], meter_mod.reference_cusum_score(v, k) - offset) if 2 * k * (v + 1.166) < 700 else ref[i]
    sel = 2 * k * (s.astype(np.float64) + 1.166) < 700
    np.testing.assert_allclose(a[sel], ref[sel].astype(np.float32), rtol=1e-6)
