"""Medians of interleaved runs of the ring benchmarks, with same-run peers.

Every round runs every case once, so machine load hits all cases alike;
the table gives the median, the spread (min-max) and the ratio of medians
against ``multiprocessing.Queue`` and the shm + Lock ring from the same run.

Usage: python asv_bench/bench_rings_quick.py [rounds]
"""

import statistics
import sys

HERE = __file__.rsplit("/", 1)[0]
sys.path[:0] = [HERE, HERE + "/.."]

from benchmarks import rings as b  # noqa: E402

N = 32_000_000  # events per SPSC run: long enough to hide start-up costs

BATCHED = {
    "SPSC copy  sleep cap 64k  batch 16k": lambda: b.channel_throughput(1, N, 16384, "sleep", 1 << 16, "copy"),
    "SPSC copy  yield cap 64k  batch 16k": lambda: b.channel_throughput(1, N, 16384, "yield", 1 << 16, "copy"),
    "SPSC zcopy sleep cap 64k  batch 16k": lambda: b.channel_throughput(1, N, 16384, "sleep", 1 << 16, "zero-copy"),
    "SPSC copy  sleep cap 16k  batch 4k": lambda: b.channel_throughput(1, N, 4096, "sleep", 1 << 14, "copy"),
    "SPSC copy  sleep cap 1M   batch 64k": lambda: b.channel_throughput(1, N, 65536, "sleep", 1 << 20, "copy"),
    "SPSC zcopy sleep cap 1M   batch 64k": lambda: b.channel_throughput(1, N, 65536, "sleep", 1 << 20, "zero-copy"),
    "MPMC copy  2 producers    batch 16k": lambda: b.channel_throughput(2, N // 2, 16384),
    "peer shm+Lock ring        batch 16k": lambda: b.shmlock_throughput(8_000_000, 16384),
    "peer mp.Queue             batch 16k": lambda: b.mpqueue_throughput(2_000_000, 16384),
}
SINGLE = {
    "SpscRing put+get": b.ring_single_rate,
    "Channel put+get": b.channel_single_rate,
    "peer shm+Lock put+get": b.shmlock_single_rate,
    "peer mp.Queue put+get": b.mpqueue_single_rate,
}


def main(rounds=5):
    cases = {**BATCHED, **SINGLE, "resume after SIGKILL": b.resume_after_kill_ms}
    rows = {k: [] for k in cases}
    for _ in range(rounds):
        for k, f in cases.items():
            rows[k].append(f())
    med = {k: statistics.median(v) for k, v in rows.items()}
    mpq, shm = med["peer mp.Queue             batch 16k"], med["peer shm+Lock ring        batch 16k"]
    print(f"{'cross-process, 32-byte events':38s} {'median':>9s} {'min-max M/s':>15s} {'x mp.Queue':>10s} {'x shm+Lock':>10s}")
    for k in BATCHED:
        v = rows[k]
        print(f"{k:38s} {med[k] / 1e6:7.1f} M {min(v) / 1e6:7.1f}-{max(v) / 1e6:<7.1f} {med[k] / mpq:10.1f} {med[k] / shm:10.1f}")
    mpq1, shm1 = med["peer mp.Queue put+get"], med["peer shm+Lock put+get"]
    print(f"{'per event, one process (put + get)':38s}")
    for k in SINGLE:
        v = rows[k]
        print(f"{k:38s} {med[k] / 1e6:7.2f} M {min(v) / 1e6:7.2f}-{max(v) / 1e6:<7.2f} {med[k] / mpq1:10.0f} {med[k] / shm1:10.1f}")
    v = rows["resume after SIGKILL"]
    print(f"{'resume after SIGKILL (gap event)':38s} {med['resume after SIGKILL']:7.1f} ms {min(v):6.1f}-{max(v):.1f}")
    print(f"(medians of {rounds} interleaved rounds)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
