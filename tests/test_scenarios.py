import itertools
import json
import pickle
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctas7.events import EVENT_DTYPE, KIND_CONTROL_BASE, KIND_HEARTBEAT, make_events
from ctas7.sim import scenarios as S

NAMES = list(S.SCENARIOS)
SEEDS = (0, 11)


@pytest.fixture(scope="module")
def runs():
    """(scenario name, seed) -> (incident run, null run), generated once."""
    out = {}
    for name in NAMES:
        sc = S.get(name)
        for seed in SEEDS:
            out[name, seed] = (sc.generate(seed), sc.generate(seed, null=True))
    return out


# ---------------------------------------------------------------------------
# Registry and structure
# ---------------------------------------------------------------------------


def test_registry_has_41_distinct_scenarios_in_three_families():
    assert len(S.SCENARIOS) == 41
    assert len(set(NAMES)) == 41
    assert all(S.SCENARIOS[n].name == n for n in NAMES)
    assert Counter(sc.category for sc in S.SCENARIOS.values()) == {"dhs": 15, "modern": 7, "real": 19}
    assert len({sc.title for sc in S.SCENARIOS.values()}) == 41


def test_get_unknown_name_suggests():
    with pytest.raises(KeyError, match="madrid_2004"):
        S.get("madrid_2005")


def test_scenarios_differ_in_structure_not_just_names():
    sigs = [S.get(n).signature for n in NAMES]
    assert len(set(sigs)) == 41
    # every pair differs in at least two structural attributes besides the
    # indicator sequence (which is distinct for every scenario on its own)
    for (a, sa), (b, sb) in itertools.combinations(zip(NAMES, sigs), 2):
        diff = sum(x != y for x, y in zip(sa[:-1], sb[:-1]))
        assert diff >= 2, (a, b, sa, sb)
    assert len({s[-1] for s in sigs}) == 41
    assert len({s[0] for s in sigs}) >= 12  # node counts
    assert len({s[1] for s in sigs}) >= 4  # group counts
    assert len({s[2] for s in sigs}) >= 5  # tick lengths
    assert {s[4] for s in sigs} == set(S.SEASONALITIES)
    assert len({s[5] for s in sigs}) >= 5  # noise levels, incl. Poisson
    assert {s[6] for s in sigs} == {1, 2, 3}
    used = Counter()
    for n in NAMES:
        shapes = set()
        for spec in S.get(n).incidents:
            shapes.add(spec.shape)
            shapes.update(sh for _, sh in spec.group_shapes)
        used.update(shapes)
    assert set(used) == set(S.SHAPES)
    assert min(used.values()) >= 4, used


@pytest.mark.parametrize("name", NAMES)
def test_budget_and_shapes(name, runs):
    sc = S.get(name)
    assert 8 <= sc.n_nodes <= 40 and 200 <= sc.n_ticks <= 600
    assert sc.n_nodes * sc.n_ticks <= S.MAX_NODE_TICKS
    run, null = runs[name, 0]
    for r in (run, null):
        assert r.activity.dtype == np.float32 and r.activity.flags.c_contiguous
        assert r.activity.shape == (sc.n_ticks, sc.n_nodes)
        assert r.expected.shape == r.activity.shape
        assert r.groups.dtype == np.int32 and r.groups.tolist() == sc.node_groups.tolist()
        assert r.tick_ns == sc.tick_s * 10**9 and r.n_ticks == sc.n_ticks and r.n_nodes == sc.n_nodes
        assert r.name == name and r.seed == 0
        assert r.group_names == sc.group_names
    assert not run.null and null.null


# ---------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES[::4])
def test_same_seed_same_bytes_different_seed_differs(name, runs):
    sc = S.get(name)
    a, b = sc.generate(0), runs[name, 0][0]
    assert a.activity.tobytes() == b.activity.tobytes()
    assert a.events.tobytes() == b.events.tobytes()
    assert a.truth == b.truth
    c = runs[name, 11][0]
    assert a.activity.tobytes() != c.activity.tobytes()
    assert a.truth != c.truth


