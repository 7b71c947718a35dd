"""Tests for ctas7.stages.teth and its kernels in ctas7._core._teth."""

from __future__ import annotations

import doctest
import pickle
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ctas7.stages.teth as teth_mod
from ctas7 import checks
from ctas7.events import KIND_GAP, KIND_HEARTBEAT, empty, make_events
from ctas7.records import MATCH_DTYPE
from ctas7.stage import Frame
from ctas7.stages.teth import (
    BEACON_DTYPE,
    DEFAULT_KINDS,
    CompiledPattern,
    KindRule,
    KindTable,
    LearnedPattern,
    LearningError,
    PatternError,
    RecordError,
    Teth,
    accepts,
    canonical_bytes,
    classify,
    compile_pattern,
    content_hash,
    learn_pattern,
    normalise,
    parse_records,
    reference_beacons,
    reference_match,
)

K = {name: DEFAULT_KINDS.id(name) for name in DEFAULT_KINDS.names}
OTHER, RECON, EXPLOIT, INTRUSION, EXFIL, C2, MEDIA = (K[n] for n in
                                                      ("other", "recon", "exploit", "intrusion", "exfil", "c2", "media"))
fast = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def stream(kinds, node=0, ts=None):
    ts = np.arange(len(kinds)) * 10 if ts is None else ts
    return make_events(ts=ts, node=node, kind=kinds)


def ends(pattern, kinds, **kw):
    """Indices of events that complete a match (single key, one pattern)."""
    ev = stream(kinds, **kw)
    m, _ = reference_match(ev, [pattern])
    return [int(np.flatnonzero(ev["ts"] == t)[0]) for t in m["ts"]]


# ---------------------------------------------------------------------------
# Parse and hash
# ---------------------------------------------------------------------------


def test_normalise_folds_case_space_markup_and_aliases():
    got = normalise({"HEADLINE": " Port\tSCAN\n on  gw ", "Description": "<p>Seen &amp; blocked</p>", "station": 3,
                     "ts": 99, "link": "http://x", "title_detail": {"base": "x"}, "empty": "", "none": None})
    assert got == {"title": "port scan on gw", "body": "seen & blocked"}


def test_numbers_are_canonical_text():
    a = content_hash({"title": "x", "count": 5})
    assert a == content_hash({"title": "x", "count": "5"}) == content_hash({"title": "x", "count": 5.0})
    assert a != content_hash({"title": "x", "count": 6})


def test_same_intel_from_json_csv_datagram_and_feeds_shares_sch():
    import csv
    import io

    import feedparser

    json_row = {"title": "Port scan on gateway", "summary": "Seen & blocked", "station": 1, "ts": 5}
    csv_row = next(csv.DictReader(io.StringIO("Title,Text,seq\nPORT SCAN  on gateway,seen &amp; blocked,17\n")))
    datagram = b'{"subject": "port scan on gateway", "message": "Seen & blocked", "received": 123}'
    rss = """<?xml version="1.0"?><rss version="2.0"><channel><title>A</title><link>http://a</link>
      <description>x</description><item><title>Port  scan on gateway</title><link>http://a/1</link>
      <guid>http://a/1</guid><description>&lt;p&gt;Seen &amp;amp; blocked&lt;/p&gt;</description>
      <pubDate>Mon, 06 Sep 2021 16:45:00 GMT</pubDate></item></channel></rss>"""
    atom = """<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>B</title>
      <id>urn:b</id><updated>2021-09-06T16:45:00Z</updated><entry><title>PORT SCAN on gateway</title>
      <link href="http://b/x"/><id>urn:b:x</id><updated>2021-09-07T16:45:00Z</updated>
      <summary type="html">&lt;b&gt;Seen&lt;/b&gt; &amp;amp; blocked</summary></entry></feed>"""
    entries = [feedparser.parse(s).entries[0] for s in (rss, atom)]
    hashes = {content_hash(r) for r in (json_row, csv_row, datagram, *entries)}
    assert len(hashes) == 1
    assert canonical_bytes(json_row) == b'{"body":"seen & blocked","title":"port scan on gateway"}'
    assert content_hash({"title": "Port scan on gateway", "summary": "seen, blocked"}) not in hashes


def test_text_lines_and_json_lines():
    assert normalise("  Botnet  C2 callback ") == {"body": "botnet c2 callback"}
    assert normalise('{"text": "A"}') == {"body": "a"}
    assert normalise("{not json") == {"body": "{not json"}


