"""Records that cross stage boundaries: pattern matches and convergence events.

TETH writes :data:`MATCH_DTYPE` arrays into ``Frame.matches``; the meter
reads them as pattern evidence and writes :class:`Convergence` records into
``Frame.convergences``; AXON and PRISM read those.

>>> c = Convergence(ts=5_000, tick=5, nodes=(3, 1), groups=(0, 1), first_hot_ts=(4_000, 5_000),
...                 scores=(12.5, 9.0), directions=(1, 1), weighted_count=2.0, confidence=0.9,
...                 pattern_matches=1, window_start_ts=1_000, event_count=42)
>>> c.cluster_id == Convergence(**{**c.to_dict(), "nodes": (1, 3)}).cluster_id
True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import xxhash

__all__ = ["MATCH_DTYPE", "CORROBORATION_BASE", "Convergence"]

MATCH_DTYPE = np.dtype(
    [
        ("ts", "<i8"),  # event time of the event that completed the match, ns
        ("node", "<u4"),  # node whose evidence the match raises
        ("pattern", "<u4"),  # index of the pattern in the TETH stage
    ]
)

#: ``pattern`` values at or above this mark corroboration matches
#: (:class:`~ctas7.stages.corroborate.Corroborate`): the meter weighs them
#: with ``corroboration_bonus`` instead of ``pattern_bonus``.
CORROBORATION_BASE = 0xFFFF_0000


@dataclass(frozen=True)
class Convergence:
    """One convergence: enough independent nodes hot together (a rising edge).

    Attributes
    ----------
    ts : int
        Event time (ns) at the end of the tick that fired.
    tick : int
        Index of that tick.
    nodes : tuple of int
        Hot nodes, in decreasing order of score.
    groups : tuple of int
        Group of each node.
    first_hot_ts : tuple of int
        When each node became hot (event time, ns).
    scores : tuple of float
        Each node's score in bits at firing.
    directions : tuple of int
        +1 for activity above baseline, -1 below, 0 hot on TETH evidence alone.
    weighted_count : float
        Weighted count of distinct hot nodes in the window.
    confidence : float
        Weighted agreement of the hot nodes, decayed with age, in [0, 1].
    pattern_matches : int
        TETH matches on these nodes inside the window.
    window_start_ts : int
        Start of the convergence window (event time, ns).
    event_count : int
        Events on these nodes inside the window.
    """

    ts: int
    tick: int
    nodes: tuple
    groups: tuple
    first_hot_ts: tuple
    scores: tuple
    directions: tuple
    weighted_count: float
    confidence: float
    pattern_matches: int
    window_start_ts: int
    event_count: int

    @property
    def cluster_id(self) -> int:
        """Stable id of the node set (order-free), for de-duplication."""
        return xxhash.xxh3_64_intdigest(np.asarray(sorted(self.nodes), dtype=np.uint32).tobytes())

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
