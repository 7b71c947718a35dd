"""Tests for ctas7.stages.prism: report contents, recommendation, JSON, rich rendering, conformance."""

from __future__ import annotations

import io
import json
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctas7.checks import check_stage, reference_frames
from ctas7.events import make_events
from ctas7.records import MATCH_DTYPE, Convergence
from ctas7.stage import Frame, stage
from ctas7.stages.axon import Axon, Decision, ThreatLevel, Tier
from ctas7.stages.prism import (
    NodeEvidence,
    PatternEvidence,
    Prism,
    Report,
    _count_by_node,
    _member,
    dump_reports,
    load_reports,
    recommend,
)

MS = 1_000_000
S = 1_000 * MS


def conv(ts=2 * S, nodes=(7, 3, 9), groups=None, first_hot=None, scores=None, directions=None,
         confidence=0.93, patterns=2, window=20 * MS, events=57, tick=None):
    k = len(nodes)
    default = tuple(nodes) == (7, 3, 9)
    groups = groups if groups is not None else (1, 0, 1) if default else tuple(n % 2 for n in nodes)
    scores = scores if scores is not None else (14.2, 12.0, 9.1) if default else tuple(10.0 - i for i in range(k))
    directions = directions if directions is not None else (1, 1, -1) if default else (1,) * k
    first_hot = first_hot if first_hot is not None else tuple(ts - window + (i + 2) * 5 * MS for i in range(len(nodes)))
    return Convergence(ts=ts, tick=ts // MS if tick is None else tick, nodes=tuple(nodes), groups=tuple(groups),
                       first_hot_ts=tuple(first_hot), scores=tuple(scores), directions=tuple(directions),
                       weighted_count=float(len(nodes)), confidence=confidence, pattern_matches=patterns,
                       window_start_ts=ts - window, event_count=events)