@pytest.mark.parametrize(
    "record, match",
    [
        (b"x" * 70_000, "exceeds"),
        ("x" * 70_000, "exceeds"),
        ({"title": "x" * 70_000}, "exceeds"),
        (b"\xff\xfe", "not valid UTF-8"),
        ({"title": object()}, "unsupported value type"),
        ({1: "x"}, "keys must be strings"),
        (12, "cannot normalise"),
        ({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": 1}}}}}}}}}}, "nested deeper"),
    ],
)
def test_bad_records_raise_clear_errors(record, match):
    with pytest.raises(RecordError, match=match):
        normalise(record)


def test_canonical_size_bound():
    rec = {f"k{i}": "v" * 50 for i in range(100)}
    with pytest.raises(RecordError, match="canonical record"):
        canonical_bytes(rec, max_bytes=1000)


def test_classify_rules_order_and_explicit_kind():
    assert classify({"title": "Port scan then exploit"}) == RECON  # first rule wins
    assert classify({"body": "EXFILTRATION of stolen data"}) == EXFIL
    assert classify({"body": "nothing to see"}) == OTHER
    assert classify({"title": "x", "kind": 6}) == 6
    assert classify({"title": "x", "kind": "media"}) == MEDIA
    with pytest.raises(RecordError, match="bad explicit kind"):
        classify({"title": "x", "kind": "nope"})
    custom = KindTable((KindRule(10, "quiet"), KindRule(11, "loud", ("bang", "boom"))), default=10)
    assert classify({"t": "big BOOM"}, custom) == 11
    assert classify({"t": "hush"}, custom) == 10


@pytest.mark.parametrize(
    "rules, default, match",
    [
        ((KindRule(0, "a"), KindRule(0, "b")), 0, "duplicate"),
        ((KindRule(0, "a"), KindRule(1, "a")), 0, "duplicate"),
        ((KindRule(0xFF00, "a"),), 0xFF00, "must be an int"),
        ((KindRule(0, "not"),), 0, "identifier"),
        ((KindRule(0, "two words"),), 0, "identifier"),
        ((KindRule(0, "a"),), 3, "default kind"),
    ],
)
def test_kind_table_validation(rules, default, match):
    with pytest.raises(ValueError, match=match):
        KindTable(rules, default=default)


def test_parse_records_builds_events():
    recs = [{"title": "port scan", "ts": 10}, {"title": "data leak", "ts": 20, "station": 99}]
    ev = parse_records(recs, station=[3, 4], node=[100, 200], seq_start=7)
    assert ev["ts"].tolist() == [10, 20]
    assert ev["kind"].tolist() == [RECON, EXFIL]
    assert ev["station"].tolist() == [3, 4] and ev["node"].tolist() == [100, 200]
    assert ev["seq"].tolist() == [7, 8]
    assert ev["sch"].tolist() == [content_hash(r) for r in recs]
    assert (ev["sch"] != 0).all() and (ev["value"] == 1.0).all()


def test_parse_records_errors():
    with pytest.raises(RecordError, match="record 1: no ts given"):
        parse_records([{"title": "a", "ts": 1}, {"title": "b"}])
    with pytest.raises(RecordError, match="record 0: record has no content"):
        parse_records([{"station": 1}], ts=0)
    with pytest.raises(ValueError, match="max_records"):
        parse_records([{"title": "a"}] * 3, ts=0, max_records=2)
    with pytest.raises(ValueError, match="station ids"):
        parse_records([{"title": "a"}], ts=0, station=70_000)
    seen = []
    ev = parse_records(["ok", b"\xff", "fine"], ts=[1, 2, 3], on_error=lambda i, r, e: seen.append((i, type(e))))
    assert ev["ts"].tolist() == [1, 3] and seen == [(1, RecordError)]
    assert parse_records([], ts=0).shape == (0,)


# ---------------------------------------------------------------------------
# Pattern language: each construct, hand-written expectations
# ---------------------------------------------------------------------------


def test_strict_next():
    for text in ("recon -> exploit", "recon next exploit"):
        assert ends(text, [RECON, EXPLOIT]) == [1]
        assert ends(text, [RECON, OTHER, EXPLOIT]) == []
        assert ends(text, [RECON, MEDIA, RECON, EXPLOIT]) == [3]
        # Control events are transparent.
        assert ends(text, [RECON, KIND_HEARTBEAT, KIND_GAP, EXPLOIT]) == [3]


def test_relaxed_followed_by():
    for text in ("recon ~> exploit", "recon followed_by exploit"):
        assert ends(text, [RECON, OTHER, MEDIA, EXPLOIT]) == [3]
        assert ends(text, [EXPLOIT, RECON]) == []


def test_three_step_sequence_and_non_overlap():
    p = "recon ~> exploit -> exfil"
    assert ends(p, [RECON, MEDIA, EXPLOIT, EXFIL]) == [3]
    assert ends(p, [RECON, EXPLOIT, MEDIA, EXFIL]) == []
    assert ends(p, [RECON, EXPLOIT, EXFIL, EXPLOIT, EXFIL, RECON, EXPLOIT, EXFIL]) == [2, 7]
    # After a match the key restarts: the two A's that made a match are spent.
    assert ends("recon -> recon", [RECON] * 5) == [1, 3]


def test_negation():
    p = "recon ~> exfil not exploit"
    assert ends(p, [RECON, OTHER, EXFIL]) == [2]
    assert ends(p, [RECON, EXPLOIT, EXFIL]) == []
    assert ends(p, [RECON, EXPLOIT, RECON, EXFIL]) == [3]
    q = "recon ~> exfil not (exploit | intrusion)"
    assert ends(q, [RECON, INTRUSION, EXFIL]) == [] and ends(q, [RECON, MEDIA, EXFIL]) == [2]


def test_bounded_repetition():
    p = "recon -> c2{2,3} -> exfil"
    assert ends(p, [RECON, C2, EXFIL]) == []
    assert ends(p, [RECON, C2, C2, EXFIL]) == [3]
    assert ends(p, [RECON, C2, C2, C2, EXFIL]) == [4]
    assert ends(p, [RECON, C2, C2, C2, C2, EXFIL]) == []
    assert ends("c2{3}", [C2, C2, OTHER, C2, C2, C2]) == [5]
    assert ends("c2~{3}", [C2, OTHER, C2, MEDIA, C2]) == [4]
    assert ends("recon -> c2{2,} -> exfil", [RECON] + [C2] * 7 + [EXFIL]) == [8]
    assert ends("recon -> c2? -> exfil", [RECON, EXFIL, RECON, C2, EXFIL, RECON, C2, C2, EXFIL]) == [1, 4]
    assert ends("recon -> c2+ -> exfil", [RECON, EXFIL, RECON, C2, C2, EXFIL]) == [5]


def test_any_alternation_and_numbers():
    assert ends("recon -> any -> exfil", [RECON, MEDIA, EXFIL]) == [2]
    assert ends("recon -> any -> exfil", [RECON, EXFIL]) == []
    assert ends("(recon | exploit) -> exfil", [EXPLOIT, EXFIL, RECON, EXFIL]) == [1, 3]
    assert ends("recon -> exfil | c2 -> c2", [C2, C2, RECON, EXFIL]) == [1, 3]
    assert ends("1 -> 0x4", [RECON, EXFIL]) == [1]
    assert ends("300 -> 301", [300, 301]) == [1]


def test_within():
    p = "recon ~> exfil within 10ns"
    assert ends(p, [RECON, OTHER, EXFIL], ts=[0, 5, 10]) == [2]
    assert ends(p, [RECON, OTHER, EXFIL], ts=[0, 5, 11]) == []
    # The expired run resets, then the event is read from the start state.
    assert ends(p, [RECON, RECON, EXFIL], ts=[0, 20, 25]) == [2]
    # Documented limitation: a later start inside an expiring run is not tracked.
    assert ends(p, [RECON, RECON, EXFIL], ts=[0, 8, 12]) == []
    assert compile_pattern("recon within 1.5s").within_ns == 1_500_000_000
    assert compile_pattern("recon within 2m").within_ns == 120_000_000_000
    assert compile_pattern("recon within 3us").within_ns == 3_000


def test_alphabet_restriction():
    p = compile_pattern("recon -> exfil", alphabet=[MEDIA])
    assert accepts(p, [RECON, OTHER, EXFIL])  # OTHER is outside the alphabet: ignored
    assert not accepts(p, [RECON, MEDIA, EXFIL])
    q = compile_pattern("recon -> exfil")
    assert not accepts(q, [RECON, OTHER, EXFIL]) and not accepts(q, [RECON, 5000, EXFIL])


def test_keys_are_independent_and_station_key():
    ev = make_events(ts=np.arange(6), node=[0, 1, 0, 1, 2, 2], station=[5, 5, 6, 6, 5, 5],
                     kind=[RECON, RECON, EXFIL, OTHER, EXFIL, EXFIL])
    m, _ = reference_match(ev, ["recon ~> exfil"])
    assert m.tolist() == [(2, 0, 0)]
    m, _ = reference_match(ev, ["recon ~> exfil"], key="station")
    assert m.tolist() == [(4, 2, 0)]  # station 5: recon@0, recon@1, exfil@4; node is the completing event's
    t = Teth(patterns=["recon ~> exfil"], key="station", beacons=False)
    assert t.process(Frame(ev.copy())).matches.tolist() == [(4, 2, 0)]


def test_compiled_tables_are_minimal_and_canonical():
    p = compile_pattern("recon ~> exploit")
    assert p.kinds == (RECON, EXPLOIT) and p.n_cols == 3
    np.testing.assert_array_equal(p.table, [[1, 0, 0], [1, 2, 1], [2, 2, 2]])
    assert p.accepting.tolist() == [0, 0, 1]
    assert compile_pattern("recon ~> recon ~> recon").n_states == 4
    assert compile_pattern("(recon | recon) -> recon").equivalent(compile_pattern("recon{2}"))
    with pytest.raises(ValueError):
        p.table[0, 0] = 5  # read-only


# ---------------------------------------------------------------------------
# Pattern errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, pos, fragment",
    [
        ("", 0, "expected a kind name"),
        ("recon ~> ~> exfil", 9, "expected a kind name, a number, 'any' or '(', got '~>'"),
        ("recon -> reconn", 9, "unknown kind 'reconn'"),
        ("recon -> exfil not exploit", 15, "'not' restricts the gap"),
        ("not recon", 0, "expected a kind name"),
        ("c2{4,2}", 2, "reversed"),
        ("c2{0}", 2, "at most 0"),
        ("c2{1,x}", 5, "expected a repeat count"),
        ("c2{2", 4, "expected ',' or '}'"),
        ("c2{99}", 2, "limited to 64"),
        ("recon within 5x", 14, "unknown time unit 'x'"),
        ("recon within", 12, "expected a duration"),
        ("recon within 0s", 13, "must be positive"),
        ("recon exfil", 6, "expected a connector"),
        ("(recon -> exfil", 15, "expected a connector, '|' or ')'"),
        ("recon ~> exfil not (exploit c2)", 28, "expected '|' or ')'"),
        ("recon @ exfil", 6, "unexpected character '@'"),
        ("65280 -> recon", 0, "control kind"),
        ("c2?", 0, "empty sequence"),
        ("within 5s", 0, "expected a kind name"),
    ],
)
def test_pattern_errors_point_at_the_fault(text, pos, fragment):
    with pytest.raises(PatternError) as info:
        compile_pattern(text)
    err = info.value
    assert err.pos == pos and fragment in err.message, (err.pos, err.message)
    lines = str(err).splitlines()
    assert lines[1] == "  " + text and lines[2] == "  " + " " * pos + "^"


def test_state_bound():
    with pytest.raises(PatternError, match="more than 8 DFA states"):
        compile_pattern("recon ~> any{6} -> exfil", max_states=8)


def test_bad_pattern_types():
    with pytest.raises(TypeError):
        compile_pattern(42)
    with pytest.raises(TypeError):
        Teth(patterns="recon")


# ---------------------------------------------------------------------------
# Compiler vs an independent regex oracle (random patterns, random streams)
# ---------------------------------------------------------------------------

NAMES = {"recon": RECON, "exploit": EXPLOIT, "exfil": EXFIL, "c2": C2}


@st.composite
def pattern_ast(draw, depth=0):
    leaf = st.sampled_from(sorted(NAMES)).map(lambda n: ("k", n)) | st.just(("any",))
    if depth >= 2:
        return draw(leaf)
    choice = draw(st.integers(0, 5))
    if choice <= 1:
        return draw(leaf)
    if choice == 2:
        return ("alt", [draw(pattern_ast(depth + 1)), draw(pattern_ast(depth + 1))])
    if choice == 3:
        lo = draw(st.integers(0, 3))
        hi = draw(st.one_of(st.none(), st.integers(max(lo, 1), 4)))
        return ("rep", draw(pattern_ast(depth + 1)), lo, hi, draw(st.booleans()))
    n = draw(st.integers(2, 4))
    items = []
    for _ in range(n - 1):
        conn = draw(st.sampled_from(["->", "~>"]))
        negs = draw(st.lists(st.sampled_from(sorted(NAMES)), max_size=2, unique=True)) if conn == "~>" else []
        items.append((conn, negs, draw(pattern_ast(depth + 1))))
    return ("seq", draw(pattern_ast(depth + 1)), items)


def render(node) -> str:
    tag = node[0]
    if tag == "k":
        return node[1]
    if tag == "any":
        return "any"
    if tag == "alt":
        return f"({render(node[1][0])} | {render(node[1][1])})"
    if tag == "rep":
        _, sub, lo, hi, relaxed = node
        q = f"{lo}" if hi == lo else (f"{lo}," if hi is None else f"{lo},{hi}")
        return f"({render(sub)}){'~' if relaxed else ''}{{{q}}}"
    parts = [f"({render(node[1])})"]
    for conn, negs, sub in node[2]:
        neg = f" not ({' | '.join(negs)})" if negs else ""
        parts.append(f" {conn} ({render(sub)}){neg}")
    return "".join(parts)


def to_regex(node, letter) -> str:
    tag = node[0]
    if tag == "k":
        return letter[NAMES[node[1]]]
    if tag == "any":
        return "."
    if tag == "alt":
        return f"(?:{to_regex(node[1][0], letter)}|{to_regex(node[1][1], letter)})"
    if tag == "rep":
        _, sub, lo, hi, relaxed = node
        x = to_regex(sub, letter)
        if not relaxed:
            return f"(?:{x}){{{lo},{'' if hi is None else hi}}}"
        more = f"(?:.*{x}){{{max(lo - 1, 0)},{'' if hi is None else hi - 1}}}"
        return f"(?:{x}{more})" + ("?" if lo == 0 else "")
    out = f"(?:{to_regex(node[1], letter)})"
    for conn, negs, sub in node[2]:
        if conn == "~>":
            out += f"[^{''.join(letter[NAMES[n]] for n in negs)}]*" if negs else ".*"
        out += f"(?:{to_regex(sub, letter)})"
    return out


@fast
@given(ast=pattern_ast(), kinds=st.lists(st.sampled_from([OTHER, RECON, EXPLOIT, EXFIL, C2, MEDIA, KIND_HEARTBEAT]),
                                          max_size=24))
def test_dfa_agrees_with_regex_oracle(ast, kinds):
    text = render(ast)
    letter = {k: chr(ord("a") + i) for i, k in enumerate(sorted(NAMES.values()))}
    rx = re.compile("(?s).*(?:" + to_regex(ast, letter) + ")")
    if rx.fullmatch(""):
        with pytest.raises(PatternError, match="empty sequence"):
            compile_pattern(text)
        return
    p = compile_pattern(text)
    # Expected: earliest completing event since the last reset, non-overlapping.
    want, seg = [], ""
    for i, k in enumerate(kinds):
        if k >= 0xFF00:
            continue
        seg += letter.get(k, "z")
        if rx.fullmatch(seg):
            want.append(i)
            seg = ""
    assert ends(p, kinds) == want, text


# ---------------------------------------------------------------------------
# Cython matcher vs the reference loop
# ---------------------------------------------------------------------------

PATTERN_SET = [
    "recon ~> exploit -> exfil within 40ns",
    "recon ~> exfil not exploit",
    "c2{2,3} -> exfil",
    "(recon | c2) ~> any -> c2 within 1us",
    "exploit ~{2}",
]


@st.composite
def event_streams(draw):
    n = draw(st.integers(0, 300))
    kinds = draw(st.lists(st.sampled_from([OTHER, RECON, EXPLOIT, EXFIL, C2, MEDIA, 900, KIND_HEARTBEAT]),
                          min_size=n, max_size=n))
    nodes = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
    gaps = draw(st.lists(st.integers(0, 30), min_size=n, max_size=n))
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=6)))
    ev = make_events(ts=np.cumsum(gaps), node=nodes, station=np.asarray(nodes) % 3, kind=kinds)
    return ev, cuts


