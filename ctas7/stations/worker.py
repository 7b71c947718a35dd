"""The station worker process: one source, one shared-memory channel.

A cluster worker attaches the channel and the metrics segment its parent
created, then loops: take what the source has (or, for the synthetic
source, the events due by now at the offered rate), claim ``n + 1`` slots
of the channel, write one *ingest stamp* and the ``n`` events straight into
them, and commit.

**Ingest stamp.** The last record of every committed batch is a control
record of kind :data:`KIND_STAMP`: ``ts`` = intended ingest time of the
batch's last event and ``sch`` = that of its first (CLOCK_MONOTONIC ns),
``value`` = the events before it, ``station`` = worker index, ``seq`` =
the worker's batch number, ``node`` = its pid. Coming last, it keeps the
channel's stream sorted by time and reaches the chain no earlier than any
of its events. With ``heartbeat_ns``, a paced worker with nothing due
commits a lone stamp (``value`` 0, ``ts`` = now) at least that often: a
promise that no older event is still to come, which lets the cluster's
watermark across channels advance past an idle worker. For a paced source the
intended time of event ``k`` is ``t0 + k / rate``, not the moment it was
written, so a worker held back by a full channel does not hide the wait
(no coordinated omission); for other sources it is the time ``poll``
returned.

**Crash-exact accounting.** The worker's *state word* in the metrics
segment holds ``produced << 24 | in_flight`` and is updated with single
64-bit stores: ``in_flight = n`` as soon as ``n + 1`` slots are claimed
(before the events are written into them), ``produced += n, in_flight =
0`` after the commit. If the worker dies in between, the parent asks the
channel whether the claim was lost (then the ``n`` events count as
produced and dropped by the producer crash) or committed (then they are
produced and will be processed). A claim lost before ``in_flight`` was set
held no counted events (reported as lost slots).

Examples
--------
>>> import numpy as np
>>> from ctas7.events import empty
>>> src = FastSyntheticSource(n_stations=4, seed=1)
>>> out = empty(6)
>>> src.fill(out, t_first=1_000, step_ns=10.0)
6
>>> out["ts"].tolist(), bool((out["station"] < 4).all())
([1000, 1010, 1020, 1030, 1040, 1050], True)
>>> ref = reference_fill(6, seed=1, n_stations=4, t_first=1_000, step_ns=10.0)
>>> bool((ref == out).all())
True
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass

import numpy as np

from ctas7._core import _synth
from ctas7.events import EVENT_DTYPE, KIND_CONTROL_BASE, empty, monotonic_ns

__all__ = ["KIND_STAMP", "FastSyntheticSource", "reference_fill", "WorkerSpec", "run_worker", "set_timer_slack",
           "apply_placement", "restore_placement"]

#: Control kind of the ingest stamp that opens every batch a worker commits.
KIND_STAMP = KIND_CONTROL_BASE + 1

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


# ---------------------------------------------------------------------------
# Synthetic generator
# ---------------------------------------------------------------------------


class FastSyntheticSource:
    """Seeded synthetic events written in place by a Cython kernel (~10-20 ns/event).

    Station ids ``first_station .. first_station + n_stations - 1`` (node =
    station), ``n_kinds`` kinds, random 64-bit ``sch``, exact per-station
    sequence numbers (kept in ``seqs``, which may be a view of shared
    memory). With ``burst_period_ns > 0``, for ``burst_len_ns`` of every
    period (in event time) a share ``burst_share`` of the events goes to the
    first ``n_burst`` stations: a multi-node incident the meter should call
    a convergence.

    Parameters
    ----------
    n_stations, first_station, n_kinds : int
    seed : int
    seqs : numpy.ndarray of uint64, optional
        Next sequence number per station (a fresh zeroed array by default).
    burst_period_ns, burst_len_ns : int
    burst_share : float
    n_burst : int
    """

    def __init__(self, n_stations: int = 247, first_station: int = 0, seed: int = 0, n_kinds: int = 8, seqs=None,
                 burst_period_ns: int = 0, burst_len_ns: int = 0, burst_share: float = 0.0, n_burst: int = 0):
        if seqs is None:
            seqs = np.zeros(n_stations, dtype=np.uint64)
        if not isinstance(seqs, np.ndarray) or seqs.dtype != np.uint64 or seqs.shape[0] < n_stations:
            raise ValueError(f"seqs must be a uint64 array of at least {n_stations} counters")
        self.n_stations = int(n_stations)
        self.first_station = int(first_station)
        self.seed = int(seed)
        self.n_kinds = int(n_kinds)
        self.seqs = seqs
        self.burst_period_ns = int(burst_period_ns)
        self.burst_len_ns = int(burst_len_ns)
        self.burst_share = float(burst_share)
        self.n_burst = int(n_burst)
        self.state = np.array([self.seed & _MASK64], dtype=np.uint64)
        # Validate everything once, on an empty batch.
        self.fill(empty(0), 0, 0.0)

    def fill(self, out: np.ndarray, t_first: int, step_ns: float) -> int:
        """Write ``len(out)`` events with times ``t_first + int(i * step_ns)``; return the count."""
        return _synth.fill(out, self.state, self.seqs, self.n_stations, self.first_station, self.n_kinds,
                           int(t_first), float(step_ns), self.burst_period_ns, self.burst_len_ns,
                           self.burst_share, self.n_burst)


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def reference_fill(n: int, *, seed: int, n_stations: int, t_first: int, step_ns: float, first_station: int = 0,
                   n_kinds: int = 8, seqs=None, burst_period_ns: int = 0, burst_len_ns: int = 0,
                   burst_share: float = 0.0, n_burst: int = 0, state=None) -> np.ndarray:
    """Numpy model of :meth:`FastSyntheticSource.fill` (the oracle of the tests).

    ``state`` (one-element uint64 array) and ``seqs`` are advanced in place
    when given, exactly as the kernel does.
    """
    if state is None:
        state = np.array([seed & _MASK64], dtype=np.uint64)
    if seqs is None:
        seqs = np.zeros(n_stations, dtype=np.uint64)
    out = empty(n)
    if n == 0:
        return out
    with np.errstate(over="ignore"):
        k = np.arange(1, 2 * n + 1, dtype=np.uint64)
        draws = _mix(state[0] + k * np.uint64(_GOLDEN))
        state[0] = state[0] + np.uint64(2 * n) * np.uint64(_GOLDEN)
    r1, r2 = draws[0::2], draws[1::2]
    ts = t_first + (np.arange(n, dtype=np.float64) * step_ns).astype(np.int64)
    st = ((r1 & np.uint64(0xFFFFFFFF)) * np.uint64(n_stations)) >> np.uint64(32)
    if burst_period_ns > 0 and burst_len_ns > 0 and n_burst > 0:
        share16 = min(65536, int(burst_share * 65536.0))
        hit = (ts % burst_period_ns < burst_len_ns) & (((r1 >> np.uint64(32)) & np.uint64(0xFFFF)) < np.uint64(share16))
        st = np.where(hit, ((r1 >> np.uint64(48)) * np.uint64(n_burst)) >> np.uint64(16), st)
    st = st.astype(np.int64)
    counts = np.bincount(st, minlength=n_stations)
    order = np.argsort(st, kind="stable")
    starts = np.cumsum(counts) - counts
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - np.repeat(starts, counts)
    out["ts"] = ts
    out["sch"] = r2
    out["seq"] = ((seqs[st] + rank.astype(np.uint64)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    seqs += counts.astype(np.uint64)
    out["station"] = st + first_station
    out["node"] = st + first_station
    out["kind"] = ((r2 >> np.uint64(48)) * np.uint64(n_kinds)) >> np.uint64(16)
    out["value"] = 1.0
    return out


# ---------------------------------------------------------------------------
# The worker process
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs (picklable; passed by the cluster).

    ``rate`` is events/s for this worker (``None``: as fast as the channel
    takes them); ``source`` is ``synthetic``, ``file:PATH``, ``rss:...``,
    ``udp:PORT`` or ``nats://HOST:PORT``. ``cpus``: CPUs to pin the worker
    to (empty: no pinning). ``spin_ns``: a paced worker busy-polls the
    clock when its next event is due within this many ns instead of
    sleeping, and does not sleep between commits (0: it sleeps).
    ``realtime``: SCHED_FIFO priority (0: the normal scheduler); ``nice``:
    the worker's nice value (0: unchanged).
    ``checkpoint``: file where a ``file:`` source keeps its resume position
    (see :class:`_Checkpoint`).
    """

    index: int
    channel: str
    metrics: str
    source: str = "synthetic"
    first_station: int = 0
    n_stations: int = 1
    total_stations: int = 247
    rate: float | None = 1e6
    seed: int = 0
    incarnation: int = 0
    max_batch: int = 8192
    burst_period_ns: int = 0
    burst_len_ns: int = 0
    burst_share: float = 0.1
    n_burst: int = 4
    dead_letter: str | None = None
    parent_pid: int = 0
    parent_start: int = 0
    idle_sleep: float = 20e-6
    heartbeat_ns: int = 0
    cpus: tuple = ()
    spin_ns: int = 0
    realtime: int = 0
    nice: int = 0
    checkpoint: str | None = None


