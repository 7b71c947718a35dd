"""Tests for ctas7.stages.axon: levels, tiers, cool-down, feedback, audit, handler isolation."""

from __future__ import annotations

import json
import logging
import pickle
import threading
import time

import numpy as np
import pytest

from ctas7.checks import check_stage, reference_frames
from ctas7.records import Convergence
from ctas7.stage import Frame, stage
from ctas7.stages.axon import (
    OUTCOMES,
    AuditLog,
    Axon,
    CallbackHandler,
    CollectHandler,
    Decision,
    Handler,
    LogHandler,
    PublishHandler,
    StoreHandler,
    ThreatLevel,
    Tier,
    convergence_key,
)

S = 1_000_000_000  # one second of event time, ns


def conv(ts=S, nodes=(1, 2, 3), confidence=0.9, weighted_count=None, patterns=0, tick=None):
    nodes = tuple(nodes)
    k = len(nodes)
    return Convergence(
        ts=ts,
        tick=ts // 1_000_000 if tick is None else tick,
        nodes=nodes,
        groups=tuple(n % 2 for n in nodes),
        first_hot_ts=tuple(ts - i for i in range(k)),
        scores=tuple(10.0 - i for i in range(k)),
        directions=(1,) * k,
        weighted_count=float(k) if weighted_count is None else weighted_count,
        confidence=confidence,
        pattern_matches=patterns,
        window_start_ts=ts - S,
        event_count=10 * k,
    )


def decide(axon, *convergences):
    return axon.process(Frame(convergences=list(convergences))).responses


# Confidence-only scoring makes the score equal the confidence.
CONF_ONLY = dict(weights=(1.0, 0.0, 0.0))


# ---------------------------------------------------------------------------
# score, level, tier
# ---------------------------------------------------------------------------


def test_score_is_the_documented_weighted_sum():
    axon = Axon(weights=(0.5, 0.3, 0.2), node_saturation=10.0, pattern_saturation=5.0)
    c = conv(confidence=0.8, weighted_count=4.0, patterns=2)
    assert axon.score(c) == pytest.approx(0.5 * 0.8 + 0.3 * 0.4 + 0.2 * 0.4)
    # each term saturates at 1, and confidence is clipped to [0, 1]
    big = conv(confidence=1.5, weighted_count=50.0, patterns=99)
    assert axon.score(big) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "confidence, level, tier",
    [
        (0.0, ThreatLevel.LOW, Tier.MONITOR),
        (0.5499, ThreatLevel.LOW, Tier.MONITOR),
        (0.55, ThreatLevel.MEDIUM, Tier.INVESTIGATE),
        (0.6999, ThreatLevel.MEDIUM, Tier.INVESTIGATE),
        (0.70, ThreatLevel.HIGH, Tier.INTERDICT),
        (0.85, ThreatLevel.CRITICAL, Tier.NEUTRALIZE),
        (1.0, ThreatLevel.CRITICAL, Tier.NEUTRALIZE),
    ],
)
def test_level_and_tier_at_the_threshold_boundaries(confidence, level, tier):
    (d,) = decide(Axon(**CONF_ONLY), conv(confidence=confidence))
    assert (d.level, d.tier) == (level, tier)
    assert d.thresholds == (0.55, 0.7, 0.85)
    assert d.score == pytest.approx(confidence)


def test_node_count_and_patterns_raise_the_level():
    axon = Axon(cooldown_ns=0)
    weak = conv(nodes=(1, 2), confidence=0.8, weighted_count=2.0, patterns=0)
    strong = conv(ts=2 * S, nodes=(4, 5, 6, 7, 8, 9, 10, 11), confidence=0.8, weighted_count=8.0, patterns=4)
    a, b = decide(axon, weak, strong)
    assert a.level == ThreatLevel.LOW  # 0.6*0.8 + 0.25*2/8 = 0.5425
    assert b.level == ThreatLevel.CRITICAL  # 0.48 + 0.25 + 0.15 = 0.88
    assert a.score == pytest.approx(0.5425) and b.score == pytest.approx(0.88)


