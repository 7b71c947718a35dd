"""Monte Carlo tuning: one scenario evaluation and one run over 41 scenarios.

``Refinement`` is one point of the local refinement phase.
A search run is ``evaluate_activity`` on every precomputed scenario matrix
plus the metric arithmetic, so ``EvaluateScenario`` is the unit cost and
``SearchRun`` the cost of one of the 10,000 runs (the full search needs
``10,000 * SearchRun / cores``). ``SearchRun.time_evaluate_only`` is the
same run's kernel calls alone, the peer that shows what the bookkeeping costs.
The numpy reference of the meter (``reference_evaluate``) is timed on one
scenario as the speed-up baseline of the Cython kernel.
Search runs score the scenario playbooks' TETH evidence too;
``SearchRun.time_search_row_activity_only`` (``--no-playbooks``) is its peer,
and ``Playbook`` times the per-run precomputation of that evidence (TETH over
a run's events) against binning the same events into activity.
"""

from ctas7.sim import montecarlo as mc
from ctas7.sim.scenarios import SCENARIOS
from ctas7.stages.meter import evaluate_activity, reference_evaluate

from .common import SEED

_NAMES = ("madrid_2004", "nuclear_device", "mumbai_2008")


class EvaluateScenario:
    """``evaluate_activity`` on one scenario's activity matrix."""

    params = list(_NAMES)
    param_names = ["scenario"]

    def setup_cache(self):
        return {n: SCENARIOS[n].generate(SEED % (1 << 31)) for n in _NAMES}

    def setup(self, runs, scenario):
        run = runs[scenario]
        self.activity = run.activity
        self.groups = run.groups
        self.params = mc.sample_params(SEED, 0)
        self.config = self.params.compile()

    def time_evaluate_activity(self, runs, scenario):
        evaluate_activity(self.activity, self.groups, self.config)

    def time_reference_evaluate(self, runs, scenario):
        reference_evaluate(self.activity, self.groups, self.params)

    def track_node_ticks(self, runs, scenario):
        return int(self.activity.size)


class SearchRun:
    """One Monte Carlo run: sample parameters, 41 incident + 8 null scenario
    runs, counts and summary (``search_row``)."""

    timeout = 120

    def setup(self):
        self.spec = mc.SearchSpec(SEED, tuple(SCENARIOS)[:41], search_null_runs=8)
        mc._cached_cases(self.spec, "search")  # worker warm-up, outside the timing
        self.inc, self.null = mc._cached_cases(self.spec, "search")
        self.params = self.spec.params(1)
        self.config = self.params.compile()

        self.spec_off = mc.SearchSpec(SEED, tuple(SCENARIOS)[:41], search_null_runs=8, playbooks=False)
        mc._cached_cases(self.spec_off, "search")

    def time_search_row(self):
        mc.search_row(self.spec, 1)  # the same point as time_evaluate_only

    def time_search_row_activity_only(self):
        mc.search_row(self.spec_off, 1)

    def time_evaluate_only(self):
        for case in self.inc + self.null:
            evaluate_activity(case.activity, case.groups, self.config, evidence=case.evidence,
                              corroboration=case.corroboration)

    def track_evaluations_per_run(self):
        return len(self.inc) + len(self.null)


class Refinement:
    """Local refinement: drawing one perturbation (``perturb``) and scoring
    it (``search_row`` with given parameters); the peer is ``SearchRun``."""

    timeout = 120

    def setup(self):
        self.spec = mc.SearchSpec(SEED, tuple(SCENARIOS)[:41], search_null_runs=8)
        mc._cached_cases(self.spec, "search")
        self.base = self.spec.params(1)
        self.point = mc.perturb(self.base, SEED, 0, 1, 0)

    def time_perturb(self):
        mc.perturb(self.base, SEED, 0, 1, 0)

    def time_refined_row(self):
        mc.search_row(self.spec, 10_000, params=self.point)


class Playbook:
    """Precomputing one run's playbook evidence (``pattern_evidence``: TETH
    over the run's events, binned per tick and node); the peer is binning the
    same events into the activity matrix (``bin_activity``)."""

    params = list(_NAMES)
    param_names = ["scenario"]

    def setup_cache(self):
        return {n: SCENARIOS[n].generate(SEED % (1 << 31)) for n in _NAMES}

    def setup(self, runs, scenario):
        self.run = runs[scenario]
        self.events = self.run.events
        self.patterns = mc._compiled_playbook(scenario)

    def time_pattern_evidence(self, runs, scenario):
        r = self.run
        mc.pattern_evidence(self.events, self.patterns, r.tick_ns, r.n_nodes, r.n_ticks)

    def time_bin_activity(self, runs, scenario):
        from ctas7.sim.scenarios import bin_activity

        r = self.run
        bin_activity(self.events, r.tick_ns, r.n_nodes, r.n_ticks)

    def track_events(self, runs, scenario):
        return int(self.events.shape[0])
