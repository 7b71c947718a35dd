"""``ctas7-intel replay``: run the default chain over a recorded event stream.

The input is an event file (CSV, JSONL or ``.npy`` of ``EVENT_DTYPE``; see
README "Event files"). Rows are replayed in event-time order (a stable sort,
so ties keep file order). Each convergence becomes one JSON line in the
alarms file, with its time, nodes, confidence, threat level, tier and
recommendation. The output depends only on the input and the parameters:
the same input gives byte-identical alarms.

Accounting: ``rows = processed + dead_lettered``; malformed rows go to the
dead-letter file (``ALARMS.dead-letter.jsonl`` unless ``--dead-letter`` is
given) with their line number and reason.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["add_arguments", "run", "replay", "alarm_record"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="INPUT", help="event file: .csv, .jsonl or .npy (EVENT_DTYPE)")
    p.add_argument("--params", metavar="PARAMS", help="meter parameter file (JSON), e.g. from hft-monte-carlo")
    p.add_argument("--out", metavar="ALARMS", default="alarms.jsonl", help="alarms output, one JSON line each")
    p.add_argument("--dead-letter", metavar="PATH", help="where malformed rows go (default: ALARMS.dead-letter.jsonl)")
    p.add_argument("--batch-size", type=int, default=65_536, help="events per chain batch (default 65536)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def alarm_record(report) -> dict:
    """The alarm line written for one PRISM report."""
    return {
        "ts": report.ts,
        "tick": report.tick,
        "nodes": [n.node for n in report.nodes],
        "groups": list(report.groups),
        "confidence": report.confidence,
        "weighted_count": report.weighted_count,
        "pattern_matches": report.pattern_matches,
        "threat_level": None if report.level is None else report.level.name,
        "tier": None if report.tier is None else report.tier.name,
        "recommendation": report.recommendation,
    }


def replay(events: np.ndarray, params=None, *, batch_size: int = 65_536, on_batch=None):
    """Run the default chain over ``events``; return (alarm records, chain).

    ``on_batch(n)`` is called after each batch with the events it held.
    """
    from ctas7.chain import default_chain
    from ctas7.stage import Frame

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = np.argsort(events["ts"], kind="stable")
    events = np.ascontiguousarray(events[order])
    chain = default_chain(params)
    alarms = []
    for i in range(0, events.shape[0], batch_size):
        batch = events[i : i + batch_size]
        frame = chain.process(Frame(events=batch))
        alarms.extend(alarm_record(r) for r in frame.reports)
        if on_batch is not None:
            on_batch(batch.shape[0])
    axon = chain.stages[2]
    axon.close()
    return alarms, chain


def run(args) -> int:
    from ctas7.chain import load_params
    from ctas7.sim.scenarios import read_events

    try:
        params = load_params(args.params)
    except (ValueError, TypeError, KeyError) as exc:
        print(f"ctas7-intel replay: bad parameters in {args.params}: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    dead = Path(args.dead_letter) if args.dead_letter else out.with_name(out.name + ".dead-letter.jsonl")
    if dead.exists():
        dead.unlink()
    try:
        events, n_bad = read_events(args.input, dead_letter=dead)
    except ValueError as exc:
        print(f"ctas7-intel replay: {exc}", file=sys.stderr)
        return 2

    t0 = time.perf_counter()
    if args.json or not sys.stderr.isatty():
        alarms, chain = replay(events, params, batch_size=args.batch_size)
    else:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(
            TextColumn("replay"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} events"),
            TimeRemainingColumn(), transient=True,
        ) as progress:
            task = progress.add_task("replay", total=int(events.shape[0]))
            alarms, chain = replay(
                events, params, batch_size=args.batch_size, on_batch=lambda n: progress.advance(task, n)
            )
    elapsed = time.perf_counter() - t0

    with open(out, "w") as f:
        for a in alarms:
            f.write(json.dumps(a, sort_keys=True) + "\n")

    levels: dict[str, int] = {}
    for a in alarms:
        levels[str(a["threat_level"])] = levels.get(str(a["threat_level"]), 0) + 1
    summary = {
        "input": str(args.input),
        "rows": int(events.shape[0]) + n_bad,
        "processed": int(events.shape[0]),
        "dead_lettered": n_bad,
        "dead_letter_file": str(dead) if n_bad else None,
        "convergences": len(alarms),
        "by_threat_level": dict(sorted(levels.items())),
        "alarms_file": str(out),
        "elapsed_s": round(elapsed, 6),
        "events_per_s": round(events.shape[0] / elapsed) if elapsed > 0 else None,
    }
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"replay of {args.input}", show_header=False)
        for k, v in summary.items():
            table.add_row(k.replace("_", " "), f"{v:,}" if isinstance(v, int) else str(v))
        Console().print(table)
    return 0
