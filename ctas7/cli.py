"""The ``ctas7-intel`` command line.

Each subcommand's work lives in its own module and is imported only when that
subcommand runs, so ``ctas7-intel --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main", "build_parser"]

# name -> (module, help). Each module provides add_arguments(parser) and run(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "hft-cluster": ("ctas7.cluster", "run the cluster: station workers, shared-memory channels, the chain, sinks"),
    "hft-monitor": ("ctas7.monitor", "watch a running hft-cluster: latency histogram, throughput graph, convergence events"),
    "demo": ("ctas7.demo", "a short demo: events through a shared-memory channel and the default chain"),
    "replay": ("ctas7.replay", "run the default chain over a recorded event stream"),
    "hft-monte-carlo": ("ctas7.sim.montecarlo", "seeded random search of the chain's parameters over the scenarios"),
    "hft-las-vegas": ("ctas7.sim.lasvegas", "noisy replays of every scenario with given parameters"),
    "nab-score": ("ctas7.sim.nab", "score the meter's per-node detector (and River PageHinkley) on the NAB corpus: "
                  "windows caught, false alarms, NAB standard-profile score"),
    "surreal-load": ("ctas7.sinks.surreal", "load a SurrealDB spill file back into the database"),
}


def build_parser() -> argparse.ArgumentParser:
    from ctas7 import __version__

    parser = argparse.ArgumentParser(prog="ctas7-intel", description="ctas7 real-time convergence detection")
    parser.add_argument("--version", action="version", version=f"ctas7 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        print(f"ctas7-intel {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
