"""``ctas7-intel hft-cluster``: station worker processes, one pipeline loop, sinks off the hot path.

Layout
------
- **Workers** are processes (started from a ``forkserver``, so a restart
  costs a fork, not an interpreter start). The stations are split across
  them, one worker per core beyond the one the pipeline loop needs (so one
  worker on two cores: it writes 5M events/s with room to spare); each
  writes into its *own* shared-memory channel (SPSC), created here and
  attached by the worker (:mod:`ctas7.stations.worker`).
- **The pipeline loop runs in this (the parent) process.** It owns the
  channels and the supervision anyway, and on a 2-core machine one more
  process would only add a hop and a context switch. Each turn it takes
  what is in every channel (non-blocking, into one preallocated buffer, up
  to ``max_batch`` records), so batches stay small at low rates and grow
  under load, runs the chain (TETH | Meter | AXON | PRISM by default) and
  times every stage. It keeps polling for ``spin`` (200 µs) after the last
  record before it sleeps between polls. With several channels, events
  pass in event-time order up to a watermark (see :meth:`Cluster._drain_once`),
  held back at most ``max_hold`` (``--max-hold``, 25 ms) for a slow channel;
  idle workers commit heartbeat stamps so that it keeps up at low rates.
- **Sinks** (SurrealDB: convergences, AXON decisions, PRISM reports and a
  sample of events) run on the sink's own thread; the loop only enqueues.

Latency is ingest-to-decision: each committed worker batch opens with an
ingest stamp (see :mod:`ctas7.stations.worker`) carrying the *intended*
ingest times of its events; when the chain returns, the latency of every
event is recorded into an HdrHistogram in the metrics segment. Measuring
from the intended time of a paced load is what corrects for coordinated
omission: a stalled loop shows as latency, not as fewer samples.

Accounting: ``produced = processed + dropped (by reason) + dead_lettered``.
Produced counts live in shared memory (:mod:`ctas7.metrics`) and survive a
worker crash; a worker killed with SIGKILL is restarted on the same
stations (per-station sequence numbers continue), and the events of its
claim in flight, if the channel reports that claim lost, are counted as
dropped by the producer crash.

Stopping (SIGINT, SIGTERM, ``--duration``): workers stop producing, every
channel is drained through the chain, AXON and the sinks are closed, and
every segment is unlinked. Segments of a cluster that died without
cleaning up are swept at the next start.

Examples
--------
>>> import argparse
>>> p = argparse.ArgumentParser()
>>> add_arguments(p)
>>> a = p.parse_args("--ground-stations 247 --threads 64 --latency-target 200us --throughput-target 5M".split())
>>> a.threads, parse_duration_ns(a.latency_target), parse_count(a.throughput_target)
(64, 200000, 5000000.0)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import signal
import sys
import time
from pathlib import Path

import numpy as np

from ctas7.replay import alarm_record

__all__ = ["Cluster", "add_arguments", "run", "parse_count", "parse_duration_ns", "plan_workers", "plan_cpus",
           "rt_throttling_note"]

_UNITS_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
_COUNT_SUFFIX = {"": 1, "k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6, "g": 1e9, "G": 1e9}


def parse_duration_ns(text: str) -> int:
    """``'200us'`` -> 200000 (units ns, us/µs, ms, s; a bare number is µs).

    >>> parse_duration_ns("1ms"), parse_duration_ns("250")
    (1000000, 250000)
    """
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ns|us|µs|ms|s)?\s*", str(text))
    if not m:
        raise ValueError(f"not a duration: {text!r} (e.g. 200us, 1ms)")
    return int(round(float(m.group(1)) * _UNITS_NS[m.group(2) or "us"]))


def parse_count(text: str) -> float:
    """``'5M'`` -> 5e6 (suffixes k, M, G; ``'max'`` -> inf).

    >>> parse_count("5M"), parse_count("250k"), parse_count("1e6")
    (5000000.0, 250000.0, 1000000.0)
    """
    t = str(text).strip()
    if t.lower() in ("max", "inf", "unpaced"):
        return float("inf")
    m = re.fullmatch(r"([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([kKmMgG]?)", t)
    if not m:
        raise ValueError(f"not a count: {text!r} (e.g. 5M, 250k, max)")
    v = float(m.group(1)) * _COUNT_SUFFIX[m.group(2)]
    if not v > 0:
        raise ValueError(f"must be > 0: {text!r}")
    return v


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def plan_workers(threads: int, stations: int, source: str, *, oversubscribe: bool = False, cores: int | None = None):
    """Station ranges per worker and a one-line note on placement.

    Synthetic stations are split as evenly as possible over
    ``min(threads, stations, cores - 1)`` workers, at least one (all
    ``threads`` with ``oversubscribe``): the pipeline loop needs a core of
    its own, and more busy processes than cores only adds context switches
    and, across channels, watermark hold-back. One worker writes 5M
    events/s with room to spare. Any other source is one input, read by
    one worker.

    >>> plan_workers(64, 247, "synthetic", cores=2)[0]
    [(0, 247)]
    >>> plan_workers(64, 247, "synthetic", cores=4)[0]
    [(0, 83), (83, 82), (165, 82)]
    """
    if threads < 1 or stations < 1:
        raise ValueError(f"--threads and --ground-stations must be >= 1, got {threads}, {stations}")
    cores = cores or _cores()
    if source != "synthetic" and not source.startswith("synthetic:"):
        return [(0, stations)], f"1 worker reads {source} (one input; --threads {threads} does not split it)"
    # The pipeline loop busy-polls in the parent: it gets a core of its own.
    usable = max(1, cores - 1)
    n = min(threads, stations) if oversubscribe else min(threads, stations, usable)
    base, extra = divmod(stations, n)
    ranges, first = [], 0
    for i in range(n):
        k = base + (1 if i < extra else 0)
        ranges.append((first, k))
        first += k
    if n < threads:
        note = (f"{n} worker process{'es' if n > 1 else ''} (--threads {threads} capped to the {cores} usable cores "
                f"minus one for the pipeline loop; stations split {'/'.join(str(k) for _, k in ranges)})")
    else:
        note = f"{n} worker processes on {cores} cores ({'oversubscribed, ' if n > cores else ''}stations split " \
               f"{'/'.join(str(k) for _, k in ranges[:8])}{'/...' if n > 8 else ''})"
    return ranges, note


def plan_cpus(n_workers: int, pin: bool | None = None, cpus=None):
    """CPUs for the pipeline loop and for each worker: ``(loop_cpu, [cpus per worker], note)``.

    The loop gets the first usable CPU to itself; the workers share the
    others round-robin, one each when there are enough. ``pin=None``
    (auto) pins only when every worker can have a CPU of its own besides
    the loop's (the default placement of :func:`plan_workers`); ``True``
    pins whenever there are two CPUs or more; ``False`` never. Without
    pinning the result is ``(None, [() ...], note)``.

    Why it is not the default: left to itself, the scheduler of this 2-vCPU
    machine put the worker (sleeping between commits) on the loop's CPU in
    every sample, the other CPU idle, and the loop was preempted up to
    ~10,000 times/s; pinned, with the worker busy-polling (``worker_wait``),
    the loop is preempted ~10-40 times/s and p50 halves (medians of 9 quiet
    runs each at 1M events/s, same build: 54 vs 101 µs). But both CPUs are
    then busy all the time, so any other task that runs takes its time slice
    (ticks of 4 ms) from the loop or the worker, which cannot move away: p99
    ranged 0.2-12 ms (median 1.0 ms) against 0.37-8.5 ms (median 0.78 ms)
    unpinned, p99.9 medians 6.6 vs 3.3 ms. On CPUs kept free of other work
    (``isolcpus``, a dedicated host) pinning is the better choice.

    >>> plan_cpus(1, cpus=[0, 1])
    (0, [(1,)], 'loop on CPU 0, workers on CPU 1')
    >>> plan_cpus(2, cpus=[0, 1])[:2]
    (None, [(), ()])
    >>> plan_cpus(3, pin=True, cpus=[0, 1, 2])[:2]
    (0, [(1,), (2,), (1,)])
    """
    usable = sorted(cpus if cpus is not None else (os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else
                                                  range(os.cpu_count() or 1)))
    if pin is None:
        pin = n_workers + 1 <= len(usable)
    if not pin:
        return None, [()] * n_workers, "not pinned"
    if len(usable) < 2:
        return None, [()] * n_workers, f"not pinned (only CPU {usable[0]} usable)"
    loop, rest = usable[0], usable[1:]
    per = [(rest[i % len(rest)],) for i in range(n_workers)]
    used = sorted({c for (c,) in per})
    return loop, per, f"loop on CPU {loop}, workers on CPU{'s' if len(used) > 1 else ''} {','.join(map(str, used))}"


def _thread_rusage():
    """getrusage of the calling thread (Linux), else None."""
    import resource

    who = getattr(resource, "RUSAGE_THREAD", None)
    return None if who is None else resource.getrusage(who)


def rt_throttling_note() -> str | None:
    """What the kernel's RT throttling does to a busy-polling SCHED_FIFO task, or None if it is off.

    The pipeline loop polls without sleeping; under SCHED_FIFO with
    ``sched_rt_runtime_us`` < ``sched_rt_period_us`` the kernel stops it for
    the difference every period whenever other tasks want the CPU (measured
    here with the defaults 950,000/1,000,000: p99 39 ms, maxima 52 ms).
    """
    try:
        with open("/proc/sys/kernel/sched_rt_runtime_us") as f:
            runtime = int(f.read())
        with open("/proc/sys/kernel/sched_rt_period_us") as f:
            period = int(f.read())
    except (OSError, ValueError):
        return None
    if runtime < 0 or runtime >= period:
        return None
    return (f"RT throttling is on (sched_rt_runtime_us {runtime} of {period}): the busy-polling loop and workers "
            f"can be stopped for {(period - runtime) / 1000:g} ms each {period / 1e6:g} s, far above the latency "
            f"target; --realtime pays off only with RT throttling off")


class Cluster:
    """The multi-process runtime behind ``hft-cluster`` (usable from Python).

    Parameters
    ----------
    stations : int
        Ground stations (synthetic source).
    workers : list of (first_station, n_stations)
        One worker process per entry (see :func:`plan_workers`).
    source : str
        ``synthetic``, ``file:PATH``, ``rss:PATH_OR_URL``, ``udp:PORT`` or ``nats://HOST:PORT``.
    rate : float
        Offered events/s in total (synthetic; ``inf`` = as fast as possible).
    params : path, dict or None
        Meter parameters (:func:`ctas7.chain.load_params`).
    surreal : str or None
        SurrealDB URL, ``None`` for none.
    name : str
        Metrics segment ``ctas7-metrics-<name>``; channels ``ctas7-cluster-<name>-w<i>``.
    chain : Pipeline, optional
        The chain to run (default :func:`ctas7.chain.default_chain`).
    max_batch : int
        Records the loop takes per turn, and the most it holds back behind
        the watermark (half of it): 2**18 is ~26 ms of hold-back at 5M events/s.
    max_lag : float
        Seconds after which a silent channel no longer holds the watermark back.
    max_hold : float
        The most (seconds of wall time past an event's intended ingest time)
        the watermark holds an event back waiting for a slower channel; a
        channel later than that delivers late events (the meter counts them
        into its open tick). Bounds what one descheduled worker costs the
        others' latency, at a price: a worker's stations silent for some
        ticks and then counted all at once look like a convergence of all of
        them (measured at 5M/s with two workers on two cores: 1 ms -> 131k
        late events and convergences of 63 and 187 nodes outside any burst;
        the default, like the former record cap of ~26 ms at 5M/s, gave none).
    spin : float
        Seconds the loop keeps polling the channels after the last record
        before it sleeps ``idle_sleep`` between polls (a wake-up from a sleep
        costs tens of µs, more on a loaded machine).
    switch_interval : float
        The interpreter's GIL switch interval during :meth:`run` (restored
        after). The sink's thread, ``--monitor``'s redraws (~15 ms of Python
        each) and ``--metrics-port``'s scrapes share the GIL with the loop;
        at Python's default 5 ms the loop waits that long each time. p99 at
        1M/s with the live view, two sets of medians of 3 on a loaded 2-core
        machine: 17.5 / 6.9 ms at 5 ms, 7.7 / 3.8 ms at 100 µs (without the
        view: 8.1 / 1.0 ms).
    worker_sleep : float
        What a paced worker sleeps after committing a batch (its commit
        cadence: events wait in the worker for part of it).
    heartbeat : float
        With several paced workers, the longest an idle worker goes without
        committing (a lone stamp if nothing is due), so the watermark keeps
        up at low rates.
    pin : bool or None
        Pin the pipeline loop and the workers to CPUs (:func:`plan_cpus`;
        ``None``: when each can have one of its own; default ``False``, see
        there why). Restored after :meth:`run`.
    worker_wait : {"auto", "spin", "sleep"}
        How a paced synthetic worker waits for its next events: ``spin``
        polls the clock (a busy core, no wake-ups), ``sleep`` sleeps
        ``worker_sleep`` between commits; ``auto`` spins when the worker is
        pinned to a CPU of its own. A wake-up from a sleep costs tens of µs
        to ms on a virtual machine whose idle CPUs halt; the events wait in
        the worker meanwhile.
    realtime : int
        SCHED_FIFO priority for the loop and the workers (0: off). Needs
        the permission (CAP_SYS_NICE); refused, it is reported in the
        summary and the run goes on. Two busy-polling SCHED_FIFO tasks on a
        2-core machine hold off everything else but the kernel's RT
        throttling share (``/proc/sys/kernel/sched_rt_runtime_us``), which
        stops them for 50 ms a second by default (:func:`rt_throttling_note`).
    nice : int
        Nice value of the loop and the workers (0: unchanged; negative needs
        CAP_SYS_NICE). Under the normal scheduler, -20 leaves other tasks on
        their CPUs ~1% of it instead of a fair share, with no throttling.
    """

    def __init__(self, *, stations: int = 247, workers=((0, 247),), source: str = "synthetic", rate: float = 1e6,
                 params=None, surreal: str | None = None, name: str | None = None, seed: int = 0,
                 burst_every: float = 5.0, burst_len: float = 0.3, sample_events: float = 100.0,
                 dead_letter_dir: str | os.PathLike = ".ctas7-data/dead-letter", channel_capacity: int = 1 << 17,
                 max_batch: int = 1 << 18, worker_batch: int = 8192, chain=None, metrics: bool = True,
                 idle_sleep: float = 20e-6, max_lag: float = 0.05, max_hold: float = 0.025, spin: float = 200e-6,
                 heartbeat: float = 50e-6, worker_sleep: float = 20e-6, switch_interval: float = 1e-4,
                 config: dict | None = None, pin: bool | None = False, worker_wait: str = "auto", realtime: int = 0,
                 nice: int = 0):
        from ctas7.chain import default_chain

        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.stations = int(stations)
        self.ranges = [tuple(map(int, r)) for r in workers]
        self.source = source
        self.rate = float(rate)
        self.surreal = surreal
        self.name = name or f"{os.getpid()}"
        self.seed = int(seed)
        self.burst_every = float(burst_every)
        self.burst_len = float(burst_len)
        self.sample_events = float(sample_events)
        self.dead_letter_dir = Path(dead_letter_dir)
        self.channel_capacity = int(channel_capacity)
        self.max_batch = int(max_batch)
        self.worker_batch = int(worker_batch)
        self.idle_sleep = float(idle_sleep)
        self.max_lag = float(max_lag)
        self.max_hold = float(max_hold)
        self.spin = float(spin)
        self.heartbeat = float(heartbeat)
        self.worker_sleep = float(worker_sleep)
        self.switch_interval = float(switch_interval)
        if not self.switch_interval > 0:
            raise ValueError(f"switch_interval must be > 0 seconds, got {switch_interval}")
        for v, what in ((self.max_hold, "max_hold"), (self.spin, "spin"), (self.heartbeat, "heartbeat"),
                        (self.idle_sleep, "idle_sleep"), (self.max_lag, "max_lag"), (self.worker_sleep, "worker_sleep")):
            if not v >= 0:
                raise ValueError(f"{what} must be >= 0 seconds, got {v}")
        if worker_wait not in ("auto", "spin", "sleep"):
            raise ValueError(f"worker_wait must be 'auto', 'spin' or 'sleep', got {worker_wait!r}")
        if not 0 <= int(realtime) <= 99:
            raise ValueError(f"realtime must be a SCHED_FIFO priority in [1, 99] or 0 (off), got {realtime}")
        if not -20 <= int(nice) <= 19:
            raise ValueError(f"nice must lie in [-20, 19], got {nice}")
        self.nice = int(nice)
        self.pin = pin
        self.worker_wait = worker_wait
        self.realtime = int(realtime)
        self.loop_cpu, self.worker_cpus, self.pin_note = plan_cpus(len(self.ranges), pin)
        spin = worker_wait == "spin" or (worker_wait == "auto" and self.loop_cpu is not None and
                                         len(set(self.worker_cpus)) == len(self.worker_cpus))
        self.worker_spin = spin and source == "synthetic" and self.rate != float("inf")
        self.use_metrics = bool(metrics)
        self.config = dict(config or {})
        self.chain = chain if chain is not None else default_chain(params)
        self.stages = list(self.chain.stages)
        self.stage_names = self.chain._unique_names(self.stages) if hasattr(self.chain, "_unique_names") else \
            [s.name for s in self.stages]
        self._stop = False
        self.processed = 0
        self.reports: list = []
        self._init_loop_state()

    # ------------------------------------------------------------ lifecycle

    def request_stop(self, *_args) -> None:
        """Ask the loop to stop (signal-safe)."""
        self._stop = True

    def _setup(self) -> None:
        from ctas7._core._metrics import StepRecorder
        from ctas7.channel import Channel, sweep
        from ctas7.metrics import Metrics
        from ctas7.metrics import sweep as msweep
        from ctas7.stations.worker import set_timer_slack

        sweep("cluster-")
        msweep()
        set_timer_slack()
        n = len(self.ranges)
        self.metrics = Metrics.create(self.name, n_workers=n, n_stations=self.stations, stages=self.stage_names,
                                      config={"source": self.source, "rate": self.rate, "workers": n,
                                              "channel_capacity": self.channel_capacity, **self.config})
        self.channels = []
        try:
            for i in range(n):
                self.channels.append(Channel.create(f"cluster-{self.name}-w{i}", self.channel_capacity, emit_gaps=False))
        except BaseException:
            self._close_segments()
            raise
        self.rings = [ch.ring for ch in self.channels]
        m = self.metrics
        self._rec = StepRecorder(m.hist_block, self._geom, self._stamps, m.stage_words, len(self.stages),
                                 self._stamp_kind)
        self._i = {f: [m.worker_index(i, f) for i in range(n)] for f in
                   ("state", "dead_lettered", "restarts", "lost_records", "gaps", "ring_occupancy", "dropped_crash",
                    "lost_slots", "status", "first_station", "n_stations", "pid")}
        for i, (first, k) in enumerate(self.ranges):
            m.set(self._i["first_station"][i], first)
            m.set(self._i["n_stations"][i], k)
        self._lost_seen = [0] * n
        self.dropped_crash = [0] * n
        self.lost_slots = [0] * n
        self.restarts = [0] * n
        self._start_failures = [0] * n
        self.error = None
        self.incarnation = [0] * n
        self._ctx = mp.get_context("forkserver")
        self._ctx.set_forkserver_preload(["numpy", "ctas7.channel", "ctas7.metrics", "ctas7.stations.worker"])
        self.procs = [None] * n
        self.sink = None
        if self.surreal:
            from ctas7.sinks.surreal import SurrealSink

            self.sink = SurrealSink(self.surreal, event_every=1, put_timeout=0.0)

    def _spec(self, i: int):
        from ctas7.channel import _start_time
        from ctas7.stations.worker import WorkerSpec

        first, k = self.ranges[i]
        synthetic = self.source == "synthetic"
        per_worker = None if self.rate == float("inf") else self.rate * k / self.stations
        dl = ckpt = None
        if not synthetic:
            self.dead_letter_dir.mkdir(parents=True, exist_ok=True)
            dl = str(self.dead_letter_dir / f"{self.name}-w{i}.jsonl")
        if self.source.startswith("file:"):
            ckpt = str(self._checkpoint_path(i))
        period = int(self.burst_every * 1e9)
        return WorkerSpec(
            index=i, channel=self.channels[i].name, metrics=self.name, source=self.source, first_station=first,
            n_stations=k, total_stations=self.stations, rate=per_worker, seed=self.seed,
            incarnation=self.incarnation[i], max_batch=self.worker_batch, burst_period_ns=period,
            burst_len_ns=int(self.burst_len * 1e9) if period else 0, dead_letter=dl, parent_pid=os.getpid(),
            parent_start=_start_time(os.getpid()),
            heartbeat_ns=int(self.heartbeat * 1e9) if self._watermark else 0, idle_sleep=self.worker_sleep,
            cpus=self.worker_cpus[i], spin_ns=int(self.spin * 1e9) if self.worker_spin else 0, realtime=self.realtime,
            nice=self.nice, checkpoint=ckpt,
        )

    def _checkpoint_path(self, i: int) -> Path:
        """Where worker ``i`` keeps its ``file:`` source's resume position while the cluster runs."""
        return self.dead_letter_dir / f"{self.name}-w{i}.position.json"

    def _start_worker(self, i: int) -> None:
        from ctas7.stations.worker import run_worker

        p = self._ctx.Process(target=run_worker, args=(self._spec(i),), name=f"ctas7-station-worker-{i}", daemon=True)
        p.start()
        self.procs[i] = p

    def _resolve(self, i: int) -> None:
        """Account for worker ``i`` after it exited (cleanly or not)."""
        from ctas7.metrics import PEND_BITS, PEND_MASK

        ch, m = self.channels[i], self.metrics
        ch.check_producers()
        lost = ch.lost - self._lost_seen[i]
        self._lost_seen[i] = ch.lost
        w = m.words[self._i["state"][i]]
        produced, pend = w >> PEND_BITS, w & PEND_MASK
        if pend:
            if lost >= pend + 1:  # the claim holding them was never committed
                self.dropped_crash[i] += pend
                self.lost_slots[i] += lost - pend - 1
            else:
                self.lost_slots[i] += lost
            m.store_atomic(self._i["state"][i], (produced + pend) << PEND_BITS)
        else:
            self.lost_slots[i] += lost
        m.set(self._i["dropped_crash"][i], self.dropped_crash[i])
        m.set(self._i["lost_slots"][i], self.lost_slots[i])
        m.set(self._i["lost_records"][i], ch.lost)
        m.set(self._i["gaps"][i], ch.gaps)
        m.set(m.DROPPED_CRASH, sum(self.dropped_crash))
        m.set(m.LOST_SLOTS, sum(self.lost_slots))
        m.set(m.GAPS, sum(c.gaps for c in self.channels))

    def _supervise(self, restart: bool) -> None:
        m = self.metrics
        for i, p in enumerate(self.procs):
            if p is None or p.exitcode is None:
                continue
            p.join()
            self._resolve(i)
            # A worker that dies before it ever ran (status still "starting")
            # will not get better by restarting: three in a row stop the cluster.
            if m.words[self._i["status"][i]] == 0:
                self._start_failures[i] += 1
            else:
                self._start_failures[i] = 0
            if self._start_failures[i] >= 3 and restart:
                self.error = (f"station worker {i} failed to start {self._start_failures[i]} times in a row "
                              f"(exit code {p.exitcode}); see its traceback above")
                self._stop = True
                restart = False
            if restart:
                self.restarts[i] += 1
                self.incarnation[i] += 1
                m.set(self._i["restarts"][i], self.restarts[i])
                m.set(m.RESTARTS, sum(self.restarts))
                m.set(self._i["status"][i], 0)
                self._start_worker(i)
            else:
                if p.exitcode != 0:
                    m.set(self._i["status"][i], 3)
                self.procs[i] = None

    # ------------------------------------------------------------ hot path

    def _step(self, batch: np.ndarray) -> None:
        from ctas7.stage import Frame

        k, n_ev, n_ctl = self._rec.collect(batch)
        frame = Frame(events=batch, ingest_ns=int(self._stamps[0, 0]) if k else 0)
        if self.use_metrics:
            clock, dts = time.perf_counter_ns, []
            for s in self.stages:
                t0 = clock()
                frame = s.process(frame)
                dts.append(clock() - t0)
            self._lat_events += self._rec.record(dts, n_ev, k, time.clock_gettime_ns(time.CLOCK_MONOTONIC))
        else:
            for s in self.stages:
                frame = s.process(frame)
        self.processed += n_ev
        self._control += n_ctl
        self._stamp_count += k
        self._batches += 1
        if frame.convergences or frame.responses or frame.reports:
            self._decisions(frame)
        if self.sink is not None and self._sample_budget >= 1 and n_ev:
            self._sample(batch)

    def _decisions(self, frame) -> None:
        self._convergences += len(frame.convergences)
        self._actions += len(frame.responses)
        for r in frame.reports:
            rec = alarm_record(r)
            self.reports.append(rec)
            if self.use_metrics:
                self.metrics.push_convergence(rec)
        if self.sink is not None:
            try:
                self.sink.submit_records("convergences", frame.convergences)
                self.sink.submit_records("responses", frame.responses)
                self.sink.submit_records("reports", frame.reports)
            except (TypeError, ValueError) as exc:
                self._sink_errors += 1
                self._sink_last_error = f"{type(exc).__name__}: {exc}"

    def _sample(self, batch: np.ndarray) -> None:
        from ctas7.events import KIND_CONTROL_BASE

        take = int(min(self._sample_budget, 256))
        head = batch[: take * 2]
        ev = np.ascontiguousarray(head[head["kind"] < KIND_CONTROL_BASE][:take])
        if len(ev):
            self._sample_budget -= len(ev)
            self.sink.submit_events(ev)

    def _publish(self, now: float) -> None:
        """Per 100 ms: counters, throughput ring, occupancy, sink backlog."""
        from ctas7.metrics import PEND_BITS

        m = self.metrics
        if self.use_metrics:
            for i, r in enumerate(self.rings):
                m.set(self._i["ring_occupancy"][i], len(r))
            m.set(m.PROCESSED, self.processed)
            m.set(m.BATCHES, self._batches)
            m.set(m.CONTROL_RECORDS, self._control)
            m.set(m.STAMPS, self._stamp_count)
            m.set(m.CONVERGENCES, self._convergences)
            m.set(m.AXON_ACTIONS, self._actions)
            m.set(m.REPORTS, len(self.reports))
            m.set(m.RING_OCCUPANCY, sum(len(r) for r in self.rings))
            dead = sum(m.words[j] for j in self._i["dead_lettered"])
            m.set(m.DEAD_LETTERED, dead)
            m.set(m.PRODUCED, sum(m.words[j] >> PEND_BITS for j in self._i["state"]) + dead)
            m.set(m.CHAIN_NS, int(m.stage_words[: len(self.stages), 2].sum()))
            m.set(m.LATENCY_EVENTS, self._lat_events)
            m.push_throughput(self.processed - self._tput_last)
            if self.sink is not None:
                st = self.sink.stats
                m.set(m.SINK_SUBMITTED, st.submitted)
                m.set(m.SINK_WRITTEN, st.written)
                m.set(m.SINK_SPILLED, st.spilled)
                m.set(m.SINK_IN_FLIGHT, max(0, st.in_flight))
            m.touch()
        self._tput_last = self.processed
        self._sample_budget = min(self._sample_budget + self.sample_events * 0.1, max(256.0, self.sample_events))

    def _drain_once(self, rot: int, flush: bool = False) -> int:
        """Take what every channel holds (up to ``max_batch``), merged by event time, through the chain.

        With several paced synthetic workers, events pass only up to the
        *watermark*, the oldest latest-time among the channels heard from
        in the last ``max_lag`` seconds; the rest waits in front of the
        buffer for the next turn. Without it, a worker descheduled for a
        few ms delivers late, its events land in the meter's open tick
        together, and half the stations "converge" on a scheduling hiccup.
        Returns the records taken from the channels.
        """
        buf, rings, cap, bounds, buf_ts = self._buf, self.rings, self.max_batch, self._bounds, self._buf_ts
        n = carry = self._carry
        w = len(rings)
        runs = 0
        if carry:
            runs, bounds[1] = 1, carry
        last_ts, last_wall = self._last_ts, self._last_wall
        now = time.monotonic()
        for j in range(w):
            if n >= cap:
                break
            c = (rot + j) % w
            got = rings[c].get_into(buf[n:])
            if got:
                n += got
                runs += 1
                bounds[runs] = n
                last_ts[c] = buf_ts[n - 1]
                last_wall[c] = now
        if n == 0:
            return 0
        if runs > 1:
            self._merge(buf, bounds[: runs + 1], self._merged)
            src = self._merged
        else:
            src = buf
        cut = n
        if self._watermark and not flush:
            live = [int(t) for t, seen in zip(last_ts, last_wall) if now - seen < self.max_lag]
            if live:
                # Never hold an event more than max_hold past its intended ingest time.
                wm = max(min(live), time.clock_gettime_ns(time.CLOCK_MONOTONIC) - self._max_hold_ns)
                ts = src["ts"]
                if ts[n - 1] > wm:
                    cut = int(np.searchsorted(ts[:n], wm, side="right"))
                    if n - cut > cap // 2:
                        # Holding more back would fill the buffer and stall every channel
                        # behind the slow one: let it be late instead.
                        cut = n
        if cut:
            self._step(src[:cut])
        rest = n - cut
        if rest:
            buf[:rest] = src[cut:n]
        self._carry = rest
        return n - carry

    # ------------------------------------------------------------ run

    def _init_loop_state(self) -> None:
        """Buffers and counters of the pipeline loop (before :meth:`_setup`)."""
        from ctas7._core._metrics import merge_runs
        from ctas7.events import empty
        from ctas7.metrics import histogram_geometry
        from ctas7.stations.worker import KIND_STAMP

        self._stamp_kind = KIND_STAMP
        self._buf = empty(self.max_batch)
        self._buf_ts = self._buf["ts"]
        self._merged = empty(self.max_batch)
        self._merge = merge_runs
        self._bounds = np.zeros(len(self.ranges) + 2, dtype=np.int64)
        self._carry = 0
        self._last_ts = np.zeros(len(self.ranges), dtype=np.int64)
        self._last_wall = [0.0] * len(self.ranges)
        self._watermark = self.source == "synthetic" and len(self.ranges) > 1 and self.rate != float("inf")
        self._max_hold_ns = int(self.max_hold * 1e9)
        self._stamps = np.zeros((4096, 3), dtype=np.int64)
        _, self._geom = histogram_geometry()
        self._control = self._stamp_count = self._batches = self._convergences = self._actions = 0
        self._lat_events = 0
        self._sink_errors, self._sink_last_error = 0, ""
        self._tput_last = 0
        self._sample_budget = float(min(self.sample_events, 256))

    def run(self, duration: float | None = None, *, handle_signals: bool = True, on_started=None) -> dict:
        """Run until ``duration`` seconds pass or a stop is requested; return the summary."""
        from ctas7.stations.worker import restore_placement

        old = {}
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                old[sig] = signal.signal(sig, self.request_stop)
        t_setup = time.perf_counter()
        switch = sys.getswitchinterval()
        sys.setswitchinterval(self.switch_interval)
        try:
            self._setup()
        except BaseException:
            sys.setswitchinterval(switch)
            raise
        placed = None
        try:
            for i in range(len(self.ranges)):
                self._start_worker(i)
            self.metrics.set_state("running")
            t0 = time.perf_counter()
            startup_s = t0 - t_setup
            if on_started is not None:
                on_started(self)
            # Last, so that neither the forkserver nor a thread started above inherits the loop's CPU.
            placed = self._place()
            ru0 = _thread_rusage()
            self._loop(t0, duration)
            ru1 = _thread_rusage()
            self._loop_sched = None if ru0 is None else {
                "cpu_s": round(ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime, 3),
                "involuntary_switches": ru1.ru_nivcsw - ru0.ru_nivcsw,
                "voluntary_switches": ru1.ru_nvcsw - ru0.ru_nvcsw}
            t_stop = time.perf_counter()
            self._steady_end = (t_stop, self.processed)
            self._shutdown()
            elapsed = t_stop - t0
            return self._summary(elapsed, time.perf_counter() - t_stop, startup_s)
        finally:
            self._teardown()
            if placed is not None:
                restore_placement(placed)
            sys.setswitchinterval(switch)
            for sig, h in old.items():
                signal.signal(sig, h)

    def _place(self) -> dict:
        """Pin this (the loop's) thread and raise its priority as configured; say what happened."""
        from ctas7.stations.worker import apply_placement

        cpus = () if self.loop_cpu is None else (self.loop_cpu,)
        done = apply_placement(cpus, self.realtime, self.nice)
        self.placement = {"pin": self.pin_note if done["cpus"] or not cpus else "not pinned",
                          "loop_cpu": self.loop_cpu if done["cpus"] else None,
                          "worker_cpus": [list(c) for c in self.worker_cpus] if done["cpus"] else None,
                          "worker_wait": "spin" if self.worker_spin else "sleep",
                          "realtime": done["realtime"], "nice": done["nice"], "refused": done["refused"]}
        for why in done["refused"]:
            print(f"hft-cluster: could not {why}", file=sys.stderr, flush=True)
        if done["realtime"]:
            warn = rt_throttling_note()
            if warn:
                self.placement["warning"] = warn
                print(f"hft-cluster: {warn}", file=sys.stderr, flush=True)
        return done

    def _loop(self, t0: float, duration: float | None) -> None:
        end = None if duration is None else t0 + duration
        mono = time.monotonic
        sleep = time.sleep
        next_sup = next_pub = mono()
        rot = 0
        idle = self.idle_sleep
        status = self._i["status"]
        words = self.metrics.words
        self._steady = None
        spin = self.spin
        last_data = mono()
        while not self._stop:
            n = self._drain_once(rot)
            rot += 1
            now = mono()
            if n:
                last_data = now
            if now >= next_sup:
                next_sup = now + 0.02
                self._supervise(restart=True)
                if self._steady is None and all(words[j] == 1 for j in status):
                    self._steady = (time.perf_counter(), self.processed)
                if now >= next_pub:
                    next_pub = now + 0.1
                    self._publish(now)
                if end is not None and time.perf_counter() >= end:
                    break
            if not n and now - last_data >= spin:
                sleep(idle)

    def _shutdown(self) -> None:
        """Stop producing, drain every channel through the chain, flush."""
        self.metrics.set_state("stopping")
        deadline = time.monotonic() + 10.0
        rot = 0
        while any(p is not None for p in self.procs):
            if not self._drain_once(rot):
                time.sleep(self.idle_sleep)
            rot += 1
            self._supervise(restart=False)
            if time.monotonic() > deadline:
                for p in self.procs:
                    if p is not None and p.exitcode is None:
                        p.kill()
                deadline = time.monotonic() + 5.0
        while self._drain_once(rot) or self._carry:
            rot += 1
            if not any(len(r) for r in self.rings):
                self._drain_once(rot, flush=True)
        self._close_outputs()
        self._publish(time.monotonic())

    def _close_outputs(self) -> None:
        """Flush AXON's handlers and drain the sink (idempotent)."""
        axon = next((s for s in self.stages if hasattr(s, "close") and type(s).__name__ == "Axon"), None)
        if axon is not None and not getattr(self, "_axon_closed", False):
            self._axon_closed = True
            try:
                axon.close()
            except Exception as exc:  # noqa: BLE001 - a handler error must not keep segments alive
                print(f"hft-cluster: AXON close failed: {exc}", file=sys.stderr)
        sink, self.sink = getattr(self, "sink", None), None
        if sink is not None:
            sink.close()
            self._sink_stats = sink.stats

    def _teardown(self) -> None:
        for p in getattr(self, "procs", []):
            if p is not None and p.exitcode is None:
                p.kill()
                p.join(5)
        self._close_outputs()
        self._close_segments()
        if self.source.startswith("file:"):
            for i in range(len(self.ranges)):
                self._checkpoint_path(i).unlink(missing_ok=True)

    def _close_segments(self) -> None:
        for ch in getattr(self, "channels", []):
            ch.close()
        m = getattr(self, "metrics", None)
        if m is not None and m._mm is not None:
            m.set_state("done")
            m.close()

    # ------------------------------------------------------------ summary

    def _dead_letter_reasons(self) -> dict:
        reasons: dict = {}
        for i in range(len(self.ranges)):
            path = self.dead_letter_dir / f"{self.name}-w{i}.jsonl"
            if not path.exists():
                continue
            with open(path, encoding="utf-8") as f:
                for line in f:
                    try:
                        r = json.loads(line)["reason"]
                    except (ValueError, KeyError):
                        r = "unreadable dead-letter line"
                    reasons[r] = reasons.get(r, 0) + 1
        return reasons

    def _steady_rate(self):
        """Events/s from the moment every worker was producing until the stop (start-up excluded)."""
        if self._steady is None:
            return None
        dt = self._steady_end[0] - self._steady[0]
        return round((self._steady_end[1] - self._steady[1]) / dt) if dt > 0 else None

    def _summary(self, elapsed: float, drain_s: float, startup_s: float) -> dict:
        from ctas7.metrics import PEND_BITS, MetricsReader, summarize

        m = self.metrics
        with MetricsReader.attach(self.name) as r:
            snap = r.snapshot()
            lat = r.histogram(0)
        produced_events = sum(m.words[j] >> PEND_BITS for j in self._i["state"])
        dead = sum(m.words[j] for j in self._i["dead_lettered"])
        dropped = {"producer_crash": sum(self.dropped_crash)}
        produced = produced_events + dead
        balanced = produced == self.processed + sum(dropped.values()) + dead
        stages = {}
        for j, n in enumerate(self.stage_names):
            ev, nb, t, mx = (int(x) for x in m.stage_words[j])
            stages[n] = {"ns_per_event": round(t / ev, 2) if ev else None, "batches": nb,
                         **{k: v for k, v in snap["latency"][f"stage:{n}"].items() if k != "count"}}
        summary = {
            "source": self.source,
            "stations": self.stations,
            "workers": len(self.ranges),
            "offered_rate": None if self.rate == float("inf") else self.rate,
            "elapsed_s": round(elapsed, 3),
            "cpu_placement": getattr(self, "placement", None),
            # Preemptions of the loop while it ran: other tasks on its CPU show here first.
            "loop_scheduling": getattr(self, "_loop_sched", None),
            "startup_s": round(startup_s, 3),
            "drain_s": round(drain_s, 3),
            "throughput_events_per_s": self._steady_rate(),
            "steady_s": round(self._steady_end[0] - self._steady[0], 3) if self._steady else None,
            "latency_us": summarize(lat),
            "stage_latency_us_per_batch": stages,
            "batches": self._batches,
            "mean_batch": round(self.processed / self._batches, 1) if self._batches else 0,
            "convergences": self._convergences,
            "axon_actions": self._actions,
            "reports": self.reports[-20:],
            "accounting": {
                "produced": produced,
                "produced_events": produced_events,
                "processed": self.processed,
                "dropped": dropped,
                "dead_lettered": dead,
                "dead_letter_reasons": self._dead_letter_reasons(),
                "balanced": balanced,
                "lost_records_in_channels": sum(c for c in (snap["workers"][i]["lost_records"] for i in range(len(self.ranges)))),
                "claimed_slots_lost_without_events": sum(self.lost_slots),
                "gaps": sum(w["gaps"] for w in snap["workers"]),
                "restarts": sum(self.restarts),
            },
            "per_worker": [
                {"stations": list(self.ranges[i]), "produced": snap["workers"][i]["produced"],
                 "dead_lettered": snap["workers"][i]["dead_lettered"], "restarts": self.restarts[i],
                 "dropped_crash": self.dropped_crash[i], "lost_records": snap["workers"][i]["lost_records"]}
                for i in range(len(self.ranges))
            ],
        }
        late = [int(s.late_events) for s in self.stages if hasattr(s, "late_events")]
        if late:
            # Events whose meter tick had already closed when they arrived (see the watermark).
            summary["meter_late_events"] = sum(late)
            if sum(late) and self._convergences:
                summary["warning"] = (f"{sum(late):,} events reached the meter after their tick had closed (a worker "
                                      f"fell behind by more than --max-hold): convergences of many nodes of one "
                                      f"worker may be artefacts of it")
        st = getattr(self, "_sink_stats", None)
        if st is not None:
            summary["sink"] = {"url": self.surreal, "submitted": st.submitted, "written": st.written,
                               "spilled": st.spilled, "last_error": st.last_error or None}
        if self.error:
            summary["error"] = self.error
        if self._sink_errors:
            summary["sink_errors"] = {"count": self._sink_errors, "last": self._sink_last_error}
        return summary


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ground-stations", type=int, default=247, metavar="N", help="stations (default 247)")
    p.add_argument("--threads", type=int, default=_cores(), metavar="N",
                   help="station worker processes (capped to the usable cores unless --oversubscribe)")
    p.add_argument("--oversubscribe", action="store_true", help="run all --threads workers even beyond the cores")
    p.add_argument("--duration", type=float, metavar="S", help="seconds to run (default: until SIGINT/SIGTERM)")
    p.add_argument("--source", default="synthetic",
                   help="synthetic | file:PATH | rss:PATH_OR_URL | udp:PORT | nats://HOST:PORT (default synthetic)")
    p.add_argument("--params", metavar="FILE", help="meter parameter file (JSON), e.g. from hft-monte-carlo")
    p.add_argument("--rate", metavar="EVENTS_PER_S",
                   help="offered load of the synthetic source, e.g. 1M, or 'max' (default: the throughput target, "
                        "else 1M)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--surreal", metavar="URL|none",
                   help="SurrealDB for convergences, decisions, reports and sampled events "
                        "(default $CTAS7_SURREAL_URL or embedded surrealkv://.ctas7-data/surreal; 'none' to disable)")
    p.add_argument("--latency-target", default="200us", metavar="T",
                   help="ingest-to-decision p99 target (default 200us)")
    p.add_argument("--throughput-target", metavar="N", help="events/s target, e.g. 5M")
    p.add_argument("--metrics-name", metavar="NAME", help="metrics segment name (default: the pid)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--burst-every", type=float, default=5.0, metavar="S",
                   help="synthetic: a multi-station burst every S seconds of event time (0: none; default 5)")
    p.add_argument("--sample-events", type=float, default=100.0, metavar="N",
                   help="events per second stored in SurrealDB (default 100)")
    p.add_argument("--dead-letter-dir", default=".ctas7-data/dead-letter", metavar="DIR")
    p.add_argument("--max-hold", default="25ms", metavar="T",
                   help="with several workers, the most an event waits for a slower worker's channel before it "
                        "passes anyway (default 25ms; shorter: lower latency, but a late worker's stations can look "
                        "like a convergence)")
    p.add_argument("--pin", choices=("auto", "on", "off"), default="off",
                   help="pin the pipeline loop and the workers to CPUs of their own (auto: when there are enough "
                        "CPUs for one each). Halves p50 but, with every CPU then busy, other tasks' time slices land "
                        "on the loop or a worker: worth it on CPUs kept free of other work (default off)")
    p.add_argument("--worker-wait", choices=("auto", "spin", "sleep"), default="auto",
                   help="how a paced synthetic worker waits for its next events: spin (busy-polls its CPU, lowest "
                        "latency), sleep (frees the CPU, wake-ups cost latency); auto: spin when pinned to a CPU of "
                        "its own (default auto)")
    p.add_argument("--realtime", type=int, nargs="?", const=10, default=0, metavar="PRIO",
                   help="run the loop and the workers SCHED_FIFO at priority PRIO (default 10 when given; needs "
                        "CAP_SYS_NICE; they then hold off every other task on their CPUs)")
    p.add_argument("--nice", type=int, default=0, metavar="N",
                   help="nice value of the loop and the workers, e.g. -20 to keep other tasks off their CPUs "
                        "(default 0: unchanged; negative needs CAP_SYS_NICE)")
    p.add_argument("--monitor", action="store_true",
                   help="show the hft-monitor live view in this process while the cluster runs (on stderr with --json)")
    p.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="serve Prometheus metrics at http://127.0.0.1:PORT/metrics while the cluster runs (0: any free port)")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _render(summary: dict, console) -> None:
    from rich.table import Table

    t = Table(title=f"hft-cluster: {summary['source']}, {summary['stations']} stations, {summary['workers']} workers",
              show_header=False)
    for k in ("offered_rate", "elapsed_s", "throughput_events_per_s", "mean_batch", "convergences", "axon_actions"):
        t.add_row(k.replace("_", " "), _fmt(summary[k]))
    lat = summary["latency_us"]
    t.add_row("ingest-to-decision (µs)", "  ".join(f"{k.replace('_us', '')} {_fmt(v)}" for k, v in lat.items()))
    console.print(t)
    st = Table(title="per stage (µs per batch)")
    st.add_column("stage")
    for c in ("ns/event", "p50", "p99", "p99.9", "max"):
        st.add_column(c, justify="right")
    for n, d in summary["stage_latency_us_per_batch"].items():
        st.add_row(n, _fmt(d.get("ns_per_event")), *(_fmt(d.get(k)) for k in ("p50_us", "p99_us", "p99.9_us", "max_us")))
    console.print(st)
    a = summary["accounting"]
    at = Table(title="accounting: produced = processed + dropped + dead-lettered", show_header=False)
    at.add_row("produced", _fmt(a["produced"]))
    at.add_row("processed", _fmt(a["processed"]))
    for r, n in a["dropped"].items():
        at.add_row(f"dropped: {r.replace('_', ' ')}", _fmt(n))
    at.add_row("dead-lettered", _fmt(a["dead_lettered"]))
    for r, n in a["dead_letter_reasons"].items():
        at.add_row(f"  {r}", _fmt(n))
    at.add_row("restarts / gaps / lost records", f"{a['restarts']} / {a['gaps']} / {a['lost_records_in_channels']}")
    at.add_row("balanced", "[green]yes[/]" if a["balanced"] else "[red]NO[/]")
    console.print(at)
    if summary.get("warning"):
        console.print(f"[yellow]warning:[/] {summary['warning']}")
    for name, tg in summary.get("targets", {}).items():
        mark = "[green]met[/]" if tg["met"] else "[red]missed[/]"
        console.print(f"target {name}: {tg['target']} -> {tg['measured']} {mark}")


