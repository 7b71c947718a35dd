"""SlotGraph: gateways -> stations -> tasks, placed by score and rebalanced on
heartbeat timeouts (DESIGN section 5).

Model
-----
A *gateway* groups stations. A *station* (id ``0..65535``, the ``station``
field of events) has a set of capabilities (strings, stored as a 64-bit mask:
at most 64 distinct capability names per graph), a number of *slots*, a
latency in ms, an online flag and the event time of its last heartbeat. A
*task* (:class:`Task`) needs a set of capabilities and a number of slots, and
has an optional priority.

Placement
---------
The candidates for a task are the stations that are **online**, have at
least the task's slots **free**, and have **all** of its capabilities. Each
candidate gets::

    score = 0.4 * latency + 0.3 * capacity + 0.3 * capability

with every term in [0, 1]:

* ``latency = 1 - latency_ms / max latency_ms among the candidates``
  (1 for every candidate when that maximum is 0): the fastest candidate
  scores highest, the slowest 0;
* ``capacity = (free - task slots) / slots``: the share of the station left
  free after the placement (spreads load);
* ``capability = (1 + |task caps|) / (1 + |station caps|)``: 1 for an exact
  fit, lower the more unneeded capabilities the station has, so specialised
  stations stay free for the tasks that need them. (The ``1 +`` keeps a task
  that needs nothing well defined.)

The highest score wins; equal scores go to the lowest station id. Scores are
IEEE doubles computed in that fixed order, so the compiled kernel and
:func:`reference_best` agree bit for bit.

Pending tasks
-------------
A task with no candidate is queued as *pending*. Whenever capacity appears
(a release, a station added, a station coming back) the pending tasks are
retried in order of priority (higher first) and then submission order, each
by the same rule; a task that still fits nowhere is skipped, so a large
pending task never blocks smaller ones behind it.

Heartbeats and rebalancing
--------------------------
:class:`SlotGraph` is a :class:`~ctas7.stage.Stage`. ``process(frame)`` scans
the batch (compiled, without the GIL) for ``KIND_HEARTBEAT`` events, whose
``station`` field names the station and whose ``value`` is kept as the
station's reported load. Time is **event time**: the watermark is the largest
``ts`` seen so far, and a station whose last heartbeat is more than
``heartbeat_timeout_ns`` behind the watermark times out. Timeouts are found
at the event that moves the watermark past the deadline, not only at the end
of a batch, so the result does not depend on how the stream is cut into
batches (a station silent for too long inside one batch still goes offline).
A station registered before the first event gets its grace period from the
first event time.

A station that times out goes offline and loses its tasks: they are
re-placed by the same rule, in priority then submission order, and those
that fit nowhere become pending. A heartbeat from an offline station brings
it back online (unless it is itself already stale); its old tasks are *not*
moved back, since moving them again would cost a second disruption for no
gain in the placement rule, but pending tasks may now be placed on it. Every
move made while processing a frame is reported in
``frame.extras["slotgraph"]`` (:data:`MOVE_DTYPE`) and every station
transition in ``frame.extras["slotgraph_stations"]``
(:data:`TRANSITION_DTYPE`). Heartbeats from unregistered station ids are
counted (:attr:`SlotGraph.unknown_heartbeats`) and otherwise ignored.

Examples
--------
>>> from ctas7.stages.slotgraph import SlotGraph, Task
>>> g = SlotGraph(heartbeat_timeout_ns=1_000)
>>> g.add_gateway("north")
>>> g.add_station(0, "north", {"radar"}, slots=4, latency_ms=10.0)
[]
>>> g.add_station(1, "north", {"radar", "sigint"}, slots=4, latency_ms=5.0)
[]
>>> g.submit(Task(1, {"radar"}, slots=2)).station
1
>>> g.submit(Task(2, {"sigint"}, slots=4)) is None   # station 1 has 2 free
True
>>> g.pending()
[2]
>>> [a.station for a in g.release(1)]               # capacity appears
[1]
>>> g.assignments()
{2: 1}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, NamedTuple

import numpy as np

from ctas7._core import _slotgraph
from ctas7.events import KIND_CONTROL_BASE, KIND_HEARTBEAT, validate_batch
from ctas7.stage import Frame, Stage

__all__ = [
    "Task",
    "StationSpec",
    "Assignment",
    "SlotGraph",
    "MOVE_DTYPE",
    "TRANSITION_DTYPE",
    "STATION_LOAD_DTYPE",
    "MOVE_REPLACED",
    "MOVE_FROM_PENDING",
    "TIMEOUT",
    "COMEBACK",
    "MAX_CAPABILITIES",
    "reference_score",
    "reference_best",
    "reference_scan",
]

#: One row per task moved while processing a frame. ``dst == -1``: pending.
MOVE_DTYPE = np.dtype([("ts", "<i8"), ("task", "<i8"), ("src", "<i4"), ("dst", "<i4"), ("reason", "u1")])
#: One row per station that timed out or came back.
TRANSITION_DTYPE = np.dtype([("ts", "<i8"), ("station", "<i4"), ("kind", "u1")])
#: :meth:`SlotGraph.station_load` rows.
STATION_LOAD_DTYPE = np.dtype(
    [
        ("station", "<i4"),
        ("online", "?"),
        ("used", "<i4"),
        ("slots", "<i4"),
        ("latency_ms", "<f8"),
        ("reported_load", "<f4"),
        ("last_seen", "<i8"),
    ]
)
#: Move reasons: the task's station timed out / a pending task was placed.
MOVE_REPLACED = 0
MOVE_FROM_PENDING = 1
#: Transition kinds.
TIMEOUT = _slotgraph.TIMEOUT
COMEBACK = _slotgraph.COMEBACK
MAX_CAPABILITIES = 64

_NEVER = _slotgraph.NEVER


def _check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if value < lo or (hi is not None and value > hi):
        bound = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def _check_caps(name: str, caps) -> frozenset:
    if isinstance(caps, (str, bytes)):
        raise TypeError(f"{name} must be a collection of strings, not a single {type(caps).__name__}")
    try:
        caps = frozenset(caps)
    except TypeError:
        raise TypeError(f"{name} must be an iterable of strings, got {type(caps).__name__}") from None
    for c in caps:
        if not isinstance(c, str) or not c:
            raise TypeError(f"{name}: every capability must be a non-empty string, got {c!r}")
    return caps


@dataclass(frozen=True)
class Task:
    """A unit of work to place.

    Parameters
    ----------
    id : int
        Unique, non-negative task id.
    capabilities : iterable of str
        Capabilities the station must all have.
    slots : int
        Slots the task occupies (>= 1).
    priority : int
        Higher priorities are placed first when tasks are re-placed or
        retried from the pending queue.

    Examples
    --------
    >>> Task(7, ["radar"], slots=2).capabilities
    frozenset({'radar'})
    """

    id: int
    capabilities: frozenset = frozenset()
    slots: int = 1
    priority: int = 0

    def __post_init__(self):
        object.__setattr__(self, "id", _check_int("task id", self.id, 0, 2**63 - 1))
        object.__setattr__(self, "capabilities", _check_caps("task capabilities", self.capabilities))
        object.__setattr__(self, "slots", _check_int("task slots", self.slots, 1, 2**31 - 1))
        object.__setattr__(self, "priority", _check_int("task priority", self.priority, -(2**62), 2**62))


@dataclass(frozen=True)
class StationSpec:
    """A station as given to :class:`SlotGraph` (see :meth:`SlotGraph.add_station`).

    Examples
    --------
    >>> StationSpec(3, "south", {"sigint"}, slots=8, latency_ms=12.5).slots
    8
    """

    id: int
    gateway: str
    capabilities: frozenset = frozenset()
    slots: int = 1
    latency_ms: float = 0.0


class Assignment(NamedTuple):
    """Where a task runs."""

    task: int
    station: int
    gateway: str


# ---------------------------------------------------------------------------
# Pure-Python references (tests compare the kernels with these)
# ---------------------------------------------------------------------------


def reference_score(latency_ms, max_latency_ms, free, need_slots, slots, need_caps, have_caps) -> float:
    """The placement score of one candidate (see the module docstring).

    Examples
    --------
    >>> round(reference_score(5.0, 10.0, free=4, need_slots=2, slots=4, need_caps=1, have_caps=1), 12)
    0.65
    """
    lat = 1.0 - latency_ms / max_latency_ms if max_latency_ms > 0.0 else 1.0
    cap = (free - need_slots) / slots
    fit = (1 + need_caps) / (1 + have_caps)
    return (0.4 * lat + 0.3 * cap) + 0.3 * fit


def reference_best(stations, need_mask: int, need_slots: int) -> int:
    """Best station for a task, or -1; ``stations`` is a sequence of
    ``(id, online, free, slots, latency_ms, mask)`` tuples.

    Examples
    --------
    >>> reference_best([(0, True, 4, 4, 10.0, 0b1), (1, True, 4, 4, 5.0, 0b1)], 0b1, 1)
    1
    """
    cands = [s for s in stations if s[1] and s[2] >= need_slots and (s[5] & need_mask) == need_mask]
    if not cands:
        return -1
    lmax = max(s[4] for s in cands)
    nneed = bin(need_mask).count("1")
    scored = [
        (reference_score(s[4], lmax, s[2], need_slots, s[3], nneed, bin(s[5]).count("1")), -s[0])
        for s in cands
    ]
    return -max(scored)[1]


def reference_scan(events, last_seen: dict, alive: dict, watermark, timeout_ns: int, data_is_liveness=False):
    """Event-by-event heartbeat tracker; mirrors ``StationTable.scan``.

    ``last_seen`` and ``alive`` map every registered station id to its last
    heartbeat time (``None`` if it has none yet) and liveness; both are
    updated in place. ``watermark`` is ``None`` before the first event.
    Returns ``(transitions, watermark)`` with transitions as
    ``(kind, station, ts)`` tuples.

    Examples
    --------
    >>> from ctas7.events import make_events, KIND_HEARTBEAT
    >>> ls, al = {0: None, 1: None}, {0: True, 1: True}
    >>> ev = make_events(ts=[0, 50, 120], kind=KIND_HEARTBEAT, station=0)
    >>> reference_scan(ev, ls, al, None, 100)[0]      # station 1 never beat
    [(0, 1, 120)]
    """
    out = []
    for e in events:
        ts, kind, s = int(e["ts"]), int(e["kind"]), int(e["station"])
        if watermark is None:
            watermark = ts
            for k in last_seen:
                if alive[k] and last_seen[k] is None:
                    last_seen[k] = ts
        if ts > watermark:
            watermark = ts
            expired = sorted((last_seen[k], k) for k in last_seen if alive[k] and watermark - last_seen[k] > timeout_ns)
            for _, k in expired:
                alive[k] = False
                out.append((TIMEOUT, k, watermark))
        beat = kind == KIND_HEARTBEAT
        if not beat and not (data_is_liveness and kind < KIND_CONTROL_BASE):
            continue
        if s not in last_seen:
            continue
        if last_seen[s] is None or ts > last_seen[s]:
            last_seen[s] = ts
        if not alive[s] and watermark - last_seen[s] <= timeout_ns:
            alive[s] = True
            out.append((COMEBACK, s, watermark))
    return out, watermark


# ---------------------------------------------------------------------------
# The graph
# ---------------------------------------------------------------------------


class SlotGraph(Stage):
    """Task placement over gateways and stations, kept live by heartbeats.

    Parameters
    ----------
    stations : iterable of StationSpec or tuple
        Initial stations, each ``StationSpec`` or a tuple
        ``(id, gateway, capabilities, slots, latency_ms)``; gateways they
        name are created.
    heartbeat_timeout_ns : int
        Event time a station may go without a heartbeat before it times out.
    tasks : iterable of Task
        Tasks submitted, in order, after the stations are added.
    gateways : iterable of str
        Extra gateways to create (they may have no stations yet).
    data_is_liveness : bool
        Count observation events of a station as signs of life too (the
        heartbeat's ``value`` is still the only load report).

    Examples
    --------
    >>> from ctas7.events import make_events, KIND_HEARTBEAT
    >>> from ctas7.stage import Frame
    >>> g = SlotGraph(stations=[(0, "gw", {"a"}, 2, 1.0), (1, "gw", {"a"}, 2, 2.0)],
    ...               heartbeat_timeout_ns=100, tasks=[Task(9, {"a"})])
    >>> g.assignment(9).station
    0
    >>> beats = make_events(ts=[0, 80, 160], kind=KIND_HEARTBEAT, station=1)
    >>> moves = g.process(Frame(beats)).extras["slotgraph"]
    >>> moves[["task", "src", "dst"]].tolist()      # station 0 fell silent
    [(9, 0, 1)]
    """

    def __init__(
        self,
        stations: Iterable = (),
        heartbeat_timeout_ns: int = 5_000_000_000,
        tasks: Iterable = (),
        gateways: Iterable = (),
        data_is_liveness: bool = False,
    ):
        self.stations = stations
        self.heartbeat_timeout_ns = heartbeat_timeout_ns
        self.tasks = tasks
        self.gateways = gateways
        self.data_is_liveness = data_is_liveness
        timeout = _check_int("heartbeat_timeout_ns", heartbeat_timeout_ns, 0, 2**62)
        if not isinstance(data_is_liveness, (bool, np.bool_)):
            raise TypeError(f"data_is_liveness must be a bool, got {type(data_is_liveness).__name__}")
        self._table = _slotgraph.StationTable(timeout, bool(data_is_liveness))
        self._caps: dict[str, int] = {}
        self._gateways: dict[str, list[int]] = {}
        self._station_gw: dict[int, str] = {}
        self._station_caps: dict[int, frozenset] = {}
        self._tasks: dict[int, list] = {}  # id -> [seq, mask, slots, priority, station, Task]
        self._on_station: dict[int, dict[int, None]] = {}
        self._pending: dict[int, None] = {}
        self._seq = 0
        for g in gateways:
            self.add_gateway(g)
        for spec in stations:
            if not isinstance(spec, StationSpec):
                if not isinstance(spec, (tuple, list)):
                    raise TypeError(f"a station must be a StationSpec or a tuple, got {type(spec).__name__}")
                spec = StationSpec(*spec)
            if spec.gateway not in self._gateways:
                self.add_gateway(spec.gateway)
            self.add_station(spec.id, spec.gateway, spec.capabilities, spec.slots, spec.latency_ms)
        for t in tasks:
            self.submit(t)

    # -- topology ---------------------------------------------------------

    def add_gateway(self, name: str) -> None:
        """Create an (empty) gateway."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"gateway name must be a non-empty string, got {name!r}")
        if name in self._gateways:
            raise ValueError(f"gateway {name!r} already exists")
        self._gateways[name] = []

    def add_station(self, id: int, gateway: str, capabilities=(), slots: int = 1, latency_ms: float = 0.0) -> list:
        """Register a station under ``gateway``; it starts online and empty.

        Pending tasks that fit it are placed at once; they are returned as a
        list of :class:`Assignment`.
        """
        sid = _check_int("station id", id, 0, _slotgraph.MAX_STATIONS - 1)
        if gateway not in self._gateways:
            raise KeyError(f"unknown gateway {gateway!r}; call add_gateway first")
        caps = _check_caps("station capabilities", capabilities)
        slots = _check_int("station slots", slots, 1, 2**31 - 1)
        if isinstance(latency_ms, bool) or not isinstance(latency_ms, (int, float, np.integer, np.floating)):
            raise TypeError(f"latency_ms must be a number, got {type(latency_ms).__name__}")
        if sid in self._station_gw:
            raise ValueError(f"station {sid} is already registered")
        mask = self._mask(caps)
        self._table.set_station(sid, mask, slots, float(latency_ms))
        self._gateways[gateway].append(sid)
        self._station_gw[sid] = gateway
        self._station_caps[sid] = caps
        self._on_station[sid] = {}
        return [Assignment(t, s, self._station_gw[s]) for _, t, _, s, _ in self._sweep((sid,), 0)]

    def _mask(self, caps) -> int:
        m = 0
        for c in sorted(caps):
            bit = self._caps.get(c)
            if bit is None:
                if len(self._caps) >= MAX_CAPABILITIES:
                    raise ValueError(f"a SlotGraph holds at most {MAX_CAPABILITIES} distinct capabilities")
                bit = self._caps[c] = len(self._caps)
            m |= 1 << bit
        return m

    # -- tasks ------------------------------------------------------------

    def submit(self, task: Task) -> Assignment | None:
        """Place ``task`` now, or queue it as pending (returns ``None``)."""
        if not isinstance(task, Task):
            raise TypeError(f"submit needs a Task, got {type(task).__name__}")
        if task.id in self._tasks:
            raise ValueError(f"task {task.id} was already submitted")
        rec = [self._seq, self._mask(task.capabilities), task.slots, task.priority, -1, task]
        self._seq += 1
        self._tasks[task.id] = rec
        s = self._table.best(rec[1], rec[2])
        if s < 0:
            self._pending[task.id] = None
            return None
        self._assign(task.id, rec, s)
        return Assignment(task.id, s, self._station_gw[s])

    def submit_many(self, tasks: Iterable[Task]) -> np.ndarray:
        """Submit tasks in order in one compiled pass; same result as calling
        :meth:`submit` on each. Returns the station per task (-1: pending)."""
        tasks = list(tasks)
        ids = set()
        for t in tasks:
            if not isinstance(t, Task):
                raise TypeError(f"submit_many needs Tasks, got {type(t).__name__}")
            if t.id in self._tasks or t.id in ids:
                raise ValueError(f"task {t.id} was already submitted")
            ids.add(t.id)
        masks = np.fromiter((self._mask(t.capabilities) for t in tasks), dtype=np.uint64, count=len(tasks))
        need = np.fromiter((t.slots for t in tasks), dtype=np.int32, count=len(tasks))
        out = np.empty(len(tasks), dtype=np.int64)
        self._table.place_many(masks, need, out)
        for t, m, s in zip(tasks, masks.tolist(), out.tolist()):
            rec = [self._seq, m, t.slots, t.priority, s, t]
            self._seq += 1
            self._tasks[t.id] = rec
            if s < 0:
                self._pending[t.id] = None
            else:
                self._on_station[s][t.id] = None
        return out

    def _assign(self, tid: int, rec: list, s: int) -> None:
        self._table.take(s, rec[2])
        rec[4] = s
        self._on_station[s][tid] = None

    def release(self, task_id: int) -> list:
        """Remove a task (placed or pending). Pending tasks placed on the
        capacity it frees are returned as a list of :class:`Assignment`."""
        rec = self._tasks.pop(task_id, None)
        if rec is None:
            raise KeyError(f"unknown task {task_id!r}")
        s = rec[4]
        if s < 0:
            del self._pending[task_id]
            return []
        del self._on_station[s][task_id]
        self._table.take(s, -rec[2])
        return [Assignment(t, d, self._station_gw[d]) for _, t, _, d, _ in self._sweep((s,), 0)]

    def _order(self, ids) -> list:
        return sorted(ids, key=lambda t: (-self._tasks[t][3], self._tasks[t][0]))

    def _sweep(self, changed, ts: int) -> list:
        """Retry pending tasks after capacity appeared on ``changed``."""
        if not self._pending:
            return []
        online = self._table.array("online")
        free = self._table.array("free")
        mask = self._table.array("mask")
        ch = [(s, int(mask[s])) for s in changed if online[s]]
        moves = []
        for tid in self._order(self._pending):
            rec = self._tasks[tid]
            m, k = rec[1], rec[2]
            if not any(free[s] >= k and (sm & m) == m for s, sm in ch):
                continue
            s = self._table.best(m, k)
            if s < 0:  # pragma: no cover - the quick check above implies a candidate
                continue
            del self._pending[tid]
            self._assign(tid, rec, s)
            moves.append((ts, tid, -1, s, MOVE_FROM_PENDING))
        return moves

    # -- heartbeats ---------------------------------------------------------

    def _timeout(self, s: int, ts: int) -> list:
        self._table.set_online(s, False)
        moved = self._order(self._on_station[s])
        self._on_station[s] = {}
        moves = []
        for tid in moved:
            rec = self._tasks[tid]
            self._table.take(s, -rec[2])
            d = self._table.best(rec[1], rec[2])
            if d < 0:
                rec[4] = -1
                self._pending[tid] = None
            else:
                self._assign(tid, rec, d)
            moves.append((ts, tid, s, d, MOVE_REPLACED))
        return moves

    def process(self, frame: Frame) -> Frame:
        """Track heartbeats in ``frame.events`` and rebalance; see the module docstring."""
        events = validate_batch(frame.events, name="slotgraph: frame.events")
        kinds, stations, times = self._table.scan(events)
        moves: list = []
        for k, s, ts in zip(kinds.tolist(), stations.tolist(), times.tolist()):
            if k == TIMEOUT:
                moves.extend(self._timeout(s, ts))
            else:
                self._table.set_online(s, True)
                moves.extend(self._sweep((s,), ts))
        frame.extras["slotgraph"] = np.array(moves, dtype=MOVE_DTYPE)
        trans = np.empty(kinds.shape[0], dtype=TRANSITION_DTYPE)
        trans["ts"], trans["station"], trans["kind"] = times, stations, kinds
        frame.extras["slotgraph_stations"] = trans
        return frame

    # -- views --------------------------------------------------------------

    def assignment(self, task_id: int) -> Assignment | None:
        """Where ``task_id`` runs, or ``None`` while it is pending."""
        rec = self._tasks.get(task_id)
        if rec is None:
            raise KeyError(f"unknown task {task_id!r}")
        s = rec[4]
        return None if s < 0 else Assignment(task_id, s, self._station_gw[s])

    def assignments(self) -> dict[int, int]:
        """``task id -> station id`` for every placed task."""
        return {t: r[4] for t, r in self._tasks.items() if r[4] >= 0}

    def pending(self) -> list[int]:
        """Pending task ids, in the order they will be retried."""
        return self._order(self._pending)

    def station_load(self) -> np.ndarray:
        """One :data:`STATION_LOAD_DTYPE` row per station, by id."""
        ids = np.array(sorted(self._station_gw), dtype=np.int64)
        out = np.zeros(ids.shape[0], dtype=STATION_LOAD_DTYPE)
        if ids.size:
            t = self._table
            out["station"] = ids
            out["online"] = t.array("online")[ids].astype(bool)
            out["slots"] = t.array("slots")[ids]
            out["used"] = out["slots"] - t.array("free")[ids]
            out["latency_ms"] = t.array("latency")[ids]
            out["reported_load"] = t.array("load")[ids]
            out["last_seen"] = t.array("last_seen")[ids]
        return out

    def topology(self) -> dict[str, tuple[int, ...]]:
        """``gateway -> station ids`` in registration order."""
        return {g: tuple(s) for g, s in self._gateways.items()}

    def is_online(self, station: int) -> bool:
        """Whether ``station`` is online (takes tasks)."""
        if station not in self._station_gw:
            raise KeyError(f"unknown station {station!r}")
        return bool(self._table.array("online")[station])

    @property
    def watermark(self) -> int | None:
        """Largest event time seen, or ``None`` before the first event."""
        return self._table.watermark if self._table.started else None

    @property
    def heartbeats(self) -> int:
        """Heartbeats from registered stations seen so far."""
        return int(self._table.n_heartbeats)

    @property
    def unknown_heartbeats(self) -> int:
        """Heartbeats from unregistered station ids (ignored) seen so far."""
        return int(self._table.n_unknown)
