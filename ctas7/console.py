"""The live console of a running cluster: rich renderables over a metrics snapshot.

Everything here draws from one plain ``dict``, the snapshot of
:meth:`ctas7.metrics.MetricsReader.snapshot` as completed by
:func:`collect` (latency histogram bins and the live accounting), so the
same view serves ``hft-monitor`` in another process, ``hft-cluster
--monitor`` in the cluster's own process, and tests with a fixed dict.

- :func:`latency_histogram`: ingest-to-decision latency as bars over
  1-2-5 bins, with p50/p99/p99.9/max;
- :func:`throughput_graph`: events/s over the last minutes from the
  throughput ring (10 samples/s), one column per interval or group;
- :func:`convergence_table`: the latest convergences with their PRISM
  threat level and recommendation;
- :func:`ring_table` and :func:`accounting_table`: channel occupancy per
  worker, and ``produced = processed + dropped + dead-lettered + in transit``;
- :class:`MonitorView` composes them; :func:`live` refreshes it with
  :class:`rich.live.Live` until the cluster stops or ``stop`` is set.

Examples
--------
>>> import io
>>> from rich.console import Console
>>> snap = {"name": "demo", "alive": True, "state": "running", "uptime_s": 1.0, "creator_pid": 1,
...         "counters": {"processed": 990}, "workers": [{"produced": 1000, "status": "running"}],
...         "throughput": {"interval_s": 0.1, "events": [100, 200, 300]}}
>>> add_accounting(snap)["accounting"]["in_transit"]
10
>>> c = Console(width=60, color_system=None, file=io.StringIO())
>>> c.print(throughput_graph(snap, height=2, width=30))
>>> print(c.file.getvalue().splitlines()[0].strip())
3.0k/s ┤  ▃█
"""

from __future__ import annotations

import math
import re
import threading
import time

import numpy as np

# Shared with ctas7.metrics (the numpy summaries live there; re-exported here for the view).
from ctas7.metrics import _index_ranges, latency_summary

__all__ = [
    "collect", "add_accounting", "latency_bins", "latency_summary", "gone_reason", "latency_histogram", "throughput_graph", "convergence_table",
    "convergence_record", "ring_table", "accounting_table", "stage_table", "header", "MonitorView", "live", "run_live_view",
    "SECTIONS", "ClusterGone",
]

#: Sections a view can show (the header and the accounting are always shown).
SECTIONS = ("latency_histogram", "throughput_graph", "convergence_events", "rings", "stages")

_BLOCKS = " ▁▂▃▄▅▆▇█"
# 1-2-5 bin edges in ns, 100 ns .. 100 s.
_EDGES_NS = np.array([m * 10 ** e for e in range(2, 12) for m in (1, 2, 5)] + [10 ** 12], dtype=np.int64)


class ClusterGone(Exception):
    """The watched cluster stopped or died; ``str()`` is the one-line reason."""


# ---------------------------------------------------------------------------
# Snapshot
# ---------------------------------------------------------------------------


def latency_bins(counts, geometry) -> dict:
    """Counts of an HdrHistogram counts array gathered into 1-2-5 bins (µs upper edges).

    Only the bins from the first to the last populated one are kept.

    >>> from ctas7.metrics import histogram_geometry
    >>> h, geom = histogram_geometry()
    >>> for v in (900, 1_500, 1_600, 40_000):
    ...     _ = h.record_value(v)
    >>> latency_bins(np.frombuffer(h.counts, dtype=np.uint64), geom)
    {'upper_us': [1.0, 2.0, 5.0, 10.0, 20.0, 50.0], 'counts': [1, 2, 0, 0, 0, 1]}
    """
    low, size = _index_ranges(geometry)
    values = low + size - 1
    counts = np.asarray(counts, dtype=np.uint64)
    if counts.shape != values.shape:
        raise ValueError(f"counts of length {counts.shape[0]} do not match the geometry ({values.shape[0]})")
    nz = np.flatnonzero(counts)
    if not nz.size:
        return {"upper_us": [], "counts": []}
    b = np.searchsorted(_EDGES_NS, values[nz], side="left")
    binned = np.bincount(b, weights=counts[nz].astype(np.float64), minlength=len(_EDGES_NS) + 1)
    lo, hi = int(b.min()), int(b.max())
    edges = [float(e) / 1e3 for e in _EDGES_NS[lo : hi + 1]]
    return {"upper_us": edges, "counts": [int(round(c)) for c in binned[lo : hi + 1]]}


