"""ctas7: Cython-accelerated streaming framework for real-time convergence detection."""

from ctas7.events import EVENT_DTYPE

__version__ = "0.1.0"

__all__ = ["EVENT_DTYPE", "__version__"]
