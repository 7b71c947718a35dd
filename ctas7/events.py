"""The event record and helpers for batches of events.

Every event in ctas7 is one fixed 32-byte record, :data:`EVENT_DTYPE`. Rings,
channels, files, stages and tests all move numpy arrays of this dtype; nothing
on a hot path builds one Python object per event.

Examples
--------
>>> import numpy as np
>>> from ctas7 import events
>>> batch = events.make_events(ts=np.arange(4) * 1_000, node=[0, 1, 2, 3])
>>> batch.dtype.itemsize
32
>>> events.validate_batch(batch) is batch
True
>>> events.as_batch(batch.tobytes())["node"].tolist()
[0, 1, 2, 3]
"""

from __future__ import annotations

import time

import numpy as np

__all__ = [
    "EVENT_DTYPE",
    "EVENT_SIZE",
    "KIND_CONTROL_BASE",
    "KIND_HEARTBEAT",
    "KIND_GAP",
    "empty",
    "make_events",
    "validate_batch",
    "as_batch",
    "is_control",
    "monotonic_ns",
]

EVENT_DTYPE = np.dtype(
    [
        ("ts", "<i8"),  # event time, ns
        ("sch", "<u8"),  # TETH content hash (xxHash3-64)
        ("seq", "<u4"),  # per-station sequence number
        ("node", "<u4"),  # meter node the event counts for
        ("station", "<u2"),  # source station id
        ("kind", "<u2"),  # pattern symbol; >= KIND_CONTROL_BASE is control
        ("value", "<f4"),  # activity contributed (1.0 = one occurrence)
    ],
    align=False,
)
EVENT_SIZE = EVENT_DTYPE.itemsize
assert EVENT_SIZE == 32, EVENT_SIZE

#: Kinds at or above this value are control events, not observations.
KIND_CONTROL_BASE = 0xFF00
#: A station's liveness beacon; carries no activity.
KIND_HEARTBEAT = 0xFFFF
#: Marks a recorded gap (lost or never-committed records) in a stream.
KIND_GAP = 0xFFFE


def monotonic_ns() -> int:
    """CLOCK_MONOTONIC in ns: comparable across processes on one machine."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def empty(n: int) -> np.ndarray:
    """A zeroed batch of ``n`` events."""
    if n < 0:
        raise ValueError(f"batch length must be >= 0, got {n}")
    return np.zeros(n, dtype=EVENT_DTYPE)


def make_events(
    ts,
    node=0,
    kind=0,
    value=1.0,
    station=0,
    seq=0,
    sch=0,
) -> np.ndarray:
    """Build a batch from field arrays or scalars, broadcast to one length.

    Parameters
    ----------
    ts : array_like of int
        Event times in ns; its length sets the batch length.
    node, kind, value, station, seq, sch : array_like or scalar
        The other fields, broadcast against ``ts``.

    Returns
    -------
    numpy.ndarray of EVENT_DTYPE
    """
    ts = np.asarray(ts, dtype=np.int64).reshape(-1)
    out = empty(ts.shape[0])
    out["ts"] = ts
    for name, val in (
        ("node", node),
        ("kind", kind),
        ("value", value),
        ("station", station),
        ("seq", seq),
        ("sch", sch),
    ):
        arr = np.asarray(val)
        if arr.ndim and arr.shape[0] != ts.shape[0]:
            raise ValueError(f"field {name!r} has length {arr.shape[0]}, expected {ts.shape[0]}")
        out[name] = arr
    return out


def validate_batch(batch, *, name: str = "batch") -> np.ndarray:
    """Check that ``batch`` is a 1-d, C-contiguous array of EVENT_DTYPE.

    Returns the batch unchanged so the call can be used inline.

    Raises
    ------
    TypeError
        If it is not a numpy array, or its dtype is not EVENT_DTYPE.
    ValueError
        If it is not 1-dimensional or not C-contiguous.
    """
    if not isinstance(batch, np.ndarray):
        raise TypeError(f"{name} must be a numpy array of EVENT_DTYPE, got {type(batch).__name__}")
    if batch.dtype != EVENT_DTYPE:
        raise TypeError(f"{name} has dtype {batch.dtype}, expected EVENT_DTYPE {EVENT_DTYPE}")
    if batch.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got shape {batch.shape}")
    if not batch.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (got strides {batch.strides}); use np.ascontiguousarray")
    return batch


def as_batch(buffer) -> np.ndarray:
    """A zero-copy view of a bytes-like object as a batch of events."""
    mv = memoryview(buffer)
    if mv.nbytes % EVENT_SIZE:
        raise ValueError(f"buffer of {mv.nbytes} bytes is not a whole number of {EVENT_SIZE}-byte events")
    return np.frombuffer(mv.cast("B"), dtype=EVENT_DTYPE)


def is_control(batch: np.ndarray) -> np.ndarray:
    """Boolean mask of control events (heartbeats, gaps)."""
    return validate_batch(batch)["kind"] >= KIND_CONTROL_BASE
