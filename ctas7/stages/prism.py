"""PRISM: a synthesis report per convergence.

For each :class:`~ctas7.records.Convergence` in ``frame.convergences``,
:class:`Prism` writes one :class:`Report` into ``frame.reports``: the window,
event counts, the contributing nodes ranked by evidence, pattern evidence,
the confidence, the AXON decisions taken for that convergence (found in
``frame.responses`` by :func:`~ctas7.stages.axon.convergence_key`) and a
plain-language recommendation built deterministically from the level, tier,
nodes, groups and patterns.

PRISM keeps no state. Window totals (``event_count``, ``pattern_matches``)
come from the meter; the per-node ``batch_events`` and the per-pattern
``batch_patterns`` are counted in the batch that fired, inside the window,
from ``frame.events`` and ``frame.matches``.

Reports are plain data: :meth:`Report.to_dict` / :meth:`Report.to_json` and
:meth:`Report.from_dict` / :meth:`Report.from_json` round-trip exactly,
:func:`dump_reports` / :func:`load_reports` store them as JSON lines, and a
report is a rich renderable (a panel with a node table).

Examples
--------
>>> from ctas7.records import Convergence
>>> from ctas7.stage import Frame
>>> from ctas7.stages.axon import Axon
>>> from ctas7.stages.prism import Prism, Report
>>> c = Convergence(ts=2_000_000_000, tick=2000, nodes=(7, 3, 9), groups=(1, 0, 1),
...                 first_hot_ts=(1_990_000_000, 1_995_000_000, 2_000_000_000),
...                 scores=(14.2, 12.0, 9.1), directions=(1, 1, -1), weighted_count=3.0,
...                 confidence=0.93, pattern_matches=2, window_start_ts=1_980_000_000, event_count=57)
>>> frame = (Axon() | Prism()).process(Frame(convergences=[c]))
>>> report, = frame.reports
>>> report.level.name, [n.node for n in report.nodes], report.groups
('HIGH', [7, 3, 9], (0, 1))
>>> print(report.recommendation)
HIGH threat, tier INTERDICT: 3 nodes in 2 groups converged with confidence 0.93 over 20.0 ms; leading nodes 7 (group 1, 14.2 bits above baseline), 3 (group 0, 12.0 bits above baseline), 9 (group 1, 9.1 bits below baseline); 2 TETH pattern matches. Recommendation: interdict activity on nodes 7, 3 and 9 and task collection across groups 0 and 1.
>>> Report.from_json(report.to_json()) == report
True
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ctas7.events import validate_batch
from ctas7.records import Convergence
from ctas7.stage import Frame, Stage
from ctas7.stages.axon import Decision, ThreatLevel, Tier

__all__ = [
    "NodeEvidence",
    "PatternEvidence",
    "Report",
    "Prism",
    "recommend",
    "primary_decision",
    "dump_reports",
    "load_reports",
]


# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------


class NodeEvidence(NamedTuple):
    """One contributing node (a named tuple: cheap to build, immutable).

    Attributes
    ----------
    rank : int
        1 = strongest evidence (score, then earliest first-hot time, then id).
    node, group : int
    score : float
        Score in bits at firing.
    direction : int
        +1 above baseline, -1 below, 0 hot on TETH evidence alone (no
        direction of its own).
    first_hot_ts : int
        When the node became hot (event time, ns).
    batch_events : int
        Its events in the firing batch inside the window.
    """

    rank: int
    node: int
    group: int
    score: float
    direction: int
    first_hot_ts: int
    batch_events: int


class PatternEvidence(NamedTuple):
    """TETH matches of one pattern on the contributing nodes (firing batch, in window)."""

    pattern: int
    name: str | None
    count: int


_FIELDS_NODE = NodeEvidence._fields
_FIELDS_PATTERN = PatternEvidence._fields


def _strict(d: dict, names, what: str) -> None:
    if not isinstance(d, dict):
        raise TypeError(f"{what}.from_dict needs a dict, got {type(d).__name__}")
    unknown = set(d) - set(names)
    missing = set(names) - set(d)
    if unknown or missing:
        raise ValueError(f"{what}.from_dict: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")


@dataclass(frozen=True)
class Report:
    """The synthesis of one convergence.

    Attributes
    ----------
    report_id : str
        ``"rp-<ts>-<cluster_id hex>"``.
    ts, tick : int
        Event time (ns) and tick of the convergence.
    cluster_id : int
        ``Convergence.cluster_id``.
    window_start_ts, window_end_ts : int
        The convergence window (event time, ns).
    event_count : int
        Events on the contributing nodes inside the window (from the meter).
    batch_event_count : int
        Events in the batch that fired.
    nodes : tuple of NodeEvidence
        Contributing nodes, ranked by evidence.
    groups : tuple of int
        Distinct groups of those nodes, ascending.
    pattern_matches : int
        TETH matches on these nodes inside the window (from the meter).
    batch_patterns : tuple of PatternEvidence
        Matches per pattern in the firing batch, by pattern index.
    confidence, weighted_count : float
    level : ThreatLevel or None
        From the primary AXON decision (the first actioned one, else the
        first); None without AXON.
    tier : Tier or None
    decisions : tuple of Decision
        Every AXON decision for this convergence in the frame.
    recommendation : str
        Plain-language summary and recommended action (see :func:`recommend`).
    """

    report_id: str
    ts: int
    tick: int
    cluster_id: int
    window_start_ts: int
    window_end_ts: int
    event_count: int
    batch_event_count: int
    nodes: tuple
    groups: tuple
    pattern_matches: int
    batch_patterns: tuple
    confidence: float
    weighted_count: float
    level: ThreatLevel | None
    tier: Tier | None
    decisions: tuple
    recommendation: str

    # -- serialisation ------------------------------------------------------

    def to_dict(self) -> dict:
        """A JSON-ready dict (enums by name, records as dicts, tuples as lists)."""
        return {
            "report_id": self.report_id,
            "ts": self.ts,
            "tick": self.tick,
            "cluster_id": self.cluster_id,
            "window_start_ts": self.window_start_ts,
            "window_end_ts": self.window_end_ts,
            "event_count": self.event_count,
            "batch_event_count": self.batch_event_count,
            "nodes": [n._asdict() for n in self.nodes],
            "groups": list(self.groups),
            "pattern_matches": self.pattern_matches,
            "batch_patterns": [p._asdict() for p in self.batch_patterns],
            "confidence": self.confidence,
            "weighted_count": self.weighted_count,
            "level": None if self.level is None else self.level.name,
            "tier": None if self.tier is None else self.tier.name,
            "decisions": [d.to_dict() for d in self.decisions],
            "recommendation": self.recommendation,
        }

    def to_json(self, indent: int | None = None) -> str:
        """The report as a JSON string (keys in a fixed order)."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: dict) -> "Report":
        """Inverse of :meth:`to_dict`; unknown or missing keys are errors."""
        _strict(d, cls.__dataclass_fields__, "Report")
        nodes = []
        for n in d["nodes"]:
            _strict(n, _FIELDS_NODE, "NodeEvidence")
            nodes.append(
                NodeEvidence(
                    rank=int(n["rank"]),
                    node=int(n["node"]),
                    group=int(n["group"]),
                    score=float(n["score"]),
                    direction=int(n["direction"]),
                    first_hot_ts=int(n["first_hot_ts"]),
                    batch_events=int(n["batch_events"]),
                )
            )
        patterns = []
        for p in d["batch_patterns"]:
            _strict(p, _FIELDS_PATTERN, "PatternEvidence")
            patterns.append(
                PatternEvidence(int(p["pattern"]), None if p["name"] is None else str(p["name"]), int(p["count"]))
            )
        return cls(
            report_id=str(d["report_id"]),
            ts=int(d["ts"]),
            tick=int(d["tick"]),
            cluster_id=int(d["cluster_id"]),
            window_start_ts=int(d["window_start_ts"]),
            window_end_ts=int(d["window_end_ts"]),
            event_count=int(d["event_count"]),
            batch_event_count=int(d["batch_event_count"]),
            nodes=tuple(nodes),
            groups=tuple(int(g) for g in d["groups"]),
            pattern_matches=int(d["pattern_matches"]),
            batch_patterns=tuple(patterns),
            confidence=float(d["confidence"]),
            weighted_count=float(d["weighted_count"]),
            level=None if d["level"] is None else ThreatLevel[d["level"]],
            tier=None if d["tier"] is None else Tier[d["tier"]],
            decisions=tuple(Decision.from_dict(x) for x in d["decisions"]),
            recommendation=str(d["recommendation"]),
        )

    @classmethod
    def from_json(cls, text: str) -> "Report":
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    # -- rich ---------------------------------------------------------------------

    def __rich_console__(self, console, options):
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        summary = Table.grid(padding=(0, 2))
        summary.add_column(style="bold")
        summary.add_column()
        span = self.window_end_ts - self.window_start_ts
        summary.add_row("Window", f"{self.window_start_ts} .. {self.window_end_ts} ns ({_fmt_ns(span)})")
        summary.add_row(
            "Events", f"{self.event_count} on these nodes in the window; {self.batch_event_count} in the batch"
        )
        summary.add_row(
            "Confidence", f"{self.confidence:.2f} (weighted hot nodes {self.weighted_count:.1f})"
        )
        patterns = f"{self.pattern_matches} TETH matches in the window"
        if self.batch_patterns:
            patterns += "; batch: " + ", ".join(f"{_pattern_label(p)} x{p.count}" for p in self.batch_patterns)
        summary.add_row("Patterns", patterns)
        summary.add_row("Decisions", "; ".join(_fmt_decision(d) for d in self.decisions) or "none")

        nodes = Table(title="Contributing nodes", title_justify="left", expand=False)
        for name, justify in (
            ("#", "right"),
            ("node", "right"),
            ("group", "right"),
            ("score (bits)", "right"),
            ("dir", "center"),
            ("first hot", "right"),
            ("batch events", "right"),
        ):
            nodes.add_column(name, justify=justify)
        for n in self.nodes:
            nodes.add_row(
                str(n.rank),
                str(n.node),
                str(n.group),
                f"{n.score:.1f}",
                _DIRECTION_MARK[_sign(n.direction)],
                f"+{_fmt_ns(n.first_hot_ts - self.window_start_ts)}",
                str(n.batch_events),
            )

        level = "no decision" if self.level is None else f"{self.level.name} / {self.tier.name}"
        yield Panel(
            Group(summary, Text(""), nodes, Text(""), Text(self.recommendation)),
            title=f"PRISM {self.report_id}: {level}",
            title_align="left",
            border_style=_BORDER.get(self.level, "white"),
        )