@fast
@given(data=event_streams(), key=st.sampled_from(["node", "station"]))
def test_cython_matches_reference_over_random_splits(data, key):
    ev, cuts = data
    want, _ = reference_match(ev, PATTERN_SET, key=key)
    t = Teth(patterns=PATTERN_SET, key=key, beacons=False)
    got = []
    for lo, hi in zip([0, *cuts], [*cuts, len(ev)]):
        got.append(t.process(Frame(ev[lo:hi].copy())).matches)
    got = np.concatenate(got)
    assert got.dtype == MATCH_DTYPE
    assert got.tobytes() == want.tobytes()
    # A pickled copy taken mid-stream continues identically.
    if cuts:
        a = Teth(patterns=PATTERN_SET, key=key, beacons=False)
        a.process(Frame(ev[: cuts[0]].copy()))
        b = pickle.loads(pickle.dumps(a))
        rest = ev[cuts[0]:].copy()
        assert a.process(Frame(rest.copy())).matches.tobytes() == b.process(Frame(rest.copy())).matches.tobytes()


def test_cython_matches_reference_on_synthetic_stream():
    from ctas7.sim.synthetic import batches, synthetic_stream

    ev = synthetic_stream(40_000, n_stations=20, n_nodes=500, seed=3)
    pats = ["recon ~> exploit -> exfil within 2ms", "c2{2}", "other ~> media not recon"]
    want, _ = reference_match(ev, pats)
    t = Teth(patterns=pats, beacons=False)
    got = np.concatenate([t.process(Frame(b.copy())).matches for b in batches(ev, 1024)])
    assert len(want) > 100 and got.tobytes() == want.tobytes()


