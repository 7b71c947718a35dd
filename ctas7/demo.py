"""``ctas7-intel demo``: a synthetic stream through a shared-memory channel and the default chain.

A producer process writes a seeded 247-station stream, with a burst on a few
nodes near the end, into a named channel; this process drains the channel,
runs TETH | Meter | AXON | PRISM and prints the convergences and the
accounting (produced = processed + gaps).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events", type=int, default=2_000_000, help="events to stream (default 2,000,000)")
    p.add_argument("--stations", type=int, default=247, help="ground stations (default 247)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _stream(n_events, n_stations, seed):
    from ctas7.sim.synthetic import synthetic_stream

    return synthetic_stream(
        n_events, n_stations=n_stations, burst_nodes=(3, 17, 42, 99, 180), burst_start=0.85,
        burst_factor=12.0, tick_ns=1_000_000, rate_per_tick=4.0 * n_stations, seed=seed,
    )


def _produce(name, n_events, n_stations, seed):
    from ctas7.channel import Channel

    stream = _stream(n_events, n_stations, seed)
    with Channel.attach(name) as ch:
        for i in range(0, stream.shape[0], 8192):
            ch.put_many(stream[i : i + 8192], timeout=30)


def run(args) -> int:
    from ctas7.chain import default_chain
    from ctas7.channel import Channel
    from ctas7.kernels import simd_info
    from ctas7.stage import Frame

    name = f"demo-{os.getpid()}"
    chain = default_chain()
    processed = 0
    convergences = []
    with Channel.create(name, 1 << 16) as ch:
        ctx = mp.get_context("spawn")
        producer = ctx.Process(target=_produce, args=(name, args.events, args.stations, args.seed))
        t0 = time.perf_counter()
        producer.start()
        while processed < args.events:
            batch = ch.get_many(65_536, timeout=30)
            frame = chain.process(Frame(events=batch))
            processed += int((batch["kind"] < 0xFF00).sum())
            convergences.extend(frame.reports)
        elapsed = time.perf_counter() - t0
        producer.join()
        gaps = ch.lost
    chain.stages[2].close()

    summary = {
        "simd": simd_info()["active"],
        "produced": args.events,
        "processed": processed,
        "lost_in_gaps": int(gaps),
        "events_per_s": round(processed / elapsed),
        "convergences": [
            {"tick": r.tick, "nodes": [n.node for n in r.nodes], "confidence": round(r.confidence, 3),
             "level": r.level.name if r.level else None, "tier": r.tier.name if r.tier else None}
            for r in convergences
        ],
        "stage_p50_us_per_batch": {
            k: round(h.get_value_at_percentile(50) / 1e3, 1) for k, h in chain.latency.items()
        },
    }
    if args.json:
        print(json.dumps(summary))
        return 0
    from rich.console import Console

    console = Console()
    console.print(f"[bold]ctas7 demo[/]: {args.events:,} events from {args.stations} stations "
                  f"through a shared-memory channel, SIMD kernels: [cyan]{summary['simd']}[/]")
    console.print(f"processed {processed:,} events in {elapsed:.2f} s ({summary['events_per_s']:,} events/s, "
                  f"end to end including the producer); lost in gaps: {gaps}")
    console.print(f"per-stage median per batch (us): {summary['stage_p50_us_per_batch']}")
    for r in convergences[:3]:
        console.print(r)
    if len(convergences) > 3:
        console.print(f"... and {len(convergences) - 3} more convergences")
    if not convergences:
        console.print("no convergence in this stream", style="yellow")
    return 0 if processed == args.events else 1


if __name__ == "__main__":
    sys.exit(run(argparse.Namespace(events=200_000, stations=247, seed=7, json=False)))
