from typing import Literal, TypedDict

import numpy as np
import numpy.typing as npt

_Variant = Literal["scalar", "avx2", "avx512"]

VARIANTS: tuple[str, str, str]

class SimdInfo(TypedDict):
    built: list[str]
    supported: list[str]
    active: str
    forced: bool
    requested: str | None
    native_build: bool
    width: dict[str, int]

def simd_info() -> SimdInfo: ...
def _choose(
    requested: str | None, supported: list[str]
) -> tuple[str, bool, str | None]: ...
def surprisal(
    x: npt.NDArray[np.float32],
    mean: npt.NDArray[np.float32],
    var: npt.NDArray[np.float32],
    out: npt.NDArray[np.float32] | None = ...,
    variant: _Variant | None = ...,
) -> npt.NDArray[np.float32]: ...
def binary_entropy(
    x: npt.NDArray[np.float32],
    baseline: npt.NDArray[np.float32],
    out: npt.NDArray[np.float32] | None = ...,
    variant: _Variant | None = ...,
) -> npt.NDArray[np.float32]: ...
def relative_score(
    x: npt.NDArray[np.float32],
    baseline: npt.NDArray[np.float32],
    out: npt.NDArray[np.float32] | None = ...,
    variant: _Variant | None = ...,
) -> npt.NDArray[np.float32]: ...
def ewma_update(
    mean: npt.NDArray[np.float32],
    var: npt.NDArray[np.float32],
    count: npt.NDArray[np.uint32],
    x: npt.NDArray[np.float32],
    alpha: float,
    outlier_sigma: float,
    min_samples: int,
    variant: _Variant | None = ...,
) -> None: ...
