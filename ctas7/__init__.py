"""ctas7: Cython-accelerated streaming framework for real-time convergence detection.

The top level keeps to the core vocabulary; stages, sources, sinks and the
simulation tools live in their own modules (``ctas7.stages.meter``,
``ctas7.sim.montecarlo``, ...) and are imported on first use.
"""

from ctas7.events import EVENT_DTYPE
from ctas7.stage import Frame, Pipeline, Stage, stage

__version__ = "0.1.0"

__all__ = ["EVENT_DTYPE", "Frame", "Pipeline", "Stage", "stage", "simd_info", "default_chain", "__version__"]


def simd_info() -> dict:
    """Which SIMD kernel variants were built, which the CPU supports and which runs."""
    from ctas7.kernels import simd_info as _info

    return _info()


def default_chain(*args, **kwargs):
    """TETH | Meter | AXON | PRISM; see :func:`ctas7.chain.default_chain`."""
    from ctas7.chain import default_chain as _chain

    return _chain(*args, **kwargs)
