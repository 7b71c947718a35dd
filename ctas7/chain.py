"""The default intelligence chain: TETH | Meter | AXON | PRISM.

>>> from ctas7.chain import default_chain
>>> chain = default_chain()
>>> [s.name for s in chain.stages]
['teth', 'meter', 'axon', 'prism']
"""

from __future__ import annotations

from ctas7.stage import Pipeline

__all__ = ["default_chain", "load_params"]


def load_params(params):
    """Meter parameters from ``None`` (defaults), a dict, a JSON file path or a MeterParams.

    Parameter files are parsed strictly: unknown keys, wrong types and values
    out of range raise ``ValueError`` naming the key.
    """
    from ctas7.stages.meter import MeterParams

    if params is None:
        return MeterParams()
    if isinstance(params, MeterParams):
        return params
    if isinstance(params, dict):
        return MeterParams.from_dict(params)
    return MeterParams.from_file(params)


def default_chain(params=None, *, groups=None, patterns=None, handlers=(), audit_path=None) -> Pipeline:
    """Build the default chain.

    Parameters
    ----------
    params : MeterParams, dict, path or None
        Meter parameters (see :func:`load_params`).
    groups : array_like of int, optional
        Group of each node.
    patterns : sequence, optional
        TETH patterns; defaults to ``ctas7.stages.teth.DEFAULT_PATTERNS``.
    handlers : sequence
        AXON handlers.
    audit_path : path, optional
        JSONL file for AXON's audit record.
    """
    from ctas7.stages.axon import Axon
    from ctas7.stages.meter import Meter
    from ctas7.stages.prism import Prism
    from ctas7.stages.teth import DEFAULT_PATTERNS, Teth

    teth = Teth(patterns=DEFAULT_PATTERNS if patterns is None else tuple(patterns))
    meter = Meter(params=load_params(params), groups=groups)
    axon = Axon(handlers=tuple(handlers), audit_path=audit_path)
    return Pipeline([teth, meter, axon, Prism()])
