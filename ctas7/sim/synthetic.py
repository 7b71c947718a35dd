"""A seeded synthetic event stream: Poisson background plus optional bursts.

This is the small, dependency-free generator that tests, checks and examples
use. Scenario generators (``ctas7.sim.scenarios``) build richer streams.
"""

from __future__ import annotations

import numpy as np

from ctas7.events import EVENT_DTYPE

__all__ = ["synthetic_stream", "batches"]


def synthetic_stream(
    n_events: int = 65_536,
    *,
    n_stations: int = 247,
    n_nodes: int | None = None,
    n_kinds: int = 8,
    tick_ns: int = 1_000_000,
    rate_per_tick: float | None = None,
    burst_nodes=(),
    burst_start: float = 0.6,
    burst_factor: float = 8.0,
    seed: int = 0,
) -> np.ndarray:
    """Generate a time-ordered batch of ``n_events`` events.

    Parameters
    ----------
    n_events : int
        Number of events.
    n_stations : int
        Stations; each station is one meter node unless ``n_nodes`` is given.
    n_nodes : int, optional
        Number of meter nodes (defaults to ``n_stations``).
    n_kinds : int
        Observation kinds drawn uniformly (TETH symbols ``0..n_kinds-1``).
    tick_ns : int
        Meter tick length the rates refer to.
    rate_per_tick : float, optional
        Mean events per tick over all nodes; defaults to ``4 * n_nodes``.
    burst_nodes : sequence of int
        Nodes whose rate is multiplied by ``burst_factor`` from
        ``burst_start`` (a fraction of the stream) on.
    seed : int
        Seed for ``numpy.random.default_rng``.
    """
    rng = np.random.default_rng(seed)
    n_nodes = n_stations if n_nodes is None else n_nodes
    if rate_per_tick is None:
        rate_per_tick = 4.0 * n_nodes
    weights = np.ones(n_nodes)
    burst_nodes = np.asarray(list(burst_nodes), dtype=np.int64)

    out = np.zeros(n_events, dtype=EVENT_DTYPE)
    split = int(n_events * burst_start) if burst_nodes.size else n_events
    nodes = rng.choice(n_nodes, size=split, p=weights / weights.sum())
    if split < n_events:
        w2 = weights.copy()
        w2[burst_nodes] *= burst_factor
        nodes = np.concatenate([nodes, rng.choice(n_nodes, size=n_events - split, p=w2 / w2.sum())])
        # Keep the per-node background rate unchanged: the burst adds events,
        # so time advances more slowly per event after the split.
        rate2 = rate_per_tick * w2.sum() / weights.sum()
    else:
        rate2 = rate_per_tick
    gaps = np.empty(n_events)
    gaps[:split] = rng.exponential(tick_ns / rate_per_tick, size=split)
    gaps[split:] = rng.exponential(tick_ns / rate2, size=n_events - split)
    out["ts"] = np.cumsum(gaps).astype(np.int64)
    out["node"] = nodes
    out["station"] = nodes % n_stations
    out["kind"] = rng.integers(0, n_kinds, size=n_events)
    out["value"] = 1.0
    out["sch"] = rng.integers(0, 2**63, size=n_events, dtype=np.uint64)
    # Per-station sequence numbers, 0-based, in stream order.
    order = np.argsort(out["station"], kind="stable")
    st = out["station"][order]
    starts = np.r_[0, np.flatnonzero(np.diff(st)) + 1]
    run = np.arange(n_events) - np.repeat(starts, np.diff(np.r_[starts, n_events]))
    out["seq"][order] = run
    return out


def batches(stream: np.ndarray, batch_size: int = 1024):
    """Split a stream into consecutive contiguous batches."""
    for i in range(0, stream.shape[0], batch_size):
        yield np.ascontiguousarray(stream[i : i + batch_size])
