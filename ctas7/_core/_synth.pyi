"""Type stubs for ctas7._core._synth (seeded synthetic event generator)."""

import numpy as np

def splitmix64(state: np.ndarray, n: int) -> np.ndarray: ...
def fill(
    out: np.ndarray,
    state: np.ndarray,
    seqs: np.ndarray,
    n_stations: int,
    first_station: int,
    n_kinds: int,
    t_first: int,
    step_ns: float,
    burst_period_ns: int = 0,
    burst_len_ns: int = 0,
    burst_share: float = 0.0,
    n_burst: int = 0,
) -> int: ...