def test_key_growth_and_max_key():
    t = Teth(patterns=["recon -> exfil"], beacons=False, max_key=10_000)
    ev = stream([RECON, EXFIL], node=5)
    assert len(t.process(Frame(ev)).matches) == 1
    t.process(Frame(stream([RECON], node=9_000)))
    assert t.process(Frame(stream([EXFIL], node=9_000))).matches.tolist() == [(0, 9000, 0)]
    with pytest.raises(ValueError, match="exceeds max_key"):
        t.process(Frame(stream([RECON], node=10_001)))


def test_pattern_bank_rejects_bad_tables():
    from ctas7._core._teth import PatternBank

    good = compile_pattern("recon -> exfil")
    bad_table = np.array(good.table)
    bad_table[0, 0] = 99
    with pytest.raises(ValueError, match="table entries"):
        PatternBank([(bad_table, good.accepting, good.kind_map, good.default_col, 0)])
    with pytest.raises(ValueError, match="kind_map entries"):
        PatternBank([(good.table, good.accepting, np.array([7], np.int16), good.default_col, 0)])
    with pytest.raises(ValueError, match="start state"):
        PatternBank([(good.table, np.ones(good.n_states, np.uint8), good.kind_map, good.default_col, 0)])
    bank = PatternBank([good.spec()])
    with pytest.raises(ValueError, match="slots"):
        bank.run(stream([RECON, EXFIL]), np.empty(1, MATCH_DTYPE))


