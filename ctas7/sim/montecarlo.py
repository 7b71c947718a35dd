"""Monte Carlo tuning of the convergence meter over the simulation scenarios.

A seeded random search: run ``i`` draws its meter parameters from a generator
seeded by ``(seed, i)`` and is scored on *every* selected scenario, so a
run's result never depends on how runs were scheduled, chunked or resumed.

The search has three phases, because a figure that meets the targets on its
Wilson 95% bounds needs hundreds of runs, far too many per search point:

1. *Search.* Every run evaluates its parameters on one incident run per
   scenario plus a small set of null (incident-free) runs, and gets a score
   (:func:`search_score`): detection rate minus ``FA_WEIGHT`` times the
   share of runs with a false alarm (any alarm in a null run, or outside
   every incident window in an incident run), so a point that trades one
   false alarm for one more detection loses.
1b. *Local refinement* (``refine_rounds`` rounds, default 3). Random
   sampling lands few points in the good region, so each round takes the
   ``refine_top`` best points so far (search and earlier rounds, by the same
   ranking) plus the *incumbent* (``start``: by default the current
   ``MeterParams()`` defaults, scored on the search set first) and scores
   ``refine_steps`` coordinate perturbations of each on the same search
   set. Perturbation ``j`` of parent ``p`` in round ``r`` is drawn from a
   generator seeded by ``(seed, r, p, j)`` (:func:`perturb`; the step
   shrinks by half each round) and gets run id
   ``runs + r * P * refine_steps + rank * refine_steps + j`` with ``P``
   parents per round (the incumbent is ``runs + refine_rounds * P *
   refine_steps``), so the whole phase is a pure function of the search
   table: it is recomputed after a resume, never resumed itself, and its
   rows go to ``refined.csv``.
2. *Validation.* The ``top_k`` runs by score, and the incumbent, are re-evaluated on a held-out
   set (``val_seeds`` fresh seeds x every scenario, incident and null, with
   seeds disjoint from the search). The chosen point maximises the detection
   lower bound subject to a false-alarm upper bound at or below
   ``fa_target``; if no candidate meets that, the one with the lowest
   false-alarm upper bound is reported, and the summary says plainly that
   the targets were not met.

Pattern evidence
----------------
The meter scores activity *and* TETH pattern matches (DESIGN 4.1: matches
raise the evidence of their node; ``pattern_bonus`` bits per match in the
window, see :mod:`ctas7.stages.meter`). Each scenario gets a *playbook*
(:func:`playbook`): the CEP rules an analyst would write for its known
TTPs, taken from the scenario's own indicator sequences
(``Scenario.indicator_sequences``). For every sequence of two or more steps
it holds the whole chain, ``s1 ~> s2 ~> ... ~> sm within L``, and, for
three or more steps, its final stage ``s(m-1) ~> sm within L2`` (relaxed
contiguity: other events may come between steps). ``L`` is the longest lead
of the incident recipe plus one tick (event time), ``L2`` the longest
spacing of two consecutive steps, ``ceil(lead / (m - 1))``, plus one tick.
Indicators are emitted per node (each involved node emits each step with
probability 1/2), so the rules are matched per node (``Teth(key="node")``).
Decoys (near misses) carry the sequence *minus its last step*, so they
never complete a rule except by chance with background events, which carry
indicator kinds at a low rate too; null runs measure that. One-step
sequences are left out: a single kind is a keyword alert, not a temporal
pattern, and its background rate makes it poor evidence.
:func:`pattern_evidence` runs the playbook once over a run's events and
bins the matches by tick into a ``(ticks, nodes)`` count matrix, which
:class:`Case` carries beside the activity (``SearchSpec(playbooks=False)``,
``--no-playbooks``: activity only, as before).

The evidence also holds *corroboration* (:func:`corroboration_evidence`,
:class:`~ctas7.stages.corroborate.Corroborate`): all copies of one indicator
step share one ``sch`` (the same intel seen by several stations), so
:data:`CORROBORATION_NODES` distinct nodes reporting one ``sch`` of an
indicator kind within :data:`CORROBORATION_TICKS` ticks is a match on each of
them. Near misses (one or two nodes) and background indicator events (an
``sch`` of their own) cannot produce it.

Every worker precomputes its scenarios' activity and evidence matrices
once, so a run is only ``evaluate_activity`` calls (Cython) plus a little
arithmetic. Work goes
to local processes by default, or to a Dask cluster given a scheduler
address. Results are appended to ``results.csv`` chunk by chunk; ``resume``
continues an interrupted search from that file.

Examples
--------
>>> from ctas7.sim.montecarlo import derive_seed, run_rng
>>> derive_seed(7, 1, 3) == derive_seed(7, 1, 3) != derive_seed(7, 1, 4)
True
>>> float(run_rng(7, 12).random()) == float(run_rng(7, 12).random())
True
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "SearchSpec",
    "Case",
    "Counts",
    "MonteCarloResult",
    "derive_seed",
    "run_rng",
    "sample_params",
    "build_cases",
    "evaluate_cases",
    "search_row",
    "search_score",
    "perturb",
    "monte_carlo",
    "parse_bool",
    "resolve_cores",
    "select_scenarios",
    "playbook",
    "playbook_kinds",
    "pattern_evidence",
    "corroboration_evidence",
    "playbook_finals",
    "FINAL_CORROBORATION_NODES",
    "CORROBORATION_NODES",
    "CORROBORATION_TICKS",
    "add_arguments",
    "run",
]

# Purposes for derive_seed: every stream of randomness has its own, so the
# search and held-out sets can never share a scenario seed.
_P_PARAMS, _P_SEARCH_INC, _P_SEARCH_NULL, _P_VAL_INC, _P_VAL_NULL, _P_LASVEGAS = range(6)
_P_REFINE = 6

DETECTION_TARGET = 0.95
FALSE_ALARM_TARGET = 0.05

#: Weight of the run-level false-alarm share in the search score.
FA_WEIGHT = 3.0

#: The held-out set: incident runs per scenario (one per seed) and null runs
#: per scenario. 8 and 8 (392 incidents, 328 null runs) could not tell points
#: 1-2% apart, nor leave room under the false-alarm bound.
VAL_SEEDS = 32
VAL_NULL_PER_SCENARIO = 32

RESULTS_FILE = "results.csv"
REFINED_FILE = "refined.csv"
RESULTS_PARQUET = "results.parquet"
VALIDATION_FILE = "validation.csv"
SUMMARY_FILE = "summary.json"
BEST_FILE = "best_params.json"
META_FILE = "meta.json"


# ---------------------------------------------------------------------------
# Seeds
# ---------------------------------------------------------------------------

def derive_seed(seed: int, purpose: int, *keys: int) -> int:
    """A 32-bit seed for one purpose and key path, derived from ``seed``.

    Parameters
    ----------
    seed : int
        The user's seed (``--seed``).
    purpose : int
        Which stream (parameters, search incidents, held-out nulls, ...).
    *keys : int
        Further indices (scenario, replay, run id).

    Examples
    --------
    >>> derive_seed(0, 0) != derive_seed(0, 1)
    True
    """
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, int(purpose), *map(int, keys)])
    return int(ss.generate_state(1, np.uint32)[0])


def run_rng(seed: int, run_id: int) -> np.random.Generator:
    """The generator that run ``run_id`` samples its parameters from.

    Examples
    --------
    >>> int(run_rng(1, 2).integers(1 << 30)) == int(run_rng(1, 2).integers(1 << 30))
    True
    """
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, _P_PARAMS, int(run_id)]))


def sample_params(seed: int, run_id: int, node_params: int = 0):
    """The ``MeterParams`` of run ``run_id`` (``ctas7.stages.meter.sample``).

    ``node_params`` > 0 also draws per-node weights and threshold overrides
    for nodes ``0..node_params-1``.
    """
    from ctas7.stages import meter

    return meter.sample(run_rng(seed, run_id), n_nodes=node_params)


# ---------------------------------------------------------------------------
# Scenario data, precomputed once per worker
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SearchSpec:
    """Everything a worker needs to rebuild the search's data and runs.

    Small and picklable: workers rebuild (and cache) the activity matrices
    from it instead of receiving them.
    """

    seed: int
    scenarios: tuple[str, ...]
    search_null_runs: int = 8
    val_seeds: int = VAL_SEEDS
    val_null_per_scenario: int = VAL_NULL_PER_SCENARIO
    node_params: int = 0
    playbooks: bool = True

    def params(self, run_id: int):
        """Run ``run_id``'s parameters."""
        return sample_params(self.seed, run_id, self.node_params)