class _Attached:
    """What ``--monitor`` and ``--metrics-port`` add to a run: started once the cluster runs, stopped after it.

    Both read the cluster's metrics segment through their own read-only
    :class:`ctas7.metrics.MetricsReader`, exactly as ``hft-monitor`` and a
    scraper in another process would; the live view runs on a daemon
    thread, the exporter on the HTTP server's.
    """

    def __init__(self, monitor: bool = False, metrics_port: int | None = None, to_stderr: bool = False, console=None):
        if metrics_port is not None and not 0 <= metrics_port <= 65535:
            raise ValueError(f"--metrics-port must lie in [0, 65535], got {metrics_port}")
        self.monitor, self.metrics_port, self.to_stderr, self.console = monitor, metrics_port, to_stderr, console
        self.refresh = 2.0
        self.readers: list = []
        self.server = self.thread = self.url = self.error = None
        self._stop = None

    def start(self, cluster: "Cluster") -> None:
        import threading

        from ctas7.metrics import MetricsReader


        if self.metrics_port is not None:
            from ctas7.exporter import serve

            try:
                r = MetricsReader.attach(cluster.name)
                self.readers.append(r)
                self.server = serve(r, self.metrics_port)
                self.url = self.server.url
                print(f"hft-cluster: Prometheus metrics at {self.url}", file=sys.stderr, flush=True)
            except OSError as exc:  # a busy port must not take the cluster down
                self.error = f"--metrics-port {self.metrics_port}: {exc}"
                print(f"hft-cluster: {self.error}", file=sys.stderr, flush=True)
        if self.monitor:
            from rich.console import Console

            from ctas7.console import run_live_view

            r = MetricsReader.attach(cluster.name)
            self.readers.append(r)
            console = self.console or Console(stderr=self.to_stderr)
            self._stop = threading.Event()
            self.thread = threading.Thread(target=run_live_view, args=(r, self._stop),
                                           kwargs={"refresh_per_second": self.refresh, "console": console},
                                           name="ctas7-cluster-monitor", daemon=True)
            self.thread.start()

    def stop(self) -> None:
        if self._stop is not None:
            # One more refresh period, so the view's last snapshot is the finished cluster.
            if self.thread.is_alive():
                time.sleep(1.0 / self.refresh + 0.1)
            self._stop.set()
            self.thread.join(10)
        if self.server is not None:
            self.server.close()
        for r in self.readers:
            r.close()
        self.readers = []