def test_events_do_not_depend_on_access_order_and_survive_pickle():
    sc = S.get("stuxnet")
    a = sc.generate(5)
    b = pickle.loads(pickle.dumps(sc.generate(5)))  # pickled before events exist
    assert b.events.tobytes() == a.events.tobytes()
    assert pickle.loads(pickle.dumps(a)).events.tobytes() == a.events.tobytes()


@pytest.mark.parametrize("seed", [-1, 1.5, True, "3"])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        S.get("plague").generate(seed)


# ---------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_events_are_consistent_with_activity(name, runs):
    for run in runs[name, 0]:
        ev = run.events
        assert ev.dtype == EVENT_DTYPE and ev.flags.c_contiguous
        assert np.all(np.diff(ev["ts"]) >= 0)
        assert ev["ts"][0] >= 0 and ev["ts"][-1] < run.n_ticks * run.tick_ns
        assert int(ev["node"].max()) < run.n_nodes
        assert np.all(ev["kind"] < KIND_CONTROL_BASE)
        assert np.all(ev["value"] == 1.0)
        binned = S.bin_activity(ev, run.tick_ns, run.n_nodes, run.n_ticks)
        np.testing.assert_array_equal(binned, run.activity)
        spn = S.get(name).stations_per_node
        assert np.all(ev["station"] // spn == ev["node"])
        # per-station sequence numbers are 0..n-1 in stream order
        for station in np.unique(ev["station"])[:5]:
            seq = ev["seq"][ev["station"] == station]
            assert seq.tolist() == list(range(seq.size))


@pytest.mark.parametrize("name", NAMES)
def test_indicator_sequences_are_emitted_in_order(name, runs):
    run, null = runs[name, 11]
    ev = run.events
    tick = ev["ts"] // run.tick_ns
    for inc, spec in zip(run.incidents, S.get(name).incidents):
        assert inc.indicators == tuple(S.KINDS[k] for k in spec.indicators)
        assert len(inc.indicator_ticks) == len(inc.indicators)
        assert list(inc.indicator_ticks) == sorted(inc.indicator_ticks)
        assert inc.indicator_ticks[-1] == inc.onset
        assert inc.indicator_ticks[0] == inc.onset - inc.lead_ticks
        lo, hi = spec.lead
        assert lo <= inc.lead_ticks <= hi or len(inc.indicators) == 1
        for code, t in zip(inc.indicators, inc.indicator_ticks):
            hit = (ev["kind"] == code) & (tick == t) & np.isin(ev["node"], inc.nodes)
            assert hit.any(), (name, code, t)
            # the step's hash is absent from the null run of the same seed
            step_sch = Counter(ev["sch"][hit].tolist()).most_common(1)[0][0]
            assert not (null.events["sch"] == step_sch).any()


def test_indicator_copies_share_sch():
    run = S.get("major_earthquake").generate(2)
    ev = run.events
    for code, t in zip(run.incidents[0].indicators, run.incidents[0].indicator_ticks):
        tick = ev["ts"] // run.tick_ns
        hit = (ev["kind"] == code) & (tick == t) & np.isin(ev["node"], run.incidents[0].nodes)
        counts = Counter(ev["sch"][hit].tolist())
        sch, n = counts.most_common(1)[0]
        assert n >= 1 and sch != 0
        # that hash occurs nowhere else
        assert (ev["sch"] == sch).sum() == n


# ---------------------------------------------------------------------------
# Ground truth
# ---------------------------------------------------------------------------


def _effect_window(shape, start, duration, n_ticks):
    return start, min(n_ticks, start + (4 * duration if shape == "burst" else duration))


def _excess_profile(shape, m, n, duration, ramp):
    t = np.arange(n, dtype=np.float64)
    if shape == "step":
        return np.full(n, m)
    if shape == "ramp":
        return m * np.minimum(1.0, (t + 1.0) / ramp)
    return m * np.exp(-t / duration)  # burst


@pytest.mark.parametrize("name", NAMES)
def test_incident_truth_is_sane(name, runs):
    sc = S.get(name)
    for seed in SEEDS:
        run, _ = runs[name, seed]
        assert len(run.incidents) == len(sc.incidents)
        prev = -1
        for inc, spec in zip(run.incidents, sc.incidents):
            assert inc.onset >= prev
            prev = inc.onset
            assert S.QUORUM <= len(inc.nodes) <= spec.n_nodes[1]
            assert list(inc.nodes) == sorted(set(inc.nodes))
            assert inc.deadline == min(run.n_ticks - 1, inc.onset + spec.horizon)
            assert min(inc.node_onsets) == inc.onset and all(o >= inc.onset for o in inc.node_onsets)
            assert max(inc.node_onsets) - inc.onset <= spec.stagger[1]
            groups = [sc.group_names[g] for g in run.groups[list(inc.nodes)]]
            assert set(groups) <= set(spec.groups)
            assert inc.group == int(np.bincount(run.groups[list(inc.nodes)]).argmax())
            overrides = dict(spec.group_shapes)
            assert list(inc.node_shapes) == [overrides.get(g, spec.shape) for g in groups]
            assert inc.shape == spec.shape
            lo, hi = spec.duration
            assert lo <= inc.duration <= hi
            if spec.ordered:
                assert list(inc.node_onsets) == sorted(inc.node_onsets)


@pytest.mark.parametrize("name", NAMES)
def test_effects_have_the_claimed_shape(name, runs):
    """Paired with the null run of the same seed: cells outside the incident
    are identical, and inside they move the way the shape says."""
    sc = S.get(name)
    for seed in SEEDS:
        run, null = runs[name, seed]
        touched = np.zeros(run.activity.shape, dtype=bool)
        for inc, spec in zip(run.incidents, sc.incidents):
            # the longest allowed ramp gives a lower bound on the expected excess
            ramp_len = spec.ramp[1] if spec.ramp else max(1, inc.duration // 3)
            up_obs = up_exp = var_a = var_b = 0.0
            var_ticks = 0
            for node, start, shape, m in zip(inc.nodes, inc.node_onsets, inc.node_shapes, inc.node_magnitudes):
                s, e = _effect_window(shape, start, inc.duration, run.n_ticks)
                if s >= e:
                    continue
                touched[s:e, node] = True
                a, b = run.activity[s:e, node].astype(np.float64), null.activity[s:e, node].astype(np.float64)
                lam = run.expected[s:e, node].astype(np.float64)
                if shape == "drop":
                    assert a.sum() <= b.sum(), (name, node)
                    if lam.sum() > 50:
                        assert a.sum() < (1.0 - 0.5 * m) * lam.sum(), (name, node)
                        assert a.sum() <= (1.0 - 0.5 * m) * b.sum() + 3 * np.sqrt(b.sum() + 1), (name, node)
                elif shape == "variance":
                    var_a += np.var(a - lam) * (e - s)
                    var_b += np.var(b - lam) * (e - s)
                    var_ticks += e - s
                else:
                    assert a.sum() >= b.sum(), (name, node)
                    up_obs += (a - b).sum()
                    up_exp += (lam * _excess_profile(shape, m, e - s, inc.duration, ramp_len)).sum()
            if up_exp > 30:
                assert up_obs >= 0.5 * up_exp, (name, seed, up_obs, up_exp)
            if var_ticks >= 200:  # subtle by design in some scenarios (Volt Typhoon): a loose bound
                assert var_a > 1.15 * var_b, (name, seed, var_a, var_b)
            for t in inc.indicator_ticks:
                touched[t, list(inc.nodes)] = True
        same = ~touched
        assert same.sum() > 0.5 * same.size
        np.testing.assert_array_equal(run.activity[same], null.activity[same])


def test_drop_lowers_post_onset_mean():
    sc = S.get("ukraine_grid_2015")
    lowered = 0
    for seed in range(6):
        run = sc.generate(seed)
        inc = run.incidents[0]
        for node, start, shape in zip(inc.nodes, inc.node_onsets, inc.node_shapes):
            if shape != "drop":
                continue
            before = run.activity[start - 30 : start, node].mean()
            after = run.activity[start : start + inc.duration, node].mean()
            lowered += after < 0.5 * before
    assert lowered >= 30


def test_variance_shape_keeps_mean_raises_variance():
    sc = S.get("stuxnet")
    ratios, means = [], []
    for seed in range(6):
        run, null = sc.generate(seed), sc.generate(seed, null=True)
        inc = run.incidents[0]
        for node, start, shape in zip(inc.nodes, inc.node_onsets, inc.node_shapes):
            if shape != "variance":
                continue
            e = min(run.n_ticks, start + inc.duration)
            a, b = run.activity[start:e, node], null.activity[start:e, node]
            ratios.append(np.var(a) / max(np.var(b), 1e-9))
            means.append(a.mean() / b.mean())
    assert np.median(ratios) > 2.0
    assert 0.7 < np.median(means) < 1.3


# ---------------------------------------------------------------------------
# Null runs and decoys
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_null_run_has_the_same_shape_and_no_incident(name, runs):
    for seed in SEEDS:
        run, null = runs[name, seed]
        assert null.incidents == () and null.null
        assert null.decoys == run.decoys
        np.testing.assert_array_equal(null.expected, run.expected)
        assert null.truth.groups == run.truth.groups and null.n_ticks == run.n_ticks
        assert null.tick_ns == run.tick_ns


@pytest.mark.parametrize("name", NAMES)
def test_decoys_are_declared_and_present(name, runs):
    sc = S.get(name)
    d = sc.decoys
    spike_obs = spike_exp = 0.0
    for seed in SEEDS:
        _, null = runs[name, seed]
        spikes = [x for x in null.decoys if x.kind == "spike"]
        near = [x for x in null.decoys if x.kind == "near_miss"]
        assert d.spikes[0] <= len(spikes) <= d.spikes[1]
        assert d.near_misses[0] <= len(near) <= d.near_misses[1]
        for x in spikes:
            assert len(x.nodes) == 1 and 1 <= x.end - x.start <= d.spike_length[1]
            if any(x.nodes[0] in n.nodes and n.start < x.end and x.start < n.end for n in near):
                continue  # a near miss on the same cells (e.g. a drop) may thin the spike away
            cells = null.activity[x.start : x.end, x.nodes[0]].astype(np.float64)
            lam = null.expected[x.start : x.end, x.nodes[0]].astype(np.float64)
            spike_obs += (cells - lam).sum()
            spike_exp += (lam * x.magnitude).sum()
        pool = set(np.flatnonzero(np.isin(null.groups, [sc.group_names.index(g) for g in sc.incidents[0].groups])))
        for x in near:
            assert 1 <= len(x.nodes) <= S.QUORUM - 1
            assert set(x.nodes) <= pool
            assert x.start < x.end <= null.n_ticks
    if spike_exp > 20:
        assert spike_obs > 0.4 * spike_exp, (spike_obs, spike_exp)


def test_near_misses_move_in_the_incident_direction():
    # Madrid declares 2-3 near misses per run, of burst shape
    up = 0
    total = 0
    for seed in range(5):
        sc = S.get("madrid_2004")
        null = sc.generate(seed, null=True)
        for x in null.decoys:
            if x.kind != "near_miss":
                continue
            total += 1
            for node in x.nodes:
                a = null.activity[x.start : x.start + 2, node].sum()
                lam = null.expected[x.start : x.start + 2, node].sum()
                up += a > lam
    assert total >= 10 and up >= 0.8 * total


def test_near_miss_partial_indicator_sequence():
    # a near miss emits the incident's indicator prefix but never the last step
    sc = S.get("cyber_attack")
    seq = [S.KINDS[k] for k in sc.incidents[0].indicators]
    found = 0
    for seed in range(10):
        null = sc.generate(seed, null=True)
        near = [x for x in null.decoys if x.kind == "near_miss"]
        ev = null.events
        tick = ev["ts"] // null.tick_ns
        for x in near:
            assert x.indicators == tuple(seq[:-1])
            assert len(x.indicator_ticks) == len(seq) - 1 and x.indicator_ticks[-1] < x.start
            for code, t in zip(x.indicators, x.indicator_ticks):
                assert (np.isin(ev["node"], x.nodes) & (ev["kind"] == code) & (tick == t)).any()
            found += 1
        # the last step never comes from a near miss: only background noise can carry it
        last = (ev["kind"] == seq[-1]).sum()
        assert last < 0.01 * ev.size
    assert found >= 5


# ---------------------------------------------------------------------------
# bin_activity
# ---------------------------------------------------------------------------


def _bin_reference(ev, tick_ns, n_nodes, n_ticks, t0):
    out = np.zeros((n_ticks, n_nodes), np.float64)
    for e in ev.tolist():
        ts, sch, seq, node, station, kind, value = e
        t = (ts - t0) // tick_ns
        if ts >= t0 and t < n_ticks and kind < KIND_CONTROL_BASE:
            out[t, node] += value
    return out.astype(np.float32)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 300),
    tick_ns=st.integers(1, 1000),
    n_nodes=st.integers(1, 7),
    n_ticks=st.integers(1, 30),
    t0=st.integers(-500, 500),
    seed=st.integers(0, 2**32 - 1),
)
def test_bin_activity_matches_reference(n, tick_ns, n_nodes, n_ticks, t0, seed):
    rng = np.random.default_rng(seed)
    ev = make_events(
        ts=rng.integers(t0 - 2 * tick_ns, t0 + (n_ticks + 2) * tick_ns, n),
        node=rng.integers(0, n_nodes, n),
        kind=np.where(rng.random(n) < 0.1, KIND_HEARTBEAT, rng.integers(0, 50, n)),
        value=rng.integers(-3, 8, n).astype(np.float32) / 2,
    )
    got = S.bin_activity(ev, tick_ns, n_nodes, n_ticks, t0_ns=t0)
    assert got.dtype == np.float32 and got.flags.c_contiguous and got.shape == (n_ticks, n_nodes)
    np.testing.assert_array_equal(got, _bin_reference(ev, tick_ns, n_nodes, n_ticks, t0))


