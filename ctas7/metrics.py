"""A shared-memory metrics segment: counters, latency histograms, recent history.

Like Aeron's counters file (read by AeronStat), a running cluster keeps its
live numbers in one named segment, ``/dev/shm/ctas7-metrics-<name>``
(owner-only, 0600), that any process of the same user can map and read
without disturbing the writer:

- global counters (events processed, chain batches, convergences, AXON
  actions, sink backlog, drops by reason, dead-lettered, restarts);
- per worker: pid, produced events, in-flight claim, dead-lettered,
  restarts, lost records and gaps of its channel, ring occupancy, heartbeat;
- per station: events produced;
- per stage: events, batches, busy time;
- HdrHistogram counts arrays (the layout of the ``hdrh`` package) for
  ingest-to-decision latency and each stage's time per batch;
- events per 100 ms over the last minutes (a ring), and the last
  convergence summaries (JSON, each slot guarded by a sequence word).

Every word has one writer (the cluster's pipeline loop, or one worker for
its own block), so writes are plain aligned 64-bit stores, no locks; a
reader may see one update half applied across two words, never a torn
word. Updates are made per batch, not per event.

Examples
--------
>>> import os
>>> from ctas7.metrics import Metrics, MetricsReader
>>> m = Metrics.create(f"doc-{os.getpid()}", n_workers=2, n_stations=4, stages=["teth", "meter"])
>>> m.add(m.PROCESSED, 1000)
>>> m.record_latency(0, 150_000, count=1000)
>>> m.push_throughput(1000)
>>> snap = MetricsReader.attach(m.name).snapshot()
>>> snap["counters"]["processed"], snap["latency"]["ingest_to_decision"]["count"]
(1000, 1000)
>>> m.close()
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from ctas7._core._metrics import record as _hdr_record
from ctas7.events import monotonic_ns
from ctas7.shm import create_segment, open_segment

__all__ = ["Metrics", "MetricsReader", "find_running", "sweep", "histogram_geometry", "summarize", "latency_summary",
           "compact_convergence", "METRICS_PREFIX"]

SHM_DIR = "/dev/shm"
METRICS_PREFIX = "ctas7-metrics-"
MAGIC = int.from_bytes(b"CTAS7MET", "little")
VERSION = 1

#: HdrHistogram range for every histogram: 1 ns .. 60 s at 3 significant digits.
HIST_LOWEST, HIST_HIGHEST, HIST_DIGITS = 1, 60_000_000_000, 3

# Header words (byte offsets).
_H_MAGIC, _H_VERSION, _H_SIZE, _H_UID, _H_CREATOR, _H_CREATOR_START = 0, 8, 16, 24, 32, 40
_H_CREATED, _H_WALL, _H_STATE, _H_NWORK, _H_NSTAT, _H_NSTAGE = 48, 56, 64, 72, 80, 88
_H_CLEN, _H_UNIT, _H_HALF, _H_NHIST, _H_TSLOTS, _H_TINT = 96, 104, 112, 120, 128, 136
_H_CSLOTS, _H_CBYTES, _H_OFF_W, _H_OFF_S, _H_OFF_G, _H_OFF_H = 144, 152, 160, 168, 176, 184
_H_OFF_T, _H_OFF_C, _H_UPDATED, _H_CONFIG_LEN = 192, 200, 208, 216
_COUNTERS = 512  # global counters, one word each
_NAMES, _NAME_BYTES, MAX_STAGES = 1024, 32, 16
_CONFIG, _CONFIG_BYTES = 2048, 2048
_HEADER_BYTES = 4096

COUNTER_NAMES = (
    "processed", "batches", "control_records", "stamps", "convergences", "axon_actions", "reports",
    "sink_submitted", "sink_written", "sink_spilled", "sink_in_flight", "dropped_crash", "lost_slots",
    "gaps", "dead_lettered", "restarts", "ring_occupancy", "chain_ns", "latency_events", "tput_next",
    "conv_next", "produced",
)
WORKER_FIELDS = (
    "pid", "state", "dead_lettered", "restarts", "lost_records", "gaps", "heartbeat_ns", "batches",
    "first_station", "n_stations", "ring_occupancy", "resume_offset", "resume_line", "dropped_crash",
    "lost_slots", "status",
)
_WORKER_WORDS = 16
STAGE_FIELDS = ("events", "batches", "time_ns", "max_ns")
#: Worker state word: produced events << 24 | events of the claim in flight.
PEND_BITS = 24
PEND_MASK = (1 << PEND_BITS) - 1
STATES = ("starting", "running", "stopping", "done")
WORKER_STATUS = ("starting", "running", "stopped", "dead")


def histogram_geometry():
    """(HdrHistogram, (unit_magnitude, sub_bucket_half_count_magnitude, counts_len)) of the shared layout."""
    from hdrh.histogram import HdrHistogram

    h = HdrHistogram(HIST_LOWEST, HIST_HIGHEST, HIST_DIGITS)
    return h, (h.unit_magnitude, h.sub_bucket_half_count_magnitude, h.counts_len)


def _path(name: str) -> str:
    if not isinstance(name, str) or not name or len(name) > 200 or not all(c.isalnum() or c in "._-" for c in name):
        raise ValueError(f"metrics name must be 1-200 letters, digits, '.', '_' or '-', got {name!r}")
    return os.path.join(SHM_DIR, METRICS_PREFIX + name)


def _start_time(pid: int) -> int:
    from ctas7.channel import _start_time as st

    return st(pid)


def _alive(pid: int, start: int) -> bool:
    from ctas7.channel import _pid_alive

    return _pid_alive(pid, start)


class _Layout:
    """Offsets computed from the header; shared by writer and reader."""

    def _layout_from(self, words) -> None:
        w = [int(x) for x in words[: _COUNTERS // 8]]
        self.n_workers = w[_H_NWORK // 8]
        self.n_stations = w[_H_NSTAT // 8]
        self.n_stages = w[_H_NSTAGE // 8]
        self.n_hist = w[_H_NHIST // 8]
        self.counts_len = w[_H_CLEN // 8]
        self.geometry = (w[_H_UNIT // 8], w[_H_HALF // 8], self.counts_len)
        self.tput_slots = w[_H_TSLOTS // 8]
        self.tput_interval_ns = w[_H_TINT // 8]
        self.conv_slots = w[_H_CSLOTS // 8]
        self.conv_bytes = w[_H_CBYTES // 8]
        self._off_w, self._off_s, self._off_g = w[_H_OFF_W // 8], w[_H_OFF_S // 8], w[_H_OFF_G // 8]
        self._off_h, self._off_t, self._off_c = w[_H_OFF_H // 8], w[_H_OFF_T // 8], w[_H_OFF_C // 8]
        self.stage_names = []
        for i in range(self.n_stages):
            raw = bytes(self._mm[_NAMES + i * _NAME_BYTES : _NAMES + (i + 1) * _NAME_BYTES])
            self.stage_names.append(raw.rstrip(b"\0").decode("utf-8", "replace"))
        self.hist_names = ["ingest_to_decision"] + [f"stage:{n}" for n in self.stage_names]

    def _u64(self, off: int, n: int) -> np.ndarray:
        return np.frombuffer(self._mm, dtype=np.uint64, count=n, offset=off)


class Metrics(_Layout):
    """The writable metrics segment (created by the cluster, attached by its workers).

    Word indices of the global counters are class attributes named after
    :data:`COUNTER_NAMES` in upper case (``Metrics.PROCESSED``...);
    :meth:`add` and :meth:`set` take them.
    """

    for _i, _n in enumerate(COUNTER_NAMES):
        locals()[_n.upper()] = _COUNTERS // 8 + _i
    del _i, _n

    def __init__(self, *_a, **_k):
        raise TypeError("use Metrics.create(name, ...) or Metrics.attach(name)")

    @classmethod
    def create(cls, name: str, *, n_workers: int, n_stations: int, stages=(), tput_slots: int = 3000,
               tput_interval_ns: int = 100_000_000, conv_slots: int = 32, conv_bytes: int = 512,
               config: dict | None = None) -> "Metrics":
        """Create ``/dev/shm/ctas7-metrics-<name>`` (it must not exist), 0600."""
        path = _path(name)
        stages = [str(s) for s in stages]
        if len(stages) > MAX_STAGES:
            raise ValueError(f"at most {MAX_STAGES} stages, got {len(stages)}")
        for v, what in ((n_workers, "n_workers"), (n_stations, "n_stations"), (tput_slots, "tput_slots"),
                        (conv_slots, "conv_slots")):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{what} must be an int >= 1, got {v!r}")
        if conv_bytes < 64 or conv_bytes % 8:
            raise ValueError(f"conv_bytes must be a multiple of 8 >= 64, got {conv_bytes}")
        cfg = json.dumps(config or {}, sort_keys=True, default=str).encode()
        if len(cfg) > _CONFIG_BYTES:
            raise ValueError(f"config takes {len(cfg)} bytes as JSON; at most {_CONFIG_BYTES}")
        _, geom = histogram_geometry()
        n_hist = 1 + len(stages)
        off_w = _HEADER_BYTES
        off_s = off_w + n_workers * _WORKER_WORDS * 8
        off_g = off_s + ((n_stations * 8 + 63) // 64) * 64
        off_h = off_g + max(1, len(stages)) * len(STAGE_FIELDS) * 8
        off_h = (off_h + 63) // 64 * 64
        off_t = off_h + n_hist * geom[2] * 8
        off_c = off_t + tput_slots * 8
        size = off_c + conv_slots * conv_bytes
        mm = create_segment(path, size)
        self = cls.__new__(cls)
        self._mm, self.name, self.path, self._owner = mm, name, path, True
        w = memoryview(mm).cast("Q")
        for off, val in (
            (_H_VERSION, VERSION), (_H_SIZE, size), (_H_UID, os.geteuid()), (_H_CREATOR, os.getpid()),
            (_H_CREATOR_START, _start_time(os.getpid())), (_H_CREATED, monotonic_ns()), (_H_WALL, time.time_ns()),
            (_H_NWORK, n_workers), (_H_NSTAT, n_stations), (_H_NSTAGE, len(stages)), (_H_CLEN, geom[2]),
            (_H_UNIT, geom[0]), (_H_HALF, geom[1]), (_H_NHIST, n_hist), (_H_TSLOTS, tput_slots),
            (_H_TINT, tput_interval_ns), (_H_CSLOTS, conv_slots), (_H_CBYTES, conv_bytes), (_H_OFF_W, off_w),
            (_H_OFF_S, off_s), (_H_OFF_G, off_g), (_H_OFF_H, off_h), (_H_OFF_T, off_t), (_H_OFF_C, off_c),
            (_H_CONFIG_LEN, len(cfg)),
        ):
            w[off // 8] = val
        for i, s in enumerate(stages):
            mm[_NAMES + i * _NAME_BYTES : _NAMES + i * _NAME_BYTES + min(len(s.encode()), _NAME_BYTES)] = \
                s.encode()[:_NAME_BYTES]
        mm[_CONFIG : _CONFIG + len(cfg)] = cfg
        w[_H_MAGIC // 8] = MAGIC  # last: a reader trusts nothing before the magic
        self._init(w)
        return self

    @classmethod
    def attach(cls, name: str) -> "Metrics":
        """Open an existing segment for writing (a worker's own block)."""
        mm = _open(name, writable=True)
        self = cls.__new__(cls)
        self._mm, self.name, self.path, self._owner = mm, name, _path(name), False
        self._init(memoryview(mm).cast("Q"))
        return self

    def _init(self, w) -> None:
        from ctas7._core._ring import SharedWords

        self.words = w
        self._layout_from(w)
        self._atomic = SharedWords(self._mm)
        self.station_produced = self._u64(self._off_s, self.n_stations)
        self.stage_words = self._u64(self._off_g, max(1, self.n_stages) * len(STAGE_FIELDS)).reshape(-1, len(STAGE_FIELDS))
        self.hist_block = self._u64(self._off_h, self.n_hist * self.counts_len).reshape(self.n_hist, self.counts_len)
        self.hist_counts = list(self.hist_block)
        self._tput = self._off_t // 8

    # ------------------------------------------------------------- writing

    def add(self, index: int, n: int) -> None:
        """``words[index] += n`` (single writer: a plain load and store)."""
        w = self.words
        w[index] += n

    def set(self, index: int, value: int) -> None:
        self.words[index] = value

    def set_state(self, state: str) -> None:
        self.words[_H_STATE // 8] = STATES.index(state)
        self.words[_H_UPDATED // 8] = monotonic_ns()

    def touch(self) -> None:
        """Note the time of the latest update."""
        self.words[_H_UPDATED // 8] = monotonic_ns()

    def worker_index(self, worker: int, field: str) -> int:
        """Word index of ``field`` (one of :data:`WORKER_FIELDS`) of ``worker``."""
        if not 0 <= worker < self.n_workers:
            raise IndexError(f"worker {worker} outside [0, {self.n_workers})")
        return self._off_w // 8 + worker * _WORKER_WORDS + WORKER_FIELDS.index(field)

    def store_atomic(self, index: int, value: int) -> None:
        """A release store (the worker's produced/in-flight word must never tear)."""
        self._atomic.store(index * 8, value)

    def record_latency(self, hist: int, value_ns: int, count: int = 1) -> None:
        """Add ``count`` at ``value_ns`` to histogram ``hist`` (0 = ingest-to-decision, 1+i = stage i)."""
        _hdr_record(self.hist_counts[hist], self.geometry, int(value_ns), int(count))

    def push_throughput(self, events: int) -> None:
        """Append one interval's event count to the throughput ring."""
        w = self.words
        k = w[self.TPUT_NEXT]
        w[self._tput + k % self.tput_slots] = events
        w[self.TPUT_NEXT] = k + 1

    def push_convergence(self, summary: dict) -> None:
        """Store a convergence summary in the ring of recent ones (:func:`compact_convergence`, always whole JSON)."""
        data = compact_convergence(summary, self.conv_bytes - 16)
        w = self.words
        k = w[self.CONV_NEXT]
        off = self._off_c + (k % self.conv_slots) * self.conv_bytes
        seq = w[off // 8]
        w[off // 8] = seq + 1  # odd: being written
        w[off // 8 + 1] = len(data)
        self._mm[off + 16 : off + 16 + len(data)] = data
        w[off // 8] = seq + 2
        w[self.CONV_NEXT] = k + 1

    # ------------------------------------------------------------- closing

    def close(self) -> None:
        """Unmap; the creating handle also unlinks the name."""
        if self._mm is None:
            return
        self._atomic.close()
        self.words.release()
        self.station_produced = self.stage_words = self.hist_counts = self.hist_block = None
        mm, self._mm = self._mm, None
        try:
            mm.close()
        except BufferError:
            pass  # a numpy view is still alive somewhere; the mapping goes with it
        if self._owner:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> "Metrics":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _open(name: str, writable: bool):
    path = _path(name)
    mm, size = open_segment(path, writable=writable, what="ctas7 metrics segment", min_size=_HEADER_BYTES)
    w = memoryview(mm).cast("Q")
    try:
        if w[_H_MAGIC // 8] != MAGIC:
            raise ValueError(f"{path} is not a ctas7 metrics segment (bad magic)")
        if w[_H_VERSION // 8] != VERSION:
            raise ValueError(f"{path} has layout version {w[_H_VERSION // 8]}; this is version {VERSION}")
        if w[_H_SIZE // 8] != size:
            raise ValueError(f"{path} has a corrupt header (size)")
    finally:
        w.release()
    return mm


class MetricsReader(_Layout):
    """Read-only view of a running (or finished) cluster's metrics segment.

    Examples
    --------
    >>> find_running() == [] or all(isinstance(n, str) for n in find_running())
    True
    """

    def __init__(self, *_a, **_k):
        raise TypeError("use MetricsReader.attach(name)")

    @classmethod
    def attach(cls, name: str) -> "MetricsReader":
        """Map ``/dev/shm/ctas7-metrics-<name>`` read-only (checks owner, mode, magic, version)."""
        self = cls.__new__(cls)
        self._mm = _open(name, writable=False)
        self.name = name
        self.words = np.frombuffer(self._mm, dtype=np.uint64, count=_HEADER_BYTES // 8)
        self._layout_from(self.words)
        return self

    def close(self) -> None:
        self.words = None
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:
                pass
            self._mm = None

    def __enter__(self) -> "MetricsReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def creator_alive(self) -> bool:
        w = self.words
        return _alive(int(w[_H_CREATOR // 8]), int(w[_H_CREATOR_START // 8]))

    def counts(self, which) -> np.ndarray:
        """A copy of the counts array of histogram ``which`` (name or index; hdrh's layout, see :attr:`geometry`)."""
        i = self.hist_names.index(which) if isinstance(which, str) else int(which)
        if not 0 <= i < self.n_hist:
            raise IndexError(f"histogram {which!r} outside the {self.n_hist} of this segment")
        return self._u64(self._off_h + i * self.counts_len * 8, self.counts_len).copy()

    def histogram(self, which):
        """An ``hdrh.HdrHistogram`` rebuilt from the shared counts (name or index)."""
        return _to_hdr(self.counts(which))

    def snapshot(self) -> dict:
        """Everything in the segment as plain Python values (a copy, safe to keep)."""
        w = self.words
        counters = self._u64(_COUNTERS, len(COUNTER_NAMES)).copy()
        snap = {
            "name": self.name,
            "creator_pid": int(w[_H_CREATOR // 8]),
            "alive": self.creator_alive,
            "state": STATES[int(w[_H_STATE // 8])] if int(w[_H_STATE // 8]) < len(STATES) else "unknown",
            "started_wall_ns": int(w[_H_WALL // 8]),
            "uptime_s": (monotonic_ns() - int(w[_H_CREATED // 8])) / 1e9,
            "updated_age_s": (monotonic_ns() - int(w[_H_UPDATED // 8])) / 1e9 if w[_H_UPDATED // 8] else None,
            "config": json.loads(bytes(self._mm[_CONFIG : _CONFIG + int(w[_H_CONFIG_LEN // 8])]) or b"{}"),
            "counters": {n: int(v) for n, v in zip(COUNTER_NAMES, counters)},
        }
        wk = self._u64(self._off_w, self.n_workers * _WORKER_WORDS).reshape(self.n_workers, _WORKER_WORDS).copy()
        workers = []
        for row in wk:
            d = {f: int(v) for f, v in zip(WORKER_FIELDS, row)}
            state = d.pop("state")
            d["produced"] = state >> PEND_BITS
            d["in_flight"] = state & PEND_MASK
            d["status"] = WORKER_STATUS[d["status"]] if d["status"] < len(WORKER_STATUS) else "unknown"
            workers.append(d)
        snap["workers"] = workers
        snap["station_produced"] = self._u64(self._off_s, self.n_stations).tolist()
        g = self._u64(self._off_g, max(1, self.n_stages) * len(STAGE_FIELDS)).reshape(-1, len(STAGE_FIELDS)).copy()
        snap["stages"] = {n: {f: int(v) for f, v in zip(STAGE_FIELDS, g[i])} for i, n in enumerate(self.stage_names)}
        snap["latency"] = {}
        for i, n in enumerate(self.hist_names):
            snap["latency"][n] = latency_summary(self.counts(i), self.geometry)
        k = int(counters[COUNTER_NAMES.index("tput_next")])
        ring = self._u64(self._off_t, self.tput_slots).copy()
        n = min(k, self.tput_slots)
        order = [(k - n + j) % self.tput_slots for j in range(n)]
        snap["throughput"] = {"interval_s": self.tput_interval_ns / 1e9, "events": [int(ring[j]) for j in order]}
        snap["convergences"] = self._convergences(int(counters[COUNTER_NAMES.index("conv_next")]))
        return snap

    def _convergences(self, k: int) -> list:
        out = []
        for j in range(max(0, k - self.conv_slots), k):
            off = self._off_c + (j % self.conv_slots) * self.conv_bytes
            for _ in range(3):
                s1 = int(np.frombuffer(self._mm, np.uint64, 1, off)[0])
                length = int(np.frombuffer(self._mm, np.uint64, 1, off + 8)[0])
                data = bytes(self._mm[off + 16 : off + 16 + min(length, self.conv_bytes - 16)])
                s2 = int(np.frombuffer(self._mm, np.uint64, 1, off)[0])
                if s1 == s2 and not s1 & 1:
                    try:
                        out.append(json.loads(data))
                    except ValueError:
                        out.append({"truncated": data.decode("utf-8", "replace")})
                    break
        return out


#: Fields of a convergence summary kept in the segment, in this order (the recommendation comes last).
_CONV_FIELDS = ("ts", "tick", "confidence", "weighted_count", "pattern_matches", "threat_level", "tier")
_CONV_NODE_IDS = 8


def _dumps(d: dict) -> bytes:
    return json.dumps(d, default=str, ensure_ascii=False).encode("utf-8")


def compact_convergence(summary: dict, limit: int = 496) -> bytes:
    """A convergence summary as compact JSON of at most ``limit`` bytes, never cut mid-value.

    Keeps ``ts``, ``tick``, ``nodes`` (the count), ``node_ids`` (the first
    8), ``confidence``, ``weighted_count``, ``pattern_matches``,
    ``threat_level``, ``tier`` and last ``recommendation``, which alone is
    shortened (ending in ``…``) when the whole would not fit. A long node
    list therefore no longer pushes the level and the advice out of the
    slot.

    >>> rec = {"ts": 5, "nodes": list(range(300)), "threat_level": "HIGH", "recommendation": "x" * 900}
    >>> d = json.loads(compact_convergence(rec, 200))
    >>> d["nodes"], d["node_ids"], d["threat_level"], d["recommendation"][-3:], len(compact_convergence(rec, 200)) <= 200
    (300, [0, 1, 2, 3, 4, 5, 6, 7], 'HIGH', 'xx…', True)
    """
    d: dict = {}
    for k in ("ts", "tick"):
        if k in summary:
            d[k] = summary[k]
    nodes = summary.get("nodes")
    if isinstance(nodes, (list, tuple)):
        d["nodes"] = len(nodes)
        d["node_ids"] = list(nodes[:_CONV_NODE_IDS])
    elif nodes is not None:
        d["nodes"] = nodes
        if "node_ids" in summary:
            d["node_ids"] = list(summary["node_ids"])[:_CONV_NODE_IDS]
    for k in _CONV_FIELDS[2:]:
        if k in summary:
            d[k] = summary[k]
    rec = str(summary.get("recommendation") or "")
    d["recommendation"] = rec
    data = _dumps(d)
    if len(data) > limit:
        d["recommendation"] = ""
        room = limit - len(_dumps(d)) - len("…".encode())
        # Characters may take several bytes (and escapes more): shrink until the whole fits.
        cut = max(0, room)
        while cut >= 0:
            d["recommendation"] = rec[:cut] + "…" if cut else ""
            data = _dumps(d)
            if len(data) <= limit:
                break
            cut = max(0, cut - max(1, (len(data) - limit) // 2)) if cut else -1
        # Only very small slots get here: drop the node ids, then fields from the end, until it fits.
        if len(data) > limit and "node_ids" in d:
            del d["node_ids"]
            data = _dumps(d)
        while len(data) > limit and len(d) > 1:
            d.pop(next(reversed(d)))
            data = _dumps(d)
    if len(data) > limit:
        raise ValueError(f"a {limit}-byte slot cannot hold even {data!r}")
    return data


def _to_hdr(counts: np.ndarray):
    import ctypes

    h, geom = histogram_geometry()
    if counts.shape[0] != geom[2]:
        raise ValueError(f"counts of length {counts.shape[0]} do not match the geometry ({geom[2]})")
    ctypes.memmove(ctypes.addressof(h.counts), counts.ctypes.data, counts.nbytes)
    nz = np.flatnonzero(counts)
    if nz.size:
        h.set_internal_tacking_values(int(nz[0]), int(nz[-1]), int(counts.sum()))
    return h


def _index_ranges(geometry):
    """Lowest value and range size (ns) of every HdrHistogram counts index (hdrh's layout), cached per geometry."""
    key = tuple(int(g) for g in geometry)
    got = _RANGES.get(key)
    if got is None:
        unit, half_mag, n = key
        half = 1 << half_mag
        i = np.arange(n, dtype=np.int64)
        bucket = (i >> half_mag) - 1
        sub = (i & (half - 1)) + half
        low = bucket < 0
        sub[low] -= half
        bucket[low] = 0
        shift = bucket + unit
        got = _RANGES[key] = (sub << shift, np.int64(1) << shift)
    return got


_RANGES: dict = {}


def latency_summary(counts, geometry) -> dict:
    """:func:`summarize` of an HdrHistogram counts array (hdrh's layout), computed with numpy.

    Same keys and values as hdrh's own answers (highest equivalent value at
    a percentile and at the max, mean over median equivalent values),
    without hdrh's per-index Python loops (0.1-1 s per histogram).

    >>> h, geom = histogram_geometry()
    >>> for v in (900, 1_500, 1_600, 40_000):
    ...     _ = h.record_value(v)
    >>> latency_summary(np.frombuffer(h.counts, dtype=np.uint64), geom)["p50_us"]
    1.5
    """
    low, size = _index_ranges(geometry)
    counts = np.asarray(counts, dtype=np.uint64)
    if counts.shape != low.shape:
        raise ValueError(f"counts of length {counts.shape[0]} do not match the geometry ({low.shape[0]})")
    nz = np.flatnonzero(counts)
    if not nz.size:
        return {"count": 0}
    c = counts[nz]
    n = int(c.sum())
    high = low[nz] + size[nz] - 1
    median = low[nz] + (size[nz] >> 1)
    cum = np.cumsum(c, dtype=np.uint64)
    out = {"count": n, "mean_us": round(float(np.dot(c.astype(np.float64), median.astype(np.float64))) / n / 1e3, 3)}
    for p in (50, 90, 99, 99.9):
        target = max(1, int(p * n / 100 + 0.5))
        out[f"p{p:g}_us"] = round(int(high[np.searchsorted(cum, target, side="left")]) / 1e3, 3)
    out["max_us"] = round(int(high[-1]) / 1e3, 3)
    return out


def summarize(h) -> dict:
    """Count, mean and p50/p90/p99/p99.9/max (µs) of an ``hdrh.HdrHistogram`` of ns.

    The numbers hdrh itself would give, computed from its counts with
    numpy (:func:`latency_summary`).

    >>> h, _ = histogram_geometry()
    >>> _ = h.record_value(2_000, 10)
    >>> summarize(h)
    {'count': 10, 'mean_us': 2.0, 'p50_us': 2.0, 'p90_us': 2.0, 'p99_us': 2.0, 'p99.9_us': 2.0, 'max_us': 2.0}
    """
    geom = (h.unit_magnitude, h.sub_bucket_half_count_magnitude, h.counts_len)
    return latency_summary(np.frombuffer(h.counts, dtype=np.uint64, count=h.counts_len), geom)


def _names() -> list:
    try:
        entries = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return []
    return sorted(e[len(METRICS_PREFIX):] for e in entries if e.startswith(METRICS_PREFIX))


def find_running() -> list:
    """Names of metrics segments of this user whose creating process is alive."""
    out = []
    for name in _names():
        try:
            with MetricsReader.attach(name) as r:
                if r.creator_alive:
                    out.append(name)
        except (OSError, ValueError):
            continue
    return out


def sweep() -> list:
    """Unlink metrics segments of this user whose creator died; return their names.

    >>> isinstance(sweep(), list)
    True
    """
    removed = []
    for name in _names():
        try:
            r = MetricsReader.attach(name)
        except (OSError, ValueError):
            continue
        try:
            dead = not r.creator_alive
        finally:
            r.close()
        if dead:
            try:
                os.unlink(_path(name))
                removed.append(name)
            except FileNotFoundError:
                pass
    return removed
