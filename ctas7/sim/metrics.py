"""Detection metrics for scenario runs, with Wilson 95% bounds.

Inputs are, per run, the alarm ticks the meter raised (an int64 array of tick
indices, as ``evaluate_activity`` returns) and the run's ground truth
(:class:`ctas7.sim.scenarios.Truth`, or a ``ScenarioRun``).

Definitions
-----------
* An incident is **detected** when some alarm tick ``t`` satisfies
  ``onset <= t <= deadline`` (both inclusive); its **time to detection** is
  the first such ``t - onset``, in ticks and in seconds of event time.
* **Detection rate** = detected incidents / incidents (over all runs).
* **False-alarm rate** = null runs (runs with no incident) with at least one
  alarm / null runs. **Alarms per node-hour** = alarms in null runs /
  node-hours of null runs (nodes x run length).
* **F1**: an alarm inside some incident window is a true positive (TP);
  an alarm in no window but during an incident's lead (from its first
  indicator, ``onset - lead_ticks``, to ``onset - 1``) is an *early
  warning*, and one after an incident's deadline while its effect lasts
  (to ``effect_end - 1``: a long or spreading incident, new nodes joining)
  a *late alarm*, neither TP nor FP; any other alarm (in incident or null
  runs) is a false positive (FP); a missed incident is a false negative (FN).
  Precision = TP alarms / (TP + FP alarms),
  recall = detected incidents / incidents (the detection rate), F1 = their
  harmonic mean. Several alarms in one window are all TP, so this is the
  alarm-level precision and the incident-level recall; with exactly one alarm
  per detected incident it equals ``2TP / (2TP + FP + FN)``. Vacuous cases
  count as perfect: no alarms gives precision 1, no incidents gives recall 1.
* Every proportion carries a Wilson 95% score interval, and a target counts
  as met only when the bound meets it: detection lower bound >= 0.95,
  false-alarm upper bound <= 0.05. With zero alarms the upper bound falls to
  0.05 only from ``required_null_runs(0.05) = 73`` null runs on; an observed
  false-alarm rate of 2.5% needs about 300. Plan for at least 300 null runs
  per scenario so that a small non-zero rate can still certify the target.

Examples
--------
>>> import numpy as np
>>> from ctas7.sim import scenarios, metrics
>>> sc = scenarios.get("madrid_2004")
>>> tally = metrics.Tally()
>>> for seed in range(3):
...     run = sc.generate(seed)
...     inc = run.incidents[0]
...     tally.add(np.array([inc.onset + 2]), run.truth)   # a perfect meter
...     tally.add(np.array([], np.int64), sc.generate(seed, null=True).truth)
>>> rep = tally.report()
>>> rep.detection_rate, rep.false_alarm_rate, rep.f1
(1.0, 0.0, 1.0)
>>> rep.detection_met   # 3 of 3 is not enough evidence for >= 0.95
False
>>> metrics.required_null_runs(0.05)
73
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "Z95",
    "wilson_interval",
    "poisson_rate_interval",
    "required_null_runs",
    "required_incident_runs",
    "f1_score",
    "RunScore",
    "score_run",
    "in_lead",
    "in_late_effect",
    "early_and_late",
    "decoy_quorum",
    "Tally",
    "DetectionReport",
    "evaluate",
]

#: Two-sided 95% normal quantile.
Z95 = 1.959963984540054


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple:
    """Wilson score interval for a proportion ``k / n``.

    Parameters
    ----------
    k : int
        Successes, ``0 <= k <= n``.
    n : int
        Trials; ``n = 0`` gives the uninformative ``(0.0, 1.0)``.
    z : float
        Normal quantile (1.96 for 95%).

    Returns
    -------
    (low, high) : tuple of float

    Examples
    --------
    >>> lo, hi = wilson_interval(0, 300)
    >>> lo, round(hi, 4)
    (0.0, 0.0126)
    >>> [round(x, 3) for x in wilson_interval(95, 100)]
    [0.888, 0.978]
    """
    k, n = int(k), int(n)
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if z <= 0:
        raise ValueError(f"z must be > 0, got {z}")
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = p + z2 / (2 * n)
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))
    lo = 0.0 if k == 0 else max(0.0, (centre - half) / denom)
    hi = 1.0 if k == n else min(1.0, (centre + half) / denom)
    return (lo, hi)


def poisson_rate_interval(k: int, exposure: float, z: float = Z95) -> tuple:
    """Score interval for a Poisson rate ``k / exposure`` (e.g. alarms per node-hour).

    >>> lo, hi = poisson_rate_interval(0, 1000.0)
    >>> lo, round(hi * 1000, 2)
    (0.0, 3.84)
    """
    k = int(k)
    if k < 0 or not exposure > 0:
        raise ValueError(f"need k >= 0 and exposure > 0, got k={k}, exposure={exposure}")
    z2 = z * z
    half = z * math.sqrt(k + z2 / 4.0)
    lo = max(0.0, k + z2 / 2.0 - half) / exposure
    return (0.0 if k == 0 else lo, (k + z2 / 2.0 + half) / exposure)


def _smallest_n(ok, start: int) -> int:
    """Smallest n >= start with ok(n) true, assuming ok is eventually monotone."""
    hi = max(start, 1)
    while not ok(hi):
        hi *= 2
        if hi > 1 << 40:
            raise ValueError("no run count reaches the target")
    lo = max(start, hi // 2)
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi


def required_null_runs(target: float = 0.05, alarms: int = 0, z: float = Z95) -> int:
    """Fewest null runs for which ``alarms`` alarmed runs still certify ``target``.

    That is the smallest ``n`` with ``wilson_interval(alarms, n)[1] <= target``.

    Examples
    --------
    >>> required_null_runs(0.05)
    73
    >>> wilson_interval(0, 73)[1] <= 0.05 < wilson_interval(0, 72)[1]
    True
    >>> required_null_runs(0.05, alarms=7)   # 7 / 284 = 2.5% observed
    284
    """
    if not 0.0 < target < 1.0:
        raise ValueError(f"target must be in (0, 1), got {target}")
    alarms = int(alarms)
    if alarms < 0:
        raise ValueError("alarms must be >= 0")
    return _smallest_n(lambda n: wilson_interval(alarms, n, z)[1] <= target, max(alarms, 1))


def required_incident_runs(target: float = 0.95, misses: int = 0, z: float = Z95) -> int:
    """Fewest incidents for which ``misses`` misses still certify a detection ``target``.

    >>> required_incident_runs(0.95)
    73
    """
    if not 0.0 < target < 1.0:
        raise ValueError(f"target must be in (0, 1), got {target}")
    misses = int(misses)
    if misses < 0:
        raise ValueError("misses must be >= 0")
    return _smallest_n(lambda n: wilson_interval(n - misses, n, z)[0] >= target, max(misses, 1))


def f1_score(tp_alarms: int, n_alarms: int, n_detected: int, n_incidents: int) -> tuple:
    """Precision, recall and F1 as defined in the module docstring.

    >>> [round(x, 4) for x in f1_score(tp_alarms=3, n_alarms=4, n_detected=3, n_incidents=5)]
    [0.75, 0.6, 0.6667]
    >>> f1_score(0, 0, 0, 0)
    (1.0, 1.0, 1.0)
    """
    if not (0 <= tp_alarms <= n_alarms and 0 <= n_detected <= n_incidents):
        raise ValueError("need 0 <= tp_alarms <= n_alarms and 0 <= n_detected <= n_incidents")
    precision = tp_alarms / n_alarms if n_alarms else 1.0
    recall = n_detected / n_incidents if n_incidents else 1.0
    f1 = 2.0 * precision * recall / (precision + recall) if precision + recall else 0.0
    return (precision, recall, f1)


@dataclass(frozen=True)
class RunScore:
    """What one run contributes to the metrics.

    Attributes
    ----------
    n_incidents, n_detected : int
        Incidents in the run and how many were detected.
    ttd_ticks : tuple of int
        Time to detection of each detected incident, ticks.
    ttd_s : tuple of float
        The same in seconds of event time.
    n_alarms, tp_alarms : int
        Alarms, and those inside some incident window.
    early_alarms : int
        Alarms in no window but during an incident's lead (early warnings).
    late_alarms : int
        Alarms in no window nor lead, after an incident's deadline while its
        effect lasts.
    null : bool
        The run has no incident.
    node_hours : float
        Nodes x run length, hours.
    """

    n_incidents: int
    n_detected: int
    ttd_ticks: tuple
    ttd_s: tuple
    n_alarms: int
    tp_alarms: int
    null: bool
    node_hours: float
    early_alarms: int = 0
    late_alarms: int = 0


def _alarm_array(alarms, n_ticks: int) -> np.ndarray:
    a = np.asarray(alarms)
    if a.ndim != 1:
        raise ValueError(f"alarms must be a 1-d array of tick indices, got shape {a.shape}")
    if a.size == 0:
        return np.zeros(0, np.int64)
    if a.dtype.kind not in "iu":
        raise TypeError(f"alarms must be integer tick indices, got dtype {a.dtype}")
    a = np.sort(a.astype(np.int64, copy=False))
    if a[0] < 0 or a[-1] >= n_ticks:
        raise ValueError(f"alarm ticks must be in [0, {n_ticks}), got {int(a[0])}..{int(a[-1])}")
    return a


def in_lead(alarms: np.ndarray, incidents) -> np.ndarray:
    """Which of the sorted alarm ticks fall in some incident's lead, from its
    first indicator (``onset - lead_ticks``) to ``onset - 1``: the early
    warnings, unless they are also inside another incident's window.

    >>> from types import SimpleNamespace as I
    >>> in_lead(np.array([3, 8, 10, 12]), [I(onset=10, lead_ticks=4)]).tolist()
    [False, True, False, False]
    """
    early = np.zeros(alarms.shape[0], dtype=bool)
    for inc in incidents:
        lo, hi = np.searchsorted(alarms, [inc.onset - int(getattr(inc, "lead_ticks", 0)), inc.onset], side="left")
        early[int(lo) : int(hi)] = True
    return early


def in_late_effect(alarms: np.ndarray, incidents) -> np.ndarray:
    """Which of the sorted alarm ticks fall after some incident's deadline
    while its effect lasts (``deadline + 1`` to ``effect_end - 1``): late
    alarms of a long or spreading incident. Incidents without an
    ``effect_end`` have none.

    >>> from types import SimpleNamespace as I
    >>> in_late_effect(np.array([3, 8, 10, 12]), [I(deadline=8, effect_end=11)]).tolist()
    [False, False, True, False]
    """
    late = np.zeros(alarms.shape[0], dtype=bool)
    for inc in incidents:
        end = getattr(inc, "effect_end", None)
        if end is not None:
            lo, hi = np.searchsorted(alarms, [inc.deadline + 1, int(end)], side="left")
            late[int(lo) : int(hi)] = True
    return late


def early_and_late(alarms: np.ndarray, incidents, in_window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The early warnings and the late alarms among sorted alarm ticks, given
    which are inside some incident window: a window alarm is neither, an
    early warning is not also late.

    >>> from types import SimpleNamespace as I
    >>> inc = I(onset=10, deadline=14, lead_ticks=4, effect_end=20)
    >>> a = np.array([3, 8, 12, 16, 22])
    >>> [m.tolist() for m in early_and_late(a, [inc], (a >= 10) & (a <= 14))]
    [[False, True, False, False, False], [False, False, False, True, False]]
    """
    early = in_lead(alarms, incidents) & ~in_window
    return early, in_late_effect(alarms, incidents) & ~in_window & ~early


