"""Multi-process stress and crash tests for rings and channels (slow).

Producers and consumers are real processes, started with 'fork': a cluster
worker on Linux is forked the same way, startup takes milliseconds (the
crash loops start well over a hundred processes), and it exercises the
after-fork re-registration of inherited channel handles. Every producer
writes ``station`` = its id and ``seq`` = 0, 1, 2, ... so a consumer can
prove there is no loss, no duplicate and per-producer order.
"""

import itertools
import multiprocessing as mp
import os
import queue
import random
import signal
import time

import numpy as np
import pytest

from ctas7 import channel as chmod
from ctas7.channel import Channel, ChannelClosed
from ctas7.events import EVENT_DTYPE, KIND_GAP, make_events

pytestmark = pytest.mark.slow

FORK = mp.get_context("fork")
_counter = itertools.count()
PREFIX = f"s{os.getpid()}-"


@pytest.fixture
def name():
    yield f"{PREFIX}{next(_counter)}"
    left = [f for f in os.listdir("/dev/shm") if f.startswith(chmod.PREFIX + PREFIX)]
    assert left == [], "a stress test leaked a shared-memory segment"


def chunk(station, start, n):
    return make_events(ts=np.arange(start, start + n), seq=np.arange(start, start + n), station=station)


class OrderChecker:
    """Checks that each station's records arrive as 0, 1, 2, ... exactly once."""

    def __init__(self):
        self.next = {}
        self.gaps = []
        self.total = 0

    def feed(self, batch):
        gap = batch["kind"] == KIND_GAP
        if gap.any():
            self.gaps.extend((int(n), int(v)) for n, v in zip(batch["node"][gap], batch["value"][gap]))
            batch = batch[~gap]
        self.total += len(batch)
        for s in np.unique(batch["station"]):
            seq = batch["seq"][batch["station"] == s].astype(np.int64)
            start = self.next.get(int(s), 0)
            want = np.arange(start, start + len(seq))
            assert np.array_equal(seq, want), f"station {s}: order/loss/duplicate at {start}"
            assert np.array_equal(batch["ts"][batch["station"] == s], want)
            self.next[int(s)] = start + len(seq)


# --------------------------------------------------------------------------- throughput


def _producer(name, station, n, batch):
    ch = Channel.attach(name)
    for start in range(0, n, batch):
        ch.put_many(chunk(station, start, min(batch, n - start)))
    ch.close()


def _run_consumer(ch, expected, checker, timeout=120):
    out = np.empty(8192, EVENT_DTYPE)
    end = time.monotonic() + timeout
    while checker.total < expected:
        assert time.monotonic() < end, f"only {checker.total} of {expected} records arrived"
        try:
            k = ch.get_into(out, timeout=1.0)
        except queue.Empty:
            continue
        checker.feed(out[:k])


def test_spsc_one_to_one(name):
    n = 4_000_000
    with Channel.create(name, 1 << 14) as ch:
        p = FORK.Process(target=_producer, args=(name, 7, n, 4096))
        p.start()
        checker = OrderChecker()
        _run_consumer(ch, n, checker)
        p.join(30)
        assert p.exitcode == 0
        assert checker.next == {7: n} and checker.gaps == [] and ch.lost == 0
        with pytest.raises(queue.Empty):
            ch.get_many(10, timeout=0.01)


def test_mpmc_four_to_one(name):
    n = 1_000_000
    with Channel.create(name, 1 << 14, multi_producer=True) as ch:
        ps = [FORK.Process(target=_producer, args=(name, s, n, 1000 + 500 * s)) for s in range(4)]
        for p in ps:
            p.start()
        checker = OrderChecker()
        _run_consumer(ch, 4 * n, checker)
        for p in ps:
            p.join(30)
            assert p.exitcode == 0
        assert checker.next == {s: n for s in range(4)} and checker.gaps == [] and ch.lost == 0


def _consumer(name, marks, cid):
    """Mark every (station, seq) seen; keep per-station order within this consumer."""
    ch = Channel.attach(name)
    seen = np.frombuffer(marks, dtype=np.uint8).reshape(2, -1)
    last = [-1, -1]
    while True:
        try:
            batch = ch.get_many(4096, timeout=1.0)
        except queue.Empty:
            continue
        except ChannelClosed:
            break
        for s in (0, 1):
            seq = batch["seq"][batch["station"] == s].astype(np.int64)
            if len(seq):
                if seq[0] <= last[s] or np.any(np.diff(seq) <= 0):
                    os._exit(3)  # order broken inside one consumer
                last[s] = seq[-1]
                np.add.at(seen[s], seq, 1)
    ch.close()
    os._exit(0)


def test_mpmc_two_to_two(name):
    n = 1_000_000
    marks = [FORK.RawArray("B", 2 * n) for _ in range(2)]
    with Channel.create(name, 1 << 13, multi_producer=True) as ch:
        cs = [FORK.Process(target=_consumer, args=(name, marks[c], c)) for c in range(2)]
        ps = [FORK.Process(target=_producer, args=(name, s, n, 2048)) for s in range(2)]
        for p in cs + ps:
            p.start()
        for p in ps:
            p.join(120)
            assert p.exitcode == 0
        ch.shutdown()
        for p in cs:
            p.join(60)
            assert p.exitcode == 0
        seen = sum(np.frombuffer(m, dtype=np.uint8).astype(np.int64) for m in marks)
        assert seen.min() == 1 and seen.max() == 1  # nothing lost, nothing twice
        assert ch.lost == 0 and ch.qsize() == 0