def test_bin_activity_errors():
    ev = make_events(ts=[0, 10], node=[0, 5])
    with pytest.raises(ValueError, match="node 5"):
        S.bin_activity(ev, 10, 3, 4)
    # out-of-range times are ignored, so the bad node there is not counted
    assert S.bin_activity(ev, 10, 3, 1).tolist() == [[1.0, 0.0, 0.0]]
    with pytest.raises(ValueError, match="positive"):
        S.bin_activity(ev, 0, 3, 4)
    with pytest.raises(ValueError, match="non-finite"):
        S.bin_activity(make_events(ts=[0], value=np.nan), 10, 1, 1)
    with pytest.raises(TypeError):
        S.bin_activity(np.zeros(3), 10, 1, 1)


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".npy"])
def test_event_file_round_trip(tmp_path, suffix):
    run = S.get("deepfake_unrest").generate(4)
    ev = run.events.copy()
    ev["value"][:50] = np.float32(0.1) * np.arange(50, dtype=np.float32)  # non-trivial floats
    ev["sch"][:3] = [0, 2**64 - 1, 2**63]
    ev["ts"][0] = -5
    p = S.write_events(tmp_path / f"ev{suffix}", ev)
    back, n_bad = S.read_events(p)
    assert n_bad == 0
    assert back.dtype == EVENT_DTYPE and back.flags.c_contiguous
    assert back.tobytes() == ev.tobytes()
    assert not (tmp_path / f"ev{suffix}.tmp").exists()


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".npy"])
def test_run_round_trip_with_truth_sidecar(tmp_path, suffix):
    run = S.get("paris_2015").generate(9)
    p = S.save_run(tmp_path / f"run{suffix}", run)
    assert S.truth_path(p).name == f"run{suffix}.truth.json"
    doc = json.loads(S.truth_path(p).read_text())
    assert doc["schema"] == "ctas7.scenario-truth/1" and len(doc["incidents"]) == 3
    back, n_bad = S.load_run(p)
    assert n_bad == 0 and back.truth == run.truth
    np.testing.assert_array_equal(back.activity, run.activity)
    assert back.events.tobytes() == run.events.tobytes()
    assert back.expected is None