# ---------------------------------------------------------------------------
# L* learning
# ---------------------------------------------------------------------------

LEARN_PATTERNS = [
    "recon ~> exploit ~> exfil",
    "recon -> exploit",
    "recon ~> exfil not exploit",
    "c2{3}",
    "recon -> c2{2,3} -> exfil",
]


@pytest.mark.parametrize("text", LEARN_PATTERNS)
def test_lstar_learns_reference_patterns(text):
    ref = compile_pattern(text)
    lp = learn_pattern(text, max_states=ref.n_states + 1, n_holdout=10_000, seed=1)
    assert isinstance(lp, LearnedPattern)
    r = lp.report
    assert r.n_holdout == 10_000 and r.agreement == 1.0 and not r.counterexamples
    assert 0 < r.n_positive < 10_000  # both labels were exercised
    assert lp.pattern.equivalent(ref) and r.n_states == ref.n_states
    # Independent check on fresh random sequences through the stage itself.
    rng = np.random.default_rng(7)
    ev = make_events(ts=np.arange(20_000), node=rng.integers(0, 50, 20_000),
                     kind=rng.choice([OTHER, RECON, EXPLOIT, EXFIL, C2, MEDIA], 20_000))
    a = Teth(patterns=[text], beacons=False).process(Frame(ev.copy())).matches
    b = Teth(patterns=[lp], beacons=False).process(Frame(ev.copy())).matches
    assert a.tobytes() == b.tobytes()