def test_custom_tier_map():
    axon = Axon(tier_map=("MONITOR", "MONITOR", Tier.INVESTIGATE, 3), **CONF_ONLY, cooldown_ns=0)
    tiers = [d.tier for d in decide(axon, *(conv(ts=i * S, nodes=(i,), confidence=x)
                                            for i, x in enumerate((0.1, 0.6, 0.75, 0.9))))]
    assert tiers == [Tier.MONITOR, Tier.MONITOR, Tier.INVESTIGATE, Tier.NEUTRALIZE]


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        (dict(weights=(0.5, 0.5, 0.5)), ValueError),
        (dict(weights=(1.0, 0.0)), ValueError),
        (dict(weights=(1.2, -0.2, 0.0)), ValueError),
        (dict(thresholds=(0.7, 0.55, 0.85)), ValueError),
        (dict(thresholds=(0.0, 0.5, 0.9)), ValueError),
        (dict(thresholds=(0.5, 0.7, 1.1)), ValueError),
        (dict(tier_map=("NEUTRALIZE", "MONITOR", "MONITOR", "MONITOR")), ValueError),
        (dict(tier_map=("MONITOR", "LOOK", "INTERDICT", "NEUTRALIZE")), ValueError),
        (dict(cooldown_ns=-1), ValueError),
        (dict(cooldown_ns=1.5), ValueError),
        (dict(overlap=0.0), ValueError),
        (dict(node_saturation=0), ValueError),
        (dict(handler_timeout=0), ValueError),
        (dict(queue_size=0), ValueError),
        (dict(max_raise=2.0), ValueError),
        (dict(handlers=[42]), TypeError),
        (dict(handlers="log"), TypeError),
    ],
)
def test_bad_parameters_are_rejected(kwargs, exc):
    with pytest.raises(exc):
        Axon(**kwargs)


def test_bad_convergences_are_rejected():
    axon = Axon()
    with pytest.raises(TypeError, match="Convergence"):
        decide(axon, {"ts": 1})
    with pytest.raises(ValueError, match="non-finite"):
        decide(axon, conv(confidence=float("nan")))
    with pytest.raises(ValueError, match="negative"):
        decide(axon, conv(patterns=-1))
    # a bad record anywhere in the frame leaves no half-applied state
    with pytest.raises(TypeError):
        decide(axon, conv(), "not a convergence")
    assert axon.stats["decisions"] == 0 and len(axon.audit) == 0 and not axon._clusters


def test_batch_without_convergences_is_untouched():
    axon = Axon(handlers=[CollectHandler()])
    frame = axon.process(Frame(events=reference_frames()[0].events))
    assert frame.responses == [] and len(axon.audit) == 0 and axon._dispatcher is None


# ---------------------------------------------------------------------------
# cool-down and de-duplication
# ---------------------------------------------------------------------------


def test_cooldown_suppresses_within_event_time_and_expires():
    axon = Axon(cooldown_ns=10 * S, **CONF_ONLY, handlers=[CollectHandler()])
    a, b, c = decide(axon, conv(ts=1 * S), conv(ts=5 * S), conv(ts=11 * S))
    assert (a.reason, a.suppressed, a.actions) == ("new", False, ("collect",))
    assert (b.reason, b.suppressed, b.actions, b.related_id) == ("cooldown", True, (), a.decision_id)
    # the cool-down runs from the last *actioned* decision (ts=1 s), so 11 s is past it
    assert (c.reason, c.suppressed) == ("new", False)
    assert axon.stats["suppressed"] == 1 and axon.stats["decisions"] == 3
    axon.close()