def test_truth_sidecar_is_strict(tmp_path):
    run = S.get("plague").generate(0)
    p = S.save_run(tmp_path / "r.npy", run)
    doc = json.loads(S.truth_path(p).read_text())
    doc["incidents"][0]["surprise"] = 1
    S.truth_path(p).write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="surprise"):
        S.load_run(p)
    S.truth_path(p).unlink()
    with pytest.raises(FileNotFoundError, match="truth"):
        S.load_run(p)


def test_csv_dead_letter(tmp_path):
    p = tmp_path / "bad.csv"
    lines = [
        "ts,node,kind,value,station,seq,sch",
        "1,2,3,1.5,4,5,6",  # 2 good
        "2,2,3,1.5,4,5",  # 3 too few fields
        "3,x,3,1.5,4,5,6",  # 4 not an int
        "4,2,70000,1.5,4,5,6",  # 5 kind out of range
        "5,2,3,nan,4,5,6",  # 6 not finite
        "6,-1,3,1.0,4,5,6",  # 7 negative node
        "7,2,3,abc,4,5,6",  # 8 value not a number
        "",  # 9 blank: skipped
        "8,2,3,1e39,4,5,6",  # 10 float32 overflow
        "9,2,3,2.5,4,5,18446744073709551616",  # 11 sch > u64
        "10,2,3,2.5,4,5," + "1" * 5000,  # 12 too long
        "11,7,8,0.25,9,10,11",  # 13 good
    ]
    p.write_text("\n".join(lines) + "\n")
    dl = tmp_path / "dead.jsonl"
    ev, n_bad = S.read_events(p, dead_letter=dl)
    assert n_bad == 9
    assert ev["ts"].tolist() == [1, 11]
    assert ev["value"].tolist() == [1.5, 0.25] and ev["sch"].tolist() == [6, 11]
    bad = [json.loads(x) for x in dl.read_text().splitlines()]
    assert [b["line"] for b in bad] == [3, 4, 5, 6, 7, 8, 10, 11, 12]
    by_line = {b["line"]: b["reason"] for b in bad}
    assert "fields" in by_line[3] and "integer" in by_line[4] and "range" in by_line[5]
    assert "finite" in by_line[6] and "range" in by_line[7] and "number" in by_line[8]
    assert "finite" in by_line[10] and "range" in by_line[11] and "longer" in by_line[12]
    assert all(b["file"] == str(p) for b in bad)
    # counted even without a dead-letter file; appending keeps earlier records
    assert S.read_events(p)[1] == 9
    S.read_events(p, dead_letter=dl)
    assert len(dl.read_text().splitlines()) == 18


