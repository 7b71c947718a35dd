import pickle

import numpy as np
import pytest

from ctas7.checks import check_stage
from ctas7.events import make_events
from ctas7.records import MATCH_DTYPE
from ctas7.stage import Frame
from ctas7.stages.corroborate import CORROBORATION_PATTERN, Corroborate


def _matches(stage, ev):
    return stage.process(Frame(ev)).matches


def _reference(ts, node, kind, sch, kinds, min_nodes, window_ns):
    """Obvious quadratic version: for each event, look back at the sch's
    sightings since its current first sighting."""
    out = []
    first = {}
    seen = {}
    for t, n, k, s in zip(ts, node, kind, sch):
        if k not in kinds or s == 0:
            continue
        if s not in first or t - first[s] > window_ns:
            first[s], seen[s] = t, [n]
            continue
        if n in seen[s]:
            continue
        seen[s].append(n)
        if len(seen[s]) == min_nodes:
            out += [(t, m) for m in seen[s]]
        elif len(seen[s]) > min_nodes:
            out.append((t, n))
    return out


def _stream(seed, n=3000, n_sch=40):
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(0, 50_000, n))
    return make_events(ts=ts, node=rng.integers(0, 12, n), kind=rng.integers(0, 4, n),
                       sch=rng.integers(0, n_sch, n).astype(np.uint64))


def test_quorum_emits_every_node_then_each_newcomer():
    ev = make_events(ts=[0, 1, 1, 2, 3, 4], node=[5, 5, 6, 7, 8, 6], kind=9, sch=77)
    m = _matches(Corroborate(kinds=[9], min_nodes=3, window_ns=10), ev)
    assert m.dtype == MATCH_DTYPE
    assert m[["ts", "node"]].tolist() == [(2, 5), (2, 6), (2, 7), (3, 8)]
    assert (m["pattern"] == CORROBORATION_PATTERN).all()


def test_window_other_kinds_and_zero_sch_do_not_count():
    ev = make_events(ts=[0, 5, 20, 21, 22, 23], node=[1, 2, 3, 4, 5, 6], kind=[9, 9, 9, 9, 8, 9],
                     sch=[1, 1, 1, 1, 1, 0])
    # window 10: the third sighting (t=20) starts afresh; node 5's kind is not
    # watched and node 6's sch is 0
    assert _matches(Corroborate(kinds=[9], min_nodes=3, window_ns=10), ev).shape[0] == 0
    assert _matches(Corroborate(kinds=[9], min_nodes=3, window_ns=30), ev)["node"].tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize("seed", range(6))
def test_matches_reference_and_any_batch_split(seed):
    ev = _stream(seed)
    kinds, need, window = (1, 3), 2 + seed % 3, 5_000
    ref = _reference(ev["ts"].tolist(), ev["node"].tolist(), ev["kind"].tolist(), ev["sch"].tolist(),
                     kinds, need, window)
    whole = _matches(Corroborate(kinds=kinds, min_nodes=need, window_ns=window), ev)
    assert whole[["ts", "node"]].tolist() == ref and len(ref) > 0
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.integers(0, ev.shape[0], 7))
    stage = Corroborate(kinds=kinds, min_nodes=need, window_ns=window, max_entries=4)  # prunes often
    parts = []
    for i, part in enumerate(np.split(ev, cuts)):
        if i == 3:  # pickled mid-stream
            stage = pickle.loads(pickle.dumps(stage))
        parts.append(_matches(stage, np.ascontiguousarray(part)))
    assert np.concatenate(parts).tobytes() == whole.tobytes()


def test_appends_to_earlier_matches_and_state_stays_bounded():
    earlier = np.zeros(2, dtype=MATCH_DTYPE)
    ev = make_events(ts=[0, 1, 2], node=[0, 1, 2], kind=3, sch=5)
    f = Corroborate(kinds=[3], min_nodes=3).process(Frame(ev, matches=earlier))
    assert f.matches.shape[0] == 5 and f.matches[:2].tobytes() == earlier.tobytes()
    stage = Corroborate(kinds=[3], min_nodes=2, window_ns=10, max_entries=64)
    n = 20_000
    stage.process(Frame(make_events(ts=np.arange(n) * 100, node=0, kind=3, sch=np.arange(1, n + 1))))
    assert len(stage._entries) <= 128


