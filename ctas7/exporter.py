"""A Prometheus text exporter for a cluster's metrics segment (``hft-cluster --metrics-port``).

``serve(reader, port)`` answers ``GET /metrics`` on 127.0.0.1 with the
segment's counters, per-worker numbers and latency quantiles in the
Prometheus text exposition format (version 0.0.4), written here: it needs
no client library. Each scrape takes one snapshot
(:func:`ctas7.console.collect`), read-only.

Examples
--------
>>> snap = {"name": "doc", "alive": True, "state": "running", "counters": {"processed": 7}, "workers": [],
...         "latency": {"ingest_to_decision": {"count": 2, "mean_us": 1.5, "p50_us": 1.0, "p90_us": 2.0,
...                     "p99_us": 2.0, "p99.9_us": 2.0, "max_us": 2.0}}}
>>> text = exposition(snap)
>>> print([line for line in text.splitlines() if line.startswith("ctas7_processed_events_total")][0])
ctas7_processed_events_total{cluster="doc"} 7
>>> 'ctas7_latency_seconds{cluster="doc",histogram="ingest_to_decision",quantile="0.99"} 2e-06' in text
True
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["serve", "exposition", "MetricsServer", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# counter name -> (metric, type, help). Counters the segment keeps for its own bookkeeping are left out.
_COUNTERS = {
    "processed": ("ctas7_processed_events_total", "counter", "Events through the chain."),
    "batches": ("ctas7_chain_batches_total", "counter", "Batches through the chain."),
    "control_records": ("ctas7_control_records_total", "counter", "Control records (stamps, heartbeats) seen."),
    "convergences": ("ctas7_convergences_total", "counter", "Convergences detected."),
    "axon_actions": ("ctas7_axon_actions_total", "counter", "AXON actions taken."),
    "reports": ("ctas7_prism_reports_total", "counter", "PRISM reports."),
    "sink_submitted": ("ctas7_sink_submitted_total", "counter", "Records submitted to the sink."),
    "sink_written": ("ctas7_sink_written_total", "counter", "Records written by the sink."),
    "sink_spilled": ("ctas7_sink_spilled_total", "counter", "Records spilled to disk by the sink."),
    "sink_in_flight": ("ctas7_sink_in_flight", "gauge", "Records waiting in the sink."),
    "dropped_crash": ("ctas7_dropped_producer_crash_events_total", "counter",
                      "Events dropped with a worker that crashed mid-claim."),
    "lost_slots": ("ctas7_lost_slots_total", "counter", "Claimed channel slots lost without events."),
    "gaps": ("ctas7_gaps_total", "counter", "Sequence gaps seen in the channels."),
    "dead_lettered": ("ctas7_dead_lettered_total", "counter", "Input records dead-lettered."),
    "restarts": ("ctas7_worker_restarts_total", "counter", "Worker restarts."),
    "ring_occupancy": ("ctas7_ring_occupancy_records", "gauge", "Records waiting in all channels."),
}
_WORKER = {
    "produced": ("ctas7_worker_produced_events_total", "counter", "Events committed by the worker."),
    "dead_lettered": ("ctas7_worker_dead_lettered_total", "counter", "Records dead-lettered by the worker."),
    "restarts": ("ctas7_worker_restarts_by_worker_total", "counter", "Restarts of the worker."),
    "ring_occupancy": ("ctas7_worker_ring_occupancy_records", "gauge", "Records waiting in the worker's channel."),
}
_QUANTILES = (("0.5", "p50_us"), ("0.9", "p90_us"), ("0.99", "p99_us"), ("0.999", "p99.9_us"), ("1", "max_us"))


def _esc(v) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**kv) -> str:
    return "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in kv.items()) + "}"


def _num(v) -> str:
    if isinstance(v, int):
        return str(v)
    return repr(float(v))


def exposition(snap: dict) -> str:
    """The Prometheus text format of one snapshot (see :func:`ctas7.console.collect`)."""
    from ctas7.console import add_accounting

    if "accounting" not in snap:
        snap = add_accounting(dict(snap))
    name = snap.get("name", "")
    base = _labels(cluster=name)
    out: list[str] = []

    def family(metric, typ, help_):
        out.append(f"# HELP {metric} {help_}")
        out.append(f"# TYPE {metric} {typ}")

    family("ctas7_up", "gauge", "1 while the cluster's process is alive and not finished.")
    up = int(bool(snap.get("alive", False)) and snap.get("state") != "done")
    out.append(f"ctas7_up{base} {up}")
    family("ctas7_uptime_seconds", "gauge", "Seconds since the cluster created its metrics segment.")
    out.append(f"ctas7_uptime_seconds{base} {_num(snap.get('uptime_s', 0.0))}")
    c = snap.get("counters") or {}
    for key, (metric, typ, help_) in _COUNTERS.items():
        if key in c:
            family(metric, typ, help_)
            out.append(f"{metric}{base} {int(c[key])}")
    a = snap["accounting"]
    family("ctas7_produced_events_total", "counter", "Events produced (committed plus dead-lettered).")
    out.append(f"ctas7_produced_events_total{base} {int(a['produced'])}")
    family("ctas7_in_transit_events", "gauge", "Produced but not yet processed, dropped or dead-lettered.")
    out.append(f"ctas7_in_transit_events{base} {int(a['in_transit'])}")
    workers = snap.get("workers") or []
    for key, (metric, typ, help_) in _WORKER.items():
        family(metric, typ, help_)
        for i, w in enumerate(workers):
            out.append(f"{metric}{_labels(cluster=name, worker=i)} {int(w.get(key, 0))}")
    tp = snap.get("throughput") or {}
    ev = tp.get("events") or []
    if ev:
        dt = float(tp.get("interval_s") or 0.1)
        family("ctas7_throughput_events_per_second", "gauge", "Events per second over the last throughput interval.")
        out.append(f"ctas7_throughput_events_per_second{base} {_num(ev[-1] / dt)}")
    lat = snap.get("latency") or {}
    if lat:
        family("ctas7_latency_seconds", "summary",
               "Ingest-to-decision latency per event, and each stage's time per batch (HdrHistogram quantiles).")
        for hist, s in lat.items():
            n = int(s.get("count", 0))
            for q, key in _QUANTILES:
                if n:
                    out.append(f"ctas7_latency_seconds{_labels(cluster=name, histogram=hist, quantile=q)} "
                               f"{_num(s[key] / 1e6)}")
            out.append(f"ctas7_latency_seconds_sum{_labels(cluster=name, histogram=hist)} "
                       f"{_num(s.get('mean_us', 0.0) * n / 1e6)}")
            out.append(f"ctas7_latency_seconds_count{_labels(cluster=name, histogram=hist)} {n}")
    return "\n".join(out) + "\n"


class _Handler(BaseHTTPRequestHandler):
    server: "MetricsServer"

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path.split("?", 1)[0] not in ("/metrics", "/"):
            self.send_error(404, "only /metrics is served")
            return
        try:
            body = self.server.render().encode("utf-8")
        except Exception as exc:  # noqa: BLE001 - a failed scrape must answer, not kill the thread
            self.send_error(503, f"metrics unavailable: {type(exc).__name__}: {exc}")
            return
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args):
        pass  # one line per scrape on stderr would scroll the cluster's console away


class MetricsServer(ThreadingHTTPServer):
    """The running exporter: ``url``; ``close()`` stops it (or use it as a context manager)."""

    daemon_threads = True

    def __init__(self, reader, address):
        if ":" in address[0]:
            import socket

            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.reader = reader
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, name="ctas7-metrics-exporter", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}/metrics" if ":" in host else f"http://{host}:{port}/metrics"

    def render(self) -> str:
        from ctas7.console import collect

        with self._lock:  # one snapshot at a time, whatever the number of scrapers
            return exposition(collect(self.reader))

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)

    def __enter__(self) -> "MetricsServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def serve(reader, port: int, host: str = "127.0.0.1") -> MetricsServer:
    """Serve ``GET /metrics`` for ``reader`` on ``host:port`` from a daemon thread; return the server.

    ``port=0`` picks a free port (see ``server.url``). Only loopback hosts are
    accepted: the counters are not meant for the network.

    Examples
    --------
    >>> import os, urllib.request
    >>> from ctas7.metrics import Metrics, MetricsReader
    >>> m = Metrics.create(f"docx-{os.getpid()}", n_workers=1, n_stations=1)
    >>> m.add(m.PROCESSED, 5)
    >>> with serve(MetricsReader.attach(m.name), 0) as srv:
    ...     body = urllib.request.urlopen(srv.url, timeout=5).read().decode()
    >>> "ctas7_processed_events_total" in body
    True
    >>> m.close()
    """
    import ipaddress

    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an int in [0, 65535], got {port!r}")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the exporter listens on loopback addresses only (127.0.0.1, ::1), got {host!r}")
    srv = MetricsServer(reader, (host, port))
    srv._thread.start()
    return srv