def run(args) -> int:
    from ctas7.chain import load_params

    try:
        params = load_params(args.params)
        lat_target = parse_duration_ns(args.latency_target) if args.latency_target else None
        tput_target = parse_count(args.throughput_target) if args.throughput_target else None
        rate = parse_count(args.rate) if args.rate else (tput_target or 1e6)
        if args.duration is not None and not args.duration > 0:
            raise ValueError(f"--duration must be > 0, got {args.duration}")
        ranges, note = plan_workers(args.threads, args.ground_stations, args.source, oversubscribe=args.oversubscribe)
        max_hold = parse_duration_ns(getattr(args, "max_hold", "25ms")) / 1e9
        port = getattr(args, "metrics_port", None)
        if not 0 <= (getattr(args, "realtime", 0) or 0) <= 99:
            raise ValueError(f"--realtime must be a priority in [1, 99], got {args.realtime}")
        if not -20 <= getattr(args, "nice", 0) <= 19:
            raise ValueError(f"--nice must lie in [-20, 19], got {args.nice}")
        if port is not None and not 0 <= port <= 65535:
            raise ValueError(f"--metrics-port must lie in [0, 65535], got {port}")
    except (ValueError, TypeError, KeyError) as exc:
        print(f"ctas7-intel hft-cluster: {exc}", file=sys.stderr)
        return 2
    surreal = args.surreal
    if surreal is None:
        from ctas7.sinks.surreal import default_url

        surreal = os.environ.get("CTAS7_SURREAL_URL") or default_url()
    elif surreal.lower() == "none":
        surreal = None
    say = (lambda *a: None) if args.json else (lambda msg: print(msg, file=sys.stderr))
    say(f"hft-cluster: {note}")
    say("hft-cluster: running " + (f"for {args.duration:g} s" if args.duration else "until Ctrl-C / SIGTERM"))
    cluster = Cluster(
        stations=args.ground_stations, workers=ranges, source=args.source, rate=rate, params=params, surreal=surreal,
        name=args.metrics_name, seed=args.seed, burst_every=args.burst_every, sample_events=args.sample_events,
        dead_letter_dir=args.dead_letter_dir, max_hold=max_hold,
        config={"latency_target_ns": lat_target, "throughput_target": tput_target, "placement": note},
        pin={"auto": None, "on": True, "off": False}[getattr(args, "pin", "off")],
        worker_wait=getattr(args, "worker_wait", "auto"), realtime=getattr(args, "realtime", 0) or 0,
        nice=getattr(args, "nice", 0),
    )
    say(f"hft-cluster: CPUs: {cluster.pin_note}; paced workers {'spin' if cluster.worker_spin else 'sleep'}"
        + (f"; SCHED_FIFO {cluster.realtime}" if cluster.realtime else "") + (f"; nice {cluster.nice}" if cluster.nice else ""))
    attached = _Attached(monitor=getattr(args, "monitor", False), metrics_port=getattr(args, "metrics_port", None),
                         to_stderr=args.json)
    try:
        summary = cluster.run(args.duration, on_started=attached.start)
    finally:
        attached.stop()
    if attached.error:
        print(f"ctas7-intel hft-cluster: {attached.error}", file=sys.stderr)
    summary["placement"] = note
    if attached.url:
        summary["metrics_url"] = attached.url
    targets = {}
    if lat_target is not None and summary["latency_us"].get("count"):
        p99 = summary["latency_us"]["p99_us"]
        targets["latency_p99"] = {"target": f"{lat_target / 1e3:g}us", "measured": f"{p99:g}us",
                                  "met": p99 * 1e3 <= lat_target}
    if tput_target is not None:
        got = summary["throughput_events_per_s"] or 0
        targets["throughput"] = {"target": f"{tput_target:,.0f}/s", "measured": f"{got:,}/s",
                                 "met": got >= tput_target}
    summary["targets"] = targets
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        from rich.console import Console

        _render(summary, Console())
    if summary.get("error"):
        print(f"ctas7-intel hft-cluster: {summary['error']}", file=sys.stderr)
        return 1
    return 0 if summary["accounting"]["balanced"] else 1