def add_accounting(snap: dict) -> dict:
    """Add ``snap["accounting"]``: the live balance of the cluster's events.

    ``produced`` is what the workers committed plus what they dead-lettered;
    ``in_transit`` is what is produced but not yet processed, dropped or
    dead-lettered (in the channels, or in the loop's carry). Once the
    cluster is ``done`` it must be 0.
    """
    c = snap.get("counters", {})
    workers = snap.get("workers", [])
    produced_events = sum(int(w.get("produced", 0)) for w in workers)
    dead = sum(int(w.get("dead_lettered", 0)) for w in workers)
    dropped = {"producer_crash": int(c.get("dropped_crash", 0))}
    processed = int(c.get("processed", 0))
    produced = produced_events + dead
    snap["accounting"] = {
        "produced": produced,
        "processed": processed,
        "dropped": dropped,
        "dead_lettered": dead,
        "in_transit": produced - processed - sum(dropped.values()) - dead,
        "restarts": int(c.get("restarts", 0)),
        "gaps": int(c.get("gaps", 0)),
        "lost_records": sum(int(w.get("lost_records", 0)) for w in workers),
    }
    return snap


def collect(reader) -> dict:
    """One snapshot of ``reader`` (a :class:`ctas7.metrics.MetricsReader`), completed for the view.

    Adds ``latency_histogram`` (bins of the ingest-to-decision histogram),
    ``accounting`` (:func:`add_accounting`) and ``snapshot_s`` (what the
    read cost). The reader maps the segment read-only: nothing is written.
    """
    import copy

    t0 = time.perf_counter()
    # The reader's own summaries go through hdrh's Python loops (0.1-1 s a
    # snapshot); a shallow copy with no histogram names skips them, and the
    # same numbers are computed here with numpy.
    lean = copy.copy(reader)
    lean.hist_names = []
    snap = lean.snapshot()
    snap["latency"] = {}
    for i, name in enumerate(getattr(reader, "hist_names", [])):
        counts = np.frombuffer(reader.histogram(i).counts, dtype=np.uint64)
        snap["latency"][name] = latency_summary(counts, reader.geometry)
        if i == 0:
            snap["latency_histogram"] = latency_bins(counts, reader.geometry)
    add_accounting(snap)
    snap["snapshot_s"] = round(time.perf_counter() - t0, 6)
    return snap


# ---------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------


def _n(v) -> str:
    return "-" if v is None else f"{int(v):,}"


def _us(v) -> str:
    """µs with 3 significant-ish digits, switching to ms/s when large."""
    if v is None:
        return "-"
    v = float(v)
    if v >= 1e6:
        return f"{v / 1e6:.2f} s"
    if v >= 1e3:
        return f"{v / 1e3:.2f} ms"
    if v >= 100:
        return f"{v:.0f} µs"
    return f"{v:.1f} µs"


def _edge(us: float) -> str:
    if us >= 1e6:
        return f"{us / 1e6:g} s"
    if us >= 1e3:
        return f"{us / 1e3:g} ms"
    return f"{us:g} µs"


def _rate(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.2f}M/s"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k/s"
    return f"{v:.0f}/s"


