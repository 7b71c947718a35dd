"""Monte Carlo tuning: one scenario evaluation and one run over 41 scenarios.

``Refinement`` is one point of the local refinement phase.
A search run is ``evaluate_activity`` on every precomputed scenario matrix
plus the metric arithmetic, so ``EvaluateScenario`` is the unit cost and
``SearchRun`` the cost of one of the 10,000 runs (the full search needs
``10,000 * SearchRun / cores``). ``SearchRun.time_evaluate_only`` is the
same run's kernel calls alone, the peer that shows what the bookkeeping costs.
The numpy reference of the meter (``reference_evaluate``) is timed on one
scenario as the speed-up baseline of the Cython kernel.
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

    def time_search_row(self):
        mc.search_row(self.spec, 1)  # the same point as time_evaluate_only

    def time_evaluate_only(self):
        for case in self.inc + self.null:
            evaluate_activity(case.activity, case.groups, self.config)

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