def decoy_quorum(decoys, n_ticks: int, window_ticks: int, quorum: int = 3) -> np.ndarray:
    """Ticks at which decoys alone put ``quorum`` distinct nodes into one
    convergence window: at tick ``t``, the nodes some decoy affects within
    ``t - window_ticks + 1 .. t``.

    The scenarios' near misses take an incident's shape on one or two nodes
    and spikes burst one node, so a near miss overlapping a spike or a
    second near miss looks like an incident of ``quorum`` nodes. A null-run
    alarm at such a tick is still a false alarm; this tells how often the
    null runs offer one, and which false alarms fell on one.

    Parameters
    ----------
    decoys : iterable
        Objects with ``start``, ``end`` (affected ticks ``[start, end)``)
        and ``nodes`` (:class:`~ctas7.sim.scenarios.Decoy`).
    n_ticks, window_ticks : int
        Run length and convergence window (``MeterParams.window_ticks``).
    quorum : int
        Distinct nodes that make a quorum (the meter's ``min_hot_nodes``).

    Returns
    -------
    numpy.ndarray of bool, shape (n_ticks,)

    Examples
    --------
    >>> from types import SimpleNamespace as D
    >>> near_miss, spike = D(start=10, end=20, nodes=(1, 2)), D(start=24, end=25, nodes=(7,))
    >>> np.flatnonzero(decoy_quorum([near_miss, spike], 40, 9)).tolist()
    [24, 25, 26, 27]
    >>> decoy_quorum([near_miss, spike], 40, 4).any()
    np.False_
    """
    n_ticks, window_ticks = int(n_ticks), int(window_ticks)
    if window_ticks < 1:
        raise ValueError(f"window_ticks must be >= 1, got {window_ticks}")
    reach: dict = {}  # node -> ticks whose window it is affected in (overlapping decoys count once)
    for d in decoys:
        lo, end = max(0, int(d.start)), min(n_ticks, int(d.end))  # the run's ticks only
        if end <= lo:
            continue
        hi = min(n_ticks, end + window_ticks - 1)
        for node in d.nodes:
            reach.setdefault(int(node), np.zeros(n_ticks, dtype=bool))[lo:hi] = True
    count = np.zeros(n_ticks, dtype=np.int32)
    for ticks in reach.values():
        count += ticks
    return count >= quorum