def test_csv_header_order_and_optional_columns(tmp_path):
    p = tmp_path / "min.csv"
    p.write_text("kind,node,ts\n3,1,100\n4,2,200\n")
    ev, n_bad = S.read_events(p)
    assert n_bad == 0
    assert ev["ts"].tolist() == [100, 200] and ev["node"].tolist() == [1, 2] and ev["kind"].tolist() == [3, 4]
    assert ev["value"].tolist() == [1.0, 1.0] and ev["sch"].tolist() == [0, 0]
    # the slow path (one bad row) parses the good rows identically
    p.write_text("kind,node,ts\n3,1,100\n4,2,200\nq,1,1\n")
    ev2, n_bad = S.read_events(p)
    assert n_bad == 1 and ev2.tobytes() == ev.tobytes()
    p.write_text("ts,node,colour\n1,2,red\n")
    with pytest.raises(ValueError, match="colour"):
        S.read_events(p)
    p.write_text("ts,node\n1,2\n")
    with pytest.raises(ValueError, match="kind"):
        S.read_events(p)
    p.write_text("")
    assert S.read_events(p)[0].size == 0


def test_jsonl_dead_letter(tmp_path):
    p = tmp_path / "bad.jsonl"
    lines = [
        '{"ts": 1, "node": 2, "kind": 3, "value": 0.5, "station": 1, "seq": 0, "sch": 18446744073709551615}',
        "{not json",
        "[1, 2, 3]",
        '{"ts": 1, "node": 2}',
        '{"ts": 1, "node": 2, "kind": 3, "colour": "red"}',
        '{"ts": true, "node": 2, "kind": 3}',
        '{"ts": 1.0, "node": 2, "kind": 3}',
        '{"ts": 1, "node": 2, "kind": 3, "value": "1"}',
        '{"ts": 1, "node": 2, "kind": 3, "value": NaN}',
        "",
        '{"ts": 9, "node": 4, "kind": 65535}',
    ]
    p.write_text("\n".join(lines) + "\n")
    dl = tmp_path / "dead.jsonl"
    ev, n_bad = S.read_events(p, dead_letter=dl)
    assert n_bad == 8
    assert ev["ts"].tolist() == [1, 9] and ev["sch"].tolist() == [2**64 - 1, 0]
    bad = {json.loads(x)["line"]: json.loads(x)["reason"] for x in dl.read_text().splitlines()}
    assert set(bad) == {2, 3, 4, 5, 6, 7, 8, 9}
    assert "object" in bad[3] and "missing" in bad[4] and "unknown" in bad[5] and "integer" in bad[6]