def test_escalation_within_cooldown_is_actioned():
    axon = Axon(cooldown_ns=10 * S, **CONF_ONLY)
    a, b, c = decide(axon, conv(ts=S, confidence=0.6), conv(ts=2 * S, confidence=0.9), conv(ts=3 * S, confidence=0.6))
    assert (a.level, b.level) == (ThreatLevel.MEDIUM, ThreatLevel.CRITICAL)
    assert (b.reason, b.suppressed, b.related_id) == ("escalation", False, a.decision_id)
    assert (c.reason, c.related_id) == ("cooldown", b.decision_id)


def test_duplicate_convergence_is_suppressed_even_without_cooldown():
    axon = Axon(cooldown_ns=0)
    a, b = decide(axon, conv(), conv())
    assert (a.reason, b.reason, b.suppressed, b.related_id) == ("new", "duplicate", True, a.decision_id)


def test_out_of_order_event_time_counts_as_inside_the_cooldown():
    axon = Axon(cooldown_ns=10 * S)
    a, b = decide(axon, conv(ts=50 * S), conv(ts=20 * S))
    assert b.reason == "cooldown"


def test_overlapping_node_sets_share_a_cluster():
    axon = Axon(cooldown_ns=10 * S, overlap=0.5)
    a, b, c = decide(axon, conv(ts=S, nodes=(1, 2, 3)), conv(ts=2 * S, nodes=(4, 1, 2, 3)),
                     conv(ts=3 * S, nodes=(1, 5, 6, 7)))
    assert b.cluster_id != a.cluster_id and b.canonical_id == a.cluster_id  # Jaccard 3/4
    assert b.reason == "cooldown"
    assert c.canonical_id == c.cluster_id and c.reason == "new"  # Jaccard 1/6
    # node order does not matter, and the alias sticks
    (d,) = decide(axon, conv(ts=4 * S, nodes=(3, 2, 1, 4)))
    assert d.canonical_id == a.cluster_id


def test_best_overlap_wins_and_ties_go_to_the_older_cluster():
    axon = Axon(cooldown_ns=0, overlap=0.3)
    a, b = decide(axon, conv(ts=S, nodes=(1, 2)), conv(ts=2 * S, nodes=(3, 4)))
    (c,) = decide(axon, conv(ts=3 * S, nodes=(2, 3)))  # Jaccard 1/3 with both
    assert c.canonical_id == a.canonical_id
    (d,) = decide(axon, conv(ts=4 * S, nodes=(3, 4, 9)))  # 2/3 with b, 1/4 with a
    assert d.canonical_id == b.canonical_id


def test_overlap_one_means_exact_node_sets():
    axon = Axon(cooldown_ns=10 * S, overlap=1.0)
    a, b = decide(axon, conv(ts=S, nodes=(1, 2, 3)), conv(ts=2 * S, nodes=(1, 2, 3, 4)))
    assert b.canonical_id == b.cluster_id and b.reason == "new"


def test_max_clusters_forgets_the_least_recently_seen():
    axon = Axon(cooldown_ns=100 * S, max_clusters=2)
    decide(axon, conv(ts=S, nodes=(1,)), conv(ts=2 * S, nodes=(2,)))
    (x,) = decide(axon, conv(ts=3 * S, nodes=(1,)))  # touches cluster {1}
    assert x.reason == "cooldown"
    decide(axon, conv(ts=4 * S, nodes=(3,)))  # evicts {2}, the least recently seen
    assert len(axon._clusters) == 2
    a, b = decide(axon, conv(ts=5 * S, nodes=(1,)), conv(ts=6 * S, nodes=(2,)))
    assert (a.reason, b.reason) == ("cooldown", "new")