def test_lstar_with_callable_oracle():
    def two_recons(seq):
        return sum(k == RECON for k in seq) >= 2

    lp = learn_pattern(two_recons, alphabet=[RECON], other=OTHER, max_states=4, n_holdout=2_000)
    assert lp.report.agreement == 1.0
    assert lp.pattern.equivalent(compile_pattern("recon~{2}"))


def test_lstar_keeps_within_and_holdout_mapping():
    lp = learn_pattern("recon -> exfil within 5s", n_holdout=200,
                       holdout={(RECON, EXFIL): True, (RECON, OTHER, EXFIL): False})
    assert lp.pattern.within_ns == 5_000_000_000 and lp.report.n_holdout == 202


def test_lstar_rejects_a_bad_hypothesis():
    # A non-suffix-closed oracle ("the last event is recon") cannot be a
    # first-match pattern: validation must catch it.
    with pytest.raises(LearningError) as info:
        learn_pattern(lambda s: bool(s) and s[-1] == RECON, alphabet=[RECON], other=OTHER, max_states=3,
                      n_holdout=1_000)
    assert info.value.report is not None and info.value.report.agreement < 1.0
    # Too small a state bound: the W-method cannot refute the early hypothesis.
    with pytest.raises(LearningError, match="held-out"):
        learn_pattern("recon -> c2{2,3} -> exfil", max_states=1, n_holdout=2_000)


