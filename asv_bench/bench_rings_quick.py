"""Medians of interleaved runs of the ring benchmarks, with same-run peers.

Every round runs every case once, so machine load hits all cases alike.
Modes: ``copy`` put_many -> get_into; ``zcopy`` claim/commit -> peek, the
consumer sums every record in place; ``zread`` put_many -> peek, the
consumer checks the last record of each view (the mode ``peers.py``
compares with faster-fifo).
For the cross-process transfers the table gives the median rate, its
spread (min-max), the ratio of medians against ``multiprocessing.Queue``
and the shm + Lock ring moving batches of the same size in the same run,
and the median CPU time per event
(producer + consumer), which depends far less on machine load than the
rate does.

Usage: python asv_bench/bench_rings_quick.py [rounds]
"""

import statistics
import sys

HERE = __file__.rsplit("/", 1)[0]
sys.path[:0] = [HERE, HERE + "/.."]

from benchmarks import rings as b  # noqa: E402

N = 32_000_000  # events per SPSC run: long enough to hide start-up costs
MPQ = "peer mp.Queue             batch 16k"
SHM = "peer shm+Lock ring        batch 16k"

BATCHED = {
    "SPSC copy  sleep cap 64k  batch 16k": lambda: b.channel_throughput(1, N, 16384, "sleep", 1 << 16, "copy", cpu=True),
    "SPSC copy  yield cap 64k  batch 16k": lambda: b.channel_throughput(1, N, 16384, "yield", 1 << 16, "copy", cpu=True),
    "SPSC zcopy sleep cap 64k  batch 16k": lambda: b.channel_throughput(1, N, 16384, "sleep", 1 << 16, "zero-copy", cpu=True),
    "SPSC zread sleep cap 32k  batch 8k": lambda: b.channel_throughput(1, N, 8192, "sleep", 1 << 15, "zero-copy read", cpu=True),
    "SPSC zcopy sleep cap 256k batch 64k": lambda: b.channel_throughput(1, N, 65536, "sleep", 1 << 18, "zero-copy", cpu=True),
    "SPSC copy  sleep cap 16k  batch 4k": lambda: b.channel_throughput(1, N, 4096, "sleep", 1 << 14, "copy", cpu=True),
    "SPSC copy  sleep cap 1M   batch 64k": lambda: b.channel_throughput(1, N, 65536, "sleep", 1 << 20, "copy", cpu=True),
    "SPSC zcopy sleep cap 1M   batch 64k": lambda: b.channel_throughput(1, N, 65536, "sleep", 1 << 20, "zero-copy", cpu=True),
    "MPMC copy  2 producers    batch 16k": lambda: b.channel_throughput(2, N // 4, 16384, cpu=True),
    SHM: lambda: b.shmlock_throughput(8_000_000, 16384, cpu=True),
    MPQ: lambda: b.mpqueue_throughput(2_000_000, 16384, cpu=True),
    "SPSC copy  sleep cap 64k  batch 1k": lambda: b.channel_throughput(1, N // 4, 1024, "sleep", 1 << 16, "copy", cpu=True),
    "peer shm+Lock ring        batch 1k": lambda: b.shmlock_throughput(2_000_000, 1024, cpu=True),
    "peer mp.Queue             batch 1k": lambda: b.mpqueue_throughput(1_000_000, 1024, cpu=True),
}
STREAM = {
    "Channel put -> get": lambda: b.channel_stream_rate(1_000_000, cpu=True),
    "peer shm+Lock put -> get": lambda: b.shmlock_stream_rate(100_000, cpu=True),
    "peer mp.Queue put -> get": lambda: b.mpqueue_stream_rate(20_000, cpu=True),
}
SINGLE = {
    "SpscRing put+get": b.ring_single_rate,
    "Channel put+get": b.channel_single_rate,
    "peer shm+Lock put+get": b.shmlock_single_rate,
    "peer mp.Queue put+get": b.mpqueue_single_rate,
}


def main(rounds=5):
    rate = {k: [] for k in {**BATCHED, **STREAM}}
    cpu = {k: [] for k in rate}
    single = {k: [] for k in SINGLE}
    resume = []
    for _ in range(rounds):
        for k, f in {**BATCHED, **STREAM}.items():
            r, c = f()
            rate[k].append(r)
            cpu[k].append(c)
        for k, f in SINGLE.items():
            single[k].append(f())
        resume.append(b.resume_after_kill_ms())
    med = {k: statistics.median(v) for k, v in rate.items()}
    print(f"{'cross-process, 32-byte events':37s} {'median':>9s} {'min-max M/s':>15s} "
          f"{'x mp.Queue':>10s} {'x shm+Lock':>10s} {'CPU ns/ev':>9s}")
    for k in BATCHED:
        v = rate[k]
        # ratios against the peers moving batches of the same size
        mpq, shm = (MPQ, SHM) if not k.endswith("batch 1k") else (MPQ[:-3] + "1k", SHM[:-3] + "1k")
        print(f"{k:37s} {med[k] / 1e6:7.1f} M {min(v) / 1e6:7.1f}-{max(v) / 1e6:<7.1f} "
              f"{med[k] / med[mpq]:10.1f} {med[k] / med[shm]:10.1f} {statistics.median(cpu[k]):9.2f}")
    print("per event, two processes (put in one, get in the other)")
    for k in STREAM:
        v = rate[k]
        print(f"{k:37s} {med[k] / 1e6:7.2f} M {min(v) / 1e6:7.2f}-{max(v) / 1e6:<7.2f} "
              f"{med[k] / med['peer mp.Queue put -> get']:10.0f} {med[k] / med['peer shm+Lock put -> get']:10.1f} "
              f"{statistics.median(cpu[k]):9.0f}")
    sm = {k: statistics.median(v) for k, v in single.items()}
    mpq1, shm1 = sm["peer mp.Queue put+get"], sm["peer shm+Lock put+get"]
    print("per event, one process (put + get)")
    for k, v in single.items():
        print(f"{k:37s} {sm[k] / 1e6:7.2f} M {min(v) / 1e6:7.2f}-{max(v) / 1e6:<7.2f} "
              f"{sm[k] / mpq1:10.0f} {sm[k] / shm1:10.1f}")
    print(f"{'resume after SIGKILL (gap event)':37s} {statistics.median(resume):7.1f} ms {min(resume):6.1f}-{max(resume):.1f}")
    print(f"(medians of {rounds} interleaved rounds)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