def _duration(s: float) -> str:
    s = max(0, int(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


# ---------------------------------------------------------------------------
# Renderables
# ---------------------------------------------------------------------------


def header(snap: dict):
    """One line: cluster, pid, state, uptime, source and shape, current rate."""
    from rich.text import Text

    cfg = snap.get("config") or {}
    state = snap.get("state", "unknown")
    if not snap.get("alive", True) and state != "done":
        state = "died"
    style = {"running": "bold green", "done": "bold", "died": "bold red"}.get(state, "bold yellow")
    t = Text()
    t.append("ctas7 cluster ", style="bold")
    t.append(str(snap.get("name", "?")), style="bold cyan")
    t.append(f"  pid {snap.get('creator_pid', '?')}  ")
    t.append(state, style=style)
    t.append(f"  up {_duration(snap.get('uptime_s', 0))}")
    if cfg.get("source"):
        t.append(f"  {cfg['source']}")
    n_st = len(snap.get("station_produced") or [])
    t.append(f"  {len(snap.get('workers', []))} workers" + (f", {n_st} stations" if n_st else ""))
    tp = snap.get("throughput") or {}
    ev = tp.get("events") or []
    if ev:
        k = min(len(ev), max(1, int(round(1.0 / tp.get("interval_s", 0.1)))))
        t.append(f"  now {_rate(sum(ev[-k:]) / (k * tp.get('interval_s', 0.1)))}")
    t.append(f"  processed {_n(snap.get('counters', {}).get('processed', 0))}")
    return t


def latency_histogram(snap: dict, *, bar_width: int = 40):
    """Ingest-to-decision latency: bars per 1-2-5 bin and p50/p99/p99.9/max."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    lat = (snap.get("latency") or {}).get("ingest_to_decision") or {"count": 0}
    bins = snap.get("latency_histogram") or {"upper_us": [], "counts": []}
    if not lat.get("count"):
        return Text("no latency samples yet")
    q = Text()
    for label, key in (("p50", "p50_us"), ("p99", "p99_us"), ("p99.9", "p99.9_us"), ("max", "max_us")):
        q.append(f"{label} ", style="bold")
        q.append(f"{_us(lat.get(key))}   ")
    q.append(f"mean {_us(lat.get('mean_us'))}   samples {_n(lat['count'])}")
    lines = [q]
    target = (snap.get("config") or {}).get("latency_target_ns")
    if target:
        ok = lat.get("p99_us", 0) * 1e3 <= target
        lines.append(Text(f"p99 target {_us(target / 1e3)}: ").append("met" if ok else "missed",
                                                                       style="green" if ok else "red"))
    t = Table.grid(padding=(0, 1))
    t.add_column(justify="right", no_wrap=True)
    t.add_column(no_wrap=True)
    t.add_column(justify="right", no_wrap=True)
    t.add_column(justify="right", no_wrap=True)
    counts = bins["counts"]
    total = sum(counts) or 1
    top = max(counts) if counts else 1
    for up, c in zip(bins["upper_us"], counts):
        cells = c / top * bar_width if top else 0
        full = int(cells)
        bar = "█" * full + ("▌" if cells - full >= 0.5 else "")
        t.add_row(f"≤ {_edge(up)}", Text(bar.ljust(bar_width), style="cyan"), _n(c), f"{100 * c / total:.1f}%")
    return Group(*lines, t)


def throughput_graph(snap: dict, *, width: int = 80, height: int = 6):
    """Events/s over the throughput ring as block bars; the newest interval is on the right."""
    from rich.text import Text

    tp = snap.get("throughput") or {}
    ev = list(tp.get("events") or [])
    dt = float(tp.get("interval_s") or 0.1)
    if not ev:
        return Text("no throughput samples yet")
    label_w = 11
    cols = max(8, width - label_w - 2)
    group = max(1, math.ceil(len(ev) / cols))
    n_full = len(ev) // group * group
    start = len(ev) - n_full
    groups = [ev[start + i : start + i + group] for i in range(0, n_full, group)]
    if not groups:
        groups = [ev]
    rates = [sum(g) / (len(g) * dt) for g in groups]
    peak = max(rates)
    levels = height * 8
    scaled = [int(round(r / peak * levels)) if peak > 0 else 0 for r in rates]
    out = Text(no_wrap=True)
    for row in range(height - 1, -1, -1):
        label = _rate(peak) if row == height - 1 else ("0/s" if row == 0 else "")
        out.append(f"{label:>{label_w - 2}} ┤ ")
        line = []
        for s in scaled:
            cell = s - row * 8
            line.append(_BLOCKS[min(8, max(0, cell))])
        out.append("".join(line), style="green")
        out.append("\n")
    span = len(groups) * group * dt
    left = f"-{_duration(span)}"
    right = "now"
    pad = max(1, len(groups) - len(left) - len(right))
    out.append(" " * label_w + left + " " * pad + right + "\n")
    last = sum(ev[-min(len(ev), int(round(1 / dt)) or 1):]) / (min(len(ev), int(round(1 / dt)) or 1) * dt)
    mean = sum(ev) / (len(ev) * dt)
    out.append(f"{'':>{label_w}}last 1 s {_rate(last)}   mean {_rate(mean)}   peak {_rate(peak)}"
               f"   {group * dt:g} s/col")
    return out


_LEVEL = re.compile(r"\s*([A-Z]+) threat\b")
_TIER = re.compile(r"\s*[A-Z]+ threat, tier ([A-Z_]+):")
_FIELD = re.compile(r'"(?P<k>confidence|pattern_matches|tick|ts|threat_level|tier|weighted_count)": '
                    r'(?P<v>-?[0-9.eE+-]+|"[^"]*"|null)')


def convergence_record(c: dict) -> dict:
    """A convergence summary as shown, with what can be read back from a summary cut to its slot.

    The metrics segment keeps each summary as JSON cut to a fixed size, so a
    long ``nodes`` list can push the rest out; then the fields still present
    are read from the text, and the level and tier from the recommendation's
    lead (``"HIGH threat, tier INTERDICT: ..."``).

    >>> cut = '{"confidence": 0.86, "groups": [0], "nodes": [12, 209, 24], "recommendation": "HIGH threat, tier INTE'
    >>> r = convergence_record({"truncated": cut})
    >>> r["confidence"], r["nodes"], r["threat_level"], r["tier"], r["cut"]
    (0.86, 3, 'HIGH', None, True)
    """
    if "truncated" not in c:
        nodes = c.get("nodes")
        return {"ts": c.get("ts"), "tick": c.get("tick"), "nodes": len(nodes) if isinstance(nodes, list) else nodes,
                "confidence": c.get("confidence"), "threat_level": c.get("threat_level"), "tier": c.get("tier"),
                "recommendation": c.get("recommendation") or "", "cut": False}
    text = str(c["truncated"])
    out = {"ts": None, "tick": None, "nodes": None, "confidence": None, "threat_level": None, "tier": None,
           "recommendation": "", "cut": True}
    for m in _FIELD.finditer(text):
        v = m.group("v")
        out[m.group("k")] = None if v == "null" else (v.strip('"') if v.startswith('"') else
                                                      (float(v) if any(x in v for x in ".eE") else int(v)))
    m = re.search(r'"nodes": \[([^\]]*)\]', text)
    if m:
        out["nodes"] = len([x for x in m.group(1).split(",") if x.strip()])
    m = re.search(r'"recommendation": "((?:[^"\\]|\\.)*)', text)
    if m:
        out["recommendation"] = m.group(1)
    level, tier = _LEVEL.match(out["recommendation"]), _TIER.match(out["recommendation"])
    out["threat_level"] = out["threat_level"] or (level.group(1) if level else None)
    out["tier"] = out["tier"] or (tier.group(1) if tier else None)
    return out


def _advice(text: str) -> str:
    """The actionable part of a PRISM recommendation (after "Recommendation:"), else all of it."""
    i = text.find("Recommendation:")
    return text[i + len("Recommendation:"):].strip() if i >= 0 else text


def convergence_table(snap: dict, *, rows: int = 8):
    """The latest convergences (newest last) with PRISM's level, tier and recommendation."""
    from rich.table import Table
    from rich.text import Text

    conv = list(snap.get("convergences") or [])
    total = int((snap.get("counters") or {}).get("reports", len(conv)) or len(conv))
    shown = [convergence_record(c) for c in conv[-rows:]]
    t = Table(caption=f"{len(shown)} shown of {_n(total)} reports", caption_justify="right", expand=True)
    t.add_column("event time", no_wrap=True)
    t.add_column("nodes", justify="right", no_wrap=True)
    t.add_column("conf", justify="right", no_wrap=True)
    t.add_column("level", no_wrap=True)
    t.add_column("tier", no_wrap=True)
    t.add_column("recommendation", ratio=1, no_wrap=True, overflow="ellipsis")
    for r in shown:
        ts = r["ts"]
        level = str(r["threat_level"] or "-")
        style = {"CRITICAL": "bold red", "HIGH": "red", "ELEVATED": "yellow"}.get(level.upper(), "")
        rec = _advice(r["recommendation"]) + (" …" if r["cut"] else "")
        t.add_row("-" if ts is None else f"{int(ts) / 1e9:,.3f} s", "-" if r["nodes"] is None else str(r["nodes"]),
                  "-" if r["confidence"] is None else f"{float(r['confidence']):.2f}", Text(level, style=style),
                  str(r["tier"] or "-"), Text(rec))
    if not shown:
        t.add_row("-", "", "", "", "", "no convergence yet")
    return t


def ring_table(snap: dict, *, bar_width: int = 20):
    """Per worker: status, stations, channel occupancy (with capacity if the config gives it), produced."""
    from rich.table import Table

    cap = (snap.get("config") or {}).get("channel_capacity")
    t = Table(title="rings", expand=True)
    t.add_column("worker", justify="right")
    t.add_column("status")
    t.add_column("stations", justify="right")
    t.add_column("occupancy", justify="right")
    if cap:
        t.add_column("fill", no_wrap=True)
    t.add_column("produced", justify="right")
    t.add_column("restarts", justify="right")
    for i, w in enumerate(snap.get("workers") or []):
        occ = int(w.get("ring_occupancy", 0))
        first, k = int(w.get("first_station", 0)), int(w.get("n_stations", 0))
        row = [str(i), str(w.get("status", "?")), f"{first}-{first + k - 1}" if k else "-", _n(occ)]
        if cap:
            frac = min(1.0, occ / cap)
            row.append("█" * int(round(frac * bar_width)) + "·" * (bar_width - int(round(frac * bar_width)))
                       + f" {100 * frac:.0f}%")
        row += [_n(w.get("produced", 0)), _n(w.get("restarts", 0))]
        t.add_row(*row)
    return t


def accounting_table(snap: dict):
    """``produced = processed + dropped + dead-lettered + in transit``, live."""
    from rich.table import Table

    a = snap.get("accounting") or add_accounting(dict(snap))["accounting"]
    t = Table(title="accounting", show_header=False, expand=True)
    t.add_column("what")
    t.add_column("events", justify="right")
    t.add_row("produced", _n(a["produced"]))
    t.add_row("processed", _n(a["processed"]))
    for r, n in a["dropped"].items():
        t.add_row(f"dropped: {r.replace('_', ' ')}", _n(n))
    t.add_row("dead-lettered", _n(a["dead_lettered"]))
    t.add_row("in transit", _n(a["in_transit"]))
    t.add_row("restarts/gaps/lost", f"{a['restarts']} / {a['gaps']} / {a['lost_records']}")
    if snap.get("state") == "done":
        t.add_row("balanced", "[green]yes[/]" if a["in_transit"] == 0 else "[red]NO[/]")
    return t


def stage_table(snap: dict):
    """Per stage: events, batches, ns/event, time per batch p50/p99/max."""
    from rich.table import Table

    t = Table(title="stages (per batch)", expand=True)
    for c, j in (("stage", "left"), ("events", "right"), ("batches", "right"), ("ns/event", "right"),
                 ("p50", "right"), ("p99", "right"), ("max", "right")):
        t.add_column(c, justify=j, no_wrap=True)
    lat = snap.get("latency") or {}
    for name, d in (snap.get("stages") or {}).items():
        s = lat.get(f"stage:{name}") or {}
        ev = int(d.get("events", 0))
        t.add_row(name, _n(ev), _n(d.get("batches", 0)), f"{d.get('time_ns', 0) / ev:.1f}" if ev else "-",
                  _us(s.get("p50_us")), _us(s.get("p99_us")), _us(s.get("max_us")))
    return t


class MonitorView:
    """The whole live view of one snapshot (a rich renderable).

    Parameters
    ----------
    snapshot : dict
        From :func:`collect` (or any dict of that shape).
    sections : iterable of str, optional
        Which of :data:`SECTIONS` to show (default all). The header and the
        accounting are always shown.
    message : str, optional
        A status line under the header (e.g. why the view stopped).

    Examples
    --------
    >>> import io
    >>> from rich.console import Console
    >>> c = Console(width=100, color_system=None, file=io.StringIO())
    >>> c.print(MonitorView({"name": "x", "state": "starting", "workers": []}, sections=()))
    >>> "accounting" in c.file.getvalue()
    True
    """

    def __init__(self, snapshot: dict, sections=None, message: str | None = None):
        sections = SECTIONS if sections is None else tuple(sections)
        bad = [s for s in sections if s not in SECTIONS]
        if bad:
            raise ValueError(f"unknown section(s) {bad}; choose from {list(SECTIONS)}")
        self.snapshot = snapshot
        self.sections = sections
        self.message = message

    def __rich_console__(self, console, options):
        from rich.panel import Panel
        from rich.table import Table

        snap = self.snapshot
        if "accounting" not in snap:
            snap = add_accounting(dict(snap))
        width = options.max_width
        yield header(snap)
        if self.message:
            yield self.message
        if "throughput_graph" in self.sections:
            yield Panel(throughput_graph(snap, width=width - 4), title="throughput (events/s)", title_align="left")
        if "latency_histogram" in self.sections:
            yield Panel(latency_histogram(snap, bar_width=max(10, min(50, width - 40))),
                        title="ingest-to-decision latency", title_align="left")
        if "convergence_events" in self.sections:
            yield Panel(convergence_table(snap), title="convergence events (PRISM)", title_align="left")
        if "rings" in self.sections and width >= 120:
            grid = Table.grid(expand=True, padding=(0, 1))
            grid.add_column(ratio=3)
            grid.add_column(ratio=2)
            grid.add_row(ring_table(snap), accounting_table(snap))
            yield grid
        else:
            if "rings" in self.sections:
                yield ring_table(snap)
            yield accounting_table(snap)
        if "stages" in self.sections:
            yield stage_table(snap)


# ---------------------------------------------------------------------------
# Live loop
# ---------------------------------------------------------------------------


def gone_reason(snap: dict) -> str | None:
    """Why the cluster behind ``snap`` is no longer running, or ``None``."""
    if snap.get("state") == "done":
        return f"cluster {snap.get('name')} finished"
    if not snap.get("alive", True):
        return f"cluster {snap.get('name')} (pid {snap.get('creator_pid')}) died without finishing"
    return None


def live(reader, refresh_per_second: float = 4.0, stop=None, *, console=None, sections=None,
         max_load: float = 0.2, exit_when_gone: bool = True) -> str:
    """Show :class:`MonitorView` of ``reader`` until the cluster goes away or ``stop`` is set.

    Parameters
    ----------
    reader : ctas7.metrics.MetricsReader
    refresh_per_second : float
        Redraws per second (the snapshot rate is lowered if one snapshot
        would take more than ``max_load`` of the time).
    stop : threading.Event, optional
        Set it to end the view.
    console : rich.console.Console, optional
    sections : iterable of str, optional
        See :class:`MonitorView`.
    max_load : float
        Largest share of the time spent taking snapshots.
    exit_when_gone : bool
        Return as soon as the cluster finished or died (else keep the last
        view, with the reason, on screen until ``stop`` is set).

    Returns
    -------
    str
        ``"stopped"`` when ``stop`` was set, else the reason the cluster is gone
        (see :func:`gone_reason`).
    """
    from rich.live import Live

    if not refresh_per_second > 0:
        raise ValueError(f"refresh_per_second must be > 0, got {refresh_per_second}")
    stop = stop if stop is not None else threading.Event()
    period = 1.0 / refresh_per_second
    snap = collect(reader)
    with Live(MonitorView(snap, sections), console=console, refresh_per_second=refresh_per_second,
              auto_refresh=False, transient=False) as lv:
        lv.refresh()
        while True:
            reason = gone_reason(snap)
            if reason is not None:
                lv.update(MonitorView(snap, sections, message=reason), refresh=True)
                if exit_when_gone:
                    return reason
                stop.wait()
                return "stopped"
            wait = max(period, snap.get("snapshot_s", 0.0) / max_load)
            if stop.wait(wait):
                lv.update(MonitorView(snap, sections), refresh=True)
                return "stopped"
            snap = collect(reader)
            lv.update(MonitorView(snap, sections), refresh=True)


def run_live_view(reader, stop_event, *, refresh_per_second: float = 4.0, console=None, sections=None) -> str:
    """The in-process view for ``hft-cluster --monitor``: :func:`live` until ``stop_event`` is set.

    Meant for a daemon thread of the cluster's process::

        stop = threading.Event()
        t = threading.Thread(target=run_live_view, args=(MetricsReader.attach(name), stop), daemon=True)
        t.start(); ...; stop.set(); t.join()

    Unlike :func:`live`, a finished cluster does not end the view: the
    final numbers stay on screen until ``stop_event`` is set. Returns
    ``"stopped"``.
    """
    return live(reader, refresh_per_second, stop_event, console=console, sections=sections, exit_when_gone=False)
