"""Tests for ctas7.exporter: GET /metrics on 127.0.0.1 in the Prometheus text format."""

from __future__ import annotations

import os
import re
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from ctas7.exporter import CONTENT_TYPE, exposition, serve
from ctas7.metrics import Metrics, MetricsReader

LINE = re.compile(r'^([a-z_:][a-z0-9_:]*)(\{([a-z_]+="(?:[^"\\]|\\.)*")(,[a-z_]+="(?:[^"\\]|\\.)*")*\})? (\S+)$')


@pytest.fixture
def segment():
    m = Metrics.create(f"texp-{os.getpid()}-{time.monotonic_ns()}", n_workers=2, n_stations=4, stages=["teth"])
    m.set_state("running")
    m.add(m.PROCESSED, 900)
    m.add(m.CONVERGENCES, 3)
    m.add(m.RESTARTS, 1)
    m.store_atomic(m.worker_index(0, "state"), 600 << 24)
    m.store_atomic(m.worker_index(1, "state"), 400 << 24)
    for v in np.random.default_rng(3).lognormal(11, 1, 400):
        m.record_latency(0, int(v))
    m.push_throughput(250)
    yield m
    m.close()


def _parse(text):
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ")
            types[name] = typ
        elif line.startswith("# HELP ") or not line:
            continue
        else:
            m = LINE.match(line)
            assert m, f"not a sample line: {line!r}"
            samples[line.rsplit(" ", 1)[0]] = float(m.group(5))
    return samples, types


def test_get_metrics_returns_counters(segment):
    name = segment.name
    with MetricsReader.attach(name) as r, serve(r, 0) as srv:
        assert srv.server_address[0] == "127.0.0.1"
        with urllib.request.urlopen(srv.url, timeout=10) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == CONTENT_TYPE
            body = resp.read().decode()
        samples, types = _parse(body)
        assert samples[f'ctas7_processed_events_total{{cluster="{name}"}}'] == 900
        assert samples[f'ctas7_convergences_total{{cluster="{name}"}}'] == 3
        assert samples[f'ctas7_produced_events_total{{cluster="{name}"}}'] == 1000
        assert samples[f'ctas7_in_transit_events{{cluster="{name}"}}'] == 100
        assert samples[f'ctas7_worker_produced_events_total{{cluster="{name}",worker="1"}}'] == 400
        assert samples[f'ctas7_up{{cluster="{name}"}}'] == 1
        assert samples[f'ctas7_throughput_events_per_second{{cluster="{name}"}}'] == 2500
        assert types["ctas7_processed_events_total"] == "counter" and types["ctas7_latency_seconds"] == "summary"
        key = f'ctas7_latency_seconds_count{{cluster="{name}",histogram="ingest_to_decision"}}'
        assert samples[key] == 400
        q = [samples[f'ctas7_latency_seconds{{cluster="{name}",histogram="ingest_to_decision",quantile="{p}"}}']
             for p in ("0.5", "0.9", "0.99", "0.999", "1")]
        assert q == sorted(q) and 1e-6 < q[0] < 1
        segment.add(segment.PROCESSED, 5)  # every scrape is a fresh snapshot
        body2 = urllib.request.urlopen(srv.url, timeout=10).read().decode()
        assert _parse(body2)[0][f'ctas7_processed_events_total{{cluster="{name}"}}'] == 905
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(srv.url.replace("/metrics", "/other"), timeout=10)
        assert e.value.code == 404


def test_finished_cluster_is_down_and_closed_reader_is_503(segment):
    r = MetricsReader.attach(segment.name)
    with serve(r, 0) as srv:
        segment.set_state("done")
        assert f'ctas7_up{{cluster="{segment.name}"}} 0' in urllib.request.urlopen(srv.url, timeout=10).read().decode()
        r.close()
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(srv.url, timeout=10)
        assert e.value.code == 503


def test_loopback_only_and_port_checked(segment):
    with MetricsReader.attach(segment.name) as r:
        for host in ("0.0.0.0", "example.org", "10.0.0.1"):
            with pytest.raises(ValueError, match="loopback"):
                serve(r, 0, host=host)
        with pytest.raises(ValueError, match="port"):
            serve(r, 70000)


def test_label_values_are_escaped():
    text = exposition({"name": 'a"b\\c', "counters": {"processed": 1}, "workers": []})
    assert 'ctas7_processed_events_total{cluster="a\\"b\\\\c"} 1' in text
    for line in text.splitlines():
        assert line.startswith("#") or LINE.match(line), line
