"""``ctas7-intel hft-monitor``: watch a running cluster from another process.

The monitor maps the cluster's metrics segment (``/dev/shm/ctas7-metrics-<name>``)
read-only, so attaching, watching and leaving have no effect on the cluster.
It finds the cluster by ``--name``, or takes the only one running.

- default: a rich live view (:class:`ctas7.console.MonitorView`) refreshed
  ``--refresh`` times a second, until the cluster finishes or dies (a
  one-line message says which) or Ctrl-C;
- ``--once``: one view and exit; ``--once --json``: one snapshot as JSON;
- ``--json`` alone: one JSON line per refresh, for scripts.

The section flags (``--latency-histogram`` ...) take ``true``/``false`` or
nothing (= true). With none given every section is shown; with some set to
true, only those (the header and the accounting are always there).

Exit codes: 0 when the cluster finished (or on Ctrl-C), 1 when no cluster
is running, it died, or its segment cannot be read, 2 on bad arguments.

Examples
--------
>>> import argparse
>>> p = argparse.ArgumentParser()
>>> add_arguments(p)
>>> a = p.parse_args("--latency-histogram true --throughput-graph true --convergence-events true".split())
>>> sections(a)
('latency_histogram', 'throughput_graph', 'convergence_events')
>>> sections(p.parse_args(["--convergence-events", "false"]))
('latency_histogram', 'throughput_graph', 'rings', 'stages')
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

__all__ = ["add_arguments", "run", "main", "parse_bool", "sections", "attach", "NoCluster"]

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_FLAGS = {
    "latency_histogram": "the ingest-to-decision latency histogram with p50/p99/p99.9/max",
    "throughput_graph": "events/s over the last minutes",
    "convergence_events": "the latest convergences with PRISM's recommendation",
    "rings": "channel occupancy per worker",
    "stages": "time per batch of each stage",
}


class NoCluster(Exception):
    """No cluster to attach to; ``str()`` is the one-line reason."""


def parse_bool(text: str) -> bool:
    """``'true'``/``'false'`` (also yes/no, on/off, 1/0) -> bool.

    >>> parse_bool("True"), parse_bool("off")
    (True, False)
    """
    t = str(text).strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    for dest, help_ in _FLAGS.items():
        p.add_argument("--" + dest.replace("_", "-"), dest=dest, type=parse_bool, nargs="?", const=True,
                       default=None, metavar="true|false", help=f"show {help_}")
    p.add_argument("--name", metavar="NAME",
                   help="the cluster's metrics name (hft-cluster --metrics-name; default: the only one running)")
    p.add_argument("--once", action="store_true", help="print one view (or with --json one snapshot) and exit")
    p.add_argument("--json", action="store_true",
                   help="JSON instead of the rich view (with --once one object, else one line per refresh)")
    p.add_argument("--refresh", type=float, default=4.0, metavar="HZ", help="refreshes per second (default 4)")
    p.add_argument("--wait", type=float, default=0.0, metavar="S",
                   help="wait up to S seconds for a cluster to start (default 0: fail at once)")


def sections(args) -> tuple:
    """The sections to show from the flags: all by default, only the ``true`` ones if any is."""
    from ctas7.console import SECTIONS

    chosen = {s: getattr(args, s, None) for s in SECTIONS}
    if any(v is True for v in chosen.values()):
        return tuple(s for s in SECTIONS if chosen[s] is True)
    return tuple(s for s in SECTIONS if chosen[s] is not False)


def attach(name: str | None = None, wait: float = 0.0):
    """A :class:`ctas7.metrics.MetricsReader` on the named (or the only running) cluster.

    Raises :class:`NoCluster` with a one-line reason when there is none,
    several, or the segment cannot be read.
    """
    from ctas7.metrics import MetricsReader, find_running

    end = time.monotonic() + max(0.0, wait)
    while True:
        try:
            if name is None:
                running = find_running()
                if len(running) > 1:
                    raise NoCluster(f"{len(running)} clusters are running ({', '.join(running)}); choose one with --name")
                if running:
                    return MetricsReader.attach(running[0])
                reason = "no ctas7 cluster is running (start one with: ctas7-intel hft-cluster)"
            else:
                try:
                    return MetricsReader.attach(name)
                except FileNotFoundError:
                    others = find_running()
                    reason = f"no cluster named {name!r} is running" + (
                        f" (running: {', '.join(others)})" if others else "")
        except (PermissionError, ValueError) as exc:
            raise NoCluster(f"cannot read the cluster's metrics: {exc}") from None
        if time.monotonic() >= end:
            raise NoCluster(reason)
        time.sleep(0.1)


def _json_default(o):
    return str(o)


def _watch_json(reader, args) -> int:
    from ctas7.console import collect, gone_reason

    period = 1.0 / args.refresh
    while True:
        snap = collect(reader)
        print(json.dumps(snap, default=_json_default), flush=True)
        reason = gone_reason(snap)
        if reason is not None:
            print(f"hft-monitor: {reason}", file=sys.stderr)
            return 0 if snap.get("state") == "done" else 1
        time.sleep(max(period, 5 * snap.get("snapshot_s", 0.0)))


def run(args) -> int:
    from rich.console import Console

    from ctas7.console import MonitorView, collect, gone_reason, live

    if not args.refresh > 0 or args.refresh > 60:
        print(f"hft-monitor: --refresh must be in (0, 60] per second, got {args.refresh}", file=sys.stderr)
        return 2
    try:
        reader = attach(args.name, args.wait)
    except NoCluster as exc:
        print(f"hft-monitor: {exc}", file=sys.stderr)
        return 1
    shown = sections(args)
    try:
        with reader:
            if args.once:
                snap = collect(reader)
                if args.json:
                    print(json.dumps(snap, default=_json_default))
                else:
                    Console().print(MonitorView(snap, shown, message=gone_reason(snap)))
                return 0
            if args.json:
                return _watch_json(reader, args)
            reason = live(reader, args.refresh, threading.Event(), sections=shown)
            print(f"hft-monitor: {reason}", file=sys.stderr)
            return 0 if reason.endswith("finished") else 1
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        return 0


def main(argv=None) -> int:
    """``python -m ctas7.monitor ...`` (the same as ``ctas7-intel hft-monitor ...``)."""
    p = argparse.ArgumentParser(prog="ctas7-intel hft-monitor",
                                description="watch a running hft-cluster from another process")
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