def _row_by_row(monkeypatch):
    monkeypatch.setattr(S, "_read_jsonl_fast", lambda f, max_line_bytes: None)


def test_jsonl_fast_path_matches_row_by_row(tmp_path, monkeypatch):
    run = S.get("madrid_2004").generate(seed=3)
    p = tmp_path / "e.jsonl"
    S.write_events(p, run.events)
    with open(p, "ab") as f:  # edge values the fast path must carry exactly
        f.write(b'{"ts": -9223372036854775808, "node": 4294967295, "kind": 0, "sch": 18446744073709551615}\r\n')
        f.write(b'{"ts": 5, "node": 0, "kind": 65535, "value": 3, "station": 65535, "seq": 4294967295}\n')
    fast, n_fast = S.read_events(p)
    _row_by_row(monkeypatch)
    slow, n_slow = S.read_events(p)
    assert n_fast == n_slow == 0 and fast.tobytes() == slow.tobytes()
    assert fast.shape[0] == run.events.shape[0] + 2 and fast[: run.events.shape[0]].tobytes() == run.events.tobytes()


@pytest.mark.parametrize(
    "lines",
    [
        # two objects on one line and one object split over the next two:
        # joined with commas they would parse as three good records
        ['{"ts": 1, "node": 0, "kind": 1},{"ts": 2, "node": 0, "kind": 1}', '{"ts": 3, "node": 0', '"kind": 1}'],
        ['{"ts": 1, "node": 0, "kind": 1}', '{"ts": 99999999999999999999, "node": 0, "kind": 1}'],
        ['{"ts": 1, "node": 0, "kind": 1}', '{"ts": 2, "node": 0, "kind": 1, "station": 70000}'],
        ['{"ts": 1, "node": 0, "kind": 1}', '{"ts": 2, "node": 0, "kind": 1, "value": 1e39}'],
        ['{"ts": 1, "node": 0, "kind": 1}', '{"ts": 2, "node": 0, "kind": 1, "sch": -1}'],
        ['{"ts": 1, "node": 0, "kind": 1}', '{"ts": 2, "node": 0, "kind": false}'],
        ['{"ts": 1, "node": 0, "kind": 1}', '   ', '{"ts": 2, "node": 0, "kind": 1}'],
    ],
)
def test_jsonl_fast_path_falls_back_on_anything_odd(tmp_path, monkeypatch, lines):
    p = tmp_path / "odd.jsonl"
    p.write_text("\n".join(lines) + "\n")
    fast, n_fast = S.read_events(p, dead_letter=tmp_path / "a.jsonl")
    _row_by_row(monkeypatch)
    slow, n_slow = S.read_events(p, dead_letter=tmp_path / "b.jsonl")
    assert (n_fast, fast.tobytes()) == (n_slow, slow.tobytes())
    dead = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    assert [d.read_text() if d.exists() else "" for d in dead] == [dead[1].read_text() if n_slow else ""] * 2
    assert n_fast == len([x for x in lines if x.strip()]) - fast.shape[0]


