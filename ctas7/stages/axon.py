"""AXON: adaptive response to convergences.

For each :class:`~ctas7.records.Convergence` in ``frame.convergences`` AXON
takes one :class:`Decision`, synchronously and deterministically, and appends
it to ``frame.responses``:

1. **Threat score** in [0, 1], a weighted sum of three kinds of evidence::

       score = w_conf    * clip(confidence, 0, 1)
             + w_nodes   * min(weighted_count / node_saturation, 1)
             + w_pattern * min(pattern_matches / pattern_saturation, 1)

   with ``weights = (w_conf, w_nodes, w_pattern)`` summing to 1.
2. **Threat level**: LOW, then MEDIUM, HIGH, CRITICAL once the score reaches
   the matching entry of ``thresholds`` (three increasing numbers in (0, 1]),
   after the per-cluster feedback offsets are applied (see below).
3. **Response tier**: ``tier_map[level]`` (by default LOW -> MONITOR,
   MEDIUM -> INVESTIGATE, HIGH -> INTERDICT, CRITICAL -> NEUTRALIZE).
4. **Actions**: the names of the handlers whose ``min_tier`` the tier
   reaches. Handlers run off the chain, on a worker thread (see *Handlers*).

**Clusters, cool-down, de-duplication.** A convergence belongs to a cluster:
its exact node set (``Convergence.cluster_id``), or, when that node set is
new, the known cluster whose node set it overlaps most with a Jaccard index
``|A & B| / |A | B| >= overlap`` (ties go to the cluster registered first).
The first node set of a cluster stays its reference set; later, overlapping
node sets become aliases of it. Within ``cooldown_ns`` of **event time**
after a cluster's last actioned decision, a new convergence of the cluster
is *suppressed* (recorded, no actions) unless its level is higher than that
decision's (an *escalation*, which is actioned). The same convergence seen
twice (same ts, tick and node set) is a *duplicate* and is always
suppressed. Because only event time is used, replays decide identically.
At most ``max_clusters`` clusters are remembered; the least recently seen
one is forgotten first (with its cool-down and feedback offsets).

**Feedback.** :meth:`Axon.feedback` ``(decision_id, confirmed)`` adapts the
thresholds of the decision's cluster, for the decision's level only:

- a false alarm (``confirmed=False``) at level MEDIUM..CRITICAL raises that
  level's threshold offset by ``raise_step``, up to ``+max_raise``;
- a true alarm (``confirmed=True``) lowers it by ``relax_step``, down to
  ``-max_relax``;
- at LOW nothing changes: MONITOR is the floor, and AXON never discards a
  convergence (whether to fire at all is the meter's call).

Effective thresholds are ``base + offset``, clipped to [0, 1] and made
non-decreasing from MEDIUM to CRITICAL. Each decision takes feedback once.

**Handlers.** A handler is any object with ``handle(decision)``
(:class:`Handler`) or a plain callable. Built-ins: :class:`LogHandler`,
:class:`CallbackHandler`, :class:`CollectHandler`, :class:`StoreHandler`
(JSONL) and :class:`PublishHandler` (a TAPS-like :class:`Publisher`).
``process`` only puts the decision on a bounded queue (``queue_size``); if
the queue is full the calls are counted as *dropped* and the chain goes on.
One dispatcher thread calls the handlers in turn, each call on that
handler's own runner thread, waiting at most ``handler_timeout`` seconds. A
call that raises is *failed*; one that does not return in time is
*timed_out*, and while it is still running, later calls to the same handler
are *skipped* rather than queued behind it. Handler outcomes go to the audit
record and :attr:`Axon.handler_stats`, never into ``frame.responses``, so
decisions do not depend on them.

**Audit.** Every decision, suppressed or not, gets an :class:`AuditRecord`
(decision, the convergence it came from, handler outcomes, feedback) in a
bounded in-memory :class:`AuditLog`, and, with ``audit_path``, one JSON line
once its handlers are done (feedback adds ``"type": "feedback"`` lines).

Examples
--------
>>> from ctas7.records import Convergence
>>> from ctas7.stage import Frame
>>> from ctas7.stages.axon import Axon, CollectHandler
>>> seen = CollectHandler()
>>> axon = Axon(handlers=[seen])
>>> c = Convergence(ts=10**9, tick=1000, nodes=(3, 1, 7), groups=(0, 1, 1),
...                 first_hot_ts=(998_000_000, 999_000_000, 10**9), scores=(14.0, 11.0, 9.5),
...                 directions=(1, 1, 1), weighted_count=3.0, confidence=0.92, pattern_matches=2,
...                 window_start_ts=990_000_000, event_count=120)
>>> d, = axon.process(Frame(convergences=[c])).responses
>>> d.level.name, d.tier.name, d.actions, round(d.score, 3)
('HIGH', 'INTERDICT', ('collect',), 0.721)
>>> axon.flush(5.0)
True
>>> [x.decision_id for x in seen.decisions] == [d.decision_id]
True
>>> axon.feedback(d.decision_id, confirmed=False)   # a false alarm: HIGH gets harder
(0.55, 0.75, 0.85)
>>> axon.process(Frame(convergences=[c])).responses[0].reason   # same convergence again
'duplicate'
>>> axon.close()
True
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import math
import os
import queue
import threading
import time
import weakref
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np
import xxhash

from ctas7.events import validate_batch
from ctas7.records import Convergence
from ctas7.stage import Frame, Stage

__all__ = [
    "ThreatLevel",
    "Tier",
    "Decision",
    "AuditRecord",
    "AuditLog",
    "Handler",
    "Publisher",
    "LogHandler",
    "CallbackHandler",
    "CollectHandler",
    "StoreHandler",
    "PublishHandler",
    "Axon",
    "convergence_key",
    "OUTCOMES",
]

log = logging.getLogger(__name__)

# Handler outcomes, as recorded in audit records and counted in handler_stats.
OUTCOMES = ("ok", "failed", "timed_out", "dropped", "skipped")


class ThreatLevel(IntEnum):
    """How threatening a convergence is."""

    LOW = 0
    MEDIUM = 1
    HIGH = 2
    CRITICAL = 3


class Tier(IntEnum):
    """How strongly to respond."""

    MONITOR = 0
    INVESTIGATE = 1
    INTERDICT = 2
    NEUTRALIZE = 3


def _as_tier(value, what: str) -> Tier:
    if isinstance(value, str):
        try:
            return Tier[value.upper()]
        except KeyError:
            raise ValueError(f"{what}: unknown tier {value!r}; expected one of {[t.name for t in Tier]}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what}: a tier is a Tier, its name or its int value, got {type(value).__name__}")
    try:
        return Tier(value)
    except ValueError:
        raise ValueError(f"{what}: tier value must be 0..3, got {value}") from None


def convergence_key(c) -> tuple:
    """Identity of a convergence: ``(ts, tick, cluster_id)``.

    :attr:`Decision.convergence_key` gives the same triple, which is how
    PRISM finds the decisions taken for a convergence.

    >>> from ctas7.records import Convergence
    >>> c = Convergence(5, 1, (2, 1), (0, 0), (4, 5), (9.0, 8.0), (1, 1), 2.0, 0.9, 0, 0, 10)
    >>> convergence_key(c)[:2]
    (5, 1)
    """
    return (int(c.ts), int(c.tick), int(c.cluster_id))


# ---------------------------------------------------------------------------
# Decision and audit records
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """One AXON decision for one convergence.

    Attributes
    ----------
    decision_id : str
        ``"ax-<seq>-<cluster_id hex>"``; deterministic for a given input.
    seq : int
        1-based count of decisions taken by this stage.
    ts : int
        Event time of the convergence (ns); the decision's time.
    convergence_tick : int
        Tick of the convergence.
    cluster_id : int
        The convergence's own node-set id (``Convergence.cluster_id``).
    canonical_id : int
        Id of the cluster it was attributed to (cool-down and feedback key).
    nodes : tuple of int
        The convergence's nodes.
    confidence, weighted_count : float
        Inputs from the convergence.
    pattern_matches : int
        Input from the convergence.
    score : float
        Threat score in [0, 1].
    thresholds : tuple of float
        Effective MEDIUM, HIGH and CRITICAL thresholds used.
    level : ThreatLevel
    tier : Tier
    suppressed : bool
        True when cool-down or de-duplication held the actions back.
    reason : str
        ``"new"``, ``"escalation"`` (actioned), ``"cooldown"`` or
        ``"duplicate"`` (suppressed).
    related_id : str or None
        The earlier decision that suppressed or was escalated over this one.
    actions : tuple of str
        Names of the handlers this decision is dispatched to.
    """

    decision_id: str
    seq: int
    ts: int
    convergence_tick: int
    cluster_id: int
    canonical_id: int
    nodes: tuple
    confidence: float
    weighted_count: float
    pattern_matches: int
    score: float
    thresholds: tuple
    level: ThreatLevel
    tier: Tier
    suppressed: bool
    reason: str
    related_id: str | None
    actions: tuple

    @property
    def convergence_key(self) -> tuple:
        """``(ts, tick, cluster_id)`` of the convergence decided on."""
        return (self.ts, self.convergence_tick, self.cluster_id)

    def to_dict(self) -> dict:
        """A JSON-ready dict (enums by name, tuples as lists)."""
        return {
            "decision_id": self.decision_id,
            "seq": self.seq,
            "ts": self.ts,
            "convergence_tick": self.convergence_tick,
            "cluster_id": self.cluster_id,
            "canonical_id": self.canonical_id,
            "nodes": list(self.nodes),
            "confidence": self.confidence,
            "weighted_count": self.weighted_count,
            "pattern_matches": self.pattern_matches,
            "score": self.score,
            "thresholds": list(self.thresholds),
            "level": self.level.name,
            "tier": self.tier.name,
            "suppressed": self.suppressed,
            "reason": self.reason,
            "related_id": self.related_id,
            "actions": list(self.actions),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Decision":
        """Inverse of :meth:`to_dict`; unknown or missing keys are errors."""
        names = [f for f in cls.__dataclass_fields__]
        unknown = set(d) - set(names)
        missing = set(names) - set(d)
        if unknown or missing:
            raise ValueError(f"Decision.from_dict: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
        return cls(
            decision_id=str(d["decision_id"]),
            seq=int(d["seq"]),
            ts=int(d["ts"]),
            convergence_tick=int(d["convergence_tick"]),
            cluster_id=int(d["cluster_id"]),
            canonical_id=int(d["canonical_id"]),
            nodes=tuple(int(n) for n in d["nodes"]),
            confidence=float(d["confidence"]),
            weighted_count=float(d["weighted_count"]),
            pattern_matches=int(d["pattern_matches"]),
            score=float(d["score"]),
            thresholds=tuple(float(t) for t in d["thresholds"]),
            level=ThreatLevel[d["level"]],
            tier=Tier[d["tier"]],
            suppressed=bool(d["suppressed"]),
            reason=str(d["reason"]),
            related_id=None if d["related_id"] is None else str(d["related_id"]),
            actions=tuple(str(a) for a in d["actions"]),
        )


@dataclass
class AuditRecord:
    """The audit trail of one decision.

    Attributes
    ----------
    decision : Decision
    convergence : Convergence
        The inputs the decision was taken from.
    outcomes : dict
        Handler name -> ``"pending"``, ``"ok"``, ``"failed: <error>"``,
        ``"timed_out"``, ``"dropped"`` or ``"skipped"``.
    feedback : bool or None
        Operator feedback: True = confirmed true alarm, False = false alarm.
    """

    decision: Decision
    convergence: Any
    outcomes: dict = field(default_factory=dict)
    feedback: bool | None = None

    def to_dict(self) -> dict:
        conv = self.convergence
        inputs = conv.to_dict() if hasattr(conv, "to_dict") else dict(vars(conv))
        return {
            "type": "decision",
            "decision": self.decision.to_dict(),
            "inputs": {k: list(v) if isinstance(v, tuple) else v for k, v in inputs.items()},
            "outcomes": dict(self.outcomes),
            "feedback": self.feedback,
        }


class AuditLog:
    """Bounded in-memory audit of decisions, optionally mirrored to JSONL.

    Parameters
    ----------
    maxlen : int
        Records kept in memory (the oldest go first). Feedback can only be
        given on a decision still held here.
    path : str or os.PathLike, optional
        JSONL file to append completed records and feedback to.

    Examples
    --------
    >>> log = AuditLog(maxlen=2)
    >>> len(log), log.get("nope") is None
    (0, True)
    """

    def __init__(self, maxlen: int = 10_000, path=None):
        if isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 1:
            raise ValueError(f"AuditLog maxlen must be an int >= 1, got {maxlen!r}")
        self.maxlen = maxlen
        self.path = None if path is None else os.fspath(path)
        self._records: deque = deque()
        self._index: dict = {}
        self._file = None
        self.lock = threading.Lock()
        self.write_errors = 0

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self):
        return iter(self.records())

    def records(self) -> list:
        """A snapshot list of the records held, oldest first."""
        with self.lock:
            return list(self._records)

    def get(self, decision_id: str) -> AuditRecord | None:
        """The record of ``decision_id``, or None if unknown or evicted."""
        return self._index.get(decision_id)

    def append(self, record: AuditRecord) -> None:
        with self.lock:
            if len(self._records) >= self.maxlen:
                old = self._records.popleft()
                self._index.pop(old.decision.decision_id, None)
            self._records.append(record)
            self._index[record.decision.decision_id] = record

    def write(self, entry: dict) -> None:
        """Append one JSON line (no-op without a path); errors are counted, not raised."""
        if self.path is None:
            return
        line = json.dumps(entry, sort_keys=True) + "\n"
        with self.lock:
            try:
                if self._file is None:
                    self._file = open(self.path, "a", encoding="utf-8")
                self._file.write(line)
                self._file.flush()
            except OSError as exc:
                self.write_errors += 1
                log.error("AXON audit: cannot write %s: %s", self.path, exc)

    def close(self) -> None:
        with self.lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __getstate__(self):
        with self.lock:
            records = [
                AuditRecord(r.decision, r.convergence, dict(r.outcomes), r.feedback) for r in self._records
            ]
        state = self.__dict__.copy()
        state["_records"] = records
        for k in ("_index", "_file", "lock"):
            state.pop(k)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._records = deque(state["_records"])
        self._index = {r.decision.decision_id: r for r in self._records}
        self._file = None
        self.lock = threading.Lock()


# ---------------------------------------------------------------------------
# Handlers
# ---------------------------------------------------------------------------


@runtime_checkable
class Handler(Protocol):
    """Anything with ``handle(decision)`` is a handler.

    An optional ``name`` attribute names it in actions and stats, and an
    optional ``min_tier`` restricts it to decisions of at least that tier.
    It is called on a worker thread, one call at a time.
    """

    def handle(self, decision: Decision) -> Any: ...


@runtime_checkable
class Publisher(Protocol):
    """A TAPS-like bus: ``publish(channel_name, message)``, synchronous and thread-safe."""

    def publish(self, channel: str, message: Any) -> Any: ...


class _BuiltinHandler:
    name = "handler"

    def __init__(self, min_tier=Tier.MONITOR):
        self.min_tier = _as_tier(min_tier, f"{type(self).__name__} min_tier")

    def clone(self):
        """A handler with the same configuration (used by ``Axon.clone``)."""
        return type(self)(**self._params())

    def _params(self) -> dict:
        return {"min_tier": self.min_tier}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"


_LOG_LEVELS = {
    Tier.MONITOR: logging.INFO,
    Tier.INVESTIGATE: logging.WARNING,
    Tier.INTERDICT: logging.ERROR,
    Tier.NEUTRALIZE: logging.CRITICAL,
}


class LogHandler(_BuiltinHandler):
    """Log each decision to a :mod:`logging` logger.

    MONITOR logs at INFO, INVESTIGATE at WARNING, INTERDICT at ERROR and
    NEUTRALIZE at CRITICAL.

    Parameters
    ----------
    logger : str
        Logger name.
    min_tier : Tier or str
        Lowest tier handled.

    Examples
    --------
    >>> LogHandler("ctas7.alerts", min_tier="INVESTIGATE")
    LogHandler(logger='ctas7.alerts', min_tier=<Tier.INVESTIGATE: 1>)
    """

    name = "log"

    def __init__(self, logger: str = "ctas7.axon", min_tier=Tier.MONITOR):
        super().__init__(min_tier)
        if not isinstance(logger, str):
            raise TypeError(f"LogHandler logger must be a logger name (str), got {type(logger).__name__}")
        self.logger = logger

    def _params(self):
        return {"logger": self.logger, "min_tier": self.min_tier}

    def handle(self, decision: Decision) -> None:
        logging.getLogger(self.logger).log(
            _LOG_LEVELS[decision.tier],
            "AXON %s: %s threat -> %s, nodes %s, score %.3f (%s)",
            decision.decision_id,
            decision.level.name,
            decision.tier.name,
            list(decision.nodes),
            decision.score,
            decision.reason,
        )


class CallbackHandler(_BuiltinHandler):
    """Call ``func(decision)``.

    Examples
    --------
    >>> def page(decision):
    ...     pass
    >>> CallbackHandler(page).name
    'page'
    """

    def __init__(self, func: Callable, min_tier=Tier.MONITOR, name: str | None = None):
        super().__init__(min_tier)
        if not callable(func):
            raise TypeError(f"CallbackHandler needs a callable, got {type(func).__name__}")
        self.func = func
        self._name = name

    @property
    def name(self) -> str:
        return self._name or getattr(self.func, "__name__", "callback").replace("<lambda>", "callback")

    def _params(self):
        return {"func": self.func, "min_tier": self.min_tier, "name": self._name}

    def handle(self, decision: Decision) -> None:
        self.func(decision)


class CollectHandler(_BuiltinHandler):
    """Keep decisions in memory, in ``self.decisions`` (a deque).

    A clone starts empty.

    Examples
    --------
    >>> CollectHandler(maxlen=100).decisions.maxlen
    100
    """

    name = "collect"

    def __init__(self, maxlen: int | None = None, min_tier=Tier.MONITOR):
        super().__init__(min_tier)
        if maxlen is not None and (isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 1):
            raise ValueError(f"CollectHandler maxlen must be None or an int >= 1, got {maxlen!r}")
        self.maxlen = maxlen
        self.decisions: deque = deque(maxlen=maxlen)

    def _params(self):
        return {"maxlen": self.maxlen, "min_tier": self.min_tier}

    def handle(self, decision: Decision) -> None:
        self.decisions.append(decision)


class StoreHandler(_BuiltinHandler):
    """Append each decision as one JSON line to a file.

    Examples
    --------
    >>> import json, os, tempfile
    >>> from ctas7.stages.axon import Decision
    >>> path = os.path.join(tempfile.mkdtemp(), "decisions.jsonl")
    >>> store = StoreHandler(path)
    >>> store.handle(Decision("ax-1", 1, 5, 1, 7, 7, (1, 2), 0.9, 2.0, 0, 0.6, (0.55, 0.7, 0.85),
    ...                       ThreatLevel.MEDIUM, Tier.INVESTIGATE, False, "new", None, ("store",)))
    >>> store.close()
    >>> json.loads(open(path).readline())["tier"]
    'INVESTIGATE'
    """

    name = "store"

    def __init__(self, path, min_tier=Tier.MONITOR):
        super().__init__(min_tier)
        self.path = os.fspath(path)
        self._file = None
        self._lock = threading.Lock()

    def _params(self):
        return {"path": self.path, "min_tier": self.min_tier}

    def handle(self, decision: Decision) -> None:
        line = json.dumps(decision.to_dict(), sort_keys=True) + "\n"
        with self._lock:
            if self._file is None:
                self._file = open(self.path, "a", encoding="utf-8")
            self._file.write(line)
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_file"] = None
        state.pop("_lock")
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()


class PublishHandler(_BuiltinHandler):
    """Publish ``decision.to_dict()`` on a channel of a TAPS-like bus.

    Parameters
    ----------
    publisher : Publisher
        Any object with a synchronous, thread-safe
        ``publish(channel_name, message)``. An awaitable result is an error:
        an asyncio bus must expose a thread-safe synchronous ``publish``.
    channel : str
        Channel name (TAPS: ``"AlertStream"``).
    min_tier : Tier or str
        Lowest tier handled.

    Examples
    --------
    >>> class Bus:
    ...     def __init__(self):
    ...         self.sent = []
    ...     def publish(self, channel, message):
    ...         self.sent.append((channel, message["tier"]))
    >>> PublishHandler(Bus(), min_tier="INTERDICT").channel
    'AlertStream'
    """

    name = "publish"

    def __init__(self, publisher, channel: str = "AlertStream", min_tier=Tier.MONITOR):
        super().__init__(min_tier)
        if not isinstance(publisher, Publisher):
            raise TypeError(
                f"PublishHandler needs an object with publish(channel, message), got {type(publisher).__name__}"
            )
        if not isinstance(channel, str) or not channel:
            raise ValueError(f"PublishHandler channel must be a non-empty str, got {channel!r}")
        self.publisher = publisher
        self.channel = channel

    def _params(self):
        return {"publisher": self.publisher, "channel": self.channel, "min_tier": self.min_tier}

    def handle(self, decision: Decision) -> None:
        result = self.publisher.publish(self.channel, decision.to_dict())
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            raise TypeError(
                f"{type(self.publisher).__name__}.publish returned an awaitable; "
                "PublishHandler needs a synchronous, thread-safe publish"
            )


def _as_handler(h, i: int):
    if isinstance(h, Handler):
        return h
    if callable(h):
        return CallbackHandler(h)
    raise TypeError(f"handlers[{i}] ({type(h).__name__}) is neither a handler (handle(decision)) nor callable")


def _clone_handler(h):
    # Built-ins know how to copy themselves; third-party handlers (and the
    # external resources they hold) are shared by the clone.
    return h.clone() if isinstance(h, _BuiltinHandler) else h


# ---------------------------------------------------------------------------
# Dispatch: one dispatcher thread, one runner thread per handler
# ---------------------------------------------------------------------------

_STOP = object()


class _Lane:
    """Calls one handler on its own thread, so a hung call strands only it."""

    def __init__(self, name: str, handler):
        self.name = name
        self.handler = handler
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._last: threading.Event | None = None

    @property
    def stuck(self) -> bool:
        return self._last is not None and not self._last.is_set()

    def call(self, decision: Decision, timeout: float) -> str:
        if self.stuck:
            return "skipped"
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"ctas7-axon-{self.name}", daemon=True)
            self._thread.start()
        done = threading.Event()
        box = ["timed_out"]
        self._last = done
        self._inbox.put((decision, done, box))
        return box[0] if done.wait(timeout) else "timed_out"

    def _run(self) -> None:
        while True:
            item = self._inbox.get()
            if item is _STOP:
                return
            decision, done, box = item
            try:
                self.handler.handle(decision)
                box[0] = "ok"
            except BaseException as exc:  # noqa: BLE001 - isolation is the point
                box[0] = f"failed: {type(exc).__name__}: {exc}"
            done.set()

    def stop(self) -> None:
        if self._thread is not None:
            self._inbox.put(_STOP)


class _Dispatcher:
    """Drains a bounded queue of audit records, calling their handlers.

    It holds no reference to the Axon stage, so an abandoned stage can be
    collected; a finalizer then stops the threads.
    """

    def __init__(self, lanes: dict, queue_size: int, timeout: float, audit: AuditLog, stats: dict):
        self.lanes = lanes
        self.timeout = timeout
        self.audit = audit
        self.stats = stats
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._pending = 0
        self._stopping = False
        self._idle = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="ctas7-axon-dispatch", daemon=True)
        self._thread.start()

    def submit(self, record: AuditRecord) -> bool:
        with self._idle:
            self._pending += 1
        try:
            self.queue.put_nowait(record)
            return True
        except queue.Full:
            self._done()
            return False

    def _done(self) -> None:
        with self._idle:
            self._pending -= 1
            if self._pending == 0:
                self._idle.notify_all()

    def _run(self) -> None:
        while True:
            record = self.queue.get()
            if record is _STOP:
                return
            try:
                for name in record.decision.actions:
                    outcome = self.lanes[name].call(record.decision, self.timeout)
                    with self.audit.lock:
                        record.outcomes[name] = outcome
                        self.stats[name][outcome.split(":", 1)[0]] += 1
                self.audit.write(record.to_dict())
            except Exception:  # noqa: BLE001 - the dispatcher must outlive any record
                log.exception("AXON dispatcher: unexpected error on %s", record.decision.decision_id)
            finally:
                self._done()
            if self._stopping and self.queue.empty():
                return

    def flush(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def stop(self) -> None:
        # With a full queue the sentinel cannot go in; the flag then ends the
        # thread once it has drained what is left.
        self._stopping = True
        try:
            self.queue.put_nowait(_STOP)
        except queue.Full:
            pass
        for lane in self.lanes.values():
            lane.stop()


def _stop_dispatcher(dispatcher: _Dispatcher) -> None:
    dispatcher.stop()


# ---------------------------------------------------------------------------
# Cluster registry
# ---------------------------------------------------------------------------


class _Cluster:
    __slots__ = ("canonical_id", "nodes", "order", "aliases", "offsets", "last_action_ts",
                 "last_level", "last_decision_id", "last_key")

    def __init__(self, canonical_id: int, nodes: frozenset, order: int):
        self.canonical_id = canonical_id
        self.nodes = nodes
        self.order = order
        self.aliases = [canonical_id]
        self.offsets = [0.0, 0.0, 0.0]
        self.last_action_ts = None
        self.last_level = None
        self.last_decision_id = None
        self.last_key = None

    def __getstate__(self):
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state):
        for k, v in state.items():
            setattr(self, k, v)


# ---------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------


def _check_unit(name: str, value, *, low_open: bool = False, allow_zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"Axon {name} must be a finite number, got {value!r}")
    if value < 0 or value > 1 or (value == 0 and (low_open or not allow_zero)):
        raise ValueError(f"Axon {name} must be in {'(0' if low_open else '[0'}, 1], got {value!r}")
    return float(value)


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Axon {name} must be an int >= 1, got {value!r}")
    return value


class Axon(Stage):
    """Adaptive response: convergence -> threat level -> tier -> handler actions.

    See the module documentation for the rules.

    Parameters
    ----------
    weights : tuple of 3 floats
        Weights of confidence, hot-node count and pattern evidence in the
        threat score; non-negative, summing to 1.
    node_saturation : float
        Weighted hot-node count at which the node term reaches 1.
    pattern_saturation : float
        Pattern-match count at which the pattern term reaches 1.
    thresholds : tuple of 3 floats
        Base scores for MEDIUM, HIGH and CRITICAL; increasing, in (0, 1].
    tier_map : tuple of 4 tiers
        Tier for LOW, MEDIUM, HIGH, CRITICAL (names or :class:`Tier`);
        non-decreasing.
    cooldown_ns : int
        Event-time cool-down per cluster after an actioned decision (ns).
    overlap : float
        Jaccard index in (0, 1] at which a new node set joins a known
        cluster; 1 means exact node sets only.
    raise_step, relax_step : float
        Threshold change per false / true alarm.
    max_raise, max_relax : float
        Bounds of the per-cluster, per-level threshold offset.
    handlers : sequence
        Handlers (objects with ``handle(decision)``) or plain callables.
    handler_timeout : float
        Seconds one handler call may take before it counts as timed out.
    queue_size : int
        Decisions waiting for their handlers; beyond that they are dropped.
    audit_size : int
        Audit records kept in memory.
    audit_path : str, optional
        JSONL file for the audit trail.
    max_clusters : int
        Clusters remembered for cool-down and feedback.

    Attributes
    ----------
    audit : AuditLog
    handler_stats : dict
        Handler name -> counts of ok, failed, timed_out, dropped, skipped.
    stats : dict
        Decisions, suppressed, per level, feedback counts.

    Examples
    --------
    >>> from ctas7.records import Convergence
    >>> from ctas7.stage import Frame
    >>> axon = Axon(weights=(1.0, 0.0, 0.0), cooldown_ns=5_000)
    >>> def conv(ts, confidence):
    ...     return Convergence(ts, ts // 1_000, (1, 2), (0, 0), (ts, ts), (9.0, 9.0), (1, 1), 2.0,
    ...                        confidence, 0, ts - 1_000, 8)
    >>> [(d.level.name, d.reason) for d in axon.process(Frame(convergences=[
    ...     conv(1_000, 0.6), conv(2_000, 0.6), conv(3_000, 0.9), conv(9_000, 0.6)])).responses]
    [('MEDIUM', 'new'), ('MEDIUM', 'cooldown'), ('CRITICAL', 'escalation'), ('MEDIUM', 'new')]
    """

    def __init__(
        self,
        weights=(0.6, 0.25, 0.15),
        node_saturation: float = 8.0,
        pattern_saturation: float = 4.0,
        thresholds=(0.55, 0.7, 0.85),
        tier_map=("MONITOR", "INVESTIGATE", "INTERDICT", "NEUTRALIZE"),
        cooldown_ns: int = 60_000_000_000,
        overlap: float = 0.5,
        raise_step: float = 0.05,
        relax_step: float = 0.02,
        max_raise: float = 0.3,
        max_relax: float = 0.1,
        handlers=(),
        handler_timeout: float = 1.0,
        queue_size: int = 1024,
        audit_size: int = 10_000,
        audit_path=None,
        max_clusters: int = 4096,
    ):
        self.weights = weights
        self.node_saturation = node_saturation
        self.pattern_saturation = pattern_saturation
        self.thresholds = thresholds
        self.tier_map = tier_map
        self.cooldown_ns = cooldown_ns
        self.overlap = overlap
        self.raise_step = raise_step
        self.relax_step = relax_step
        self.max_raise = max_raise
        self.max_relax = max_relax
        self.handlers = handlers
        self.handler_timeout = handler_timeout
        self.queue_size = queue_size
        self.audit_size = audit_size
        self.audit_path = audit_path
        self.max_clusters = max_clusters
        self._validate()
        self._routes = self._build_routes()
        self.audit = AuditLog(audit_size, audit_path)
        self.handler_stats = {name: dict.fromkeys(OUTCOMES, 0) for name, _, _ in self._routes}
        self.stats = {
            "decisions": 0,
            "suppressed": 0,
            **{lvl.name: 0 for lvl in ThreatLevel},
            "false_alarms": 0,
            "true_alarms": 0,
        }
        self._seq = 0
        self._clusters: OrderedDict = OrderedDict()
        self._alias: dict = {}
        self._by_node: dict = {}
        self._n_registered = 0
        self._dispatcher = None
        self._finalizer = None

    # -- configuration ------------------------------------------------------

    def _validate(self) -> None:
        w = tuple(self.weights)
        if len(w) != 3:
            raise ValueError(f"Axon weights must be 3 numbers (confidence, nodes, patterns), got {self.weights!r}")
        self._w = tuple(_check_unit(f"weights[{i}]", x) for i, x in enumerate(w))
        if abs(sum(self._w) - 1.0) > 1e-9:
            raise ValueError(f"Axon weights must sum to 1, got {self.weights!r} (sum {sum(self._w)})")
        for name in ("node_saturation", "pattern_saturation"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"Axon {name} must be a finite number > 0, got {v!r}")
        t = tuple(self.thresholds)
        if len(t) != 3:
            raise ValueError(f"Axon thresholds must be 3 numbers (MEDIUM, HIGH, CRITICAL), got {self.thresholds!r}")
        self._thr = tuple(_check_unit(f"thresholds[{i}]", x, low_open=True) for i, x in enumerate(t))
        if not self._thr[0] < self._thr[1] < self._thr[2]:
            raise ValueError(f"Axon thresholds must be strictly increasing, got {self.thresholds!r}")
        tm = tuple(self.tier_map)
        if len(tm) != 4:
            raise ValueError(f"Axon tier_map needs one tier per level (4), got {self.tier_map!r}")
        self._tiers = tuple(_as_tier(x, f"Axon tier_map[{i}]") for i, x in enumerate(tm))
        if any(a > b for a, b in zip(self._tiers, self._tiers[1:])):
            raise ValueError(f"Axon tier_map must be non-decreasing (a higher threat never gets a weaker tier), got {tm}")
        if isinstance(self.cooldown_ns, bool) or not isinstance(self.cooldown_ns, int) or self.cooldown_ns < 0:
            raise ValueError(f"Axon cooldown_ns must be an int >= 0 (ns of event time), got {self.cooldown_ns!r}")
        _check_unit("overlap", self.overlap, low_open=True)
        for name in ("raise_step", "relax_step", "max_raise", "max_relax"):
            _check_unit(name, getattr(self, name))
        v = self.handler_timeout
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"Axon handler_timeout must be a finite number of seconds > 0, got {v!r}")
        _check_positive_int("queue_size", self.queue_size)
        _check_positive_int("audit_size", self.audit_size)
        _check_positive_int("max_clusters", self.max_clusters)
        if isinstance(self.handlers, (str, bytes)) or not hasattr(self.handlers, "__iter__"):
            raise TypeError(f"Axon handlers must be a sequence of handlers, got {type(self.handlers).__name__}")

    def _build_routes(self) -> list:
        routes = []
        seen: dict = {}
        for i, h in enumerate(self.handlers):
            h = _as_handler(h, i)
            base = str(getattr(h, "name", None) or type(h).__name__.lower())
            k = seen.get(base, 0)
            seen[base] = k + 1
            name = base if k == 0 else f"{base}_{k}"
            min_tier = _as_tier(getattr(h, "min_tier", Tier.MONITOR), f"handlers[{i}].min_tier")
            routes.append((name, min_tier, h))
        return routes

    def clone(self) -> "Axon":
        params = copy.deepcopy({k: v for k, v in self.get_params().items() if k != "handlers"})
        handlers = [_clone_handler(h) for h in self.handlers]
        return type(self)(handlers=tuple(handlers) if isinstance(self.handlers, tuple) else handlers, **params)

    # -- pickling: threads and locks stay behind ----------------------------

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_dispatcher"] = None
        state["_finalizer"] = None
        with self.audit.lock:
            state["handler_stats"] = {k: dict(v) for k, v in self.handler_stats.items()}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    # -- decisions -----------------------------------------------------------

    def score(self, convergence) -> float:
        """Threat score in [0, 1] of a convergence (see the module docs)."""
        conf = float(convergence.confidence)
        wc = float(convergence.weighted_count)
        pm = convergence.pattern_matches
        if not (math.isfinite(conf) and math.isfinite(wc)):
            raise ValueError(f"axon: convergence at ts={convergence.ts} has non-finite confidence or weighted_count")
        if wc < 0 or pm < 0:
            raise ValueError(f"axon: convergence at ts={convergence.ts} has a negative count")
        w0, w1, w2 = self._w
        conf = 0.0 if conf < 0.0 else 1.0 if conf > 1.0 else conf
        return w0 * conf + w1 * min(wc / self.node_saturation, 1.0) + w2 * min(pm / self.pattern_saturation, 1.0)

    def _effective(self, offsets) -> tuple:
        out = []
        prev = 0.0
        for base, off in zip(self._thr, offsets):
            v = base + off
            v = prev if v < prev else 1.0 if v > 1.0 else v
            out.append(v)
            prev = v
        return tuple(out)

    def thresholds_for(self, nodes) -> tuple:
        """Effective (MEDIUM, HIGH, CRITICAL) thresholds of the cluster of ``nodes``.

        Base thresholds if no known cluster matches.
        """
        nodes = tuple(int(n) for n in nodes)
        cl = self._find(self._node_set_id(nodes), frozenset(nodes))
        return self._effective(cl.offsets if cl is not None else (0.0, 0.0, 0.0))

    @staticmethod
    def _node_set_id(nodes) -> int:
        return xxhash.xxh3_64_intdigest(np.asarray(sorted(nodes), dtype=np.uint32).tobytes())

    def _find(self, cid: int, nodes: frozenset):
        canon = self._alias.get(cid)
        if canon is not None:
            return self._clusters[canon]
        if self.overlap >= 1.0 or not nodes:
            return None
        candidates = set()
        for n in nodes:
            ids = self._by_node.get(n)
            if ids:
                candidates.update(ids)
        best = None
        best_key = None
        for canon in candidates:
            cl = self._clusters[canon]
            inter = len(nodes & cl.nodes)
            jac = inter / (len(nodes) + len(cl.nodes) - inter)
            if jac >= self.overlap:
                key = (-jac, cl.order)
                if best_key is None or key < best_key:
                    best, best_key = cl, key
        return best

    def _resolve(self, cid: int, nodes: frozenset) -> _Cluster:
        cl = self._find(cid, nodes)
        if cl is None:
            self._n_registered += 1
            cl = _Cluster(cid, nodes, self._n_registered)
            self._clusters[cid] = cl
            self._alias[cid] = cid
            for n in nodes:
                self._by_node.setdefault(n, set()).add(cid)
            while len(self._clusters) > self.max_clusters:
                _, old = self._clusters.popitem(last=False)
                for a in old.aliases:
                    self._alias.pop(a, None)
                for n in old.nodes:
                    ids = self._by_node.get(n)
                    if ids is not None:
                        ids.discard(old.canonical_id)
                        if not ids:
                            del self._by_node[n]
        else:
            if cid not in self._alias:
                self._alias[cid] = cl.canonical_id
                cl.aliases.append(cid)
            self._clusters.move_to_end(cl.canonical_id)
        return cl

    def _decide(self, c, score: float) -> tuple:
        cid = c.cluster_id
        ts = int(c.ts)
        key = (ts, int(c.tick), cid)
        cl = self._resolve(cid, frozenset(c.nodes))
        thr = self._effective(cl.offsets)
        level = 0
        for t in thr:
            if score >= t:
                level += 1
            else:
                break
        level = ThreatLevel(level)
        tier = self._tiers[level]

        related = None
        if cl.last_key == key:
            reason, related = "duplicate", cl.last_decision_id
        elif cl.last_action_ts is not None and ts - cl.last_action_ts < self.cooldown_ns:
            related = cl.last_decision_id
            reason = "escalation" if level > cl.last_level else "cooldown"
        else:
            reason = "new"
        suppressed = reason in ("duplicate", "cooldown")

        self._seq += 1
        decision_id = f"ax-{self._seq:08d}-{cid:016x}"
        actions = () if suppressed else tuple(name for name, min_tier, _ in self._routes if tier >= min_tier)
        d = Decision(
            decision_id=decision_id,
            seq=self._seq,
            ts=ts,
            convergence_tick=key[1],
            cluster_id=cid,
            canonical_id=cl.canonical_id,
            nodes=tuple(c.nodes),
            confidence=float(c.confidence),
            weighted_count=float(c.weighted_count),
            pattern_matches=int(c.pattern_matches),
            score=score,
            thresholds=thr,
            level=level,
            tier=tier,
            suppressed=suppressed,
            reason=reason,
            related_id=related,
            actions=actions,
        )
        cl.last_key = key
        if not suppressed:
            cl.last_action_ts = ts
            cl.last_level = level
            cl.last_decision_id = decision_id
        st = self.stats
        st["decisions"] += 1
        st[level.name] += 1
        if suppressed:
            st["suppressed"] += 1
        return d, AuditRecord(d, c, dict.fromkeys(actions, "pending"))

    def _ensure_dispatcher(self) -> _Dispatcher:
        if self._dispatcher is None:
            lanes = {name: _Lane(name, h) for name, _, h in self._routes}
            self._dispatcher = _Dispatcher(lanes, self.queue_size, self.handler_timeout, self.audit, self.handler_stats)
            self._finalizer = weakref.finalize(self, _stop_dispatcher, self._dispatcher)
        return self._dispatcher

    def process(self, frame: Frame) -> Frame:
        validate_batch(frame.events, name="axon: frame.events")
        convergences = frame.convergences
        if not convergences:
            return frame
        # Validate and score the whole frame first: a bad record leaves no
        # half-applied state behind.
        scores = []
        for c in convergences:
            if not isinstance(c, Convergence):
                raise TypeError(f"axon: frame.convergences must hold Convergence records, got {type(c).__name__}")
            scores.append(self.score(c))
        responses = frame.responses
        audit = self.audit
        for c, score in zip(convergences, scores):
            d, record = self._decide(c, score)
            responses.append(d)
            audit.append(record)
            if d.actions or audit.path is not None:
                if not self._ensure_dispatcher().submit(record):
                    with audit.lock:
                        for name in d.actions:
                            record.outcomes[name] = "dropped"
                            self.handler_stats[name]["dropped"] += 1
                    audit.write(record.to_dict())
        return frame

    # -- feedback --------------------------------------------------------------

    def feedback(self, decision_id: str, confirmed: bool) -> tuple:
        """Operator feedback on a decision; adapts its cluster's thresholds.

        Parameters
        ----------
        decision_id : str
            A decision still held in :attr:`audit`.
        confirmed : bool
            True: the alarm was real. False: it was a false alarm.

        Returns
        -------
        tuple of float
            The cluster's effective (MEDIUM, HIGH, CRITICAL) thresholds after
            the update.

        Raises
        ------
        KeyError
            Unknown decision id, or one evicted from the audit log.
        ValueError
            The decision already has feedback.
        TypeError
            ``confirmed`` is not a bool.
        """
        if not isinstance(confirmed, bool):
            raise TypeError(f"feedback confirmed must be a bool, got {type(confirmed).__name__}")
        record = self.audit.get(decision_id)
        if record is None:
            raise KeyError(
                f"no decision {decision_id!r} in the audit log (unknown, or older than the last {self.audit_size})"
            )
        if record.feedback is not None:
            raise ValueError(f"decision {decision_id!r} already has feedback ({record.feedback})")
        d = record.decision
        cl = self._clusters.get(d.canonical_id)
        if cl is None:  # forgotten since: re-register it so the lesson sticks
            cl = self._resolve(d.canonical_id, frozenset(d.nodes))
        if d.level > ThreatLevel.LOW:
            i = int(d.level) - 1
            if confirmed:
                cl.offsets[i] = max(cl.offsets[i] - self.relax_step, -self.max_relax)
            else:
                cl.offsets[i] = min(cl.offsets[i] + self.raise_step, self.max_raise)
        record.feedback = confirmed
        self.stats["true_alarms" if confirmed else "false_alarms"] += 1
        after = self._effective(cl.offsets)
        self.audit.write(
            {
                "type": "feedback",
                "decision_id": decision_id,
                "confirmed": confirmed,
                "canonical_id": cl.canonical_id,
                "level": d.level.name,
                "thresholds": list(after),
            }
        )
        return after

    # -- draining ----------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued decision has been through its handlers.

        A hung handler delays this by at most ``handler_timeout`` per call.
        Returns False if ``timeout`` seconds passed first.
        """
        return True if self._dispatcher is None else self._dispatcher.flush(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flush, stop the worker threads, close built-in handlers and the audit file.

        Returns the result of :meth:`flush`. The stage can still be used:
        a new worker starts on the next decision that needs one.
        """
        ok = self.flush(timeout)
        d = self._dispatcher
        if d is not None:
            self._finalizer.detach()
            d.stop()
            self._dispatcher = self._finalizer = None
            stuck = {name for name, lane in d.lanes.items() if lane.stuck}
        else:
            stuck = set()
        for name, _, h in self._routes:
            if name not in stuck and isinstance(h, _BuiltinHandler) and hasattr(h, "close"):
                h.close()
        self.audit.close()
        return ok

    def __enter__(self) -> "Axon":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