def test_replay_is_deterministic_and_ignores_wall_time():
    stream = [conv(ts=i * S // 2, nodes=(i % 3, 3 + i % 2), confidence=0.5 + 0.05 * (i % 10)) for i in range(60)]
    one = decide(Axon(cooldown_ns=5 * S), *stream)
    a2 = Axon(cooldown_ns=5 * S)
    two = []
    for c in stream:
        time.sleep(0.0005)
        two += decide(a2, c)
    assert one == two
    assert {d.reason for d in one} >= {"new", "cooldown"}


# ---------------------------------------------------------------------------
# feedback
# ---------------------------------------------------------------------------


def test_false_alarm_raises_that_level_for_that_cluster_only():
    axon = Axon(cooldown_ns=0, **CONF_ONLY)
    (d,) = decide(axon, conv(ts=S, confidence=0.72))
    assert d.level == ThreatLevel.HIGH
    after = axon.feedback(d.decision_id, confirmed=False)
    assert after == pytest.approx((0.55, 0.75, 0.85))
    again, other = decide(axon, conv(ts=2 * S, confidence=0.72), conv(ts=3 * S, nodes=(7, 8), confidence=0.72))
    assert again.level == ThreatLevel.MEDIUM and again.thresholds == pytest.approx((0.55, 0.75, 0.85))
    assert other.level == ThreatLevel.HIGH and other.thresholds == (0.55, 0.7, 0.85)
    assert axon.thresholds_for((3, 2, 1)) == pytest.approx((0.55, 0.75, 0.85))
    assert axon.stats["false_alarms"] == 1


def test_feedback_is_bounded_both_ways():
    axon = Axon(cooldown_ns=0, weights=(1.0, 0.0, 0.0), raise_step=0.05, max_raise=0.12,
                relax_step=0.04, max_relax=0.06)
    ts = 1
    for _ in range(5):
        (d,) = decide(axon, conv(ts=ts * S, confidence=1.0))  # CRITICAL at every threshold
        ts += 1
        axon.feedback(d.decision_id, confirmed=False)
    assert axon.thresholds_for((1, 2, 3))[2] == pytest.approx(0.85 + 0.12)
    for _ in range(10):
        (d,) = decide(axon, conv(ts=ts * S, confidence=1.0))
        ts += 1
        axon.feedback(d.decision_id, confirmed=True)
    assert axon.thresholds_for((1, 2, 3))[2] == pytest.approx(0.85 - 0.06)


def test_raised_lower_threshold_lifts_the_ones_above():
    axon = Axon(cooldown_ns=0, raise_step=0.3, max_raise=0.3, **CONF_ONLY)
    (d,) = decide(axon, conv(confidence=0.6))
    assert d.level == ThreatLevel.MEDIUM
    assert axon.feedback(d.decision_id, confirmed=False) == pytest.approx((0.85, 0.85, 0.85))


def test_true_alarm_relaxes_and_low_feedback_changes_nothing():
    axon = Axon(cooldown_ns=0, **CONF_ONLY)
    (d,) = decide(axon, conv(ts=S, confidence=0.56))
    assert axon.feedback(d.decision_id, confirmed=True) == pytest.approx((0.53, 0.7, 0.85))
    (low,) = decide(axon, conv(ts=2 * S, nodes=(9,), confidence=0.1))
    assert low.level == ThreatLevel.LOW
    assert axon.feedback(low.decision_id, confirmed=False) == (0.55, 0.7, 0.85)
    assert axon.audit.get(low.decision_id).feedback is False


def test_feedback_errors():
    axon = Axon(audit_size=2)
    (d,) = decide(axon, conv(ts=S))
    with pytest.raises(TypeError):
        axon.feedback(d.decision_id, confirmed=1)
    axon.feedback(d.decision_id, confirmed=True)
    with pytest.raises(ValueError, match="already"):
        axon.feedback(d.decision_id, confirmed=False)
    with pytest.raises(KeyError):
        axon.feedback("ax-nope", confirmed=False)
    decide(axon, conv(ts=2 * S, nodes=(5,)), conv(ts=3 * S, nodes=(6,)))
    with pytest.raises(KeyError, match="older than"):
        axon.feedback(d.decision_id, confirmed=False)


def test_feedback_on_a_forgotten_cluster_still_sticks():
    axon = Axon(max_clusters=1, cooldown_ns=0, **CONF_ONLY)
    (d,) = decide(axon, conv(ts=S, nodes=(1, 2), confidence=0.72))
    decide(axon, conv(ts=2 * S, nodes=(8, 9)))  # evicts {1, 2}
    axon.feedback(d.decision_id, confirmed=False)
    (again,) = decide(axon, conv(ts=3 * S, nodes=(1, 2), confidence=0.72))
    assert again.level == ThreatLevel.MEDIUM


# ---------------------------------------------------------------------------
# audit
# ---------------------------------------------------------------------------


def test_every_decision_is_audited_in_memory_and_jsonl(tmp_path):
    path = tmp_path / "audit.jsonl"
    seen = CollectHandler()
    axon = Axon(cooldown_ns=10 * S, handlers=[seen], audit_path=str(path), audit_size=3)
    ds = decide(axon, conv(ts=S), conv(ts=2 * S), conv(ts=3 * S, nodes=(8, 9)), conv(ts=4 * S, nodes=(20,)))
    assert axon.flush(10.0)
    axon.feedback(ds[3].decision_id, confirmed=True)
    axon.close()
    # in memory: bounded, oldest first out
    held = axon.audit.records()
    assert [r.decision for r in held] == ds[1:]
    assert held[0].outcomes == {} and held[1].outcomes == {"collect": "ok"}
    assert held[1].convergence == conv(ts=3 * S, nodes=(8, 9))
    # on disk: every decision once, with outcomes and inputs, then the feedback
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    decisions = [x for x in lines if x["type"] == "decision"]
    assert sorted(x["decision"]["decision_id"] for x in decisions) == sorted(d.decision_id for d in ds)
    by_id = {x["decision"]["decision_id"]: x for x in decisions}
    assert by_id[ds[0].decision_id]["outcomes"] == {"collect": "ok"}
    assert by_id[ds[1].decision_id]["outcomes"] == {} and by_id[ds[1].decision_id]["decision"]["reason"] == "cooldown"
    assert by_id[ds[2].decision_id]["inputs"]["nodes"] == [8, 9]
    assert Decision.from_dict(by_id[ds[3].decision_id]["decision"]) == ds[3]
    (fb,) = [x for x in lines if x["type"] == "feedback"]
    assert fb["decision_id"] == ds[3].decision_id and fb["confirmed"] is True
    assert ds[3].level == ThreatLevel.MEDIUM  # 0.6 * 0.9 + 0.25 / 8 = 0.571
    assert fb["thresholds"] == pytest.approx([0.53, 0.7, 0.85])


def test_audit_write_errors_are_counted_not_raised(tmp_path):
    audit = AuditLog(path=tmp_path)  # a directory cannot be opened for appending
    audit.write({"x": 1})
    assert audit.write_errors == 1


def test_decision_ids_are_deterministic_and_unique():
    stream = [conv(ts=i * S, nodes=(i % 4,)) for i in range(20)]
    a = [d.decision_id for d in decide(Axon(), *stream)]
    b = [d.decision_id for d in decide(Axon(), *stream)]
    assert a == b and len(set(a)) == 20 and a[0].startswith("ax-00000001-")


def test_decision_json_round_trip_and_strict_keys():
    (d,) = decide(Axon(handlers=[CollectHandler()]), conv(patterns=3))
    back = Decision.from_dict(json.loads(json.dumps(d.to_dict())))
    assert back == d and isinstance(back.level, ThreatLevel) and isinstance(back.tier, Tier)
    assert d.convergence_key == convergence_key(conv(patterns=3))
    with pytest.raises(ValueError, match="unknown keys"):
        Decision.from_dict({**d.to_dict(), "extra": 1})
    bad = d.to_dict()
    del bad["score"]
    with pytest.raises(ValueError, match="missing keys"):
        Decision.from_dict(bad)


# ---------------------------------------------------------------------------
# handlers
# ---------------------------------------------------------------------------


class Boom:
    name = "boom"

    def handle(self, decision):
        raise RuntimeError("handler exploded")


class Hang:
    name = "hang"

    def __init__(self):
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def handle(self, decision):
        self.calls += 1
        self.started.set()
        self.release.wait(10.0)  # "sleeps" 10 s unless the test lets it go


def test_raising_handler_is_isolated_and_counted():
    seen = CollectHandler()
    axon = Axon(handlers=[Boom(), seen], cooldown_ns=0)
    ds = decide(axon, *(conv(ts=i * S, nodes=(i,)) for i in range(1, 6)))
    assert axon.flush(10.0)
    assert axon.handler_stats["boom"] == {"ok": 0, "failed": 5, "timed_out": 0, "dropped": 0, "skipped": 0}
    assert axon.handler_stats["collect"]["ok"] == 5
    assert list(seen.decisions) == ds
    assert axon.audit.get(ds[0].decision_id).outcomes["boom"] == "failed: RuntimeError: handler exploded"
    axon.close()


def test_hanging_handler_never_blocks_the_chain():
    hang, seen = Hang(), CollectHandler()
    axon = Axon(handlers=[hang, seen], cooldown_ns=0, handler_timeout=0.2)
    t0 = time.monotonic()
    try:
        decide(axon, conv(ts=S, nodes=(1,)))
        assert hang.started.wait(5.0)
        # the handler is now blocked; frames keep flowing past it
        for i in range(2, 12):
            frame = axon.process(Frame(events=reference_frames()[0].events, convergences=[conv(ts=i * S, nodes=(i,))]))
            assert frame.responses[0].actions == ("hang", "collect")
        assert not hang.release.is_set() and hang.calls == 1
        assert axon.flush(5.0)  # the dispatcher moved on while the handler is still stuck
        stats = axon.handler_stats["hang"]
        assert stats["timed_out"] == 1 and stats["skipped"] == 10 and stats["ok"] == 0
        assert axon.handler_stats["collect"]["ok"] == 11 and len(seen.decisions) == 11
        outcomes = [r.outcomes["hang"] for r in axon.audit.records()]
        assert outcomes == ["timed_out"] + ["skipped"] * 10
        assert time.monotonic() - t0 < 8.0  # sanity: nowhere near the 10 s hang
    finally:
        hang.release.set()
    # once it returns, the handler is used again
    deadline = time.monotonic() + 5.0
    while axon._dispatcher.lanes["hang"].stuck and time.monotonic() < deadline:
        time.sleep(0.01)
    decide(axon, conv(ts=20 * S, nodes=(20,)))
    assert axon.close(5.0)
    assert axon.handler_stats["hang"]["ok"] == 1 and hang.calls == 2


def test_full_queue_drops_and_never_blocks():
    hang = Hang()
    axon = Axon(handlers=[hang], cooldown_ns=0, queue_size=2, handler_timeout=5.0)
    try:
        decide(axon, conv(ts=S, nodes=(1,)))
        assert hang.started.wait(5.0)  # the dispatcher now waits on this call for up to 5 s
        ds = decide(axon, *(conv(ts=i * S, nodes=(i,)) for i in range(2, 12)))
        assert len(ds) == 10
        stats = axon.handler_stats["hang"]
        assert stats["dropped"] == 8  # two fit in the queue
        assert [axon.audit.get(d.decision_id).outcomes["hang"] for d in ds[2:]] == ["dropped"] * 8
    finally:
        hang.release.set()
    assert axon.close(10.0)
    stats = axon.handler_stats["hang"]
    assert stats["ok"] == 3 and stats["dropped"] == 8
    assert sum(stats.values()) == 11


def test_close_with_a_backlog_returns_and_the_worker_still_exits():
    hang = Hang()
    axon = Axon(handlers=[hang], cooldown_ns=0, queue_size=1, handler_timeout=0.5)
    try:
        decide(axon, conv(ts=S, nodes=(1,)))
        assert hang.started.wait(5.0)
        decide(axon, *(conv(ts=i * S, nodes=(i,)) for i in range(2, 6)))  # one queued, three dropped
        worker = axon._dispatcher
        assert axon.close(timeout=0.05) is False  # the backlog is not drained yet
        worker._thread.join(5.0)
        assert not worker._thread.is_alive()
        assert axon.handler_stats["hang"] == {"ok": 0, "failed": 0, "timed_out": 1, "dropped": 3, "skipped": 1}
    finally:
        hang.release.set()


def test_min_tier_routes_actions():
    low, high = CollectHandler(), CollectHandler(min_tier="INTERDICT")
    axon = Axon(handlers=[low, high], cooldown_ns=0, **CONF_ONLY)
    a, b = decide(axon, conv(ts=S, nodes=(1,), confidence=0.6), conv(ts=2 * S, nodes=(2,), confidence=0.9))
    assert a.actions == ("collect",) and b.actions == ("collect", "collect_1")
    assert axon.close(5.0)
    assert list(low.decisions) == [a, b] and list(high.decisions) == [b]


def test_handler_protocol_and_plain_callables():
    got = []

    class Duck:
        def handle(self, decision):
            got.append(("duck", decision.seq))

    def pager(decision):
        got.append(("pager", decision.seq))

    assert isinstance(Duck(), Handler) and not isinstance(pager, Handler)
    axon = Axon(handlers=[Duck(), pager, lambda d: got.append(("lambda", d.seq))])
    (d,) = decide(axon, conv())
    assert d.actions == ("duck", "pager", "callback")
    assert axon.close(5.0)
    assert sorted(got) == [("duck", 1), ("lambda", 1), ("pager", 1)]


def test_log_handler_levels(caplog):
    axon = Axon(handlers=[LogHandler("ctas7.test.alerts")], cooldown_ns=0, **CONF_ONLY)
    with caplog.at_level(logging.INFO, logger="ctas7.test.alerts"):
        decide(axon, conv(ts=S, nodes=(1,), confidence=0.1), conv(ts=2 * S, nodes=(2,), confidence=0.95))
        assert axon.close(5.0)
    levels = [(r.levelno, r.getMessage().split(":")[1].strip()) for r in caplog.records]
    assert levels == [(logging.INFO, "LOW threat -> MONITOR, nodes [1], score 0.100 (new)"),
                      (logging.CRITICAL, "CRITICAL threat -> NEUTRALIZE, nodes [2], score 0.950 (new)")]


def test_store_handler_writes_jsonl(tmp_path):
    path = tmp_path / "decisions.jsonl"
    axon = Axon(handlers=[StoreHandler(path)], cooldown_ns=0)
    ds = decide(axon, conv(ts=S, nodes=(1,)), conv(ts=2 * S, nodes=(2,)))
    assert axon.close(5.0)
    assert [Decision.from_dict(json.loads(x)) for x in path.read_text().splitlines()] == ds


class TinyBus:
    """The smallest TAPS-like channel object."""

    def __init__(self):
        self.messages = []

    def publish(self, channel, message):
        self.messages.append((channel, message))


class AsyncBus:
    async def publish(self, channel, message):  # pragma: no cover - never awaited
        return None


def test_publish_handler_sends_to_a_channel():
    bus = TinyBus()
    axon = Axon(handlers=[PublishHandler(bus, channel="AlertStream", min_tier="INVESTIGATE")], **CONF_ONLY,
                cooldown_ns=0)
    a, b = decide(axon, conv(ts=S, nodes=(1,), confidence=0.2), conv(ts=2 * S, nodes=(2,), confidence=0.8))
    assert axon.close(5.0)
    assert bus.messages == [("AlertStream", b.to_dict())]
    json.dumps(bus.messages)  # messages are JSON-ready
    # clones share the bus
    assert axon.clone().handlers[0].publisher is bus


def test_publish_handler_rejects_bad_buses():
    with pytest.raises(TypeError, match="publish"):
        PublishHandler(object())
    with pytest.raises(ValueError):
        PublishHandler(TinyBus(), channel="")
    axon = Axon(handlers=[PublishHandler(AsyncBus())])
    (d,) = decide(axon, conv())
    assert axon.close(5.0)
    assert axon.audit.get(d.decision_id).outcomes["publish"].startswith("failed: TypeError: AsyncBus.publish returned an awaitable")


def test_callback_handler_names():
    def notify(decision):
        pass

    assert CallbackHandler(notify).name == "notify"
    assert CallbackHandler(lambda d: None).name == "callback"
    assert CallbackHandler(notify, name="pager").name == "pager"
    with pytest.raises(TypeError):
        CallbackHandler(3)


def test_outcome_names_cover_the_stats():
    axon = Axon(handlers=[CollectHandler()])
    assert tuple(axon.handler_stats["collect"]) == OUTCOMES


# ---------------------------------------------------------------------------
# conformance, clone and pickle
# ---------------------------------------------------------------------------


def test_conformance_default():
    check_stage(Axon())


def test_conformance_with_handlers():
    check_stage(Axon(handlers=[CollectHandler(maxlen=10), LogHandler("ctas7.test.quiet")]))


@stage
def inject_convergences(frame):
    """A deterministic upstream that raises one convergence per batch."""
    ev = frame.events
    if len(ev):
        nodes = tuple(int(n) for n in np.unique(ev["node"][:3]))
        frame.convergences.append(conv(ts=int(ev["ts"][-1]), nodes=nodes, confidence=0.5 + (len(ev) % 7) / 14))
    return frame


def test_conformance_with_real_decisions_in_a_chain():
    check_stage(inject_convergences | Axon(cooldown_ns=50_000_000, handlers=[CollectHandler()]))


def test_pickle_mid_stream_with_live_worker_continues_identically():
    frames = reference_frames()
    seen = CollectHandler()
    a = Axon(cooldown_ns=50_000_000, handlers=[seen])
    chain_a = inject_convergences | a
    first = []
    for f in frames[:8]:
        first += chain_a.process(Frame(events=f.events.copy())).responses
    assert a._dispatcher is not None and a.flush(5.0)
    a.feedback(first[0].decision_id, confirmed=False)
    b = pickle.loads(pickle.dumps(a))
    assert b._dispatcher is None and b.stats == a.stats
    chain_b = inject_convergences | b
    out_a = [chain_a.process(Frame(events=f.events.copy())).responses for f in frames[8:]]
    out_b = [chain_b.process(Frame(events=f.events.copy())).responses for f in frames[8:]]
    assert out_a == out_b and any(out_a)
    assert b._dispatcher is not None  # recreated lazily
    assert a.close(5.0) and b.close(5.0)

    def actioned(ds):
        return [d for d in ds if d.actions]

    rest = actioned(d for ds in out_a for d in ds)
    assert rest and {d.reason for d in first + rest} >= {"new", "cooldown"}
    assert b.handlers[0] is not seen
    assert list(seen.decisions) == actioned(first) + rest
    assert list(b.handlers[0].decisions) == actioned(first) + rest


def test_clone_starts_fresh_and_keeps_parameters():
    a = Axon(cooldown_ns=7, handlers=(CollectHandler(maxlen=5),), thresholds=(0.5, 0.6, 0.7))
    decide(a, conv())
    b = a.clone()
    assert repr(b) == repr(a) and b.stats["decisions"] == 0 and len(b.audit) == 0
    assert isinstance(b.handlers, tuple) and b.handlers[0] is not a.handlers[0]
    assert len(b.handlers[0].decisions) == 0
    a.close()


def test_context_manager_closes():
    seen = CollectHandler()
    with Axon(handlers=[seen]) as axon:
        decide(axon, conv())
    assert len(seen.decisions) == 1 and axon._dispatcher is None
