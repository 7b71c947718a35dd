"""Built-in stages: TETH, the convergence meter, AXON, PRISM and SlotGraph.

Import them from their modules (``from ctas7.stages.meter import Meter``) or
from the top level (``ctas7.Meter``).
"""