def score_run(alarms, truth) -> RunScore:
    """Score one run's alarms against its ground truth.

    Parameters
    ----------
    alarms : array_like of int
        Alarm tick indices (any order), each in ``[0, n_ticks)``.
    truth : Truth or ScenarioRun
        Anything with ``incidents`` (each with ``onset`` and ``deadline``),
        ``n_ticks``, ``tick_ns`` and ``node_hours``.

    Returns
    -------
    RunScore

    Examples
    --------
    >>> from ctas7.sim.scenarios import get
    >>> run = get("london_7_7").generate(0)
    >>> a, b = run.incidents
    >>> s = score_run([a.onset - 1, a.onset + 3, b.deadline], run)
    >>> s.n_detected, s.tp_alarms, s.n_alarms, s.ttd_ticks == (3, b.deadline - b.onset)
    (2, 2, 3, True)
    """
    truth = getattr(truth, "truth", truth)
    a = _alarm_array(alarms, int(truth.n_ticks))
    tick_s = truth.tick_ns / 1e9
    in_window = np.zeros(a.size, dtype=bool)
    ttd = []
    for inc in truth.incidents:
        i = int(np.searchsorted(a, inc.onset, side="left"))
        if i < a.size and a[i] <= inc.deadline:
            ttd.append(int(a[i]) - inc.onset)
        in_window[i : int(np.searchsorted(a, inc.deadline, side="right"))] = True
    early, late = early_and_late(a, truth.incidents, in_window)
    return RunScore(
        n_incidents=len(truth.incidents),
        n_detected=len(ttd),
        ttd_ticks=tuple(ttd),
        ttd_s=tuple(t * tick_s for t in ttd),
        n_alarms=int(a.size),
        tp_alarms=int(in_window.sum()),
        null=len(truth.incidents) == 0,
        node_hours=float(truth.node_hours),
        early_alarms=int(early.sum()),
        late_alarms=int(late.sum()),
    )