def test_lstar_argument_errors():
    with pytest.raises(ValueError, match="alphabet"):
        learn_pattern(lambda s: False)
    with pytest.raises(ValueError, match="other"):
        learn_pattern(lambda s: False, alphabet=[1], other=1)
    with pytest.raises(TypeError):
        learn_pattern(42)


# ---------------------------------------------------------------------------
# Periodicity (beaconing)
# ---------------------------------------------------------------------------


def beacon_stream(seed=0, n_noise=3_000, period=1_000_000_000, jitter=0.01, n_beats=40, dup_stations=1):
    rng = np.random.default_rng(seed)
    beat_ts = np.cumsum(period * (1 + jitter * rng.standard_normal(n_beats))).astype(np.int64)
    beat_ts = np.repeat(beat_ts, dup_stations) + np.tile(np.arange(dup_stations) * 1000, n_beats)
    noise_ts = np.sort(rng.integers(0, int(beat_ts.max()), n_noise))
    ts = np.concatenate([beat_ts, noise_ts])
    sch = np.concatenate([np.full(beat_ts.size, 0xBEEF, np.uint64),
                          rng.integers(1, 2**63, n_noise, dtype=np.uint64)])
    node = np.concatenate([np.full(beat_ts.size, 77), rng.integers(0, 100, n_noise)])
    order = np.argsort(ts, kind="stable")
    return make_events(ts=ts[order], sch=sch[order], node=node[order], kind=C2)


def test_beacon_detected_once_with_period():
    ev = beacon_stream(dup_stations=3)  # three stations relay each beat: duplicates are skipped
    t = Teth(patterns=[], beacon_min_count=8, beacon_max_cv=0.05, beacon_capacity=1024)
    b = t.process(Frame(ev)).extras["beacons"]
    assert b.dtype == BEACON_DTYPE and b["sch"].tolist() == [0xBEEF]
    assert b["node"][0] == 77 and b["count"][0] == 8
    assert abs(b["period_ns"][0] - 1e9) < 2e7 and b["cv"][0] <= 0.05


def test_irregular_arrivals_are_not_beacons():
    rng = np.random.default_rng(1)
    ts = np.cumsum(rng.exponential(1e9, 200)).astype(np.int64)
    b, _, _ = reference_beacons(make_events(ts=ts, sch=5), max_cv=0.3)
    assert len(b) == 0


def test_beacon_refires_after_breaking():
    ts = [0, 100, 200, 300, 400, 5_000, 5_100, 5_200]
    b, _, _ = reference_beacons(make_events(ts=ts, sch=9), min_count=4, max_cv=0.1, min_gap_ns=1)
    assert b["ts"].tolist() == [300]
    big = list(range(0, 100 * 60, 100)) + [20_000]
    b, _, _ = reference_beacons(make_events(ts=big, sch=9), min_count=4, max_cv=2.0, min_gap_ns=1)
    assert b["ts"].tolist() == [300]


@fast
@given(seed=st.integers(0, 2**32 - 1), cap=st.sampled_from([4, 16, 256]), n=st.integers(0, 600),
       n_sch=st.integers(1, 40), cuts=st.lists(st.integers(0, 600), max_size=5))