@dataclass
class Case:
    """One precomputed run of one scenario, ready for ``evaluate_activity``.

    ``windows`` holds ``(onset, deadline)`` tick pairs (inclusive), one per
    incident; it is empty for a null run. ``evidence`` holds the playbook's
    matches per (tick, node) as uint32 and ``corroboration`` the
    corroboration matches (None: no evidence, or no match).
    """

    scenario: str
    activity: np.ndarray
    groups: np.ndarray
    windows: np.ndarray
    tick_ns: int
    truth: object = None
    evidence: np.ndarray | None = None
    corroboration: np.ndarray | None = None

    @property
    def node_hours(self) -> float:
        t, n = self.activity.shape
        return n * t * self.tick_ns / 3.6e12


def select_scenarios(selection) -> tuple[str, ...]:
    """Scenario names for ``--scenarios``: a count (the first N) or names.

    Parameters
    ----------
    selection : int or str or sequence of str
        ``41`` (or ``"41"``) selects the first 41 registered scenarios; a
        comma-separated string or a sequence selects by name.
    """
    from ctas7.sim.scenarios import SCENARIOS

    names = list(SCENARIOS)
    if isinstance(selection, str) and not selection.strip().isdigit():
        wanted = [s.strip() for s in selection.split(",") if s.strip()]
    elif isinstance(selection, (int, np.integer)) or isinstance(selection, str):
        k = int(selection)
        if not 1 <= k <= len(names):
            raise ValueError(f"--scenarios must be between 1 and {len(names)}, got {k}")
        return tuple(names[:k])
    else:
        wanted = list(selection)
    unknown = [w for w in wanted if w not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario(s): {', '.join(unknown)} (known: {', '.join(names)})")
    if not wanted:
        raise ValueError("no scenarios selected")
    return tuple(wanted)


def incident_windows(run) -> np.ndarray:
    """``(onset, deadline)`` tick pairs of a ``ScenarioRun``'s incidents."""
    rows = [(int(inc.onset), int(inc.deadline)) for inc in run.incidents]
    return np.asarray(rows, dtype=np.int64).reshape(-1, 2)


_PLAYBOOK_KINDS = None


def playbook_kinds():
    """The ``KindTable`` of the scenario vocabulary (``scenarios.KIND_NAMES``:
    a kind's code is its index), for compiling playbooks."""
    global _PLAYBOOK_KINDS
    if _PLAYBOOK_KINDS is None:
        from ctas7.sim.scenarios import KIND_NAMES
        from ctas7.stages.teth import KindRule, KindTable

        _PLAYBOOK_KINDS = KindTable(tuple(KindRule(i, n) for i, n in enumerate(KIND_NAMES)), default=0)
    return _PLAYBOOK_KINDS


def playbook(name: str) -> tuple[str, ...]:
    """Scenario ``name``'s playbook: TETH pattern texts from its indicator
    sequences (see the module docstring), duplicates removed, in order.

    Examples
    --------
    >>> playbook("wannacry_2017")
    ('smb_scan ~> smb_exploit ~> ransom_note within 1260000000000ns', 'smb_exploit ~> ransom_note within 660000000000ns')
    """
    from ctas7.sim.scenarios import SCENARIOS

    sc = SCENARIOS[name]
    out = []
    for spec in sc.incidents:
        seq = tuple(spec.indicators)
        m = len(seq)
        if m < 2:
            continue
        lead = int(spec.lead[1])
        out.append(f"{' ~> '.join(seq)} within {(lead + 1) * sc.tick_ns}ns")
        if m > 2:
            out.append(f"{seq[-2]} ~> {seq[-1]} within {(-(-lead // (m - 1)) + 1) * sc.tick_ns}ns")
    return tuple(dict.fromkeys(out))


_PLAYBOOK_CACHE: dict = {}


def _compiled_playbook(name: str) -> tuple:
    hit = _PLAYBOOK_CACHE.get(name)
    if hit is None:
        from ctas7.stages.teth import compile_pattern

        kinds = playbook_kinds()
        hit = _PLAYBOOK_CACHE[name] = tuple(compile_pattern(p, kinds) for p in playbook(name))
    return hit


def pattern_evidence(events: np.ndarray, patterns, tick_ns: int, n_nodes: int, n_ticks: int, *,
                     t0_ns: int = 0) -> np.ndarray:
    """Matches of ``patterns`` per (tick, node) over one run's events.

    A fresh ``Teth(patterns, key="node", beacons=False)`` runs once over
    ``events`` (time-sorted); each match counts at the tick of the event that
    completed it, ``(ts - t0_ns) // tick_ns``, and its node (matches outside
    ``0..n_ticks-1`` or ``0..n_nodes-1`` are dropped, as ``bin_activity``
    drops events).

    Returns
    -------
    numpy.ndarray of uint32, shape (n_ticks, n_nodes)

    Examples
    --------
    >>> from ctas7.events import make_events
    >>> from ctas7.sim.scenarios import KINDS
    >>> ev = make_events(ts=[5, 15, 25, 35], node=[1, 1, 2, 1],
    ...                  kind=[KINDS["recon"], KINDS["explosion"], KINDS["recon"], KINDS["explosion"]])
    >>> pattern_evidence(ev, ["recon ~> explosion"], 10, 3, 4).tolist()
    [[0, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0]]
    """
    from ctas7.stage import Frame
    from ctas7.stages.teth import Teth, compile_pattern

    kinds = playbook_kinds()
    pats = [compile_pattern(p, kinds) for p in patterns]
    out = np.zeros((int(n_ticks), int(n_nodes)), dtype=np.uint32)
    if not pats or events.shape[0] == 0:
        return out
    m = Teth(patterns=pats, key="node", beacons=False).process(Frame(events)).matches
    return _bin_matches(out, m, tick_ns, t0_ns)


def _bin_matches(out: np.ndarray, m: np.ndarray, tick_ns: int, t0_ns: int) -> np.ndarray:
    """Count matches per (tick, node) into ``out``; matches outside it are
    dropped, as ``bin_activity`` drops events."""
    t = (m["ts"] - np.int64(t0_ns)) // np.int64(tick_ns)
    node = m["node"].astype(np.int64)
    keep = (t >= 0) & (t < out.shape[0]) & (node < out.shape[1])
    np.add.at(out, (t[keep], node[keep]), 1)
    return out


#: Distinct nodes that must report one indicator ``sch`` (corroboration).
CORROBORATION_NODES = 3
#: Window of a corroboration, in ticks from the first report.
CORROBORATION_TICKS = 2
#: Distinct nodes that must report one ``sch`` of a playbook's *final* step.
FINAL_CORROBORATION_NODES = 2


def corroboration_evidence(events: np.ndarray, tick_ns: int, n_nodes: int, n_ticks: int, *,
                           t0_ns: int = 0, min_nodes: int = CORROBORATION_NODES,
                           window_ticks: int = CORROBORATION_TICKS, kinds=None) -> np.ndarray:
    """Corroboration matches per (tick, node) over one run's events.

    A fresh :class:`~ctas7.stages.corroborate.Corroborate` over ``kinds``
    (default: the scenario indicator kinds) runs once over ``events``
    (time-sorted); matches are binned like :func:`pattern_evidence`.

    Returns
    -------
    numpy.ndarray of uint32, shape (n_ticks, n_nodes)

    Examples
    --------
    >>> from ctas7.events import make_events
    >>> from ctas7.sim.scenarios import KINDS
    >>> ev = make_events(ts=[5, 6, 7, 25], node=[0, 1, 2, 0], kind=KINDS["explosion"], sch=9)
    >>> corroboration_evidence(ev, 10, 3, 3).tolist()
    [[1, 1, 1], [0, 0, 0], [0, 0, 0]]
    """
    from ctas7.sim.scenarios import INDICATOR_KINDS
    from ctas7.stage import Frame
    from ctas7.stages.corroborate import Corroborate

    out = np.zeros((int(n_ticks), int(n_nodes)), dtype=np.uint32)
    if events.shape[0] == 0:
        return out
    kinds = INDICATOR_KINDS if kinds is None else kinds
    stage = Corroborate(kinds=kinds, min_nodes=min_nodes, window_ns=int(window_ticks) * int(tick_ns))
    return _bin_matches(out, stage.process(Frame(events)).matches, tick_ns, t0_ns)


def playbook_finals(name: str) -> tuple[int, ...]:
    """Kind codes of the last step of each of scenario ``name``'s indicator
    sequences, leaving out any that also comes earlier in a sequence: what an
    analyst watches for a *final-stage* corroboration (a kind that also opens
    or continues a sequence says nothing about the final stage).

    Examples
    --------
    >>> from ctas7.sim.scenarios import KIND_NAMES
    >>> [KIND_NAMES[k] for k in playbook_finals("wannacry_2017")]
    ['ransom_note']
    >>> playbook_finals("madrid_2004")   # ... -> explosion -> explosion
    ()
    """
    from ctas7.sim.scenarios import KINDS, SCENARIOS

    seqs = [s.indicators for s in SCENARIOS[name].incidents if s.indicators]
    earlier = {k for q in seqs for k in q[:-1]}
    return tuple(dict.fromkeys(KINDS[q[-1]] for q in seqs if q[-1] not in earlier))


def _evidence_of(name: str, run, events=None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(pattern evidence, corroboration evidence)`` of one run (None where
    nothing matched)."""
    events = run.events if events is None else events
    geo = (run.tick_ns, run.n_nodes, run.n_ticks)
    ev = pattern_evidence(events, _compiled_playbook(name), *geo, t0_ns=run.t0_ns)
    cor = corroboration_evidence(events, *geo, t0_ns=run.t0_ns)
    cor += corroboration_evidence(events, *geo, t0_ns=run.t0_ns, kinds=playbook_finals(name),
                                  min_nodes=FINAL_CORROBORATION_NODES)
    return (ev if ev.any() else None), (cor if cor.any() else None)


def case_from_run(name: str, run, playbooks: bool = False) -> Case:
    """A :class:`Case` from a generated ``ScenarioRun`` (with its playbook's
    evidence when ``playbooks``)."""
    act = np.ascontiguousarray(run.activity, dtype=np.float32)
    ev, cor = _evidence_of(name, run) if playbooks else (None, None)
    return Case(name, act, np.ascontiguousarray(run.groups), incident_windows(run), int(run.tick_ns), run.truth, ev,
                cor)


def _generate(name: str, seed: int, null: bool, playbooks: bool = False) -> Case:
    from ctas7.sim.scenarios import SCENARIOS

    return case_from_run(name, SCENARIOS[name].generate(seed, null=null), playbooks)


def build_cases(spec: SearchSpec, part: str = "search", shard: int = 0) -> tuple[list[Case], list[Case]]:
    """The incident and null cases of the search, or of one held-out shard.

    ``part="search"``: one incident run per scenario and
    ``spec.search_null_runs`` null runs spread over the scenarios.
    ``part="validation"``: shard ``shard`` (one per held-out seed) holds one
    incident run per scenario and ``spec.val_null_per_scenario`` null runs
    spread over the scenarios, all with seeds disjoint from the search.
    """
    names = spec.scenarios
    if part == "search":
        pb = spec.playbooks
        inc = [_generate(n, derive_seed(spec.seed, _P_SEARCH_INC, k), False, pb) for k, n in enumerate(names)]
        # Spread the few null runs evenly over the scenarios, not the first few.
        m = max(spec.search_null_runs, 1)
        null = [
            _generate(names[(j * len(names)) // m % len(names)], derive_seed(spec.seed, _P_SEARCH_NULL, j), True, pb)
            for j in range(spec.search_null_runs)
        ]
        return inc, null
    if part == "validation":
        if not 0 <= shard < spec.val_seeds:
            raise ValueError(f"validation shard {shard} out of range 0..{spec.val_seeds - 1}")
        pb = spec.playbooks
        inc = [_generate(n, derive_seed(spec.seed, _P_VAL_INC, shard, k), False, pb) for k, n in enumerate(names)]
        # Held-out null j (of val_null_per_scenario * len(names)) is of
        # scenario j % len(names) and lives in shard j % val_seeds.
        total = spec.val_null_per_scenario * len(names)
        null = [
            _generate(names[j % len(names)], derive_seed(spec.seed, _P_VAL_NULL, j), True, pb)
            for j in range(shard, total, spec.val_seeds)
        ]
        return inc, null
    raise ValueError(f"part must be 'search' or 'validation', got {part!r}")


_CACHE: dict = {}


def _cached_cases(spec: SearchSpec, part: str, shard: int = 0):
    key = (part, shard, spec.seed, spec.scenarios, spec.search_null_runs, spec.val_seeds, spec.val_null_per_scenario,
           spec.playbooks)
    hit = _CACHE.get(key)
    if hit is None:
        if len(_CACHE) > 16:
            _CACHE.clear()
        hit = _CACHE[key] = build_cases(spec, part, shard)
    return hit


# ---------------------------------------------------------------------------
# Evaluation: alarms -> additive counts
# ---------------------------------------------------------------------------

@dataclass
class Counts:
    """Additive tallies for one parameter point over a set of cases."""

    incidents: int = 0
    detected: int = 0
    incident_runs: int = 0
    spurious_runs: int = 0  # incident runs with an alarm outside every window, lead and late effect
    spurious_alarms: int = 0
    window_alarms: int = 0  # alarms inside some incident window (true positives)
    early_alarms: int = 0  # alarms during an incident's lead, before its onset (early warnings)
    late_alarms: int = 0  # alarms after an incident's deadline while its effect lasts
    null_runs: int = 0
    null_alarm_runs: int = 0
    null_alarms: int = 0
    null_node_hours: float = 0.0
    # with evaluate_cases(decoys=...): null runs whose decoys put a
    # quorum of nodes into one window, and those whose first alarm fell there
    null_decoy_quorum_runs: int = 0
    null_decoy_alarm_runs: int = 0
    delays_s: list = field(default_factory=list)

    def add(self, other: "Counts") -> "Counts":
        for name in self.__dataclass_fields__:
            if name != "delays_s":
                setattr(self, name, getattr(self, name) + getattr(other, name))
        self.delays_s.extend(other.delays_s)
        return self

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["delays_s"] = list(map(float, self.delays_s))
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Counts":
        return cls(**{**d, "delays_s": list(d["delays_s"])})


def _alarms_of(evaluate, case: Case, params):
    if case.evidence is None and case.corroboration is None:
        return evaluate(case.activity, case.groups, params)
    return evaluate(case.activity, case.groups, params, evidence=case.evidence, corroboration=case.corroboration)


def evaluate_cases(incident: list[Case], null: list[Case], params, evaluate=None,
                   decoys: tuple[int, int] | None = None) -> Counts:
    """Run one parameter point over cases and tally detections and alarms.

    An incident is detected when an alarm falls in ``onset..deadline``
    (inclusive); its delay is the first such alarm's tick minus the onset.
    An alarm during an incident's lead (from its first indicator to just
    before its onset, ``case.truth``) is an early warning, and one after
    its deadline while its effect lasts a late alarm: neither detects the
    incident nor counts as spurious (nor in F1's precision). Other alarms
    outside every window of an incident run are spurious. A
    case's ``evidence`` and ``corroboration`` (if any) are passed on.

    Given ``decoys = (window_ticks, quorum)`` (:func:`decoy_quorum_of` a
    point), null runs are also checked for decoy coincidences
    (:func:`ctas7.sim.metrics.decoy_quorum`): how many offer one, and how
    many alarmed first on one. The search leaves this off.
    """
    from ctas7.sim.metrics import decoy_quorum, early_and_late

    if evaluate is None:
        from ctas7.stages.meter import evaluate_activity as evaluate

        params = params.compile()  # once per point, not per case
    c = Counts()
    for case in incident:
        alarms = np.asarray(_alarms_of(evaluate, case, params))
        c.incident_runs += 1
        c.incidents += case.windows.shape[0]
        if alarms.shape[0] == 0:  # the common case: nothing more to count
            continue
        los = np.searchsorted(alarms, case.windows[:, 0], "left").tolist()
        his = np.searchsorted(alarms, case.windows[:, 1], "right").tolist()
        inside = np.zeros(alarms.shape[0], dtype=bool)
        for (onset, _), lo, hi in zip(case.windows.tolist(), los, his):
            if hi > lo:
                c.detected += 1
                c.delays_s.append((int(alarms[lo]) - onset) * case.tick_ns / 1e9)
                inside[lo:hi] = True
        n_in = int(np.count_nonzero(inside))
        early, late = early_and_late(alarms, case.truth.incidents if case.truth is not None else (), inside)
        n_early = int(np.count_nonzero(early))
        n_late = int(np.count_nonzero(late))
        n_out = int(alarms.shape[0]) - n_in - n_early - n_late
        c.window_alarms += n_in
        c.early_alarms += n_early
        c.late_alarms += n_late
        c.spurious_alarms += n_out
        c.spurious_runs += n_out > 0
    for case in null:
        alarms = _alarms_of(evaluate, case, params)
        c.null_runs += 1
        c.null_alarms += len(alarms)
        c.null_alarm_runs += len(alarms) > 0
        c.null_node_hours += case.node_hours
        if decoys is not None and case.truth is not None:
            quorum = decoy_quorum(case.truth.decoys, case.activity.shape[0], *decoys)
            c.null_decoy_quorum_runs += bool(quorum.any())
            c.null_decoy_alarm_runs += len(alarms) > 0 and bool(quorum[int(alarms[0])])
    return c


def decoy_quorum_of(params) -> tuple[int, int]:
    """``(window_ticks, nodes)``: the window and the node count in which
    decoys alone could make a convergence of ``params`` (its
    ``min_hot_nodes``, rounded up; node weights aside).

    >>> from ctas7.stages.meter import MeterParams
    >>> decoy_quorum_of(MeterParams(window_ticks=9, min_hot_nodes=2.5))
    (9, 3)
    """
    return int(params.window_ticks), max(1, math.ceil(params.min_hot_nodes - 1e-9))


def _wilson(k: int, n: int) -> tuple[float, float]:
    from ctas7.sim import metrics

    lo, hi = metrics.wilson_interval(k, n)
    return float(lo), float(hi)


def summarize(c: Counts) -> dict:
    """Rates, Wilson 95% bounds, delays and F1 from :class:`Counts`.

    The definitions are those of :mod:`ctas7.sim.metrics` (detection within
    ``onset..deadline``, false-alarm rate over null runs, alarms per
    node-hour of null runs, alarm-level precision with incident-level recall
    for F1), computed from additive counts so shards merge cheaply.
    """
    from ctas7.sim import metrics

    det = c.detected / c.incidents if c.incidents else float("nan")
    det_lo, det_hi = _wilson(c.detected, c.incidents)
    fa = c.null_alarm_runs / c.null_runs if c.null_runs else float("nan")
    fa_lo, fa_hi = _wilson(c.null_alarm_runs, c.null_runs)
    fa_runs = c.spurious_runs + c.null_alarm_runs
    all_runs = c.incident_runs + c.null_runs
    n_alarms = c.window_alarms + c.spurious_alarms + c.null_alarms
    f1 = metrics.f1_score(c.window_alarms, n_alarms, c.detected, c.incidents)[2]
    d = np.asarray(c.delays_s, dtype=np.float64)
    return {
        "incidents": c.incidents,
        "detected": c.detected,
        "detection_rate": det,
        "detection_lo": det_lo,
        "detection_hi": det_hi,
        "null_runs": c.null_runs,
        "null_alarm_runs": c.null_alarm_runs,
        "false_alarm_rate": fa,
        "false_alarm_lo": fa_lo,
        "false_alarm_hi": fa_hi,
        "spurious_runs": c.spurious_runs,
        "spurious_alarms": c.spurious_alarms,
        "early_alarms": c.early_alarms,
        "late_alarms": c.late_alarms,
        "null_decoy_quorum_runs": c.null_decoy_quorum_runs,
        "null_decoy_alarm_runs": c.null_decoy_alarm_runs,
        "run_false_alarm_rate": fa_runs / all_runs if all_runs else float("nan"),
        "alarms_per_node_hour": c.null_alarms / c.null_node_hours if c.null_node_hours else float("nan"),
        "ttd_median_s": float(np.median(d)) if d.size else float("nan"),
        "ttd_p90_s": float(np.percentile(d, 90)) if d.size else float("nan"),
        "f1": f1,
    }


def search_score(s: dict) -> float:
    """Search objective: detection rate minus ``FA_WEIGHT`` x the run-level
    false-alarm share.

    The targets allow about 1 false alarm in 36 null runs but ask for 19
    detections in 20 incidents, so a false alarm must cost more than a
    detection gains (with weight 1 the old score chose points that bought
    detections with alarms the held-out set then rejected).

    The run-level share counts incident runs with a spurious alarm as well as
    null runs with any alarm, so a few null runs per point still give a
    false-alarm signal from ``incident_runs + null_runs`` runs.
    """
    return float(s["detection_rate"] - FA_WEIGHT * s["run_false_alarm_rate"])


# ---------------------------------------------------------------------------
# Rows of the results table
# ---------------------------------------------------------------------------

_METRIC_COLUMNS = (
    "score", "detected", "incidents", "detection_rate", "detection_lo", "null_alarm_runs", "null_runs",
    "false_alarm_rate", "false_alarm_hi", "spurious_runs", "spurious_alarms", "run_false_alarm_rate",
    "alarms_per_node_hour", "ttd_median_s", "f1",
)


def _param_columns(params_dict: dict) -> dict:
    out = {}
    for k in sorted(params_dict):
        v = params_dict[k]
        out[f"p_{k}"] = v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v, sort_keys=True, separators=(",", ":"))
    return out


def search_row(spec: SearchSpec, run_id: int, evaluate=None, params=None) -> dict:
    """One row of the results table: run ``run_id``'s parameters and metrics
    (``params`` given: a refinement point's, else drawn for ``run_id``)."""
    params = spec.params(run_id) if params is None else params
    inc, null = _cached_cases(spec, "search")
    s = summarize(evaluate_cases(inc, null, params, evaluate))
    s["score"] = search_score(s)
    row = {"run_id": int(run_id)}
    row.update({k: s[k] for k in _METRIC_COLUMNS})
    row.update(_param_columns(params.to_dict()))
    return row


def _run_chunk(spec: SearchSpec, run_ids: list) -> list:
    return [search_row(spec, i) for i in run_ids]


def _refine_chunk(spec: SearchSpec, items: list) -> list:
    return [search_row(spec, i, params=p) for i, p in items]


def _validate_shard(spec: SearchSpec, shard: int, items: list) -> dict:
    inc, null = _cached_cases(spec, "validation", shard)
    return {int(i): evaluate_cases(inc, null, p, decoys=decoy_quorum_of(p)).to_dict() for i, p in items}


def perturb(params, seed: int, round_: int, parent: int, j: int):
    """Perturbation ``j`` of ``params`` (the point with run id ``parent``) in
    refinement round ``round_``: a pure function of its arguments.

    Each parameter of the search space (per-node ones aside) moves with
    probability 0.3, at least one always does: floats by a normal step of
    ``0.15 / 2**round_`` of their range (in log space for log ranges),
    clipped to the range; integers by +-1; choices switch to another value.
    ``persistence_m`` is kept within ``1..persistence_n``.

    Examples
    --------
    >>> from ctas7.stages.meter import MeterParams
    >>> a = perturb(MeterParams(), 0, 0, 5, 1)
    >>> a == perturb(MeterParams(), 0, 0, 5, 1) and a != MeterParams()
    True
    """
    import dataclasses

    from ctas7.stages.meter import PARAM_SPACE

    rng = np.random.default_rng(np.random.SeedSequence(
        [int(seed) & 0xFFFFFFFFFFFFFFFF, _P_REFINE, int(round_), int(parent), int(j)]))
    keys = [k for k, r in PARAM_SPACE.items() if not r.per_node]
    move = rng.random(len(keys)) < 0.3
    move[int(rng.integers(len(keys)))] = True
    step = 0.15 / 2.0 ** int(round_)
    values = {}
    for key, moved in zip(keys, move):
        noise = rng.standard_normal()
        pick = rng.random()
        if not moved:
            continue
        r = PARAM_SPACE[key]
        v = getattr(params, key)
        if r.kind == "choice":
            others = [c for c in r.choices if c != v]
            values[key] = others[int(pick * len(others)) % len(others)]
        elif r.kind == "int":
            values[key] = int(min(max(v + (1 if noise >= 0 else -1), r.low), r.high))
        elif r.kind == "log":
            lo, hi = math.log(r.low), math.log(r.high)
            x = math.exp(math.log(v) + noise * step * (hi - lo))
            values[key] = float(min(max(x, r.low), r.high))
        else:
            values[key] = float(min(max(v + noise * step * (r.high - r.low), r.low), r.high))
    n = values.get("persistence_n", params.persistence_n)
    values["persistence_m"] = int(min(max(values.get("persistence_m", params.persistence_m), 1), n))
    return dataclasses.replace(params, **values)


def _warm(spec: SearchSpec) -> None:
    _cached_cases(spec, "search")


def _fmt(v) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return str(v)


def _rows_to_csv(rows: list, columns: list, header: bool) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if header:
        w.writerow(columns)
    for r in rows:
        w.writerow([_fmt(r[c]) for c in columns])
    return buf.getvalue()


def read_results(path: Path) -> tuple[list, list]:
    """Columns and complete rows of a results CSV (a torn last line is dropped).

    Values stay strings; ``run_id`` becomes an int.
    """
    text = Path(path).read_text()
    if not text:
        return [], []
    lines = text.split("\n")
    if not text.endswith("\n"):
        lines = lines[:-1]  # a write cut short by a kill
    rows = list(csv.reader(lines))
    rows = [r for r in rows if r]
    if not rows:
        return [], []
    columns, out = rows[0], []
    for r in rows[1:]:
        if len(r) != len(columns):
            continue
        d = dict(zip(columns, r))
        try:
            d["run_id"] = int(d["run_id"])
        except ValueError:
            continue
        out.append(d)
    return columns, out


# ---------------------------------------------------------------------------
# Execution: in-process, local processes or a Dask cluster
# ---------------------------------------------------------------------------

def write_parquet(rows: list, columns: list, path: Path) -> bool:
    """Write the results table as Parquet too, if pyarrow is installed.

    Returns whether a file was written (pyarrow is optional; the CSV is the
    canonical, appendable table).
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return False
    table = pa.table({c: [r[c] for r in rows] for c in columns})
    pq.write_table(table, str(path))
    return True


def parse_bool(text) -> bool:
    """``true/false``, ``yes/no``, ``on/off``, ``1/0`` (for ``--parallel``).

    Examples
    --------
    >>> parse_bool("true"), parse_bool("0")
    (True, False)
    """
    if isinstance(text, bool):
        return text
    t = str(text).strip().lower()
    if t in ("true", "t", "yes", "y", "on", "1"):
        return True
    if t in ("false", "f", "no", "n", "off", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def resolve_cores(requested, parallel: bool = True, say=None) -> int:
    """Worker count: ``requested`` capped to ``os.cpu_count()``, 1 if serial.

    ``say`` receives one line when the request is capped.

    Examples
    --------
    >>> resolve_cores(1)
    1
    >>> resolve_cores(4, parallel=False)
    1
    """
    avail = os.cpu_count() or 1
    if not parallel:
        return 1
    if requested is None:
        return avail
    requested = int(requested)
    if requested < 1:
        raise ValueError(f"--cores must be at least 1, got {requested}")
    if requested > avail:
        if say is not None:
            say(f"--cores {requested} is more than this machine's {avail} CPUs; using {avail}")
        return avail
    return requested


class Executor:
    """Run tasks in-process, in local worker processes, or on Dask.

    ``submit_all(fn, arg_tuples)`` yields ``(index, result)`` as tasks finish.
    """

    def __init__(self, cores: int = 1, scheduler: str | None = None, initializer=None, initargs=(),
                 connect_timeout: float = 5.0):
        self.cores = cores
        self.scheduler = scheduler
        self._pool = None
        self._client = None
        if scheduler:
            try:
                from distributed import Client
            except ImportError as exc:  # pragma: no cover - dask is a dependency
                raise RuntimeError("--scheduler needs dask.distributed (pip install 'dask[distributed]')") from exc
            try:
                self._client = Client(scheduler, timeout=connect_timeout, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise ConnectionError(
                    f"cannot reach Dask scheduler {scheduler} within {connect_timeout:g}s: {exc}") from None
            self.kind = "dask"
        elif cores > 1:
            import concurrent.futures as cf
            import multiprocessing as mp

            # spawn: the parent may run a progress thread, and fork with
            # threads is unsafe; workers warm their data in the initializer.
            self._pool = cf.ProcessPoolExecutor(max_workers=cores, mp_context=mp.get_context("spawn"),
                                                initializer=initializer, initargs=initargs)
            self.kind = "processes"
        else:
            self.kind = "serial"

    def submit_all(self, fn, arg_tuples):
        arg_tuples = list(arg_tuples)
        if self.kind == "serial":
            for i, a in enumerate(arg_tuples):
                yield i, fn(*a)
        elif self.kind == "processes":
            import concurrent.futures as cf

            futs = {self._pool.submit(fn, *a): i for i, a in enumerate(arg_tuples)}
            try:
                for f in cf.as_completed(futs):
                    yield futs[f], f.result()
            finally:
                for f in futs:
                    f.cancel()
        else:
            from distributed import as_completed

            futs = [self._client.submit(fn, *a, pure=False) for a in arg_tuples]
            index = {f.key: i for i, f in enumerate(futs)}
            try:
                for f in as_completed(futs, loop=self._client.loop):
                    yield index[f.key], f.result()
            finally:
                self._client.cancel(futs)

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@contextlib.contextmanager
def progress_bar(enabled: bool, total: int, description: str, unit: str = "runs"):
    """A rich progress bar with a rate column and ETA; a no-op when disabled."""
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    class _Rate(TextColumn):
        def __init__(self):
            super().__init__("")

        def render(self, task):
            from rich.text import Text

            sp = task.finished_speed or task.speed
            return Text(f"{sp:,.0f} {unit}/s" if sp else f"- {unit}/s")

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _Rate(),
                  TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=False) as prog:
        task = prog.add_task(description, total=total)
        yield lambda n: prog.advance(task, n)


# ---------------------------------------------------------------------------
# The search
# ---------------------------------------------------------------------------

@dataclass
class MonteCarloResult:
    """What :func:`monte_carlo` produced: the table, validation and choice."""

    rows: list
    columns: list
    validation: list
    best: dict | None
    summary: dict
    out: Path | None
    complete: bool


def _chunks(ids: list, size: int) -> list:
    return [ids[i:i + size] for i in range(0, len(ids), size)]


def _auto_chunk(n_runs: int, cores: int) -> int:
    # ~8 chunks per worker keeps the bar moving and the tail short, while
    # each chunk still does seconds of work against ms of IPC.
    return int(max(1, min(250, math.ceil(n_runs / max(1, cores * 8)))))


def _meta(spec: SearchSpec) -> dict:
    from ctas7 import __version__

    return {
        "seed": spec.seed, "scenarios": list(spec.scenarios), "search_null_runs": spec.search_null_runs,
        "node_params": spec.node_params, "playbooks": spec.playbooks, "ctas7": __version__,
    }


def _prepare_out(out: Path, spec: SearchSpec, resume: bool, say) -> dict:
    """Create ``out``; on resume check the meta and return completed rows."""
    out.mkdir(parents=True, exist_ok=True)
    meta_path, res_path = out / META_FILE, out / RESULTS_FILE
    meta = _meta(spec)
    done: dict = {}
    if resume and res_path.exists():
        if not meta_path.exists():
            raise ValueError(f"{out} has {RESULTS_FILE} but no {META_FILE}; cannot check it is the same search")
        old = json.loads(meta_path.read_text())
        old.setdefault("playbooks", False)  # written before pattern evidence existed
        for k in ("seed", "scenarios", "search_null_runs", "node_params", "playbooks"):
            if old.get(k) != meta[k]:
                raise ValueError(f"--resume: {out / META_FILE} has {k}={old.get(k)!r}, this search has {meta[k]!r}")
        columns, rows = read_results(res_path)
        done = {r["run_id"]: r for r in rows}
        # Rewrite without a torn tail so later appends stay well formed.
        tmp = res_path.with_suffix(".tmp")
        tmp.write_text(_rows_to_csv(rows, columns, header=True) if columns else "")
        os.replace(tmp, res_path)
        say(f"resuming: {len(done)} runs already in {res_path}")
    else:
        if res_path.exists():
            say(f"replacing the results in {out} (use --resume to continue them)")
        for name in (RESULTS_FILE, RESULTS_PARQUET, REFINED_FILE, VALIDATION_FILE, SUMMARY_FILE, BEST_FILE):
            (out / name).unlink(missing_ok=True)
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return done


def _coerce_rows(rows: list) -> list:
    """Rows read back from CSV (strings) to the types a fresh run produces."""
    out = []
    for r in rows:
        d = {}
        for k, v in r.items():
            if k == "run_id" or not isinstance(v, str):
                d[k] = v
                continue
            try:
                d[k] = int(v)
            except ValueError:
                try:
                    d[k] = float(v)
                except ValueError:
                    d[k] = v
        out.append(d)
    return out


def _rank_key(r: dict):
    apnh = r["alarms_per_node_hour"]
    ttd = r["ttd_median_s"]
    return (-float(r["score"]), float(apnh) if apnh == apnh else math.inf,
            float(ttd) if ttd == ttd else math.inf, int(r["run_id"]))


def select_best(validation: list, fa_target: float = FALSE_ALARM_TARGET) -> tuple[dict | None, bool]:
    """Pick from validated candidates: max detection lower bound subject to a
    false-alarm upper bound <= ``fa_target``; otherwise the lowest false-alarm
    upper bound. Returns ``(row, constraint_met)``."""
    if not validation:
        return None, False
    ok = [v for v in validation if v["false_alarm_hi"] <= fa_target]
    if ok:
        return max(ok, key=lambda v: (v["detection_lo"], -v["false_alarm_hi"], -v["run_id"])), True
    return min(validation, key=lambda v: (v["false_alarm_hi"], -v["detection_lo"], v["run_id"])), False


def monte_carlo(
    runs: int,
    *,
    scenarios=41,
    seed: int = 0,
    cores: int = 1,
    scheduler: str | None = None,
    out=None,
    resume: bool = False,
    search_null_runs: int = 8,
    top_k: int = 20,
    val_seeds: int = VAL_SEEDS,
    val_null_per_scenario: int = VAL_NULL_PER_SCENARIO,
    chunk_size: int | None = None,
    progress: bool = False,
    stop_after_chunks: int | None = None,
    say=None,
    connect_timeout: float = 5.0,
    per_node_params: bool = False,
    refine_rounds: int = 3,
    refine_top: int = 8,
    refine_steps: int = 12,
    playbooks: bool = True,
    start="defaults",
) -> MonteCarloResult:
    """Seeded random search over the meter's parameters, then validation.

    Parameters
    ----------
    runs : int
        Parameter points (run ids ``0..runs-1``).
    scenarios : int or str or sequence of str
        How many registered scenarios (the first N) or which, by name.
    seed : int
        Seeds the parameters of every run and every scenario run.
    cores : int
        Local worker processes (1 runs in-process). Ignored with ``scheduler``.
    scheduler : str, optional
        ``tcp://host:port`` of a Dask scheduler to run on instead. Its
        workers must import the same ctas7 (they rebuild the scenario data
        from the seed, so only the small spec travels).
    out : path, optional
        Directory for ``results.csv`` (appended per chunk), ``validation.csv``,
        ``summary.json`` and ``best_params.json``. Needed for ``resume``.
    resume : bool
        Continue the search in ``out``, skipping completed run ids.
    search_null_runs : int
        Null runs per search point (phase 1).
    top_k : int
        Candidates validated on the held-out set (phase 2).
    val_seeds, val_null_per_scenario : int
        Held-out set: ``val_seeds`` incident runs per scenario, and
        ``val_null_per_scenario`` null runs per scenario in total.
    chunk_size : int, optional
        Runs per task; by default about eight tasks per worker.
    progress : bool
        Show a rich progress bar on stderr.
    stop_after_chunks : int, optional
        Stop (incomplete, no validation) after this many new chunks; used to
        test resuming.
    say : callable, optional
        Receives one-line notices (defaults to stderr).
    connect_timeout : float
        Seconds to wait for ``scheduler`` before giving up.
    per_node_params : bool
        Also search per-node weights and threshold overrides (for nodes
        ``0..max_nodes-1``). Off by default: scenarios do not share node
        identities, so a weight for "node 3" means something different in
        every scenario and only adds noise to a search across all of them.
    refine_rounds, refine_top, refine_steps : int
        Local refinement (phase 1b): rounds, parents per round, and
        perturbations per parent (``refine_rounds=0`` turns it off).
    start : "defaults", MeterParams, dict, path or None
        The incumbent: parameters scored beside the random draws (run id
        ``runs + refine_rounds * (refine_top + 1) * refine_steps``, written
        with the refined points), ranked with them, a refinement parent in
        every round and always validated, so the search starts from it and
        reports whether it beat it. Default: the current ``MeterParams()``;
        None: none.
    playbooks : bool
        Score TETH pattern evidence of each scenario's playbook along with
        the activity (see the module docstring); False: activity only.

    Returns
    -------
    MonteCarloResult

    Examples
    --------
    >>> res = monte_carlo(3, scenarios=2, seed=1, top_k=2, val_seeds=1,
    ...                   val_null_per_scenario=2, search_null_runs=2)
    >>> [r["run_id"] for r in res.rows], len(res.validation)   # the top 2 and the incumbent
    ([0, 1, 2], 3)
    >>> res.summary["held_out"]
    {'incident_runs': 2, 'null_runs': 4}
    """
    if say is None:
        def say(msg):
            print(msg, file=sys.stderr)
    if runs < 1:
        raise ValueError(f"--runs must be at least 1, got {runs}")
    if top_k < 1 or val_seeds < 1 or search_null_runs < 0 or val_null_per_scenario < 0:
        raise ValueError("top_k and val_seeds must be >= 1, null-run counts >= 0")
    if refine_rounds < 0 or refine_top < 1 or refine_steps < 1:
        raise ValueError("refine_rounds must be >= 0, refine_top and refine_steps >= 1")
    from ctas7.stages.meter import MeterParams

    if isinstance(start, str) and start == "defaults":
        start = MeterParams()
    elif start is not None and not isinstance(start, MeterParams):
        start = MeterParams.from_dict(start) if isinstance(start, dict) else MeterParams.from_file(start)
    names = select_scenarios(scenarios)
    from ctas7.sim.scenarios import SCENARIOS

    node_params = max(SCENARIOS[n].n_nodes for n in names) if per_node_params else 0
    spec = SearchSpec(int(seed), names, int(search_null_runs), int(val_seeds), int(val_null_per_scenario),
                      node_params, bool(playbooks))
    out = Path(out) if out is not None else None
    if resume and out is None:
        raise ValueError("--resume needs --out (the directory holding results.csv)")
    done = _prepare_out(out, spec, resume, say) if out is not None else {}
    done = {k: v for k, v in done.items() if k < runs}
    todo = [i for i in range(runs) if i not in done]
    t0 = time.perf_counter()

    new_rows: list = []
    columns: list | None = None
    res_path = out / RESULTS_FILE if out is not None else None
    if res_path is not None and res_path.exists() and res_path.stat().st_size:
        columns = read_results(res_path)[0] or None
    workers = cores if not scheduler else 0
    size = chunk_size or _auto_chunk(len(todo) or 1, max(1, workers or 2))
    chunks = _chunks(todo, size)
    complete = True
    with Executor(cores, scheduler, initializer=_warm, initargs=(spec,), connect_timeout=connect_timeout) as ex, \
            progress_bar(progress, runs, "Monte Carlo search") as advance:
        advance(len(done))
        n_chunks = 0
        for _, rows in ex.submit_all(_run_chunk, [(spec, c) for c in chunks]):
            if columns is None:
                columns = list(rows[0].keys())
            if res_path is not None:
                with open(res_path, "a") as fh:
                    fh.write(_rows_to_csv(rows, columns, header=fh.tell() == 0))
                    fh.flush()
            new_rows.extend(rows)
            advance(len(rows))
            n_chunks += 1
            if stop_after_chunks is not None and n_chunks >= stop_after_chunks and n_chunks < len(chunks):
                complete = False
                break
        search_s = time.perf_counter() - t0
        rows = sorted(_coerce_rows(list(done.values())) + new_rows, key=lambda r: r["run_id"])
        if columns is None:
            columns = list(rows[0].keys()) if rows else ["run_id"]
        if not complete:
            return MonteCarloResult(rows, columns, [], None, {"complete": False, "runs_done": len(rows)}, out, False)
        if res_path is not None:
            tmp = res_path.with_suffix(".tmp")
            tmp.write_text(_rows_to_csv(rows, columns, header=True))
            os.replace(tmp, res_path)
            write_parquet(rows, columns, out / RESULTS_PARQUET)

        # Phase 1b: local refinement around the best points so far (the
        # incumbent among them).
        t_ref = time.perf_counter()
        point = {}  # run id -> MeterParams, for every refined point
        refined: list = []
        n_workers = max(1, workers or 2)
        parents = refine_top + (start is not None)
        start_id = runs + refine_rounds * parents * refine_steps
        if start is not None:
            point[start_id] = start
            for _, part in ex.submit_all(_refine_chunk, [(spec, [(start_id, start)])]):
                refined.extend(part)
        for rnd in range(refine_rounds):
            pool = sorted(rows + refined, key=_rank_key)[:refine_top]
            if start is not None and all(r["run_id"] != start_id for r in pool):
                pool.append(refined[0])  # the incumbent is always a parent
            items = []
            for rank, parent in enumerate(pool):
                pid = parent["run_id"]
                base = point[pid] if pid in point else spec.params(pid)
                for j in range(refine_steps):
                    rid = runs + (rnd * parents + rank) * refine_steps + j
                    point[rid] = perturb(base, spec.seed, rnd, pid, j)
                    items.append((rid, point[rid]))
            got = []
            for _, part in ex.submit_all(_refine_chunk, [(spec, c) for c in _chunks(items, max(1, -(-len(items) // n_workers)))]):
                got.extend(part)
            refined.extend(sorted(got, key=lambda r: r["run_id"]))
        refine_s = time.perf_counter() - t_ref
        if out is not None:
            rcols = columns if refined and set(refined[0]) == set(columns) else (list(refined[0]) if refined else columns)
            (out / REFINED_FILE).write_text(_rows_to_csv(refined, rcols, header=True) if refined else "")
        n_refined = len(refined) - (start is not None)

        # Phase 2: validate the top-K on held-out seeds, one task per seed.
        t1 = time.perf_counter()
        top = [r["run_id"] for r in sorted(rows + refined, key=_rank_key)[:top_k]]
        if start is not None and start_id not in top:
            top.append(start_id)
        top_items = [(i, point[i] if i in point else spec.params(i)) for i in top]
        parts: list = [None] * spec.val_seeds
        with progress_bar(progress, spec.val_seeds, "Validating top candidates", unit="shards") as adv2:
            for k, part in ex.submit_all(_validate_shard, [(spec, s, top_items) for s in range(spec.val_seeds)]):
                parts[k] = part
                adv2(1)
        # Merge in shard order, not completion order: float sums and delay
        # lists then come out the same however the shards were scheduled.
        totals = {i: Counts() for i in top}
        for part in parts:
            for i in top:
                totals[i].add(Counts.from_dict(part[i]))
    validate_s = time.perf_counter() - t1
    by_id = {r["run_id"]: r for r in rows + refined}
    validation = []
    for rank, i in enumerate(top):
        v = {"run_id": i, "search_rank": rank, "search_score": by_id[i]["score"], "refined": i >= runs,
             "start": start is not None and i == start_id}
        v.update(summarize(totals[i]))
        validation.append(v)
    best, fa_ok = select_best(validation)
    det_ok = best is not None and best["detection_lo"] >= DETECTION_TARGET
    met = bool(fa_ok and det_ok)
    if met:
        verdict = (f"targets met on Wilson 95% bounds: detection >= {best['detection_lo']:.3f} "
                   f"(target {DETECTION_TARGET}), false alarms <= {best['false_alarm_hi']:.3f} (target {FALSE_ALARM_TARGET})")
    else:
        verdict = ("NO sampled point meets both targets on Wilson 95% bounds: best has detection lower bound "
                   f"{best['detection_lo']:.3f} (target {DETECTION_TARGET}) and false-alarm upper bound "
                   f"{best['false_alarm_hi']:.3f} (target {FALSE_ALARM_TARGET})")
    params = point[best["run_id"]] if best["run_id"] in point else spec.params(best["run_id"])
    decoy_window, decoy_nodes = decoy_quorum_of(params)
    summary = {
        "complete": True,
        "runs": runs,
        "scenarios": list(names),
        "seed": spec.seed,
        "executor": ex.kind,
        "playbooks": spec.playbooks,
        "workers": (None if scheduler else cores),
        "scheduler": scheduler,
        "evaluations_search": runs * (len(names) + spec.search_null_runs),
        "search_seconds": search_s,
        "refine_seconds": refine_s,
        "refined_points": n_refined,
        "refine": {"rounds": refine_rounds, "top": refine_top, "steps": refine_steps},
        "validation_seconds": validate_s,
        "runs_resumed": len(done),
        "top_k": len(top),
        "held_out": {"incident_runs": spec.val_seeds * len(names), "null_runs": validation[0]["null_runs"]},
        "targets": {"detection_lo_min": DETECTION_TARGET, "false_alarm_hi_max": FALSE_ALARM_TARGET},
        "targets_met": met,
        "false_alarm_target_met": bool(fa_ok),
        "detection_target_met": bool(det_ok),
        "verdict": verdict,
        "decoys": (f"decoys alone put {decoy_nodes} nodes into one {decoy_window}-tick window in "
                   f"{best['null_decoy_quorum_runs']}/{best['null_runs']} held-out null runs; "
                   f"{best['null_decoy_alarm_runs']} of the {best['null_alarm_runs']} alarmed ones first alarmed "
                   "there"),
        "best": {**best, "params": params.to_dict()},
        "start": next(({k: v[k] for k in ("run_id", "detected", "incidents", "detection_lo", "null_alarm_runs",
                                           "null_runs", "false_alarm_hi")} for v in validation if v["start"]), None),
    }
    if out is not None:
        vcols = list(validation[0].keys())
        (out / VALIDATION_FILE).write_text(_rows_to_csv(validation, vcols, header=True))
        params.to_file(out / BEST_FILE)
        (out / SUMMARY_FILE).write_text(json.dumps(_jsonable(summary), indent=2, allow_nan=False) + "\n")
        summary["files"] = {k: str(out / f) for k, f in (("results", RESULTS_FILE), ("validation", VALIDATION_FILE),
                                                       ("summary", SUMMARY_FILE), ("best_params", BEST_FILE))}
    return MonteCarloResult(rows, columns, validation, best, summary, out, True)


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ctas7-intel hft-monte-carlo``."""
    parser.add_argument("--runs", type=int, default=10_000, help="parameter points to sample (default 10000)")
    parser.add_argument("--scenarios", default="41", help="how many scenarios (first N) or comma-separated names")
    parser.add_argument("--parallel", type=parse_bool, nargs="?", const=True, default=True, metavar="BOOL",
                        help="run on several processes (true/false; bare flag means true)")
    parser.add_argument("--cores", type=int, default=None,
                        help="worker processes (default: all CPUs; capped to os.cpu_count())")
    parser.add_argument("--seed", type=int, default=0, help="seed of the search (default 0)")
    parser.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                        help="run on this Dask scheduler instead of local processes")
    parser.add_argument("--out", default="mc-results", help="output directory (default ./mc-results)")
    parser.add_argument("--resume", action="store_true", help="continue the search in --out")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--search-null-runs", type=int, default=8, help="null runs per search point (default 8)")
    parser.add_argument("--top-k", type=int, default=20, help="candidates to validate (default 20)")
    parser.add_argument("--val-seeds", type=int, default=VAL_SEEDS,
                        help=f"held-out seeds x every scenario (default {VAL_SEEDS})")
    parser.add_argument("--val-null-per-scenario", type=int, default=VAL_NULL_PER_SCENARIO,
                        help=f"held-out null runs per scenario (default {VAL_NULL_PER_SCENARIO})")
    parser.add_argument("--per-node-params", action="store_true",
                        help="also search per-node weights and threshold overrides")
    parser.add_argument("--refine-rounds", type=int, default=3,
                        help="local refinement rounds around the best points (default 3; 0: off)")
    parser.add_argument("--refine-top", type=int, default=8, help="parents per refinement round (default 8)")
    parser.add_argument("--refine-steps", type=int, default=12, help="perturbations per parent (default 12)")
    parser.add_argument("--start", default="defaults", metavar="FILE|defaults|none",
                        help="incumbent parameters, scored and validated beside the search (default: the "
                             "MeterParams defaults; none: no incumbent)")
    parser.add_argument("--no-playbooks", dest="playbooks", action="store_false",
                        help="score activity only (no TETH evidence: scenario playbook patterns and corroboration)")
    parser.add_argument("--chunk-size", type=int, default=None, help="runs per task (default: automatic)")
    parser.add_argument("--connect-timeout", type=float, default=5.0, help="seconds to reach --scheduler")
    parser.add_argument("--stop-after-chunks", type=int, default=None, help=argparse.SUPPRESS)


def _print_summary(summary: dict, validation: list) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(title="Held-out validation of the top candidates (Wilson 95% bounds)")
    for col in ("run", "score", "detected", "det lo", "null FA", "FA hi", "TTD s", "F1"):
        t.add_column(col, justify="right", no_wrap=True)
    best_id = summary["best"]["run_id"]
    for v in validation:
        t.add_row(
            ("*" if v["run_id"] == best_id else "") + str(v["run_id"]), f"{v['search_score']:.3f}",
            f"{v['detected']}/{v['incidents']}", f"{v['detection_lo']:.3f}",
            f"{v['null_alarm_runs']}/{v['null_runs']}", f"{v['false_alarm_hi']:.3f}",
            f"{v['ttd_median_s']:.4g}", f"{v['f1']:.3f}",
        )
    console.print(t)
    console.print(f"{summary['runs']} runs x {len(summary['scenarios'])} scenarios "
                  f"(+{summary['evaluations_search'] // summary['runs'] - len(summary['scenarios'])} null runs each) "
                  f"in {summary['search_seconds']:.1f} s on {summary['executor']}; "
                  f"{summary['refined_points']} refined points in {summary['refine_seconds']:.1f} s; "
                  f"validation {summary['validation_seconds']:.1f} s")
    if summary.get("start"):
        s = summary["start"]
        console.print(f"incumbent (--start, run {s['run_id']}): {s['detected']}/{s['incidents']} detected, "
                      f"{s['null_alarm_runs']}/{s['null_runs']} null runs alarmed")
    console.print(("[green]" if summary["targets_met"] else "[bold red]") + summary["verdict"])
    console.print(f"chosen point: {summary['decoys']}")
    console.print("* = chosen: the largest detection lower bound with a false-alarm upper bound <= "
                  f"{FALSE_ALARM_TARGET} (else the smallest false-alarm upper bound)")
    if "files" in summary:
        console.print(f"best parameters: {summary['files']['best_params']}")


def run(args) -> int:
    """Entry point of ``ctas7-intel hft-monte-carlo``."""
    def say(msg):
        print(f"hft-monte-carlo: {msg}", file=sys.stderr)

    try:
        if not str(args.out).strip():
            raise ValueError("--out must name a directory")
        cores = resolve_cores(args.cores, args.parallel, say)
        progress = not args.json and sys.stderr.isatty()
        res = monte_carlo(
            args.runs, scenarios=args.scenarios, seed=args.seed, cores=cores, scheduler=args.scheduler,
            out=args.out, resume=args.resume, search_null_runs=args.search_null_runs, top_k=args.top_k,
            val_seeds=args.val_seeds, val_null_per_scenario=args.val_null_per_scenario,
            chunk_size=args.chunk_size, progress=progress, stop_after_chunks=args.stop_after_chunks,
            say=say, connect_timeout=args.connect_timeout, per_node_params=args.per_node_params,
            refine_rounds=args.refine_rounds, refine_top=args.refine_top, refine_steps=args.refine_steps,
            playbooks=args.playbooks, start=None if args.start == "none" else args.start,
        )
    except (ValueError, ConnectionError, RuntimeError, OSError) as exc:
        print(f"ctas7-intel hft-monte-carlo: error: {exc}", file=sys.stderr)
        return 2
    if not res.complete:
        say(f"stopped after {args.stop_after_chunks} chunks; {len(res.rows)} runs in {res.out}; continue with --resume")
        return 3
    if args.json:
        print(json.dumps(_jsonable({**res.summary, "validation": res.validation}), indent=2, allow_nan=False))
    else:
        _print_summary(res.summary, res.validation)
    return 0