@dataclass(frozen=True)
class DetectionReport:
    """Aggregate metrics with Wilson 95% bounds (see the module docstring).

    Rates over an empty denominator are NaN with interval ``(0, 1)``; the
    corresponding target is then not met. Time-to-detection summaries are
    NaN when nothing was detected.
    """

    n_runs: int
    n_incidents: int
    n_detected: int
    detection_rate: float
    detection_ci: tuple
    n_null_runs: int
    n_null_alarmed: int
    false_alarm_rate: float
    false_alarm_ci: tuple
    null_alarms: int
    null_node_hours: float
    alarms_per_node_hour: float
    alarms_per_node_hour_ci: tuple
    n_alarms: int
    tp_alarms: int
    fp_alarms: int
    precision: float
    precision_ci: tuple
    recall: float
    f1: float
    ttd_ticks: tuple
    ttd_s: tuple
    ttd_median_s: float
    ttd_p90_s: float
    ttd_mean_s: float
    detection_target: float
    false_alarm_target: float
    detection_met: bool
    false_alarm_met: bool

    @property
    def met(self) -> bool:
        """Both targets met by their bounds."""
        return self.detection_met and self.false_alarm_met

    def to_dict(self, with_samples: bool = False) -> dict:
        """A JSON-ready dict; per-incident times only with ``with_samples``."""
        d = asdict(self)
        d["met"] = self.met
        if not with_samples:
            d.pop("ttd_ticks")
            d.pop("ttd_s")
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