def test_beacon_kernel_matches_reference(seed, cap, n, n_sch, cuts):
    from ctas7._core._teth import BeaconTable

    rng = np.random.default_rng(seed)
    s = rng.integers(0, n_sch, n)
    ts = np.cumsum(rng.integers(0, 20, n))
    sch = np.where(rng.random(n) < 0.05, 0, s + 1).astype(np.uint64)  # a few unhashed events
    kind = np.where(rng.random(n) < 0.05, KIND_HEARTBEAT, C2)
    ev = make_events(ts=ts, sch=sch, node=s, kind=kind)
    kw = dict(capacity=cap, min_count=3, max_cv=0.6, min_gap_ns=3, probes=4)
    want, want_slots, want_door = reference_beacons(ev, **kw)
    table = BeaconTable(cap, 3, 0.6, 3, 4)
    out = np.empty(max(n, 1), BEACON_DTYPE)
    got = []
    bounds = sorted(c for c in cuts if c <= n)
    for lo, hi in zip([0, *bounds], [*bounds, n]):
        m = table.run(ev[lo:hi], out)
        got.append(out[:m].copy())
    got = np.concatenate(got)
    ints = ["ts", "sch", "node", "count"]
    assert got[ints].tolist() == want[ints].tolist()
    np.testing.assert_allclose(got["period_ns"], want["period_ns"], rtol=1e-12)
    np.testing.assert_allclose(got["cv"], want["cv"], rtol=1e-9)
    slots = table.slots
    for f in ("key", "last_ts", "count", "flagged"):
        np.testing.assert_array_equal(slots[f], want_slots[f])
    np.testing.assert_allclose(slots["mean"], want_slots["mean"], rtol=1e-12)
    np.testing.assert_array_equal(table.door, want_door)


def test_beacon_table_validation():
    from ctas7._core._teth import BeaconTable

    for kw, match in [({"capacity": 100}, "power of two"), ({"min_count": 2}, "min_count"),
                      ({"max_cv": -1.0}, "max_cv"), ({"min_gap_ns": 0}, "min_gap_ns")]:
        with pytest.raises(ValueError, match=match):
            BeaconTable(**kw)


# ---------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stage",
    [
        Teth(),
        Teth(patterns=["other ~> media not recon within 1ms", "c2{2}"], key="station", beacon_min_count=3,
             beacon_max_cv=2.0, beacon_min_gap_ns=1),
        Teth(patterns=[learn_pattern("recon -> exploit", max_states=4, n_holdout=100)], beacons=False),
    ],
    ids=["default", "station-beacons", "learned"],
)
def test_conformance(stage):
    checks.check_stage(stage)


def test_stage_outputs_and_empty_batch():
    t = Teth()
    out = t.process(Frame(empty(0)))
    assert out.matches.dtype == MATCH_DTYPE and out.matches.shape == (0,)
    assert out.extras["beacons"].dtype == BEACON_DTYPE and out.extras["beacons"].shape == (0,)
    for bad in (np.zeros(4, np.float32), empty(8).reshape(2, 4), empty(8)[::2], [1, 2]):
        with pytest.raises((TypeError, ValueError)):
            t.process(Frame(events=bad))
    with pytest.raises(ValueError, match="key"):
        Teth(key="sch")


def test_matches_append_to_earlier_stage():
    a = Teth(patterns=["recon"], beacons=False)
    b = Teth(patterns=["exfil"], beacons=False)
    f = (a | b).process(Frame(stream([RECON, EXFIL])))
    assert f.matches.tolist() == [(0, 0, 0), (10, 0, 0)]


def test_reset_and_params():
    t = Teth(patterns=["recon -> exfil"], beacons=False)
    t.process(Frame(stream([RECON])))
    t.reset()
    assert len(t.process(Frame(stream([EXFIL]))).matches) == 0
    assert t.get_params()["patterns"] == ["recon -> exfil"]
    assert isinstance(t.compiled[0], CompiledPattern)


def test_doctests():
    res = doctest.testmod(teth_mod, optionflags=doctest.ELLIPSIS)
    assert res.failed == 0 and res.attempted > 10


def test_kernels_check_their_input():
    from ctas7._core._teth import BeaconTable, PatternBank

    bank = PatternBank([compile_pattern("recon -> exfil").spec()])
    table = BeaconTable(16)
    for kernel in (bank, table):
        with pytest.raises(TypeError, match="numpy array"):
            kernel.run([1, 2])
        with pytest.raises(TypeError, match="dtype"):
            kernel.run(np.zeros(4, np.float64))
        with pytest.raises(ValueError, match="C-contiguous"):
            kernel.run(empty(8)[::2])
        with pytest.raises(ValueError, match="1-d"):
            kernel.run(empty(8).reshape(2, 4))
    got = bank.run(stream([RECON, EXFIL, RECON, EXFIL], node=[1, 1, 2, 2]))
    assert got.dtype == MATCH_DTYPE and got.tolist() == [(10, 1, 0), (30, 2, 0)]
    out = np.empty(4, MATCH_DTYPE)
    assert bank.run(stream([RECON, EXFIL], node=3), out) == 1 and out[0].tolist() == (10, 3, 0)
    assert bank.run(empty(0)).shape == (0,) and table.run(empty(0)).dtype == BEACON_DTYPE
