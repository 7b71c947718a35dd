"""ctas7: Cython-accelerated streaming framework for real-time convergence detection.

The core vocabulary is importable from here; heavier parts (stages, rings,
channels) load on first use, so ``import ctas7`` stays cheap.

>>> import ctas7
>>> ctas7.EVENT_DTYPE.itemsize
32
>>> [s.name for s in ctas7.default_chain().stages]
['teth', 'meter', 'axon', 'prism']
"""

import importlib

from ctas7.events import EVENT_DTYPE
from ctas7.stage import Frame, Pipeline, Stage, stage

__version__ = "0.1.0"

_LAZY = {
    "SpscRing": "ctas7.rings",
    "MpmcRing": "ctas7.rings",
    "WaitStrategy": "ctas7.rings",
    "Channel": "ctas7.channel",
    "Teth": "ctas7.stages.teth",
    "Corroborate": "ctas7.stages.corroborate",
    "Meter": "ctas7.stages.meter",
    "MeterParams": "ctas7.stages.meter",
    "Axon": "ctas7.stages.axon",
    "Prism": "ctas7.stages.prism",
    "SlotGraph": "ctas7.stages.slotgraph",
    "Task": "ctas7.stages.slotgraph",
    "Convergence": "ctas7.records",
    "Cluster": "ctas7.cluster",
    "MetricsReader": "ctas7.metrics",
    "default_chain": "ctas7.chain",
    "simd_info": "ctas7.kernels",
}

__all__ = ["EVENT_DTYPE", "Frame", "Pipeline", "Stage", "stage", "__version__", *_LAZY]


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ctas7' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