def test_npy_checks(tmp_path):
    p = tmp_path / "x.npy"
    np.save(p, np.zeros(3, np.float64))
    with pytest.raises(ValueError, match="EVENT_DTYPE"):
        S.read_events(p)
    ev = make_events(ts=[1, 2, 3], value=[1.0, np.inf, 2.0])
    np.save(p, ev)
    dl = tmp_path / "dl.jsonl"
    back, n_bad = S.read_events(p, dead_letter=dl)
    assert n_bad == 1 and back["ts"].tolist() == [1, 3]
    assert json.loads(dl.read_text())["line"] == 2
    with pytest.raises(ValueError, match="non-finite"):
        S.write_events(tmp_path / "y.npy", ev)


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        S.read_events(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="format"):
        S.read_events(tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="format"):
        S.write_events(tmp_path / "x.txt", make_events(ts=[1]))


# ---------------------------------------------------------------------------
# Spec validation
# ---------------------------------------------------------------------------


def _spec(**kw):
    base = dict(
        name="t",
        title="t",
        category="dhs",
        summary="",
        tick_s=60,
        n_ticks=300,
        groups=(S.GroupSpec("a", 5), S.GroupSpec("b", 5)),
        seasonality=S.Seasonality(),
        dispersion=None,
        incidents=(S.IncidentSpec(("a", "b"), (3, 5), "step", (1, 2), (10, 20), horizon=10),),
        onset=(0.4, 0.6),
    )
    base.update(kw)
    return S.Scenario(**base)


