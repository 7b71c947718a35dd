"""SlotGraph: heartbeat batch update (1,024 events, 247 stations) and submit
throughput. Peers: the pure-Python references (``reference_scan``,
``reference_best``) on the same data."""

import pickle

import numpy as np
from asv_runner.benchmarks.mark import SkipNotImplemented  # skips one parameter from inside a benchmark

from ctas7.events import KIND_HEARTBEAT, make_events
from ctas7.stage import Frame
from ctas7.stages.slotgraph import SlotGraph, StationSpec, Task, reference_best, reference_scan

from .common import rng

BATCH = 1024
TIMED_BATCHES = 16
# Mean heartbeat interval per station is ~1 ms of event time: 5 ms of silence
# is a real outage, not jitter.
TIMEOUT_NS = 5_000_000
CAPS = [f"c{i}" for i in range(8)]


def _stations(n, r):
    masks = r.random((n, len(CAPS))) < 0.5
    slots = r.integers(8, 17, size=n)
    lat = r.uniform(1.0, 100.0, size=n)
    return [
        StationSpec(i, f"gw{i % 8}", {CAPS[j] for j in np.flatnonzero(masks[i])}, int(slots[i]), float(lat[i]))
        for i in range(n)
    ]


def _tasks(n, r, start=0):
    need = r.integers(0, len(CAPS), size=(n, 2))
    nk = r.integers(0, 3, size=n)
    return [Task(start + i, {CAPS[c] for c in need[i, : nk[i]]}, int(1 + (i % 2))) for i in range(n)]


def _heartbeat_stream(n_stations, n_events, r):
    """A quarter heartbeats; every 16th station falls silent halfway through."""
    ts = np.cumsum(r.integers(0, 2_000, size=n_events))
    station = r.integers(0, n_stations, size=n_events)
    kind = np.where(r.random(n_events) < 0.25, KIND_HEARTBEAT, r.integers(0, 8, size=n_events))
    silent = (station % 16 == 5) & (ts > ts[-1] // 2)
    keep = ~silent
    return make_events(ts=ts[keep], station=station[keep], kind=kind[keep], value=r.random(keep.sum()))


class HeartbeatBatch:
    """``SlotGraph.process`` per 1,024-event batch with 247 stations: the
    compiled heartbeat scan plus the rebalancing it triggers. Each sample runs
    TIMED_BATCHES batches from a pickled warm state; divide by TIMED_BATCHES."""

    params = [247]
    param_names = ["n_stations"]
    number = 1
    repeat = (5, 20, 30.0)

    def setup_cache(self):
        out = {}
        for n in self.params:
            r = rng(n)
            g = SlotGraph(stations=_stations(n, r), heartbeat_timeout_ns=TIMEOUT_NS, tasks=_tasks(3 * n, r))
            stream = _heartbeat_stream(n, 64 * BATCH, r)
            frames = [stream[i : i + BATCH] for i in range(0, len(stream) - BATCH + 1, BATCH)]
            warm, timed = frames[: len(frames) - TIMED_BATCHES], frames[len(frames) - TIMED_BATCHES :]
            for b in warm:
                g.process(Frame(b.copy()))
            out[n] = (pickle.dumps(g), timed, n)
        return out

    def setup(self, cache, n):
        blob, timed, _ = cache[n]
        self.graph = pickle.loads(blob)
        self.frames = [Frame(b.copy()) for b in timed]
        self.batches = [b.copy() for b in timed]
        self.last_seen = {s: int(v) if v != np.iinfo(np.int64).min else None
                          for s, v in enumerate(self.graph.station_load()["last_seen"])}
        self.alive = {s: bool(o) for s, o in enumerate(self.graph.station_load()["online"])}
        self.wm = self.graph.watermark

    def time_process(self, cache, n):
        for f in self.frames:
            self.graph.process(f)

    def time_reference_scan(self, cache, n):
        # The pure-Python tracker alone (no rebalancing): a lower bound for a
        # Python implementation of the same stage.
        wm = self.wm
        for b in self.batches:
            _, wm = reference_scan(b, self.last_seen, self.alive, wm, TIMEOUT_NS)

    def peakmem_process(self, cache, n):
        for f in self.frames:
            self.graph.process(f)


class Submit:
    """Placing 1,000 tasks: one by one (``submit``), in one compiled pass
    (``submit_many``), and the pure-Python reference scan (247 stations)."""

    params = [247, 10_000]
    param_names = ["n_stations"]
    number = 1
    repeat = (5, 20, 30.0)

    def setup_cache(self):
        out = {}
        for n in self.params:
            r = rng(1000 + n)
            g = SlotGraph(stations=_stations(n, r), heartbeat_timeout_ns=10**9)
            out[n] = (pickle.dumps(g), _tasks(1000, r, start=1_000_000))
        return out

    def setup(self, cache, n):
        blob, tasks = cache[n]
        self.graph = pickle.loads(blob)
        self.tasks = tasks
        load = self.graph.station_load()
        caps = {c: i for i, c in enumerate(self.graph._caps)}  # same bit order as the graph
        self.ref = [
            [int(row["station"]), True, int(row["slots"]), int(row["slots"]), float(row["latency_ms"]), 0]
            for row in load
        ]
        for s, spec in zip(self.ref, sorted(self.graph._station_caps.items())):
            s[5] = sum(1 << caps[c] for c in spec[1])
        self.ref_tasks = [(sum(1 << caps[c] for c in t.capabilities), t.slots) for t in tasks]

    def time_submit(self, cache, n):
        for t in self.tasks:
            self.graph.submit(t)

    def time_submit_many(self, cache, n):
        self.graph.submit_many(self.tasks)

    def time_reference(self, cache, n):
        if n > 247:
            raise SkipNotImplemented("the Python reference is too slow at this size")
        ref = [tuple(s) for s in self.ref]
        idx = {s[0]: i for i, s in enumerate(ref)}
        for m, k in self.ref_tasks:
            s = reference_best(ref, m, k)
            if s >= 0:
                i = idx[s]
                sid, on, free, slots, lat, mask = ref[i]
                ref[i] = (sid, on, free - k, slots, lat, mask)