def test_conformance_and_bad_arguments():
    check_stage(Corroborate(kinds=range(0, 8), min_nodes=2, window_ns=1_000_000))
    for kw in ({"kinds": [70_000]}, {"min_nodes": 1}, {"window_ns": 0}, {"pattern_id": -1}, {"max_entries": 0}):
        with pytest.raises(ValueError):
            Corroborate(**{"kinds": [1], **kw})
    with pytest.raises(TypeError):
        Corroborate(kinds=[1]).process(Frame(np.zeros(3)))


def test_scenario_evidence_has_corroboration_and_near_misses_cannot_make_it():
    from ctas7.sim import montecarlo as mc
    from ctas7.sim.scenarios import get

    sc = get("tokyo_sarin_1995")
    hits = nulls = 0
    for seed in range(6):
        run = sc.generate(seed)
        ev = mc.corroboration_evidence(run.events, run.tick_ns, run.n_nodes, run.n_ticks, t0_ns=run.t0_ns)
        inc = run.incidents[0]
        rows, cols = np.nonzero(ev)
        assert set(cols.tolist()) <= set(inc.nodes)  # only involved nodes corroborate
        assert all(t in inc.indicator_ticks for t in rows.tolist())
        hits += rows.size > 0
        null = sc.generate(seed, null=True)
        nulls += int(mc.corroboration_evidence(null.events, null.tick_ns, null.n_nodes, null.n_ticks,
                                               t0_ns=null.t0_ns).sum())
    assert hits >= 3 and nulls == 0


def test_pattern_ids_below_the_corroboration_base_are_refused():
    from ctas7.records import CORROBORATION_BASE

    Corroborate(kinds=[1], pattern_id=CORROBORATION_BASE)
    with pytest.raises(ValueError, match="CORROBORATION_BASE"):
        Corroborate(kinds=[1], pattern_id=3)


def test_meter_weighs_corroboration_with_its_own_bonus_across_a_pickled_stream():
    # Corroborate | Meter over a scenario's events, pickled mid-stream, gives
    # the alarms of evaluate_activity with the binned corroboration matrix;
    # the meter reads the matches as corroboration (corroboration_bonus), not
    # as pattern matches (pattern_bonus 0 here).
    from ctas7.sim import montecarlo as mc
    from ctas7.sim.scenarios import INDICATOR_KINDS, get
    from ctas7.stages.meter import Meter, MeterParams, evaluate_activity

    sc = get("tokyo_sarin_1995")
    run = sc.generate(2)
    assert run.t0_ns == 0
    p = MeterParams(tick_ns=run.tick_ns, corroboration_bonus=24.0, min_hot_nodes=3)
    window = mc.CORROBORATION_TICKS * run.tick_ns
    chain = Corroborate(kinds=INDICATOR_KINDS, min_nodes=3, window_ns=window) | Meter(p, groups=run.groups)
    events, got = run.events, []
    half = events.shape[0] // 2
    for k, lo in enumerate(range(0, events.shape[0], 997)):
        if lo >= half and k % 7 == 0:
            chain = pickle.loads(pickle.dumps(chain))
        got += [c.tick for c in chain.process(Frame(events[lo:lo + 997].copy())).convergences]
    cor = mc.corroboration_evidence(events, run.tick_ns, run.n_nodes, run.n_ticks)
    want = evaluate_activity(run.activity, run.groups, p, corroboration=cor).tolist()
    assert cor.any() and want != evaluate_activity(run.activity, run.groups, p).tolist()
    assert got == [t for t in want if t < run.n_ticks - 1]
    off = p.replace(corroboration_bonus=0.0, corroboration_weight=1.0)
    assert (evaluate_activity(run.activity, run.groups, off.replace(pattern_bonus=24.0), corroboration=cor).tolist()
            == evaluate_activity(run.activity, run.groups, off).tolist())