def batch(ts0=2 * S - 30 * MS, n=64):
    """Events every ms over nodes 0..9, some before the window."""
    i = np.arange(n)
    return make_events(ts=ts0 + i * MS // 2, node=i % 10, kind=0)


def matches(rows):
    m = np.zeros(len(rows), dtype=MATCH_DTYPE)
    for j, (ts, node, pattern) in enumerate(rows):
        m[j] = (ts, node, pattern)
    return m


# ---------------------------------------------------------------------------
# report contents
# ---------------------------------------------------------------------------


def test_a_node_hot_on_evidence_alone_is_reported_as_such():
    # The meter gives such a node direction 0: neither above nor below.
    c = conv(nodes=(3, 7, 9), groups=(0, 1, 1), scores=(12.0, 14.0, 2.5), directions=(1, 1, 0))
    (r,) = Prism(lead_nodes=3).process(Frame(events=batch(), convergences=[c])).reports
    assert [(n.node, n.direction) for n in r.nodes] == [(7, 1), (3, 1), (9, 0)]
    assert "9 (group 1, 2.5 bits, hot on TETH evidence)" in r.recommendation
    assert "7 (group 1, 14.0 bits above baseline)" in r.recommendation
    cells = [[c.strip() for c in line.split("│")[2:-2]] for line in render(r).splitlines() if line.count("│") == 10]
    assert [row[:5] for row in cells] == [["1", "7", "1", "14.0", "+"], ["2", "3", "0", "12.0", "+"],
                                          ["3", "9", "1", "2.5", "="]]  # rank, node, group, bits, direction


def test_report_window_counts_and_ranking():
    c = conv(nodes=(3, 7, 9, 1), groups=(0, 1, 1, 0), scores=(12.0, 14.2, 12.0, 5.0), directions=(1, 1, -1, 1),
             first_hot=(2 * S - 5 * MS, 2 * S - 15 * MS, 2 * S - 10 * MS, 2 * S))
    ev = batch()
    (r,) = Prism().process(Frame(events=ev, convergences=[c])).reports
    assert (r.window_start_ts, r.window_end_ts, r.ts, r.tick) == (2 * S - 20 * MS, 2 * S, 2 * S, 2000)
    assert (r.event_count, r.batch_event_count) == (57, 64)
    # score first, then the earlier first-hot time
    assert [n.node for n in r.nodes] == [7, 9, 3, 1] and [n.rank for n in r.nodes] == [1, 2, 3, 4]
    assert [n.direction for n in r.nodes] == [1, -1, 1, 1] and [n.group for n in r.nodes] == [1, 1, 0, 0]
    inside = ev[(ev["ts"] >= r.window_start_ts) & (ev["ts"] <= r.window_end_ts)]
    assert [n.batch_events for n in r.nodes] == [int((inside["node"] == n.node).sum()) for n in r.nodes]
    assert sum(n.batch_events for n in r.nodes) > 0
    assert r.groups == (0, 1) and r.cluster_id == c.cluster_id
    assert r.report_id == f"rp-{2 * S}-{c.cluster_id:016x}"
    assert r.level is None and r.tier is None and r.decisions == ()


def test_ties_in_score_and_time_rank_by_node_id():
    c = conv(nodes=(9, 2, 5), groups=(0, 0, 0), scores=(8.0, 8.0, 8.0), first_hot=(S, S, S), directions=(1, 1, 1))
    (r,) = Prism().process(Frame(convergences=[c])).reports
    assert [n.node for n in r.nodes] == [2, 5, 9] and [n.batch_events for n in r.nodes] == [0, 0, 0]


def test_batch_patterns_count_contributing_nodes_inside_the_window():
    c = conv()
    ws = c.window_start_ts
    m = matches([
        (ws + MS, 7, 0), (ws + 2 * MS, 3, 0), (ws + 3 * MS, 9, 2),  # counted
        (ws - 1, 7, 1),  # before the window
        (ws + MS, 4, 1),  # not a contributing node
        (c.ts + 1, 3, 1),  # after the window
    ])
    (r,) = Prism(pattern_names=["beacon", "exfil", "recon"]).process(Frame(convergences=[c], matches=m)).reports
    assert r.batch_patterns == (PatternEvidence(0, "beacon", 2), PatternEvidence(2, "recon", 1))
    (r,) = Prism(pattern_names={2: "recon"}).process(Frame(convergences=[c], matches=m)).reports
    assert r.batch_patterns == (PatternEvidence(0, None, 2), PatternEvidence(2, "recon", 1))
    assert "(pattern 0 x2, recon x1)" in r.recommendation
    (r,) = Prism().process(Frame(convergences=[c], matches=matches([]))).reports
    assert r.batch_patterns == ()


def test_decisions_are_matched_by_convergence_identity():
    a, b = conv(nodes=(1, 2)), conv(nodes=(3, 4), ts=3 * S)
    frame = (Axon() | Prism()).process(Frame(convergences=[a, b]))
    da, db = frame.responses
    ra, rb = frame.reports
    assert ra.decisions == (da,) and rb.decisions == (db,)
    # a decision for another convergence, or foreign objects, are ignored
    frame = Prism().process(Frame(convergences=[a], responses=[db, "note", {"x": 1}]))
    assert frame.reports[0].decisions == ()


def test_primary_decision_is_the_first_actioned_one():
    c = conv()
    axon = Axon(cooldown_ns=0)
    (d1,) = axon.process(Frame(convergences=[c])).responses
    (d2,) = axon.process(Frame(convergences=[c])).responses  # a duplicate: suppressed
    (r,) = Prism().process(Frame(convergences=[c], responses=[d2, d1])).reports
    assert r.decisions == (d2, d1) and (r.level, r.tier) == (d1.level, d1.tier)
    (r,) = Prism().process(Frame(convergences=[c], responses=[d2])).reports
    assert r.recommendation.endswith(f"Recommendation: a duplicate of decision {d1.decision_id}; "
                                     "no new action unless it escalates.")


# ---------------------------------------------------------------------------
# recommendation
# ---------------------------------------------------------------------------

BODY = ("3 nodes in 2 groups converged with confidence {conf} over 20.0 ms; leading nodes 7 (group 1, 14.2 bits "
        "above baseline), 3 (group 0, 12.0 bits above baseline), 9 (group 1, 9.1 bits below baseline); "
        "2 TETH pattern matches.")


@pytest.mark.parametrize(
    "confidence, head, action",
    [
        (0.30, "LOW threat, tier MONITOR", "keep monitoring nodes 7, 3 and 9; act only if the convergence "
                                           "persists or spreads"),
        (0.60, "MEDIUM threat, tier INVESTIGATE", "open an investigation into nodes 7, 3 and 9 and corroborate "
                                                  "across groups 0 and 1"),
        (0.75, "HIGH threat, tier INTERDICT", "interdict activity on nodes 7, 3 and 9 and task collection across "
                                              "groups 0 and 1"),
        (0.90, "CRITICAL threat, tier NEUTRALIZE", "neutralize now: contain nodes 7, 3 and 9, escalate to command "
                                                   "and confirm across groups 0 and 1"),
    ],
)
def test_recommendation_per_tier(confidence, head, action):
    frame = (Axon(weights=(1.0, 0.0, 0.0)) | Prism()).process(Frame(convergences=[conv(confidence=confidence)]))
    expected = f"{head}: {BODY.format(conf=f'{confidence:.2f}')} Recommendation: {action}."
    assert frame.reports[0].recommendation == expected


def test_recommendation_for_cooldown_escalation_and_many_nodes():
    axon = Axon(weights=(1.0, 0.0, 0.0), cooldown_ns=10 * S)
    prism = Prism(lead_nodes=2)
    first = conv(confidence=0.6)
    r1 = (axon | prism).process(Frame(convergences=[first])).reports[0]
    cool = conv(confidence=0.6, ts=3 * S)
    r2 = (axon | prism).process(Frame(convergences=[cool])).reports[0]
    assert r2.recommendation.endswith(
        f"Recommendation: in the cool-down of decision {r1.decisions[0].decision_id}; no new action unless it escalates.")
    esc = conv(confidence=0.9, ts=4 * S)
    r3 = (axon | prism).process(Frame(convergences=[esc])).reports[0]
    assert r3.recommendation.endswith(
        f"Recommendation: escalated over decision {r1.decisions[0].decision_id}: neutralize now: contain nodes 7, 3 "
        "and 1 more, escalate to command and confirm across groups 0 and 1.")
    assert "9 (group 1, 9.1 bits below baseline)" not in r3.recommendation
    assert "3 (group 0, 12.0 bits above baseline) and 1 more;" in r3.recommendation


def test_recommend_singular_and_without_patterns():
    n = NodeEvidence(rank=1, node=4, group=2, score=6.5, direction=-1, first_hot_ts=0, batch_events=0)
    text = recommend([n], [2], 0.71, 1500, 0, (), None)
    assert text == ("1 node in 1 group converged with confidence 0.71 over 1.5 us; leading node 4 (group 2, 6.5 bits "
                    "below baseline); no TETH pattern evidence. Recommendation: no AXON decision is attached; "
                    "assess manually.")


# ---------------------------------------------------------------------------
# serialisation
# ---------------------------------------------------------------------------


def full_report():
    c = conv()
    m = matches([(c.window_start_ts + MS, 7, 1)])
    frame = (Axon() | Prism(pattern_names=["beacon", "exfil"])).process(
        Frame(events=batch(), convergences=[c], matches=m))
    return frame.reports[0]


def test_json_round_trip():
    r = full_report()
    text = r.to_json()
    d = json.loads(text)
    assert d["level"] == "HIGH" and d["tier"] == "INTERDICT" and d["decisions"][0]["level"] == "HIGH"
    assert d["batch_patterns"] == [{"pattern": 1, "name": "exfil", "count": 1}]
    back = Report.from_json(text)
    assert back == r and isinstance(back.level, ThreatLevel) and isinstance(back.tier, Tier)
    assert isinstance(back.decisions[0], Decision) and isinstance(back.nodes[0], NodeEvidence)
    assert Report.from_dict(r.to_dict()) == r
    # without AXON: level and tier are null
    bare = Prism().process(Frame(convergences=[conv()])).reports[0]
    assert Report.from_json(bare.to_json(indent=2)) == bare and json.loads(bare.to_json())["level"] is None


def test_from_dict_is_strict():
    d = full_report().to_dict()
    with pytest.raises(ValueError, match="unknown keys"):
        Report.from_dict({**d, "surprise": 1})
    bad = dict(d)
    del bad["confidence"]
    with pytest.raises(ValueError, match="missing keys"):
        Report.from_dict(bad)
    bad = dict(d, nodes=[{**d["nodes"][0], "extra": 0}])
    with pytest.raises(ValueError, match="NodeEvidence"):
        Report.from_dict(bad)
    with pytest.raises(TypeError):
        Report.from_dict([1, 2])


def test_dump_and_load_reports(tmp_path):
    path = tmp_path / "reports.jsonl"
    r = full_report()
    bare = Prism().process(Frame(convergences=[conv(nodes=(1,), groups=(0,), scores=(5.0,), directions=(1,))])).reports[0]
    assert dump_reports([r, bare], path) == 2
    assert load_reports(path) == [r, bare]
    with open(path, "a") as f:
        f.write('{"not": "a report"}\n')
    with pytest.raises(ValueError, match=":3: not a report"):
        load_reports(path)
    with pytest.raises(TypeError):
        dump_reports(["x"], path)


# ---------------------------------------------------------------------------
# rich
# ---------------------------------------------------------------------------

EXPECTED_PANEL = """\
╭─ PRISM rp-2000000000-5eb865b73a9241a4: HIGH / INTERDICT ─────────────────────────────────────────╮
│ Window      1980000000 .. 2000000000 ns (20.0 ms)                                                │
│ Events      57 on these nodes in the window; 64 in the batch                                     │
│ Confidence  0.93 (weighted hot nodes 3.0)                                                        │
│ Patterns    2 TETH matches in the window; batch: exfil x1                                        │
│ Decisions   ax-00000001-5eb865b73a9241a4 HIGH/INTERDICT score 0.73, new, no actions              │
│                                                                                                  │
│ Contributing nodes                                                                               │
│ ┏━━━┳━━━━━━┳━━━━━━━┳━━━━━━━━━━━━━━┳━━━━━┳━━━━━━━━━━━┳━━━━━━━━━━━━━━┓                             │
│ ┃ # ┃ node ┃ group ┃ score (bits) ┃ dir ┃ first hot ┃ batch events ┃                             │
│ ┡━━━╇━━━━━━╇━━━━━━━╇━━━━━━━━━━━━━━╇━━━━━╇━━━━━━━━━━━╇━━━━━━━━━━━━━━┩                             │
│ │ 1 │    7 │     1 │         14.2 │  +  │  +10.0 ms │            4 │                             │
│ │ 2 │    3 │     0 │         12.0 │  +  │  +15.0 ms │            4 │                             │
│ │ 3 │    9 │     1 │          9.1 │  -  │  +20.0 ms │            4 │                             │
│ └───┴──────┴───────┴──────────────┴─────┴───────────┴──────────────┘                             │
│                                                                                                  │
│ HIGH threat, tier INTERDICT: 3 nodes in 2 groups converged with confidence 0.93 over 20.0 ms;    │
│ leading nodes 7 (group 1, 14.2 bits above baseline), 3 (group 0, 12.0 bits above baseline), 9    │
│ (group 1, 9.1 bits below baseline); 2 TETH pattern matches (exfil x1). Recommendation: interdict │
│ activity on nodes 7, 3 and 9 and task collection across groups 0 and 1.                          │
╰──────────────────────────────────────────────────────────────────────────────────────────────────╯
"""


def render(obj) -> str:
    from rich.console import Console

    console = Console(width=100, color_system=None, record=True, file=io.StringIO())
    console.print(obj)
    return console.export_text()


def test_rich_rendering_is_exact():
    assert render(full_report()) == EXPECTED_PANEL


def test_rich_rendering_without_decisions():
    text = render(Prism().process(Frame(convergences=[conv()])).reports[0])
    assert text.splitlines()[0].startswith("╭─ PRISM rp-2000000000-5eb865b73a9241a4: no decision ─")
    assert "│ Decisions   none" in text


# ---------------------------------------------------------------------------
# helpers against numpy references
# ---------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.integers(0, 40), min_size=0, max_size=200),
    nodes=st.lists(st.integers(0, 40), min_size=1, max_size=20, unique=True),
)
def test_count_and_member_match_numpy(values, nodes):
    v = np.asarray(values, dtype=np.uint32)
    assert _count_by_node(v, tuple(nodes)) == [int((v == n).sum()) for n in nodes]
    assert np.array_equal(_member(v, tuple(nodes)), np.isin(v, nodes))


