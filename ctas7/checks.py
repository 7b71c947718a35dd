"""Conformance checks that every Stage must pass (in the spirit of river.checks).

>>> from ctas7.stage import stage
>>> from ctas7 import checks
>>> @stage
... def identity(frame):
...     return frame
>>> [name for name, _ in checks.yield_checks(identity)]
['check_clone', 'check_pickle_roundtrip', 'check_deterministic', 'check_empty_batch', 'check_malformed_batch']
"""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np

from ctas7.events import EVENT_DTYPE, empty
from ctas7.sim.synthetic import batches, synthetic_stream
from ctas7.stage import Frame

__all__ = [
    "check_stage",
    "yield_checks",
    "reference_frames",
    "outputs_equal",
    "check_clone",
    "check_pickle_roundtrip",
    "check_deterministic",
    "check_empty_batch",
    "check_malformed_batch",
]


def reference_frames(seed: int = 0, n_events: int = 16_384, batch_size: int = 1024):
    """A fixed stream with a multi-node burst, split into frames."""
    stream = synthetic_stream(
        n_events, n_stations=12, n_nodes=12, burst_nodes=(1, 4, 7, 9), burst_start=0.7, seed=seed
    )
    return [Frame(events=b, ingest_ns=0) for b in batches(stream, batch_size)]


def _fresh(frames):
    return [
        Frame(events=f.events.copy(), ingest_ns=f.ingest_ns, extras=dict(f.extras)) for f in frames
    ]


def outputs_equal(a, b) -> bool:
    """Deep equality over frames, arrays, dataclasses, mappings and sequences."""
    if isinstance(a, Frame) and isinstance(b, Frame):
        return all(outputs_equal(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(Frame))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        if a.dtype.names:
            return a.tobytes() == b.tobytes()
        return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b) and not isinstance(a, type):
        if type(a) is not type(b):
            return False
        return all(outputs_equal(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(outputs_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(outputs_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    return a == b


def _run(stage, frames):
    return [stage.process(f) for f in _fresh(frames)]


def check_clone(stage, frames):
    """``clone()`` gives an independent stage of the same type and parameters."""
    twin = stage.clone()
    assert type(twin) is type(stage), f"clone of {type(stage).__name__} is a {type(twin).__name__}"
    assert twin is not stage, "clone returned the same object"
    if hasattr(stage, "get_params"):
        assert outputs_equal(twin.get_params(), stage.get_params()) or repr(twin) == repr(stage), (
            "clone changed the parameters"
        )
    # A clone of a used stage starts fresh: it behaves like a clone of a new one.
    used = stage.clone()
    _run(used, frames[: len(frames) // 2])
    assert outputs_equal(_run(used.clone(), frames), _run(stage.clone(), frames)), (
        "clone() of a stage that has seen data does not start from a fresh state"
    )


def check_pickle_roundtrip(stage, frames):
    """A stage pickled mid-stream resumes exactly where it was."""
    a = stage.clone()
    half = len(frames) // 2
    _run(a, frames[:half])
    b = pickle.loads(pickle.dumps(a))
    assert outputs_equal(_run(a, frames[half:]), _run(b, frames[half:])), (
        "a pickled-and-restored stage does not continue like the original"
    )


def check_deterministic(stage, frames):
    """Two clones fed the same frames produce identical outputs."""
    assert outputs_equal(_run(stage.clone(), frames), _run(stage.clone(), frames)), (
        "two clones given the same input produced different output"
    )


def check_empty_batch(stage, frames):
    """An empty batch passes through without error and leaves no output."""
    s = stage.clone()
    out = s.process(Frame(events=empty(0)))
    assert isinstance(out, Frame), "process() must return a Frame"
    assert out.events.shape == (0,) and out.events.dtype == EVENT_DTYPE


def check_malformed_batch(stage, frames):
    """A batch of the wrong dtype or layout raises TypeError or ValueError."""
    s = stage.clone()
    bad = [
        np.zeros(8, dtype=np.float32),
        empty(8).reshape(2, 4),
        empty(16)[::2],
    ]
    for batch in bad:
        try:
            s.process(Frame(events=batch))
        except (TypeError, ValueError) as exc:
            assert str(exc), "the error must say what is wrong"
        else:
            raise AssertionError(f"{s.name} accepted a malformed batch {batch.dtype}, shape {batch.shape}")


_CHECKS = [check_clone, check_pickle_roundtrip, check_deterministic, check_empty_batch, check_malformed_batch]


def yield_checks(stage):
    """Yield ``(name, check)`` pairs, each ``check(stage, frames)``."""
    for check in _CHECKS:
        yield check.__name__, check


def check_stage(stage, frames=None, seed: int = 0) -> None:
    """Run every conformance check on ``stage``; raise AssertionError on the first failure."""
    frames = reference_frames(seed) if frames is None else frames
    for name, check in yield_checks(stage):
        try:
            check(stage, frames)
        except AssertionError as exc:
            raise AssertionError(f"{stage.name}: {name} failed: {exc}") from exc
