"""TETH: per-batch pattern-matching latency, 1M-event throughput, beaconing,
ingestion, L* learning, and the Cython matcher against the pure-Python DFA
loop over the same tables (``track_speedup_vs_python``, measured in one run).
"""

import time

import numpy as np

from ctas7.events import make_events
from ctas7.records import MATCH_DTYPE
from ctas7.sim.synthetic import batches, synthetic_stream
from ctas7.stage import Frame
from ctas7.stages.teth import BEACON_DTYPE, Teth, learn_pattern, parse_records, reference_match

from .common import SEED, rng

PATTERNS = {
    1: ["recon ~> exploit ~> exfil within 10m"],
    3: ["recon ~> exploit ~> exfil within 10m", "exploit -> intrusion", "c2{3}"],
    8: [
        "recon ~> exploit ~> exfil within 10m",
        "exploit -> intrusion",
        "c2{3}",
        "recon ~> exfil not exploit",
        "(recon | c2) ~> any -> c2 within 1s",
        "recon -> c2{2,3} -> exfil",
        "media~{4} within 5s",
        "physical ~> media -> media",
    ],
}
BATCH = 1024
N_NODES = 10_000


def _stream(n, seed=SEED):
    return synthetic_stream(n, n_stations=247, n_nodes=N_NODES, seed=seed)


def _median_ns(fn, arg_list, repeat=5):
    times = []
    for _ in range(repeat):
        for a in arg_list:
            t0 = time.perf_counter_ns()
            fn(a)
            times.append(time.perf_counter_ns() - t0)
    return float(np.median(times))


class TethLatency:
    """One ``Teth.process`` call on a 1,024-event batch (target: median <= 50 us)."""

    params = ([1, 3, 8], [False, True])
    param_names = ["n_patterns", "beacons"]

    def setup(self, n_patterns, beacons):
        self.batches = [b.copy() for b in batches(_stream(BATCH * 32), BATCH)]
        self.stage = Teth(patterns=PATTERNS[n_patterns], beacons=beacons)
        for b in self.batches:  # warm: state arrays grown, tables hot
            self.stage.process(Frame(b))
        self.i = 0

    def time_process_1024(self, n_patterns, beacons):
        self.i = (self.i + 1) % len(self.batches)
        self.stage.process(Frame(self.batches[self.i]))


class TethThroughput:
    """A 1M-event stream: in 1,024-event frames through the stage, and as one kernel call."""

    params = [1, 3, 8]
    param_names = ["n_patterns"]
    timeout = 120

    def setup_cache(self):
        return _stream(1 << 20)

    def setup(self, stream, n_patterns):
        self.frames = list(batches(stream, BATCH))
        self.stream = stream
        self.out = np.empty(len(stream) * n_patterns, dtype=MATCH_DTYPE)

    def time_stream_1m_frames(self, stream, n_patterns):
        stage = Teth(patterns=PATTERNS[n_patterns], beacons=False)
        for b in self.frames:
            stage.process(Frame(b))

    def time_stream_1m_one_call(self, stream, n_patterns):
        stage = Teth(patterns=PATTERNS[n_patterns], beacons=False)
        stage._bank.run(self.stream, self.out)

    def peakmem_stream_1m_frames(self, stream, n_patterns):
        stage = Teth(patterns=PATTERNS[n_patterns], beacons=True)
        for b in self.frames:
            stage.process(Frame(b))


class TethVsPython:
    """Cython matcher vs the pure-Python loop over the same DFA tables, same run, same batches."""

    params = [1, 3, 8]
    param_names = ["n_patterns"]
    timeout = 300

    def setup(self, n_patterns):
        self.batches = [b.copy() for b in batches(_stream(BATCH * 8, seed=SEED + 1), BATCH)]
        self.patterns = PATTERNS[n_patterns]

    def time_python_reference_1024(self, n_patterns):
        reference_match(self.batches[0], self.patterns)

    def track_speedup_vs_python(self, n_patterns):
        stage = Teth(patterns=self.patterns, beacons=False)
        fast = _median_ns(lambda b: stage.process(Frame(b)), self.batches, repeat=20)
        slow = _median_ns(lambda b: reference_match(b, self.patterns), self.batches, repeat=1)
        return slow / fast

    track_speedup_vs_python.unit = "x"


class Beacons:
    """The periodicity kernel alone on 1,024-event batches (random sch: worst case, all evictions)."""

    params = [1024, 4096, 65536]
    param_names = ["capacity"]

    def setup(self, capacity):
        from ctas7._core._teth import BeaconTable

        r = rng(3)
        n = BATCH * 32
        ts = np.cumsum(r.integers(1, 2_000_000, n))
        sch = np.where(r.random(n) < 0.1, r.integers(1, 50, n), r.integers(1, 2**63, n)).astype(np.uint64)
        ev = make_events(ts=ts, sch=sch, node=r.integers(0, N_NODES, n), kind=5)
        self.batches = [b.copy() for b in batches(ev, BATCH)]
        self.table = BeaconTable(capacity)
        self.out = np.empty(BATCH, dtype=BEACON_DTYPE)
        self.i = 0

    def time_beacons_1024(self, capacity):
        self.i = (self.i + 1) % len(self.batches)
        self.table.run(self.batches[self.i], self.out)


class Ingest:
    """parse_records: normalise + classify + xxh3 on 1,000 JSON-like records."""

    def setup(self):
        r = rng(4)
        words = ["port", "scan", "exploit", "cve-2024-1234", "data", "leak", "botnet", "callback", "grid",
                 "blackout", "viral", "post", "the", "a", "of", "gateway", "server", "Outage"]
        self.records = [
            {"title": " ".join(r.choice(words, 6)), "summary": " ".join(r.choice(words, 20)),
             "station": int(r.integers(0, 247)), "ts": i}
            for i in range(1000)
        ]

    def time_parse_1000(self):
        parse_records(self.records)


class Learn:
    """L* with a W-method oracle on a 6-state reference pattern, 10,000 held-out checks."""

    timeout = 120

    def time_learn_pattern(self):
        learn_pattern("recon -> c2{2,3} -> exfil", max_states=7, n_holdout=10_000, seed=1)