# ---------------------------------------------------------------------------
# validation and conformance
# ---------------------------------------------------------------------------


def test_bad_input_is_rejected():
    with pytest.raises(TypeError, match="Convergence"):
        Prism().process(Frame(convergences=[object()]))
    bad = Convergence(5, 1, (1, 2), (0,), (4, 5), (9.0, 8.0), (1, 1), 2.0, 0.9, 0, 0, 10)
    with pytest.raises(ValueError, match="different lengths"):
        Prism().process(Frame(convergences=[bad]))
    with pytest.raises(ValueError):
        Prism(lead_nodes=0)
    with pytest.raises(TypeError):
        Prism(pattern_names="beacon")
    with pytest.raises(TypeError):
        Prism().process(Frame(events=np.zeros(4, dtype=np.float32), convergences=[conv()]))


def test_conformance_default():
    check_stage(Prism())


@stage
def inject_convergences(frame):
    """A deterministic upstream that raises one convergence per batch."""
    ev = frame.events
    if len(ev):
        nodes = tuple(int(n) for n in np.unique(ev["node"][:4]))
        k = len(nodes)
        end = int(ev["ts"][-1])
        frame.convergences.append(conv(ts=end, nodes=nodes, groups=tuple(n % 3 for n in nodes),
                                       scores=tuple(float(10 + n % 5) for n in nodes), directions=(1,) * k,
                                       first_hot=tuple(end - MS * (n % 4) for n in nodes),
                                       confidence=0.5 + (len(ev) % 7) / 14, window=5 * MS))
    return frame