def test_spec_validation():
    assert _spec().generate(0).incidents
    with pytest.raises(ValueError, match="budget"):
        _spec(n_ticks=600, groups=(S.GroupSpec("a", 20), S.GroupSpec("b", 20)))
    with pytest.raises(ValueError, match="QUORUM"):
        S.IncidentSpec(("a",), (2, 3), "step", (1, 2), (10, 20), horizon=10)
    with pytest.raises(ValueError, match="before tick 0"):
        _spec(incidents=(S.IncidentSpec(("a",), (3, 5), "step", (1, 2), (10, 20), horizon=10, lead=(0, 200)),))
    with pytest.raises(ValueError, match="after the run ends"):
        _spec(incidents=(S.IncidentSpec(("a",), (3, 5), "step", (1, 2), (10, 20), horizon=200),))
    with pytest.raises(ValueError, match="unknown group"):
        _spec(incidents=(S.IncidentSpec(("zz",), (3, 5), "step", (1, 2), (10, 20), horizon=10),))
    with pytest.raises(ValueError, match="shape"):
        S.IncidentSpec(("a",), (3, 5), "wobble", (1, 2), (10, 20), horizon=10)
    with pytest.raises(ValueError, match="indicator"):
        S.IncidentSpec(("a",), (3, 5), "step", (1, 2), (10, 20), horizon=10, indicators=("nope",))
    with pytest.raises(ValueError, match="warm-up"):
        _spec(onset=(0.05, 0.6))
    with pytest.raises(ValueError, match="seasonality"):
        S.Seasonality("lunar")
