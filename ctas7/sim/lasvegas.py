"""Las Vegas validation: noisy replays of every scenario's events.

For each scenario, one incident run (and one null run) is generated from the
seed, and its *event stream* is replayed ``runs`` times, each time through an
independent noise model, re-binned to activity and run through the meter:

* **drop**: a rate ``r_drop ~ U(0.10, 0.20)`` is drawn per replay and exactly
  ``round(r_drop * n)`` events, chosen uniformly, are removed;
* **jitter**: every surviving event's time moves by ``N(0, sigma)`` with
  ``sigma = 0.10 * tick_ns`` (rounded to ns, clipped to the run's span so
  jitter never drops events on its own), and the stream is re-sorted;
* **inject**: a rate ``r_inj ~ U(0.05, 0.10)`` is drawn per replay and
  ``round(r_inj * n)`` false events are added, with uniform random nodes and
  times over the run, and kinds, values and stations drawn from the run's
  own events (so they look like real traffic);

where ``n`` is the original number of events. With ``playbooks`` (the
default) the scenario's TETH playbook (:func:`ctas7.sim.montecarlo.playbook`)
runs over each *noisy* stream, so drops, jitter and injected events change
the pattern evidence exactly as they change the activity; the meter gets
both (``evaluate_activity(..., evidence=...)``). A replay *succeeds* for an
incident when an alarm falls in ``onset..deadline`` (inclusive); its delay is
the first such alarm's tick minus the onset. Null replays (the same noise on
the incident-free run) give the false-alarm figure: the share of null
replays with any alarm. Rates carry Wilson 95% bounds.

Examples
--------
>>> import numpy as np
>>> from ctas7.events import make_events
>>> from ctas7.sim.lasvegas import noisy_replay
>>> ev = make_events(ts=np.arange(1000) * 1_000, node=np.arange(1000) % 4)
>>> out, noise = noisy_replay(ev, np.random.default_rng(0), tick_ns=10_000, n_nodes=4, n_ticks=100)
>>> 0.10 <= noise.drop_rate <= 0.20 and 0.05 <= noise.inject_rate <= 0.10
True
>>> len(out) == 1000 - noise.dropped + noise.injected
True
>>> bool((np.diff(out["ts"]) >= 0).all())
True
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass

import numpy as np

from ctas7.events import EVENT_DTYPE, KIND_CONTROL_BASE, validate_batch
from ctas7.sim.montecarlo import (
    Executor,
    _jsonable,
    _P_LASVEGAS,
    _wilson,
    derive_seed,
    parse_bool,
    progress_bar,
    resolve_cores,
    select_scenarios,
)

__all__ = [
    "DROP_RANGE",
    "INJECT_RANGE",
    "JITTER_TICKS",
    "ReplayNoise",
    "noisy_replay",
    "replay_scenario",
    "las_vegas",
    "add_arguments",
    "run",
]

DROP_RANGE = (0.10, 0.20)
INJECT_RANGE = (0.05, 0.10)
#: Standard deviation of the Gaussian time jitter, in ticks.
JITTER_TICKS = 0.10


@dataclass(frozen=True)
class ReplayNoise:
    """What the noise model did to one replay."""

    drop_rate: float
    dropped: int
    inject_rate: float
    injected: int
    jitter_sigma_ns: float


def noisy_replay(
    events: np.ndarray,
    rng: np.random.Generator,
    *,
    tick_ns: int,
    n_nodes: int,
    n_ticks: int,
    t0_ns: int = 0,
    drop=DROP_RANGE,
    inject=INJECT_RANGE,
    jitter_ticks: float = JITTER_TICKS,
) -> tuple[np.ndarray, ReplayNoise]:
    """One noisy copy of ``events``: drop, jitter, inject, re-sort.

    Parameters
    ----------
    events : numpy.ndarray of EVENT_DTYPE
        The original stream (not modified).
    rng : numpy.random.Generator
        The replay's own generator.
    tick_ns, n_nodes, n_ticks, t0_ns : int
        The run's geometry: injected events fall on nodes ``0..n_nodes-1``
        and times in ``[t0_ns, t0_ns + n_ticks * tick_ns)``; jittered times
        are clipped to that span.
    drop, inject : (float, float)
        Ranges of the per-replay drop and injection rates (fractions of the
        original event count).
    jitter_ticks : float
        Standard deviation of the Gaussian time jitter, in ticks.

    Returns
    -------
    (numpy.ndarray, ReplayNoise)
        The time-sorted noisy stream and the rates actually applied.
    """
    validate_batch(events, name="events")
    if not (0.0 <= drop[0] <= drop[1] <= 1.0 and 0.0 <= inject[0] <= inject[1]):
        raise ValueError(f"bad noise ranges drop={drop} inject={inject}")
    if jitter_ticks < 0:
        raise ValueError(f"jitter_ticks must be >= 0, got {jitter_ticks}")
    n = events.shape[0]
    lo_ns = int(t0_ns)
    hi_ns = int(t0_ns) + int(n_ticks) * int(tick_ns) - 1

    drop_rate = float(rng.uniform(*drop))
    n_drop = int(round(drop_rate * n))
    keep = np.ones(n, dtype=bool)
    if n_drop:
        keep[rng.choice(n, size=n_drop, replace=False)] = False
    kept = _take(events, np.flatnonzero(keep))

    sigma = float(jitter_ticks) * float(tick_ns)
    if sigma > 0 and kept.shape[0]:
        shift = np.rint(rng.normal(0.0, sigma, size=kept.shape[0])).astype(np.int64)
        kept["ts"] = np.clip(kept["ts"] + shift, lo_ns, hi_ns)

    inject_rate = float(rng.uniform(*inject))
    n_inj = int(round(inject_rate * n))
    fake = np.zeros(n_inj, dtype=EVENT_DTYPE)
    if n_inj:
        obs = events[events["kind"] < KIND_CONTROL_BASE]
        src = obs if obs.shape[0] else events
        pick = rng.integers(0, src.shape[0], size=n_inj) if src.shape[0] else None
        fake["ts"] = rng.integers(lo_ns, hi_ns + 1, size=n_inj)
        fake["node"] = rng.integers(0, int(n_nodes), size=n_inj)
        fake["sch"] = rng.integers(0, np.iinfo(np.uint64).max, size=n_inj, dtype=np.uint64, endpoint=True)
        if pick is not None:
            fake["kind"] = src["kind"][pick]
            fake["value"] = src["value"][pick]
            fake["station"] = src["station"][pick]
        else:
            fake["value"] = 1.0
    out = np.concatenate([kept, fake])
    out = _take(out, np.argsort(out["ts"], kind="stable"))
    return out, ReplayNoise(drop_rate, n_drop, inject_rate, n_inj, sigma)


def _take(events: np.ndarray, idx: np.ndarray) -> np.ndarray:
    # Gathering 32-byte records as four uint64 words is ~6x faster than
    # numpy's structured-dtype fancy indexing, which copies field by field.
    words = np.ascontiguousarray(events).view(np.uint64).reshape(-1, 4)
    return words[idx].reshape(-1).view(EVENT_DTYPE)


# ---------------------------------------------------------------------------
# Per-scenario replays (one task each)
# ---------------------------------------------------------------------------

def _alarms(events, run, config, name=None):
    from ctas7.sim.montecarlo import _evidence_of
    from ctas7.sim.scenarios import bin_activity
    from ctas7.stages.meter import evaluate_activity

    act = bin_activity(events, run.tick_ns, run.n_nodes, run.n_ticks, t0_ns=run.t0_ns)
    ev, cor = _evidence_of(name, run, events) if name is not None else (None, None)
    return evaluate_activity(act, run.groups, config, evidence=ev, corroboration=cor)


def _first_in(alarms: np.ndarray, onset: int, deadline: int):
    lo = np.searchsorted(alarms, onset, "left")
    if lo < alarms.shape[0] and alarms[lo] <= deadline:
        return int(alarms[lo])
    return None


def replay_scenario(name: str, params_dict: dict, runs: int, null_runs: int, seed: int, k: int,
                    jitter_ticks: float = JITTER_TICKS, playbooks: bool = True) -> dict:
    """``runs`` noisy replays of scenario ``name``'s incident run and
    ``null_runs`` of its null run, with parameters ``params_dict`` (and the
    scenario playbook's evidence, recomputed on every noisy stream, when
    ``playbooks``).

    ``k`` is the scenario's position in the selection; every replay's
    generator is seeded by ``(seed, k, replay)``, so results do not depend on
    scheduling.
    """
    from ctas7.sim.scenarios import SCENARIOS
    from ctas7.stages.meter import MeterParams

    config = MeterParams.from_dict(params_dict).compile()
    sc = SCENARIOS[name]
    run_seed = derive_seed(seed, _P_LASVEGAS, k, 0)
    inc_run = sc.generate(run_seed)
    null_run = sc.generate(run_seed, null=True)
    windows = [(int(i.onset), int(i.deadline)) for i in inc_run.incidents]
    pb = name if playbooks else None
    clean = _alarms(inc_run.events, inc_run, config, pb)
    clean_hits = sum(_first_in(clean, a, b) is not None for a, b in windows)

    successes = trials = 0
    delays_ticks: list = []
    noise_rates = []
    for r in range(runs):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), _P_LASVEGAS, k, 1, r]))
        ev, noise = noisy_replay(inc_run.events, rng, tick_ns=inc_run.tick_ns, n_nodes=inc_run.n_nodes,
                                 n_ticks=inc_run.n_ticks, t0_ns=inc_run.t0_ns, jitter_ticks=jitter_ticks)
        noise_rates.append((noise.drop_rate, noise.inject_rate))
        alarms = _alarms(ev, inc_run, config, pb)
        for onset, deadline in windows:
            trials += 1
            hit = _first_in(alarms, onset, deadline)
            if hit is not None:
                successes += 1
                delays_ticks.append(hit - onset)
    null_alarm_runs = 0
    null_alarms = 0
    for r in range(null_runs):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), _P_LASVEGAS, k, 2, r]))
        ev, noise = noisy_replay(null_run.events, rng, tick_ns=null_run.tick_ns, n_nodes=null_run.n_nodes,
                                 n_ticks=null_run.n_ticks, t0_ns=null_run.t0_ns, jitter_ticks=jitter_ticks)
        noise_rates.append((noise.drop_rate, noise.inject_rate))
        a = _alarms(ev, null_run, config, pb)
        null_alarms += len(a)
        null_alarm_runs += len(a) > 0
    d = np.asarray(delays_ticks, dtype=np.float64)
    rates = np.asarray(noise_rates, dtype=np.float64).reshape(-1, 2)
    s_lo, s_hi = _wilson(successes, trials)
    f_lo, f_hi = _wilson(null_alarm_runs, null_runs)
    tick_s = inc_run.tick_ns / 1e9
    return {
        "scenario": name,
        "incidents": len(windows),
        "clean_detected": clean_hits,
        "replays": runs,
        "trials": trials,
        "successes": successes,
        "success_rate": successes / trials if trials else float("nan"),
        "success_lo": s_lo,
        "success_hi": s_hi,
        "delay_median_ticks": float(np.median(d)) if d.size else float("nan"),
        "delay_p90_ticks": float(np.percentile(d, 90)) if d.size else float("nan"),
        "delay_median_s": float(np.median(d)) * tick_s if d.size else float("nan"),
        "delay_p90_s": float(np.percentile(d, 90)) * tick_s if d.size else float("nan"),
        "delays_ticks": [int(x) for x in delays_ticks],
        "tick_s": tick_s,
        "null_replays": null_runs,
        "null_alarm_runs": null_alarm_runs,
        "null_alarms": null_alarms,
        "false_alarm_rate": null_alarm_runs / null_runs if null_runs else float("nan"),
        "false_alarm_lo": f_lo,
        "false_alarm_hi": f_hi,
        "drop_rate_min": float(rates[:, 0].min()) if rates.size else float("nan"),
        "drop_rate_max": float(rates[:, 0].max()) if rates.size else float("nan"),
        "inject_rate_min": float(rates[:, 1].min()) if rates.size else float("nan"),
        "inject_rate_max": float(rates[:, 1].max()) if rates.size else float("nan"),
    }


def las_vegas(params, *, runs: int = 100, null_runs: int | None = None, scenarios=41, seed: int = 0,
              cores: int = 1, scheduler: str | None = None, progress: bool = False,
              jitter_ticks: float = JITTER_TICKS, connect_timeout: float = 5.0, playbooks: bool = True) -> dict:
    """Noisy replays of every selected scenario with ``params``.

    Parameters
    ----------
    params : MeterParams or dict or path
        Meter parameters (e.g. ``best_params.json`` of ``hft-monte-carlo``).
    runs : int
        Replays of each scenario's incident run.
    null_runs : int, optional
        Replays of each scenario's null run (default: ``runs``).
    scenarios : int or str or sequence of str
        The first N registered scenarios, or names.
    seed : int
        Seeds the runs and every replay's noise.
    cores, scheduler :
        As for :func:`ctas7.sim.montecarlo.monte_carlo`.
    playbooks : bool
        Give the meter the scenario's TETH evidence (playbook patterns and
        corroboration), recomputed on every noisy stream (False: activity only).

    Returns
    -------
    dict
        ``{"scenarios": [per-scenario dicts], "overall": {...}, ...}``.

    Examples
    --------
    >>> from ctas7.stages.meter import MeterParams
    >>> rep = las_vegas(MeterParams(), runs=2, null_runs=1, scenarios=1)
    >>> rep["scenarios"][0]["replays"], rep["overall"]["null_replays"]
    (2, 1)
    """
    from ctas7.stages.meter import MeterParams

    if isinstance(params, MeterParams):
        p = params
    elif isinstance(params, dict):
        p = MeterParams.from_dict(params)
    else:
        p = MeterParams.from_file(params)
    if runs < 1:
        raise ValueError(f"--runs must be at least 1, got {runs}")
    null_runs = runs if null_runs is None else int(null_runs)
    if null_runs < 0:
        raise ValueError(f"--null-runs must be >= 0, got {null_runs}")
    names = select_scenarios(scenarios)
    pd = p.to_dict()
    t0 = time.perf_counter()
    per: list = [None] * len(names)
    with Executor(cores, scheduler, connect_timeout=connect_timeout) as ex, \
            progress_bar(progress, len(names), "Las Vegas replays", unit="scenarios") as advance:
        tasks = [(n, pd, runs, null_runs, seed, k, jitter_ticks, bool(playbooks)) for k, n in enumerate(names)]
        for i, res in ex.submit_all(replay_scenario, tasks):
            per[i] = res
            advance(1)
        kind = ex.kind
    succ = sum(r["successes"] for r in per)
    trials = sum(r["trials"] for r in per)
    fa = sum(r["null_alarm_runs"] for r in per)
    nn = sum(r["null_replays"] for r in per)
    delays_s = np.asarray([d * r["tick_s"] for r in per for d in r["delays_ticks"]], dtype=np.float64)
    s_lo, s_hi = _wilson(succ, trials)
    f_lo, f_hi = _wilson(fa, nn)
    overall = {
        "trials": trials, "successes": succ, "success_rate": succ / trials if trials else float("nan"),
        "success_lo": s_lo, "success_hi": s_hi,
        "null_replays": nn, "null_alarm_runs": fa, "false_alarm_rate": fa / nn if nn else float("nan"),
        "false_alarm_lo": f_lo, "false_alarm_hi": f_hi,
        "delay_median_s": float(np.median(delays_s)) if delays_s.size else float("nan"),
        "delay_p90_s": float(np.percentile(delays_s, 90)) if delays_s.size else float("nan"),
    }
    return {
        "runs": runs, "null_runs": null_runs, "seed": seed, "executor": kind, "playbooks": bool(playbooks),
        "noise": {"drop_range": list(DROP_RANGE), "inject_range": list(INJECT_RANGE),
                  "jitter": f"Gaussian, sigma = {jitter_ticks:g} tick, clipped to the run, re-sorted"},
        "params": pd, "seconds": time.perf_counter() - t0, "scenarios": per, "overall": overall,
    }


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ctas7-intel hft-las-vegas``."""
    parser.add_argument("--runs", type=int, default=100, help="noisy replays per scenario (default 100)")
    parser.add_argument("--null-runs", type=int, default=None, help="null replays per scenario (default: --runs)")
    parser.add_argument("--params", required=True, metavar="FILE",
                        help="meter parameters JSON (e.g. best_params.json from hft-monte-carlo)")
    parser.add_argument("--scenarios", default="41", help="how many scenarios (first N) or comma-separated names")
    parser.add_argument("--seed", type=int, default=0, help="seed of the runs and the noise (default 0)")
    parser.add_argument("--parallel", type=parse_bool, nargs="?", const=True, default=True, metavar="BOOL",
                        help="run on several processes (true/false; bare flag means true)")
    parser.add_argument("--cores", type=int, default=None, help="worker processes (default: all CPUs)")
    parser.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT", help="run on a Dask scheduler")
    parser.add_argument("--jitter-ticks", type=float, default=JITTER_TICKS,
                        help=f"sigma of the Gaussian time jitter in ticks (default {JITTER_TICKS})")
    parser.add_argument("--no-playbooks", dest="playbooks", action="store_false",
                        help="score activity only (no TETH evidence: scenario playbook patterns and corroboration)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _print_report(rep: dict) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"Las Vegas: {rep['runs']} noisy replays per scenario (Wilson 95%)", box=box.SIMPLE_HEAD,
              pad_edge=False, collapse_padding=True)
    t.add_column("scenario", no_wrap=True, overflow="ellipsis", max_width=20)
    for col in ("clean", "success", "lo", "delay s", "p90 s", "null FA", "FA hi"):
        t.add_column(col, justify="right", no_wrap=True, min_width=len(col))
    for r in rep["scenarios"]:
        t.add_row(
            r["scenario"], f"{r['clean_detected']}/{r['incidents']}", f"{r['successes']}/{r['trials']}",
            f"{r['success_lo']:.3f}", f"{r['delay_median_s']:.4g}",
            f"{r['delay_p90_s']:.4g}", f"{r['null_alarm_runs']}/{r['null_replays']}", f"{r['false_alarm_hi']:.3f}",
        )
    o = rep["overall"]
    t.add_section()
    t.add_row("overall", "", f"{o['successes']}/{o['trials']}", f"{o['success_lo']:.3f}",
              f"{o['delay_median_s']:.4g}", f"{o['delay_p90_s']:.4g}", f"{o['null_alarm_runs']}/{o['null_replays']}",
              f"{o['false_alarm_hi']:.3f}")
    console = Console()
    console.print(t)
    console.print(f"overall: {o['successes']}/{o['trials']} incident replays detected in their window "
                  f"(Wilson 95% {o['success_lo']:.3f}-{o['success_hi']:.3f}); null replays with an alarm "
                  f"{o['null_alarm_runs']}/{o['null_replays']} (upper bound {o['false_alarm_hi']:.3f}); "
                  f"delay median {o['delay_median_s']:.4g} s, p90 {o['delay_p90_s']:.4g} s")
    console.print(f"noise: drop {rep['noise']['drop_range']}, inject {rep['noise']['inject_range']}, "
                  f"jitter {rep['noise']['jitter']}; {rep['seconds']:.1f} s on {rep['executor']}")


def run(args) -> int:
    """Entry point of ``ctas7-intel hft-las-vegas``."""
    from ctas7.stages.meter import MeterParams

    def say(msg):
        print(f"hft-las-vegas: {msg}", file=sys.stderr)

    try:
        params = MeterParams.from_file(args.params)
    except (TypeError, ValueError, OSError) as exc:
        print(f"ctas7-intel hft-las-vegas: error: bad --params: {exc}", file=sys.stderr)
        return 2
    try:
        cores = resolve_cores(args.cores, args.parallel, say)
        rep = las_vegas(params, runs=args.runs, null_runs=args.null_runs, scenarios=args.scenarios,
                        seed=args.seed, cores=cores, scheduler=args.scheduler,
                        progress=not args.json and sys.stderr.isatty(), jitter_ticks=args.jitter_ticks,
                        playbooks=args.playbooks)
    except (ValueError, ConnectionError, RuntimeError, OSError) as exc:
        print(f"ctas7-intel hft-las-vegas: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(_jsonable(rep), indent=2, allow_nan=False))
    else:
        _print_report(rep)
    return 0
