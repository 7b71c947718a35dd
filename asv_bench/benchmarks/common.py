"""Shared helpers for the asv suite: seeded generators and sizes."""

import numpy as np

SEED = 20261124


def rng(offset: int = 0) -> np.random.Generator:
    """A generator seeded per benchmark so every run sees the same data."""
    return np.random.default_rng(SEED + offset)
