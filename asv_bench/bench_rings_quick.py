"""Medians of interleaved runs of the ring benchmarks, with same-run peers.

Usage: python asv_bench/bench_rings_quick.py [repeats]
"""

import statistics
import sys

HERE = __file__.rsplit("/", 1)[0]
sys.path[:0] = [HERE, HERE + "/.."]

from benchmarks import rings as b  # noqa: E402


def main(repeats=5):
    rows = {k: [] for k in ["spsc", "mpmc2", "mpq", "ring1", "chan1", "mpq1", "resume"]}
    for _ in range(repeats):
        rows["spsc"].append(b.channel_throughput(1, 4_000_000, 16384))
        rows["mpmc2"].append(b.channel_throughput(2, 4_000_000, 16384))
        rows["mpq"].append(b.mpqueue_throughput(1_000_000, 16384))
        rows["ring1"].append(b.ring_single_rate())
        rows["chan1"].append(b.channel_single_rate())
        rows["mpq1"].append(b.mpqueue_single_rate())
        rows["resume"].append(b.resume_after_kill_ms())
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"SPSC channel, 1 proc -> 1, batch 16384 : {med['spsc'] / 1e6:8.1f} M events/s  ({med['spsc'] / med['mpq']:.0f}x mp.Queue)")
    print(f"MPMC channel, 2 procs -> 1, batch 16384: {med['mpmc2'] / 1e6:8.1f} M events/s  ({med['mpmc2'] / med['mpq']:.0f}x mp.Queue)")
    print(f"mp.Queue, same batches (peer)          : {med['mpq'] / 1e6:8.1f} M events/s")
    print(f"SpscRing put+get per event (Python)    : {med['ring1'] / 1e6:8.2f} M/s  ({med['ring1'] / med['mpq1']:.0f}x mp.Queue)")
    print(f"Channel put+get per event (Python)     : {med['chan1'] / 1e6:8.2f} M/s  ({med['chan1'] / med['mpq1']:.0f}x mp.Queue)")
    print(f"mp.Queue put+get per event (peer)      : {med['mpq1'] / 1e6:8.3f} M/s")
    print(f"resume after SIGKILL (gap event)       : {med['resume']:8.1f} ms")
    print(f"(medians of {repeats} interleaved runs)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