def set_timer_slack(ns: int = 1_000) -> bool:
    """Lower this process's timer slack (Linux; default 50 µs) so short sleeps stay short."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(29, int(ns), 0, 0, 0) == 0  # PR_SET_TIMERSLACK
    except (OSError, AttributeError):
        return False


def apply_placement(cpus=(), realtime: int = 0, nice: int = 0) -> dict:
    """Pin the calling thread to ``cpus``, give it SCHED_FIFO priority ``realtime`` and/or a ``nice`` value.

    Returns what was done and what to restore (:func:`restore_placement`):
    ``{"cpus": ..., "realtime": ..., "nice": ..., "refused": [reasons], ...}``.
    A refusal (no permission, a CPU not allowed) is reported, not raised:
    the caller runs on, unpinned or unprioritised.

    >>> done = apply_placement()
    >>> done["cpus"], done["realtime"], done["nice"], done["refused"]
    ((), 0, 0, [])
    >>> restore_placement(done)
    """
    done = {"cpus": (), "realtime": 0, "nice": 0, "refused": [], "old_cpus": None, "old_policy": None,
            "old_nice": None}
    if cpus:
        try:
            done["old_cpus"] = os.sched_getaffinity(0)
            os.sched_setaffinity(0, set(cpus))
            done["cpus"] = tuple(sorted(cpus))
        except (OSError, AttributeError) as exc:
            done["refused"].append(f"pin to CPUs {sorted(cpus)}: {exc}")
    if realtime:
        try:
            done["old_policy"] = (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority)
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(int(realtime)))
            done["realtime"] = int(realtime)
        except (OSError, AttributeError) as exc:
            done["old_policy"] = None
            done["refused"].append(f"SCHED_FIFO priority {realtime}: {exc}")
    if nice:
        try:
            # On Linux the nice value is per thread: who=0 is the calling thread.
            done["old_nice"] = os.getpriority(os.PRIO_PROCESS, 0)
            os.setpriority(os.PRIO_PROCESS, 0, int(nice))
            done["nice"] = int(nice)
        except (OSError, AttributeError) as exc:
            done["old_nice"] = None
            done["refused"].append(f"set nice {nice}: {exc}")
    return done


def restore_placement(done: dict) -> None:
    """Undo :func:`apply_placement` on the calling thread (best effort)."""
    try:
        if done.get("old_nice") is not None:
            os.setpriority(os.PRIO_PROCESS, 0, done["old_nice"])
        if done.get("old_policy") is not None:
            pol, prio = done["old_policy"]
            os.sched_setscheduler(0, pol, os.sched_param(prio))
        if done.get("old_cpus") is not None:
            os.sched_setaffinity(0, done["old_cpus"])
    except OSError:
        pass


class _Stop(Exception):
    pass


class _Worker:
    def __init__(self, spec: WorkerSpec):
        from ctas7.channel import Channel, _pid_alive
        from ctas7.metrics import Metrics, _H_STATE

        self.spec = spec
        self._pid_alive = _pid_alive
        self.m = Metrics.attach(spec.metrics)
        self.ch = Channel.attach(spec.channel)
        m, i = self.m, spec.index
        self.i_state = m.worker_index(i, "state")
        self.i_dead = m.worker_index(i, "dead_lettered")
        self.i_beat = m.worker_index(i, "heartbeat_ns")
        self.i_batches = m.worker_index(i, "batches")
        self.i_off = m.worker_index(i, "resume_offset")
        self.i_line = m.worker_index(i, "resume_line")
        self.i_status = m.worker_index(i, "status")
        self.i_dropped = m.worker_index(i, "dropped_crash")
        self.i_run = _H_STATE // 8
        w = m.words
        from ctas7.metrics import PEND_BITS, PEND_MASK

        self.shift = PEND_BITS
        if w[self.i_state] & PEND_MASK:
            raise RuntimeError(f"worker {i}: the previous incarnation's claim in flight was not resolved")
        self.produced = w[self.i_state] >> PEND_BITS
        self.batches = w[self.i_batches]
        self.dead = w[self.i_dead]
        w[m.worker_index(i, "pid")] = os.getpid()
        self.pid = os.getpid()
        self.stamp = np.zeros(1, dtype=EVENT_DTYPE)
        self.stamp["kind"] = KIND_STAMP
        self.stamp["station"] = i
        self.stamp["node"] = self.pid & 0xFFFFFFFF
        self._next_check = 0.0
        # Time of the latest record committed (no event to come is older): what padding stamps carry.
        self.last_ts = monotonic_ns()

    def running(self) -> bool:
        if self.m.words[self.i_run] >= 2:  # stopping / done
            return False
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + 0.1
            self.m.words[self.i_beat] = monotonic_ns()
            if self.orphaned():
                return False
        return not _stop_requested

    def orphaned(self) -> bool:
        sp = self.spec
        return bool(sp.parent_pid) and not self._pid_alive(sp.parent_pid, sp.parent_start)

    def started(self) -> None:
        """The source is open: from now on a crash is a crash, not a failed start."""
        self.m.words[self.i_status] = 1

    def claim(self, n: int):
        """A claim of 2..n+1 slots (stamp + events); None if the channel stayed full."""
        view = self.ch.claim(n + 1, timeout=0.005)
        if len(view) == 1:
            # One slot left before the ring wraps (a claim is contiguous): too small for an event and
            # its stamp. Given back unused, the next claim would get the same slot, for ever. Pad it
            # with an empty stamp and claim again from the start of the buffer.
            self._stamp_into(view, 0, self.last_ts, self.last_ts, 0)
            self.ch.commit(1)
            view = self.ch.claim(n + 1, timeout=0.005)
        if len(view) < 2:
            if len(view):
                self.ch.commit(0)
            return None
        return view

    def _stamp_into(self, view, i: int, first_ns: int, last_ns: int, k: int) -> None:
        st = self.stamp
        st["ts"] = last_ns
        st["sch"] = first_ns
        st["value"] = k
        st["seq"] = self.batches & 0xFFFFFFFF
        view[i : i + 1] = st

    def begin(self, k: int) -> None:
        """Note ``k`` events in flight: from here a crash drops them (and counts them as produced)."""
        self.m.store_atomic(self.i_state, (self.produced << self.shift) | k)

    def publish(self, view, k: int, first_ns: int, last_ns: int) -> None:
        """Stamp and commit a claim whose slots 0..k-1 hold events (after :meth:`begin`)."""
        self._stamp_into(view, k, first_ns, last_ns, k)
        w, m = self.m.words, self.m
        self.ch.commit(k + 1)
        self.last_ts = last_ns
        self.produced += k
        m.store_atomic(self.i_state, self.produced << self.shift)
        self.batches += 1
        w[self.i_batches] = self.batches

    def heartbeat(self, ts: int) -> bool:
        """Commit a lone stamp (no events) promising that nothing older than ``ts`` is still to come.

        Lets the cluster's watermark advance past an idle worker. Skipped if
        the channel is full (the records in it advance the watermark anyway).
        """
        view = self.ch.claim(1, timeout=0.0)
        if not len(view):
            return False
        self._stamp_into(view, 0, ts, ts, 0)
        self.ch.commit(1)
        self.last_ts = ts
        return True

    def close(self, clean: bool = True) -> None:
        w = self.m.words
        if clean:
            w[self.i_status] = 2
        w[self.i_beat] = monotonic_ns()
        self.ch.close()
        self.m.close()

    # ------------------------------------------------------------ sources

    def run_synthetic(self) -> None:
        sp, m = self.spec, self.m
        seqs = m.station_produced[sp.first_station : sp.first_station + sp.n_stations]
        src = FastSyntheticSource(
            sp.n_stations, sp.first_station, seed=sp.seed * 1_000_003 + sp.index * 7919 + sp.incarnation * 104_729,
            seqs=seqs, burst_period_ns=sp.burst_period_ns, burst_len_ns=sp.burst_len_ns,
            burst_share=sp.burst_share, n_burst=min(sp.n_burst, sp.n_stations),
        )
        self.started()
        paced = sp.rate is not None
        step = 1e9 / sp.rate if paced else 1.0
        t0 = last_commit = monotonic_ns()
        sent = 0
        max_batch = sp.max_batch
        sleep = time.sleep
        hb = sp.heartbeat_ns
        longest = min(1e-3, hb / 1e9) if hb else 1e-3
        spin_ns = sp.spin_ns
        while self.running():
            now = monotonic_ns()
            if paced:
                due = int((now - t0) / step) + 1 - sent
                if due <= 0:
                    # Nothing due before t0 + sent * step > now: say so, so the watermark need not wait for us.
                    if hb and now - last_commit >= hb and self.heartbeat(now):
                        last_commit = now
                    wait = t0 + sent * step - now
                    if wait <= spin_ns:
                        continue  # due soon: poll the clock rather than pay a wake-up
                    sleep(max(sp.idle_sleep, min(longest, (wait - spin_ns) / 1e9)))
                    continue
                n = min(due, max_batch)
            else:
                n = max_batch
            view = self.claim(n)
            if view is None:
                continue
            k = len(view) - 1
            if paced:
                first = t0 + int(sent * step)
                last = t0 + int((sent + k - 1) * step)
            else:
                first = last = now
            self.begin(k)
            src.fill(view[:k], first, step)
            self.publish(view, k, first, last)
            last_commit = now
            sent += k
            if paced and k < max_batch and not spin_ns:
                sleep(sp.idle_sleep)

    def run_polled(self) -> None:
        sp = self.spec
        if sp.source.startswith("nats://"):
            return self._run_nats()
        from ctas7.stations.sources import FileTailSource, open_source

        kw = {}
        ckpt = None
        if sp.source.startswith("file:") and sp.checkpoint:
            ckpt = _Checkpoint(sp.checkpoint, sp.dead_letter)
            resume = ckpt.restore(self)
            if resume is not None:
                kw["resume"] = resume
        src = open_source(sp.source, stations=range(sp.total_stations), dead_letter=sp.dead_letter, **kw)
        dead_base = self.dead
        self.started()
        try:
            if isinstance(src, FileTailSource) and ckpt is not None:
                return self._run_file(src, ckpt, dead_base)
            while self.running():
                batch = src.poll(sp.max_batch)
                now = monotonic_ns()
                self._note_dead(dead_base + src.dead_letter.total)
                if len(batch):
                    self._put(batch, now)
                else:
                    time.sleep(1e-3 if isinstance(src, FileTailSource) else sp.idle_sleep)
        finally:
            src.close()

    def _run_file(self, src, ckpt: "_Checkpoint", dead_base: int) -> None:
        """Tail a file so that a restart resumes exactly: one poll fills one claim, its position written first.

        Each turn claims the slots first and polls at most as many lines as
        they hold, so the events of one poll are committed (or lost) together;
        the position after the poll is written to the checkpoint before the
        claim is counted in flight (see :class:`_Checkpoint`).
        """
        sp, w = self.spec, self.m.words
        while self.running():
            view = self.claim(sp.max_batch)
            if view is None:
                if self.orphaned():
                    raise _Stop
                continue
            batch = src.poll(len(view) - 1)
            now = monotonic_ns()
            k = len(batch)
            if not k:
                self.ch.commit(0)  # give the slots back
            pos = src.position
            dead = dead_base + src.dead_letter.total
            if pos is not None:
                ckpt.advance(self.produced + k, dead, pos, self.dropped_word())
                w[self.i_off], w[self.i_line] = pos.offset, pos.line
            if k:
                self.begin(k)
                view[:k] = batch
                self.publish(view, k, now, now)
            self._note_dead(dead)
            if not k:
                time.sleep(1e-3)

    def dropped_word(self) -> int:
        """Events of this worker the parent counted as dropped by a crash (written by the parent only)."""
        return int(self.m.words[self.i_dropped])

    def _run_nats(self) -> None:
        from ctas7.sinks.nats import iter_event_batches

        self.started()
        while self.running():
            it = iter_event_batches(self.spec.source, idle_timeout=0.2, fetch_timeout=0.1)
            try:
                for batch in it:
                    self._put(np.ascontiguousarray(batch, dtype=EVENT_DTYPE), monotonic_ns())
                    if not self.running():
                        break
            finally:
                it.close()

    def _note_dead(self, total: int) -> None:
        if total != self.dead:
            self.dead = total
            self.m.words[self.i_dead] = total

    def _put(self, batch: np.ndarray, now: int) -> None:
        i = 0
        while i < len(batch):
            view = self.claim(len(batch) - i)
            if view is None:
                # The parent drains until every worker has exited, so a full
                # channel frees up; only an orphan gives the batch up.
                if self.orphaned():
                    raise _Stop
                continue
            k = len(view) - 1
            self.begin(k)
            view[:k] = batch[i : i + k]
            self.publish(view, k, now, now)
            i += k


class _Checkpoint:
    """Where a ``file:`` worker has got to, kept so that a restarted worker neither loses nor repeats a line.

    A JSON file written atomically (temporary file + rename) after each
    poll and *before* its events are counted in flight, holding two states,
    each ``{produced, dead, dl_size, position}``: ``after`` (the poll just
    made, its events about to be committed) and ``before`` (the previous
    ``after``). The restarted worker reads its produced count (as resolved by
    the parent) and the parent's dropped-by-crash count: if the claim of
    ``after`` was committed, it resumes from ``after``; if it was never
    counted, or was lost with the crash (its events counted as dropped), it
    resumes from ``before`` and reads those lines again. The dead-letter file
    is cut back to the chosen state's size, so a line read again is not
    dead-lettered twice.
    """

    def __init__(self, path: str, dead_letter: str | None):
        self.path = path
        self.dead_letter = dead_letter
        self.current = None
        self.dropped = 0

    def _dl_size(self) -> int:
        try:
            return os.path.getsize(self.dead_letter) if self.dead_letter else 0
        except FileNotFoundError:
            return 0

    def restore(self, worker: "_Worker"):
        """Pick the state to resume from (see above), apply it to ``worker``; the position or None."""
        import json

        from ctas7.stations.sources import FilePosition

        try:
            with open(self.path, encoding="utf-8") as f:
                ck = json.load(f)
        except FileNotFoundError:
            self.current = {"produced": worker.produced, "dead": worker.dead, "dl_size": self._dl_size(),
                            "position": None}
            return None
        after = ck["after"]
        ok = after["produced"] == worker.produced and ck["dropped"] == worker.dropped_word()
        use = after if ok else ck["before"]
        if self.dead_letter and os.path.exists(self.dead_letter):
            os.truncate(self.dead_letter, use["dl_size"])
        worker.dead = use["dead"]
        worker.m.words[worker.i_dead] = use["dead"]
        self.current = use
        return None if use["position"] is None else FilePosition.from_dict(use["position"])

    def advance(self, produced: int, dead: int, position, dropped: int) -> None:
        """Record the state after a poll (before its events are counted in flight)."""
        import json

        new = {"produced": produced, "dead": dead, "dl_size": self._dl_size(), "position": position.to_dict()}
        if new == self.current and dropped == self.dropped:
            return
        tmp = f"{self.path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"after": new, "before": self.current, "dropped": dropped}, f)
        os.replace(tmp, self.path)
        self.current, self.dropped = new, dropped


_stop_requested = False


def _on_term(signum, frame) -> None:
    global _stop_requested
    _stop_requested = True


def run_worker(spec: WorkerSpec) -> None:
    """Process entry point: produce until the cluster stops, SIGTERM, or the parent dies."""
    global _stop_requested
    _stop_requested = False
    # Ctrl-C reaches the whole process group; the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_term)
    set_timer_slack()
    done = apply_placement(spec.cpus, spec.realtime, spec.nice)
    for why in done["refused"]:
        print(f"ctas7 station worker {spec.index}: could not {why}", file=sys.stderr, flush=True)
    w = _Worker(spec)
    clean = False
    try:
        if spec.source == "synthetic":
            w.run_synthetic()
        else:
            w.run_polled()
        clean = True
    except _Stop:
        clean = True
    finally:
        w.close(clean)
