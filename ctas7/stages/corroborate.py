"""Corroboration: the same intel (one ``sch``) reported from several nodes.

TETH stamps every event with ``sch``, the hash of its canonical content, so
identical intel seen by different stations shares an ``sch``. One node
reporting an indicator is weak evidence (indicator kinds also turn up in the
background); ``min_nodes`` distinct nodes reporting the *same* indicator
within a short time is strong evidence, and it is exactly what a near miss
(one or two nodes) cannot produce.

:class:`Corroborate` watches events of the given indicator ``kinds``. Per
``sch`` it keeps the first sighting's time and the distinct nodes seen since;
sightings more than ``window_ns`` after the first start afresh. When the
``min_nodes``-th distinct node reports, it emits one match
(:data:`~ctas7.records.MATCH_DTYPE`, ``pattern = pattern_id``) for every node
seen so far, at that event's time; each further node in the window adds one
match of its own. The meter adds ``corroboration_bonus`` bits to a node's
score per match in its window, so corroborated nodes turn hot (see
:class:`~ctas7.stages.meter.MeterParams`).

Only indicator events are visited one by one, after a vectorised filter:
they are rare by construction, so the per-batch cost is one table lookup per
event. State is a plain dict, pruned of expired entries as it grows; it
pickles mid-stream and a batch split anywhere gives the same matches
(pruning drops only entries older than the window at the newest event seen,
so it changes nothing for time-ordered streams).

Examples
--------
>>> from ctas7.events import make_events
>>> from ctas7.stage import Frame
>>> c = Corroborate(kinds=[20], min_nodes=3, window_ns=100)
>>> ev = make_events(ts=[0, 10, 20, 30, 500], node=[1, 2, 2, 3, 4], kind=20, sch=7)
>>> c.process(Frame(ev)).matches.tolist()
[(30, 1, 4294967040), (30, 2, 4294967040), (30, 3, 4294967040)]
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ctas7.events import validate_batch
from ctas7.records import CORROBORATION_BASE, MATCH_DTYPE
from ctas7.stage import Frame, Stage

__all__ = ["Corroborate", "CORROBORATION_PATTERN"]

#: ``pattern`` value of corroboration matches (far above any TETH pattern index).
CORROBORATION_PATTERN = 0xFFFF_FF00


class Corroborate(Stage):
    """Flag nodes that report the same indicator (``sch``) as others.

    Parameters
    ----------
    kinds : iterable of int
        Indicator kind codes to watch (events of other kinds, and ``sch == 0``,
        are ignored).
    min_nodes : int
        Distinct nodes that must report one ``sch`` within ``window_ns``.
    window_ns : int
        Event-time span, from an ``sch``'s first sighting, in which further
        sightings count towards it.
    pattern_id : int
        ``pattern`` field of the emitted matches, at least
        :data:`~ctas7.records.CORROBORATION_BASE` (so the meter weighs them
        as corroboration); give several stages distinct ids.
    max_entries : int
        Live ``sch`` entries kept before expired ones are pruned (memory
        bound; see the module notes).

    Notes
    -----
    ``process`` appends this batch's matches to ``frame.matches`` (as TETH
    does), in event order.
    """

    def __init__(self, kinds: Iterable[int] = (), min_nodes: int = 3, window_ns: int = 60_000_000_000,
                 pattern_id: int = CORROBORATION_PATTERN, max_entries: int = 65_536):
        self.kinds = tuple(int(k) for k in kinds)
        self.min_nodes = min_nodes
        self.window_ns = window_ns
        self.pattern_id = pattern_id
        self.max_entries = max_entries
        if any(not 0 <= k < 1 << 16 for k in self.kinds):
            raise ValueError("kinds must be uint16 kind codes")
        if int(min_nodes) < 2:
            raise ValueError(f"min_nodes must be >= 2, got {min_nodes!r}")
        if int(window_ns) <= 0:
            raise ValueError(f"window_ns must be > 0, got {window_ns!r}")
        if not CORROBORATION_BASE <= int(pattern_id) < 1 << 32:
            raise ValueError(f"pattern_id must lie in [CORROBORATION_BASE={CORROBORATION_BASE:#x}, 2**32) so the "
                             f"meter weighs it as corroboration, got {pattern_id!r}")
        if int(max_entries) < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries!r}")
        self._watch = np.zeros(1 << 16, dtype=bool)
        self._watch[list(self.kinds)] = True
        self._entries: dict = {}  # sch -> [first_ts, [nodes in arrival order]]
        self._next_prune = int(max_entries)

    def reset(self) -> None:
        """Forget every sighting."""
        self._entries.clear()
        self._next_prune = int(self.max_entries)

    def process(self, frame: Frame) -> Frame:
        ev = validate_batch(frame.events, name="corroborate: frame.events")
        pick = self._watch[ev["kind"]] & (ev["sch"] != 0)
        found = self._scan(ev["ts"][pick].tolist(), ev["node"][pick].tolist(), ev["sch"][pick].tolist())
        prev = frame.matches
        if isinstance(prev, np.ndarray) and prev.dtype == MATCH_DTYPE and prev.shape[0]:
            found = np.concatenate([prev, found])
        frame.matches = found
        return frame

    def _scan(self, ts: list, node: list, sch: list) -> np.ndarray:
        entries, window, need = self._entries, int(self.window_ns), int(self.min_nodes)
        out_ts, out_node = [], []
        for t, n, s in zip(ts, node, sch):
            e = entries.get(s)
            if e is None or t - e[0] > window:
                entries[s] = [t, [n]]
                if len(entries) >= self._next_prune:
                    self._prune(t)
                continue
            nodes = e[1]
            if n in nodes:
                continue
            nodes.append(n)
            if len(nodes) == need:
                out_ts.extend([t] * need)
                out_node.extend(nodes)
            elif len(nodes) > need:
                out_ts.append(t)
                out_node.append(n)
        out = np.empty(len(out_ts), dtype=MATCH_DTYPE)
        out["ts"] = out_ts
        out["node"] = out_node
        out["pattern"] = self.pattern_id
        return out

    def _prune(self, now: int) -> None:
        window = int(self.window_ns)
        for s in [s for s, e in self._entries.items() if now - e[0] > window]:
            del self._entries[s]
        self._next_prune = max(int(self.max_entries), 2 * len(self._entries))
