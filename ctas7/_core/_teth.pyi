"""Type stubs for ctas7._core._teth (TETH matching and beaconing kernels)."""

from typing import Sequence

import numpy as np

__all__ = ["PatternBank", "BeaconTable", "BEACON_DTYPE", "KEY_STATE_DTYPE", "SLOT_DTYPE", "DOOR_DTYPE", "KIND_CONTROL_BASE"]

BEACON_DTYPE: np.dtype
KEY_STATE_DTYPE: np.dtype
SLOT_DTYPE: np.dtype
DOOR_DTYPE: np.dtype
KIND_CONTROL_BASE: int

class PatternBank:
    n_patterns: int
    key_is_node: bool
    max_key: int
    capacity: int
    def __init__(
        self,
        specs: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, int, int]],
        key_is_node: bool = ...,
        max_key: int = ...,
        state: np.ndarray | None = ...,
    ) -> None: ...
    def run(self, events: np.ndarray, out: np.ndarray | None = ...) -> np.ndarray | int: ...
    def get_state(self) -> np.ndarray: ...
    def set_state(self, state: np.ndarray) -> None: ...
    def reset(self) -> None: ...

class BeaconTable:
    capacity: int
    min_count: int
    max_cv: float
    min_gap_ns: int
    probes: int
    def __init__(
        self,
        capacity: int = ...,
        min_count: int = ...,
        max_cv: float = ...,
        min_gap_ns: int = ...,
        probes: int = ...,
        slots: np.ndarray | None = ...,
        door: np.ndarray | None = ...,
    ) -> None: ...
    @property
    def slots(self) -> np.ndarray: ...
    @property
    def door(self) -> np.ndarray: ...
    def run(self, events: np.ndarray, out: np.ndarray | None = ...) -> np.ndarray | int: ...
    def reset(self) -> None: ...