class Tally:
    """Accumulates run scores; mergeable across workers, then :meth:`report`.

    Examples
    --------
    >>> from ctas7.sim.scenarios import get
    >>> sc = get("drone_swarm")
    >>> t1, t2 = Tally(), Tally()
    >>> t1.add([5], sc.generate(0, null=True))     # a false alarm
    >>> t2.add([], sc.generate(1, null=True))
    >>> t1.merge(t2).report().false_alarm_rate
    0.5
    """

    def __init__(self):
        self.scores: list = []

    def add(self, alarms, truth) -> None:
        """Score and record one run."""
        self.scores.append(score_run(alarms, truth))

    def add_score(self, score: RunScore) -> None:
        """Record an already computed score."""
        if not isinstance(score, RunScore):
            raise TypeError(f"expected a RunScore, got {type(score).__name__}")
        self.scores.append(score)

    def merge(self, other: Tally) -> Tally:
        """Add another tally's scores to this one; returns self."""
        self.scores.extend(other.scores)
        return self

    def __len__(self) -> int:
        return len(self.scores)

    def report(self, detection_target: float = 0.95, false_alarm_target: float = 0.05) -> DetectionReport:
        """Aggregate everything recorded so far."""
        return _report(self.scores, detection_target, false_alarm_target)


def _report(scores, detection_target, false_alarm_target) -> DetectionReport:
    n_inc = sum(s.n_incidents for s in scores)
    n_det = sum(s.n_detected for s in scores)
    nulls = [s for s in scores if s.null]
    n_null = len(nulls)
    n_null_alarmed = sum(1 for s in nulls if s.n_alarms)
    null_alarms = sum(s.n_alarms for s in nulls)
    null_hours = sum(s.node_hours for s in nulls)
    n_alarms = sum(s.n_alarms - s.early_alarms - s.late_alarms for s in scores)
    tp = sum(s.tp_alarms for s in scores)
    precision, recall, f1 = f1_score(tp, n_alarms, n_det, n_inc)
    ttd_ticks = tuple(t for s in scores for t in s.ttd_ticks)
    ttd_s = tuple(t for s in scores for t in s.ttd_s)
    det_ci = wilson_interval(n_det, n_inc)
    fa_ci = wilson_interval(n_null_alarmed, n_null)
    nan = float("nan")
    ttd = np.asarray(ttd_s, dtype=np.float64)
    return DetectionReport(
        n_runs=len(scores),
        n_incidents=n_inc,
        n_detected=n_det,
        detection_rate=n_det / n_inc if n_inc else nan,
        detection_ci=det_ci,
        n_null_runs=n_null,
        n_null_alarmed=n_null_alarmed,
        false_alarm_rate=n_null_alarmed / n_null if n_null else nan,
        false_alarm_ci=fa_ci,
        null_alarms=null_alarms,
        null_node_hours=null_hours,
        alarms_per_node_hour=null_alarms / null_hours if null_hours else nan,
        alarms_per_node_hour_ci=poisson_rate_interval(null_alarms, null_hours) if null_hours else (0.0, math.inf),
        n_alarms=n_alarms,
        tp_alarms=tp,
        fp_alarms=n_alarms - tp,
        precision=precision,
        precision_ci=wilson_interval(tp, n_alarms),
        recall=recall,
        f1=f1,
        ttd_ticks=ttd_ticks,
        ttd_s=ttd_s,
        ttd_median_s=float(np.median(ttd)) if ttd.size else nan,
        ttd_p90_s=float(np.percentile(ttd, 90)) if ttd.size else nan,
        ttd_mean_s=float(ttd.mean()) if ttd.size else nan,
        detection_target=detection_target,
        false_alarm_target=false_alarm_target,
        detection_met=bool(n_inc) and det_ci[0] >= detection_target,
        false_alarm_met=bool(n_null) and fa_ci[1] <= false_alarm_target,
    )


def evaluate(pairs, detection_target: float = 0.95, false_alarm_target: float = 0.05) -> DetectionReport:
    """Metrics over ``(alarms, truth)`` pairs (incident and null runs mixed).

    >>> from ctas7.sim.scenarios import get
    >>> sc = get("nerve_agent")
    >>> runs = [sc.generate(s) for s in range(4)]
    >>> rep = evaluate([([r.incidents[0].deadline + 1], r) for r in runs])   # always too late
    >>> rep.detection_rate, rep.precision, rep.f1
    (0.0, 0.0, 0.0)
    """
    t = Tally()
    for alarms, truth in pairs:
        t.add(alarms, truth)
    return t.report(detection_target, false_alarm_target)
