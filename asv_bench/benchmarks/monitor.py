"""hft-monitor: the cost of one snapshot of a metrics segment (what each refresh pays).

``collect`` (numpy summaries) against the peer ``MetricsReader.snapshot``
(hdrh's per-index Python loops), on histograms of growing spread.
"""

import os

from ctas7.console import collect
from ctas7.metrics import Metrics, MetricsReader

from .common import rng


class Snapshot:
    params = [1.0, 2.0]
    param_names = ["log_spread"]

    def setup(self, spread):
        self.m = Metrics.create(f"asv-mon-{os.getpid()}", n_workers=2, n_stations=64,
                                stages=["teth", "meter", "axon", "prism"])
        g = rng(7)
        for h in range(5):
            for v in g.lognormal(11, spread, 5000):
                self.m.record_latency(h, int(v) + 1)
        self.r = MetricsReader.attach(self.m.name)

    def teardown(self, spread):
        self.r.close()
        self.m.close()

    def time_collect(self, spread):
        collect(self.r)

    def time_reader_snapshot(self, spread):
        self.r.snapshot()