# --------------------------------------------------------------------------- crashes


def _victim(name, station, claimed, committed, seed):
    """Claim, fill, sometimes dawdle, commit, forever (until SIGKILL)."""
    rng = random.Random(seed)
    ch = Channel.attach(name)
    done = 0
    while True:
        k = rng.randint(1, 256)
        view = ch.claim(k, timeout=None)
        k = len(view)
        claimed[station] = done + k
        view[:] = chunk(station, done, k)
        if rng.random() < 0.3:
            time.sleep(rng.random() * 0.002)  # widen the claim-to-commit window
        ch.commit(k)
        done += k
        committed[station] = done


def test_spsc_kill_nine_loop(name):
    """SIGKILL a producer >= 120 times at random moments; the consumer goes on."""
    kills, rng = 120, random.Random(1234)
    claimed = FORK.RawArray("q", kills)
    committed = FORK.RawArray("q", kills)
    checker, pids, latencies = OrderChecker(), {}, []
    with Channel.create(name, 1 << 12) as ch:

        def drain(until_gap_of=None, limit=5.0):
            end = time.monotonic() + limit
            while time.monotonic() < end:
                try:
                    checker.feed(ch.get_many(4096, timeout=0.005))
                except queue.Empty:
                    if until_gap_of is None:
                        return
                if until_gap_of is not None and any(pid == until_gap_of for pid, _ in checker.gaps):
                    return
            raise AssertionError("the consumer stalled")

        for i in range(kills):
            p = FORK.Process(target=_victim, args=(name, i, claimed, committed, i))
            p.start()
            pids[p.pid] = i
            end = time.monotonic() + rng.uniform(0.005, 0.03)
            while time.monotonic() < end:
                try:
                    checker.feed(ch.get_many(4096, timeout=0.002))
                except queue.Empty:
                    pass
            os.kill(p.pid, signal.SIGKILL)
            t_kill = time.monotonic()
            p.join()
            if i % 2 == 0 and committed[i] + claimed[i] > 0:
                # The consumer notices; odd rounds leave it to the restarted producer.
                drain(until_gap_of=p.pid)
                latencies.append(time.monotonic() - t_kill)
        drain()
        ch.check_producers()
        drain()

    gaps = dict(checker.gaps)
    mid_claim = 0
    for pid, i in pids.items():
        got = checker.next.get(i, 0)
        assert committed[i] <= got <= claimed[i], (i, committed[i], got, claimed[i])
        if claimed[i]:
            assert pid in gaps, f"producer {i} died without a recorded gap"
        lost = gaps.get(pid, 0)
        assert got + lost >= claimed[i] and got + lost <= claimed[i] + 256
        mid_claim += lost > 0
    assert len(gaps) >= kills * 0.9
    assert mid_claim >= 10, f"only {mid_claim} kills landed between claim and commit"
    assert sorted(latencies)[len(latencies) // 2] < 1.0  # never stalls (loose: loaded box)


def _steady(name, station, n):
    ch = Channel.attach(name)
    for start in range(0, n, 500):
        ch.put_many(chunk(station, start, min(500, n - start)))
        time.sleep(0.0005)
    ch.close()


def test_mpmc_kill_nine_loop(name):
    """A steady producer and a victim killed 30 times: skipped claims, no stall."""
    kills, rng, steady_n = 30, random.Random(99), 200_000
    claimed = FORK.RawArray("q", kills + 1)
    committed = FORK.RawArray("q", kills + 1)
    checker, pids = OrderChecker(), {}
    with Channel.create(name, 1 << 12, multi_producer=True, claim_timeout=0.02) as ch:
        steady = FORK.Process(target=_steady, args=(name, kills, steady_n))
        steady.start()
        for i in range(kills):
            p = FORK.Process(target=_victim, args=(name, i, claimed, committed, 1000 + i))
            p.start()
            pids[p.pid] = i
            end = time.monotonic() + rng.uniform(0.005, 0.03)
            while time.monotonic() < end:
                try:
                    checker.feed(ch.get_many(4096, timeout=0.002))
                except queue.Empty:
                    pass
            os.kill(p.pid, signal.SIGKILL)
            p.join()
        end = time.monotonic() + 60
        while checker.next.get(kills, 0) < steady_n or ch.qsize():  # qsize counts dead claims too
            assert time.monotonic() < end, "the consumer stalled behind a dead claim"
            try:
                checker.feed(ch.get_many(4096, timeout=0.05))
            except queue.Empty:
                pass
        steady.join(30)
        lost = ch.lost
    assert steady.exitcode == 0
    assert lost == sum(v for _, v in checker.gaps)
    lost_by = {}
    for pid, v in checker.gaps:
        lost_by[pid] = lost_by.get(pid, 0) + v
    assert set(lost_by) <= set(pids)
    for pid, i in pids.items():
        got = checker.next.get(i, 0)
        assert committed[i] <= got <= claimed[i]
        assert claimed[i] <= got + lost_by.get(pid, 0) <= claimed[i] + 256
