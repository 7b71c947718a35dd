import numpy as np
import numpy.typing as npt

TIMEOUT: int
COMEBACK: int
NEVER: int
MAX_STATIONS: int

class StationTable:
    n: int
    cap: int
    timeout_ns: int
    data_is_liveness: bool
    started: bool
    watermark: int
    n_alive: int
    n_heartbeats: int
    n_unknown: int
    n_open: int
    def __init__(self, timeout_ns: int, data_is_liveness: bool = ...) -> None: ...
    def array(self, name: str) -> npt.NDArray[np.generic]: ...
    def set_station(self, s: int, mask: int, slots: int, latency_ms: float) -> None: ...
    def best(self, need: int, need_slots: int) -> int: ...
    def place_many(
        self,
        need: npt.NDArray[np.uint64],
        need_slots: npt.NDArray[np.int32],
        out: npt.NDArray[np.int64],
    ) -> None: ...
    def take(self, s: int, k: int) -> int: ...
    def set_online(self, s: int, flag: bool) -> None: ...
    def scan(
        self, events: npt.NDArray[np.void]
    ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int32], npt.NDArray[np.int64]]: ...

def best_station(table: StationTable, need: int, need_slots: int) -> int: ...