def test_conformance_in_a_chain_with_real_reports():
    check_stage(inject_convergences | Axon(cooldown_ns=50 * MS) | Prism(pattern_names=["a"]))


def test_pickle_and_clone():
    p = Prism(pattern_names={0: "beacon"}, lead_nodes=2)
    q = pickle.loads(pickle.dumps(p))
    assert repr(q) == repr(p) == "Prism(pattern_names={0: 'beacon'}, lead_nodes=2)"
    frames = reference_frames()[:3]
    chain = inject_convergences | Axon() | q
    out = [chain.process(Frame(events=f.events.copy())).reports for f in frames]
    assert all(len(r) == 1 for r in out)
    assert p.clone().get_params() == p.get_params()


def test_real_chain_meter_axon_prism():
    meter_mod = pytest.importorskip("ctas7.stages.meter")
    from ctas7.sim.synthetic import batches, synthetic_stream

    stream = synthetic_stream(120_000, n_stations=24, burst_nodes=(1, 4, 7, 9), burst_start=0.7, seed=3)
    chain = meter_mod.Meter(meter_mod.MeterParams(min_samples=10, min_hot_nodes=3)) | Axon() | Prism()
    n_conv, reports = 0, []
    for b in batches(stream, 1024):
        frame = chain.process(Frame(events=b))
        n_conv += len(frame.convergences)
        assert [r.decisions for r in frame.reports] == [(d,) for d in frame.responses]
        reports += frame.reports
    assert n_conv == len(reports) > 0
    burst = [r for r in reports if {1, 4, 7, 9} <= {n.node for n in r.nodes}]
    assert burst and all(r.level is not None and r.recommendation.startswith(r.level.name) for r in reports)
    assert all(Report.from_json(r.to_json()) == r for r in reports)
