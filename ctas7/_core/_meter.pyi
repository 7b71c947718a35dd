from typing import Any

import numpy as np
import numpy.typing as npt

_Fired = tuple[
    int,
    float,
    float,
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.float32],
    npt.NDArray[np.int8],
]

class MeterConfig:
    def __init__(
        self,
        *,
        tick_ns: int,
        alpha: float,
        min_samples: int,
        outlier_sigma: float,
        var_floor: float,
        poisson_floor: float,
        score_threshold: float,
        persistence_m: int,
        persistence_n: int,
        min_state_ticks: int,
        min_hot_nodes: float,
        convergence_threshold: float,
        window_ticks: int,
        confidence_half_life: float,
        node_thresholds: tuple[tuple[int, float], ...] = ...,
        node_weights: tuple[tuple[int, float], ...] = ...,
        transform: int = ...,
        common_mode: int = ...,
        min_groups: int = ...,
        family_correction: float = ...,
        pattern_bonus: float = ...,
        smoothing: float = ...,
        detector: int = ...,
        cusum_k: float = ...,
        cusum_offset: float = ...,
        cusum_variance: int = ...,
        corroboration_bonus: float = ...,
        corroboration_weight: float = ...,
        refire_new_nodes: int = ...,
        corroboration_ticks: int = ...,
    ) -> None: ...
    @property
    def uses_matches(self) -> bool: ...
    @property
    def z_threshold(self) -> float: ...
    @property
    def tick_ns(self) -> int: ...
    @property
    def window_ticks(self) -> int: ...

class MeterCore:
    config: MeterConfig
    max_gap_ticks: int
    max_nodes: int
    def __init__(
        self,
        config: MeterConfig,
        groups: npt.ArrayLike | None = ...,
        n_nodes: int = ...,
        max_gap_ticks: int = ...,
        max_nodes: int = ...,
    ) -> None: ...
    def process(self, events: npt.NDArray[Any]) -> int: ...
    def step(self, row: npt.NDArray[np.float32]) -> bool: ...
    def add_matches(
        self,
        ticks: npt.NDArray[np.int64],
        nodes: npt.NDArray[np.int64],
        sources: npt.NDArray[np.uint8] | None = ...,
    ) -> None: ...
    def pending_matches(
        self,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], int, npt.NDArray[np.uint8]]: ...
    def take_fired(self) -> list[_Fired]: ...
    def take_fired_copy(self) -> list[_Fired]: ...
    def array(self, name: str) -> npt.NDArray[Any]: ...
    def scores(self) -> npt.NDArray[np.float32]: ...
    def window_nodes(self) -> npt.NDArray[np.int64]: ...
    @property
    def n_nodes(self) -> int: ...
    @property
    def open_tick(self) -> int | None: ...
    @property
    def ticks_closed(self) -> int: ...
    @property
    def late_events(self) -> int: ...
    @property
    def skipped_ticks(self) -> int: ...
    @property
    def window_count(self) -> float: ...
    @property
    def confidence(self) -> float: ...
    @property
    def converged(self) -> bool: ...
    def __getstate__(self) -> dict[str, Any]: ...
    def __setstate__(self, state: dict[str, Any]) -> None: ...

def _groups_array(groups: npt.ArrayLike | None) -> npt.NDArray[np.int32]: ...
def evaluate_activity(
    activity: npt.NDArray[np.float32],
    groups: npt.ArrayLike | None,
    config: MeterConfig,
    evidence: npt.NDArray[np.uint32] | None = ...,
    corroboration: npt.NDArray[np.uint32] | None = ...,
) -> npt.NDArray[np.int64]: ...
def score_series(values: npt.NDArray[np.float32], config: MeterConfig) -> npt.NDArray[np.float32]: ...
def cusum_threshold(bits: float, k: float) -> float: ...
def cusum_score(s: float, k: float) -> float: ...
def _wide_paths(row: bool | None = ..., series: bool | None = ..., row512: bool | None = ...) -> tuple[bool, bool]: ...
def _row_variant() -> str: ...
def _cusum_score_block(s: npt.ArrayLike, k: float) -> npt.NDArray[np.float64]: ...
def _cusum_scores(
    s: npt.NDArray[np.float32], k: float, h0: float, offset: float, out: npt.NDArray[np.float32], wide: bool
) -> None: ...