_BORDER = {
    ThreatLevel.LOW: "green",
    ThreatLevel.MEDIUM: "yellow",
    ThreatLevel.HIGH: "red",
    ThreatLevel.CRITICAL: "bold red",
}


def dump_reports(reports, path) -> int:
    """Append reports to a JSONL file; returns how many were written.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "reports.jsonl")
    >>> dump_reports([], path), load_reports(path) if os.path.exists(path) else []
    (0, [])
    """
    n = 0
    with open(os.fspath(path), "a", encoding="utf-8") as f:
        for r in reports:
            if not isinstance(r, Report):
                raise TypeError(f"dump_reports: expected Report, got {type(r).__name__}")
            f.write(r.to_json() + "\n")
            n += 1
    return n


def load_reports(path) -> list:
    """Read the reports of a JSONL file written by :func:`dump_reports`."""
    out = []
    with open(os.fspath(path), encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append(Report.from_json(line))
                except (ValueError, KeyError, TypeError) as exc:
                    raise ValueError(f"{path}:{i}: not a report: {exc}") from exc
    return out


# ---------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------


_DIRECTION_MARK = {1: "+", -1: "-", 0: "="}
_DIRECTION_TEXT = {1: "{score:.1f} bits above baseline", -1: "{score:.1f} bits below baseline",
                   0: "{score:.1f} bits, hot on TETH evidence"}


def _sign(d) -> int:
    return (int(d) > 0) - (int(d) < 0)


def _fmt_ns(ns: int) -> str:
    ns = int(ns)
    a = abs(ns)
    if a >= 1_000_000_000:
        return f"{ns / 1e9:.1f} s"
    if a >= 1_000_000:
        return f"{ns / 1e6:.1f} ms"
    if a >= 1_000:
        return f"{ns / 1e3:.1f} us"
    return f"{ns} ns"


def _join(items) -> str:
    items = [str(x) for x in items]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def _pattern_label(p: PatternEvidence) -> str:
    return p.name if p.name else f"pattern {p.pattern}"


def _fmt_decision(d: Decision) -> str:
    state = f"suppressed ({d.reason})" if d.suppressed else d.reason
    acts = ", ".join(d.actions) if d.actions else "no actions"
    return f"{d.decision_id} {d.level.name}/{d.tier.name} score {d.score:.2f}, {state}, {acts}"


_ACTION = {
    Tier.MONITOR: "keep monitoring nodes {nodes}; act only if the convergence persists or spreads",
    Tier.INVESTIGATE: "open an investigation into nodes {nodes} and corroborate across {groups}",
    Tier.INTERDICT: "interdict activity on nodes {nodes} and task collection across {groups}",
    Tier.NEUTRALIZE: "neutralize now: contain nodes {nodes}, escalate to command and confirm across {groups}",
}


def primary_decision(decisions):
    """The decision a report speaks for: the first actioned one, else the first.

    >>> primary_decision(()) is None
    True
    """
    for d in decisions:
        if not d.suppressed:
            return d
    return decisions[0] if decisions else None


def recommend(nodes, groups, confidence, window_ns, pattern_matches, batch_patterns, decision, lead=3) -> str:
    """The plain-language recommendation of a report (deterministic).

    Parameters
    ----------
    nodes : sequence of NodeEvidence
        Ranked contributing nodes.
    groups : sequence of int
        Their distinct groups.
    confidence : float
    window_ns : int
        Window length.
    pattern_matches : int
        TETH matches in the window.
    batch_patterns : sequence of PatternEvidence
    decision : Decision or None
        The primary AXON decision.
    lead : int
        Nodes named in full.

    Examples
    --------
    >>> print(recommend([NodeEvidence(1, 5, 0, 8.0, 1, 0, 2)], [0], 0.8, 5_000_000_000, 2,
    ...                 [PatternEvidence(0, "beacon", 2)], None))
    1 node in 1 group converged with confidence 0.80 over 5.0 s; leading node 5 (group 0, 8.0 bits above baseline); 2 TETH pattern matches (beacon x2). Recommendation: no AXON decision is attached; assess manually.
    """
    head = "" if decision is None else f"{decision.level.name} threat, tier {decision.tier.name}: "
    k = len(nodes)
    text = (
        f"{head}{_plural(k, 'node')} in {_plural(len(groups), 'group')} converged with confidence "
        f"{confidence:.2f} over {_fmt_ns(window_ns)}"
    )
    if k:
        shown = [
            f"{n.node} (group {n.group}, {_DIRECTION_TEXT[_sign(n.direction)].format(score=n.score)})"
            for n in nodes[:lead]
        ]
        more = f" and {k - lead} more" if k > lead else ""
        text += f"; leading node{'s' if k > 1 else ''} " + ", ".join(shown) + more
    if pattern_matches:
        text += f"; {_plural(pattern_matches, 'TETH pattern match', 'TETH pattern matches')}"
        if batch_patterns:
            text += " (" + ", ".join(f"{_pattern_label(p)} x{p.count}" for p in batch_patterns) + ")"
    else:
        text += "; no TETH pattern evidence"
    text += "."

    ids = [n.node for n in nodes[:lead]]
    node_list = _join(ids + ([f"{k - lead} more"] if k > lead else []))
    group_list = ("group " if len(groups) == 1 else "groups ") + _join(groups)
    if decision is None:
        action = "no AXON decision is attached; assess manually"
    elif decision.suppressed:
        what = "a duplicate of" if decision.reason == "duplicate" else "in the cool-down of"
        action = f"{what} decision {decision.related_id}; no new action unless it escalates"
    else:
        action = _ACTION[decision.tier].format(nodes=node_list, groups=group_list)
        if decision.reason == "escalation":
            action = f"escalated over decision {decision.related_id}: " + action
    return f"{text} Recommendation: {action}."


# ---------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------


# A few equality passes beat np.isin / searchsorted on the small node sets
# of a convergence; past this many nodes the sorted lookup wins.
_SMALL = 8


def _count_by_node(values, nodes) -> list:
    """How many of ``values`` equal each of ``nodes``."""
    if len(nodes) <= _SMALL:
        return [int(np.count_nonzero(values == n)) for n in nodes]
    uniq = np.array(sorted(set(int(n) for n in nodes)), dtype=np.int64)
    idx = np.searchsorted(uniq, values)
    np.minimum(idx, len(uniq) - 1, out=idx)
    per = np.bincount(idx[uniq[idx] == values], minlength=len(uniq))
    pos = {int(n): i for i, n in enumerate(uniq)}
    return [int(per[pos[int(n)]]) for n in nodes]


def _member(values, nodes) -> np.ndarray:
    """Boolean mask: which of ``values`` are in ``nodes``."""
    if len(nodes) <= _SMALL:
        mask = values == nodes[0]
        for n in nodes[1:]:
            mask |= values == n
        return mask
    return np.isin(values, np.asarray(nodes, dtype=np.int64))


class Prism(Stage):
    """Write a :class:`Report` for every convergence of the frame.

    Parameters
    ----------
    pattern_names : sequence of str or mapping int -> str, optional
        Names of TETH patterns by index, used in reports.
    lead_nodes : int
        Nodes named in full in the recommendation.

    Examples
    --------
    >>> from ctas7.stage import Frame
    >>> Prism(pattern_names=["beacon", "exfil"]).process(Frame()).reports
    []
    """

    def __init__(self, pattern_names=None, lead_nodes: int = 3):
        self.pattern_names = pattern_names
        self.lead_nodes = lead_nodes
        if isinstance(lead_nodes, bool) or not isinstance(lead_nodes, int) or lead_nodes < 1:
            raise ValueError(f"Prism lead_nodes must be an int >= 1, got {lead_nodes!r}")
        if pattern_names is None:
            self._names = {}
        elif isinstance(pattern_names, dict):
            self._names = {int(k): str(v) for k, v in pattern_names.items()}
        elif isinstance(pattern_names, (str, bytes)) or not hasattr(pattern_names, "__iter__"):
            raise TypeError(f"Prism pattern_names must be a sequence or mapping of names, got {pattern_names!r}")
        else:
            self._names = {i: str(v) for i, v in enumerate(pattern_names)}

    def process(self, frame: Frame) -> Frame:
        events = validate_batch(frame.events, name="prism: frame.events")
        convergences = frame.convergences
        if not convergences:
            return frame
        by_key: dict = {}
        for d in frame.responses:
            key = getattr(d, "convergence_key", None)
            if key is not None:
                by_key.setdefault(key, []).append(d)
        matches = frame.matches
        if matches is not None and len(matches) == 0:
            matches = None
        reports = frame.reports
        for c in convergences:
            reports.append(self._report(c, events, matches, by_key))
        return frame

    def _report(self, c, events, matches, by_key) -> Report:
        if not isinstance(c, Convergence):
            raise TypeError(f"prism: frame.convergences must hold Convergence records, got {type(c).__name__}")
        k = len(c.nodes)
        if not (len(c.groups) == len(c.first_hot_ts) == len(c.scores) == len(c.directions) == k):
            raise ValueError(f"prism: convergence at ts={c.ts} has per-node fields of different lengths")
        ws, we = int(c.window_start_ts), int(c.ts)

        if len(events) and k:
            ts = events["ts"]
            counts = _count_by_node(events["node"][(ts >= ws) & (ts <= we)], c.nodes)
        else:
            counts = [0] * k

        batch_patterns = ()
        if matches is not None and k:
            mts = matches["ts"]
            sel = (mts >= ws) & (mts <= we)
            sel &= _member(matches["node"], c.nodes)
            if sel.any():
                per = np.bincount(matches["pattern"][sel])
                batch_patterns = tuple(
                    PatternEvidence(int(i), self._names.get(int(i)), int(per[i])) for i in np.flatnonzero(per)
                )

        order = sorted(range(k), key=lambda i: (-float(c.scores[i]), int(c.first_hot_ts[i]), int(c.nodes[i])))
        ranked = tuple(
            NodeEvidence(
                rank=r + 1,
                node=int(c.nodes[i]),
                group=int(c.groups[i]),
                score=float(c.scores[i]),
                direction=_sign(c.directions[i]),
                first_hot_ts=int(c.first_hot_ts[i]),
                batch_events=counts[i],
            )
            for r, i in enumerate(order)
        )
        groups = tuple(sorted({int(g) for g in c.groups}))
        cid = c.cluster_id
        decisions = tuple(by_key.get((we, int(c.tick), cid), ()))
        primary = primary_decision(decisions)
        return Report(
            report_id=f"rp-{we}-{cid:016x}",
            ts=we,
            tick=int(c.tick),
            cluster_id=cid,
            window_start_ts=ws,
            window_end_ts=we,
            event_count=int(c.event_count),
            batch_event_count=len(events),
            nodes=ranked,
            groups=groups,
            pattern_matches=int(c.pattern_matches),
            batch_patterns=batch_patterns,
            confidence=float(c.confidence),
            weighted_count=float(c.weighted_count),
            level=None if primary is None else primary.level,
            tier=None if primary is None else primary.tier,
            decisions=decisions,
            recommendation=recommend(
                ranked, groups, float(c.confidence), we - ws, int(c.pattern_matches), batch_patterns, primary,
                self.lead_nodes,
            ),
        )
