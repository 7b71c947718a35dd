"""The Stage protocol, the Frame that flows through a chain, and Pipeline.

A *stage* is any object with a ``name`` and a ``process(frame) -> frame``
method. Built-in stages subclass :class:`Stage`, which adds composition with
``|``, parameter introspection and ``clone()``; third-party objects that
merely have ``name`` and ``process`` are recognised by :class:`StageLike`
and compose just as well.

Examples
--------
>>> import numpy as np
>>> from ctas7.events import make_events
>>> from ctas7.stage import Frame, Stage, Pipeline
>>> class Doubler(Stage):
...     def __init__(self, factor=2.0):
...         self.factor = factor
...     def process(self, frame):
...         frame.events["value"] *= self.factor
...         return frame
>>> chain = Doubler() | Doubler(factor=3.0)
>>> isinstance(chain, Pipeline)
True
>>> out = chain.process(Frame(make_events(ts=[0, 1], value=1.0)))
>>> out.events["value"].tolist()
[6.0, 6.0]
>>> [name for name in chain.latency]
['doubler', 'doubler_1']
"""

from __future__ import annotations

import copy
import inspect
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol, runtime_checkable

import numpy as np

from ctas7.events import empty, validate_batch

__all__ = ["Frame", "Stage", "StageLike", "Pipeline", "FunctionStage", "stage"]


@dataclass
class Frame:
    """One batch of events plus everything the stages attach to it.

    Attributes
    ----------
    events : numpy.ndarray of EVENT_DTYPE
        The batch.
    ingest_ns : int
        CLOCK_MONOTONIC ns at which the batch was ingested (0 if unknown);
        ingest-to-decision latency is measured from it.
    matches : numpy.ndarray or None
        Pattern matches found by TETH (``ctas7.stages.teth.MATCH_DTYPE``).
    convergences : list
        Convergence events raised by the meter in this frame (rising edges).
    responses : list
        AXON decisions taken for those convergences.
    reports : list
        PRISM reports written for them.
    extras : dict
        Free space for custom stages.
    """

    events: np.ndarray = field(default_factory=lambda: empty(0))
    ingest_ns: int = 0
    matches: Any = None
    convergences: list = field(default_factory=list)
    responses: list = field(default_factory=list)
    reports: list = field(default_factory=list)
    extras: dict = field(default_factory=dict)


@runtime_checkable
class StageLike(Protocol):
    """Anything with a ``name`` and ``process(frame) -> frame`` is a stage."""

    name: str

    def process(self, frame: Frame) -> Frame: ...


class Stage:
    """Base class for stages.

    Subclasses store each ``__init__`` argument under the same attribute name;
    that makes :meth:`get_params` and :meth:`clone` work without extra code
    (the scikit-learn / River convention). Learned state lives in other
    attributes and is not copied by ``clone``.
    """

    @property
    def name(self) -> str:
        return type(self).__name__.lower()

    def process(self, frame: Frame) -> Frame:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement process(frame)")

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments this stage was built with."""
        return {name: getattr(self, name) for name in self._param_names()}

    def clone(self) -> "Stage":
        """A fresh, unfitted stage with the same parameters."""
        return type(self)(**copy.deepcopy(self.get_params()))

    def __or__(self, other) -> "Pipeline":
        return Pipeline([self, other])

    def __ror__(self, other) -> "Pipeline":
        return Pipeline([other, self])

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


class FunctionStage(Stage):
    """Wrap a plain function ``frame -> frame`` as a stage.

    The function must be importable at module level for pickling to work.
    """

    def __init__(self, func, name: str | None = None):
        self.func = func
        self._name = name
        if not callable(func):
            raise TypeError(f"FunctionStage needs a callable, got {type(func).__name__}")

    def get_params(self) -> dict[str, Any]:
        return {"func": self.func, "name": self._name}

    @property
    def name(self) -> str:
        return self._name or getattr(self.func, "__name__", "function")

    def __reduce__(self):
        # ``@stage`` rebinds the function's module-level name to the stage, so
        # pickle the function by reference and unwrap it again on load.
        ref = (self.func.__module__, self.func.__qualname__)
        return (_function_stage_from_ref, (ref, self._name))

    def process(self, frame: Frame) -> Frame:
        validate_batch(frame.events, name=f"{self.name}: frame.events")
        out = self.func(frame)
        if not isinstance(out, Frame):
            raise TypeError(f"stage {self.name!r} returned {type(out).__name__}, expected Frame")
        return out


def _function_stage_from_ref(ref, name):
    import importlib

    module, qualname = ref
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return FunctionStage(obj.func if isinstance(obj, FunctionStage) else obj, name=name)


def stage(func=None, *, name: str | None = None):
    """Decorator: turn ``def f(frame) -> frame`` into a :class:`FunctionStage`."""
    if func is None:
        return lambda f: FunctionStage(f, name=name)
    return FunctionStage(func, name=name)


def _new_histogram():
    from hdrh.histogram import HdrHistogram

    # 1 ns .. 60 s at 3 significant digits.
    return HdrHistogram(1, 60_000_000_000, 3)


class Pipeline(Stage):
    """Stages run in order; each is timed into an HdrHistogram (ns per batch).

    ``Pipeline`` is itself a stage, so pipelines nest and compose with ``|``.
    The batch is validated once on entry.
    """

    def __init__(self, stages: Iterable = ()):
        flat: list = []
        for s in stages:
            if isinstance(s, Pipeline):
                flat.extend(s.stages)
            elif isinstance(s, StageLike):
                flat.append(s)
            else:
                raise TypeError(
                    f"{type(s).__name__} is not a stage: it needs a 'name' and a 'process(frame)' method"
                )
        self.stages = flat
        self._names = self._unique_names(flat)
        self._hist = {n: _new_histogram() for n in self._names}

    @staticmethod
    def _unique_names(stages) -> list[str]:
        seen: dict[str, int] = {}
        names = []
        for s in stages:
            base = s.name
            k = seen.get(base, 0)
            names.append(base if k == 0 else f"{base}_{k}")
            seen[base] = k + 1
        return names

    @property
    def name(self) -> str:
        return "pipeline"

    @property
    def latency(self):
        """Per-stage HdrHistograms of ns per batch, keyed by unique stage name."""
        return dict(self._hist)

    def get_params(self):
        return {"stages": self.stages}

    def clone(self) -> "Pipeline":
        return Pipeline([s.clone() if hasattr(s, "clone") else copy.deepcopy(s) for s in self.stages])

    def __or__(self, other) -> "Pipeline":
        return Pipeline([*self.stages, other])

    def __getstate__(self):
        # HdrHistogram objects hold ctypes buffers; ship their encoded form.
        state = self.__dict__.copy()
        state["_hist"] = {k: h.encode() for k, h in self._hist.items()}
        return state

    def __setstate__(self, state):
        from hdrh.histogram import HdrHistogram

        state["_hist"] = {k: HdrHistogram.decode(v) for k, v in state["_hist"].items()}
        self.__dict__.update(state)

    def process(self, frame: Frame) -> Frame:
        validate_batch(frame.events, name="frame.events")
        clock = time.perf_counter_ns
        for s, n in zip(self.stages, self._names):
            t0 = clock()
            out = s.process(frame)
            self._hist[n].record_value(max(clock() - t0, 1))
            if not isinstance(out, Frame):
                raise TypeError(f"stage {n!r} returned {type(out).__name__}, expected Frame")
            frame = out
        return frame

    def __repr__(self) -> str:
        return " | ".join(repr(s) for s in self.stages) or "Pipeline([])"
