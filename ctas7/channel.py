"""Named shared-memory channels: a header plus a lock-free ring in /dev/shm.

A :class:`Channel` is created by one process and attached by name from
others. Its face is that of :class:`multiprocessing.Queue` (``put``,
``get``, ``timeout=None`` blocks, :class:`queue.Full` / :class:`queue.Empty`)
plus batch and zero-copy calls. Records are :data:`ctas7.events.EVENT_DTYPE`
by default.

Crash safety: every producer registers in a table in the header (pid,
process start time, heartbeat, the positions it has claimed but not yet
published). A consumer that finds the ring empty or stuck checks whether
the producers are still alive; for a dead one it records an explicit gap
(the count of records it claimed but never committed) and carries on.
Committed records are never lost. Gaps are counted in the header
(:attr:`Channel.lost`, :attr:`Channel.gaps`) and, by default, delivered
in-stream, where they happened, as one ``KIND_GAP`` event each (``value``
= records lost, ``node`` = the dead producer's pid): by the consumer that
noticed, or by a restarted producer as its first record when it noticed
first.

Segments are created owner-only (0600) as ``/dev/shm/ctas7-<name>`` and
checked on attach (magic, layout version, record size, owner uid). The
creating handle unlinks the name when it closes; :func:`sweep` removes
segments whose creator died without closing.

Examples
--------
>>> import os
>>> from ctas7.channel import Channel
>>> from ctas7.events import make_events
>>> with Channel.create(f"doc-{os.getpid()}", 1024) as ch:
...     ch.put_many(make_events(ts=[1, 2, 3]))
...     ch.put((4, 0, 0, 7, 1, 0, 1.0))
...     with Channel.attach(ch.name) as reader:
...         reader.get_many(3)["ts"].tolist(), int(reader.get(timeout=1)["node"])
([1, 2, 3], 7)
"""

from __future__ import annotations

import os
import queue
import re
import time
import weakref

import numpy as np

from ctas7._core._ring import ChannelFace, MpmcRing, SharedWords, SpscRing
from ctas7.events import EVENT_DTYPE, KIND_GAP, monotonic_ns
from ctas7.shm import create_segment, open_segment

__all__ = [
    "Channel",
    "ChannelError",
    "ChannelVersionError",
    "ChannelClosed",
    "ChannelFull",
    "sweep",
    "SHM_DIR",
    "PREFIX",
]

SHM_DIR = "/dev/shm"
PREFIX = "ctas7-"
MAGIC = int.from_bytes(b"CTAS7CHN", "little")
VERSION = 1
MAX_PRODUCERS = 64

# Header layout (bytes). Hot ring words live in the ring, not here.
_H_MAGIC, _H_VERSION, _H_RSIZE, _H_CAP = 0, 8, 16, 24
_H_KIND, _H_RING_OFF, _H_UID, _H_CREATOR = 32, 40, 48, 56
_H_CREATED, _H_SIZE, _H_CREATOR_START = 64, 72, 80
_H_CLOSED, _H_LOST, _H_GAPS, _H_EMIT = 128, 136, 144, 152
_H_LAST_PID = 160
_TABLE, _ENTRY = 256, 64  # producer table
_E_PID, _E_START, _E_BEAT, _E_LO, _E_HI, _E_SINCE, _E_TAKEOVER = 0, 8, 16, 24, 32, 40, 48
_RING_OFF = 8192
_REAPING = (1 << 64) - 1
assert _TABLE + MAX_PRODUCERS * _ENTRY <= _RING_OFF

_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
_open_channels: "weakref.WeakSet[Channel]" = weakref.WeakSet()


class ChannelError(ValueError):
    """The segment is not a usable ctas7 channel (bad magic, size, record size)."""


class ChannelVersionError(ChannelError):
    """The segment is a ctas7 channel of another layout version."""


class ChannelClosed(Exception):
    """The channel was shut down: no more puts; gets raise once it is drained."""


class ChannelFull(queue.Full):
    """``put_many`` timed out; ``written`` records of the batch went in."""

    def __init__(self, written: int, total: int):
        super().__init__(f"channel full: wrote {written} of {total} records before the timeout")
        self.written = written
        self.total = total


def _deadline(block: bool, timeout) -> float | None:
    """Absolute time.monotonic() deadline; None = wait forever."""
    if not block:
        return time.monotonic()
    if timeout is None:
        return None
    if not timeout >= 0:
        raise ValueError(f"timeout must be None or >= 0, got {timeout!r}")
    return time.monotonic() + timeout


def _path(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"channel name must match {_NAME_RE.pattern}, got {name!r}")
    return os.path.join(SHM_DIR, PREFIX + name)


def _start_time(pid: int) -> int:
    """Process start time in clock ticks since boot (0 if unknown)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return 0
    fields = data[data.rfind(b")") + 2 :].split()
    return int(fields[19]) if len(fields) > 19 else 0


def _pid_alive(pid: int, start: int) -> bool:
    """True unless ``pid`` is gone, a zombie, or a new process reusing the pid."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    rest = data[data.rfind(b")") + 2 :].split()
    if rest and rest[0] in (b"Z", b"X"):
        return False
    return not (start and len(rest) > 19 and int(rest[19]) != start)


class Channel(ChannelFace):
    """A named shared-memory channel of records (header + lock-free ring).

    Use :meth:`create` in one process and :meth:`attach` elsewhere; do not
    call the constructor. A channel pickles as "attach by name", so it can
    be handed to a ``multiprocessing`` child.

    Parameters (of :meth:`create` and :meth:`attach`)
    --------------------------------------------------
    name : str
        Letters, digits, ``.``, ``_``, ``-``; the segment is
        ``/dev/shm/ctas7-<name>``.
    capacity : int
        Records in the ring, a power of two (create only).
    dtype : numpy.dtype, optional
        Record dtype, EVENT_DTYPE by default; checked on attach.
    multi_producer : bool
        ``False``: SPSC ring (one live producer at a time, restarts allowed);
        ``True``: MPMC ring (many producers and consumers).
    wait : {'sleep', 'yield', 'spin'}
        How blocking calls wait (see :class:`ctas7.rings.WaitStrategy`).
    claim_timeout : float
        MPMC: seconds a consumer waits on a slot claimed by a producer that
        has died before skipping it as lost.
    emit_gaps : bool
        Deliver each gap as a ``KIND_GAP`` event in the stream (EVENT_DTYPE
        only; create only, stored in the header); the counters are kept
        either way.

    Examples
    --------
    >>> import os, queue
    >>> ch = Channel.create(f"doc2-{os.getpid()}", 2)
    >>> ch.put((1, 0, 0, 0, 0, 0, 1.0)); ch.put((2, 0, 0, 0, 0, 0, 1.0))
    >>> try:
    ...     ch.put((3, 0, 0, 0, 0, 0, 1.0), timeout=0.01)
    ... except queue.Full:
    ...     print("full")
    full
    >>> [int(ch.get()["ts"]) for _ in range(2)]
    [1, 2]
    >>> ch.close()
    """

    def __init__(self, *_args, **_kwargs):
        raise TypeError("use Channel.create(name, capacity) or Channel.attach(name)")

    # ------------------------------------------------------------------ open

    @classmethod
    def create(
        cls,
        name: str,
        capacity: int,
        *,
        dtype=None,
        multi_producer: bool = False,
        wait="sleep",
        claim_timeout: float = 0.05,
        emit_gaps: bool = True,
        unlink_on_close: bool = True,
    ) -> "Channel":
        """Create the segment ``name`` (it must not exist) and open it."""
        path = _path(name)
        dt = EVENT_DTYPE if dtype is None else np.dtype(dtype)
        ring_cls = MpmcRing if multi_producer else SpscRing
        size = _RING_OFF + ring_cls.nbytes(capacity, dt)
        mm = create_segment(path, size)
        self = cls.__new__(cls)
        try:
            words = SharedWords(mm)
            ring = ring_cls(memoryview(mm)[_RING_OFF:], capacity, dt, wait=wait)
            for off, val in (
                (_H_RSIZE, dt.itemsize),
                (_H_CAP, capacity),
                (_H_KIND, 2 if multi_producer else 1),
                (_H_RING_OFF, _RING_OFF),
                (_H_UID, os.geteuid()),
                (_H_CREATOR, os.getpid()),
                (_H_CREATOR_START, _start_time(os.getpid())),
                (_H_CREATED, monotonic_ns()),
                (_H_SIZE, size),
                (_H_EMIT, int(bool(emit_gaps) and dt == EVENT_DTYPE)),
            ):
                words.store(off, val)
            words.store(_H_VERSION, VERSION)
            words.store(_H_MAGIC, MAGIC)
        except BaseException:
            mm.close()
            os.unlink(path)
            raise
        self._init(name, path, mm, words, ring, dt, multi_producer, claim_timeout, True, unlink_on_close)
        return self

    @classmethod
    def attach(
        cls,
        name: str,
        *,
        dtype=None,
        wait="sleep",
        claim_timeout: float = 0.05,
    ) -> "Channel":
        """Open an existing channel by name.

        Raises
        ------
        FileNotFoundError
            No segment of that name.
        PermissionError
            The segment belongs to another user or is readable by others.
        ChannelVersionError
            It is a channel of another layout version.
        ChannelError
            It is not a ctas7 channel, or holds records of another size.
        """
        path = _path(name)
        dt = EVENT_DTYPE if dtype is None else np.dtype(dtype)
        try:
            mm, size = open_segment(path, what="ctas7 channel", min_size=_RING_OFF + 640)
        except ValueError as exc:
            raise ChannelError(str(exc)) from None
        try:
            words = SharedWords(mm)
            if words.load(_H_MAGIC) != MAGIC:
                raise ChannelError(f"{path} is not a ctas7 channel (bad magic)")
            version = words.load(_H_VERSION)
            if version != VERSION:
                raise ChannelVersionError(f"{path} is a ctas7 channel of layout version {version}; this is version {VERSION}")
            if words.load(_H_RSIZE) != dt.itemsize:
                raise ChannelError(
                    f"{path} holds {words.load(_H_RSIZE)}-byte records; dtype {dt} has {dt.itemsize} bytes"
                )
            if words.load(_H_UID) != os.geteuid():
                raise PermissionError(f"{path} was created by uid {words.load(_H_UID)}")
            if words.load(_H_SIZE) != size or words.load(_H_RING_OFF) != _RING_OFF:
                raise ChannelError(f"{path} has a corrupt header (size or ring offset)")
            multi = words.load(_H_KIND) == 2
            ring = (MpmcRing if multi else SpscRing).attach(memoryview(mm)[_RING_OFF:], dt, wait=wait)
        except BaseException:
            try:
                words.close()
            except NameError:
                pass
            mm.close()
            raise
        self = cls.__new__(cls)
        self._init(name, path, mm, words, ring, dt, multi, claim_timeout, False, False)
        return self

    def _init(self, name, path, mm, words, ring, dt, multi, claim_timeout, owner, unlink_on_close):
        if claim_timeout < 0:
            raise ValueError(f"claim_timeout must be >= 0, got {claim_timeout}")
        self.name = name
        self.path = path
        self.dtype = dt
        self.multi_producer = bool(multi)
        self.claim_timeout = float(claim_timeout)
        self.emit_gaps = words.load(_H_EMIT) == 1
        self._mm = mm
        self._words = words
        self._ring = ring
        self._owner = owner
        self._creator_pid = os.getpid() if owner else 0
        self._unlink_on_close = unlink_on_close
        self._entry = -1  # producer table slot of this handle
        self._entry_pid = 0
        self._pending = []  # (position, gap event) not yet handed out
        self._countdown = 1024  # fast gets until the next periodic producer check
        self._next_check = 0.0
        self._stall = None  # (position, first seen) of a stuck MPMC slot
        self._put_ready = False  # registered producer: put may take the C fast path
        self._closed_error = ChannelClosed
        _open_channels.add(self)

    def __reduce__(self):
        return (
            _attach_for_pickle,
            (self.name, self.dtype, self._ring.wait, self.claim_timeout),
        )

    # ---------------------------------------------------------- properties

    @property
    def capacity(self) -> int:
        return self._ring.capacity

    @property
    def ring(self):
        """The underlying :class:`~ctas7.rings.SpscRing` or :class:`~ctas7.rings.MpmcRing`."""
        return self._ring

    @property
    def closed(self) -> bool:
        """True once any handle called :meth:`shutdown`."""
        return self._words.load(_H_CLOSED) != 0

    @property
    def lost(self) -> int:
        """Records lost to dead producers (claimed, never committed), all handles."""
        return self._words.load(_H_LOST)

    @property
    def gaps(self) -> int:
        """Gap incidents recorded (one per dead producer / skipped claim)."""
        return self._words.load(_H_GAPS)

    @property
    def producer_pid(self) -> int:
        """Pid of the most recently registered producer (0 if none yet)."""
        return self._words.load(_H_LAST_PID)

    @property
    def heartbeat_ns(self) -> int:
        """Latest producer heartbeat, CLOCK_MONOTONIC ns (0 if none)."""
        return max((p["heartbeat_ns"] for p in self.producers()), default=0)

    def qsize(self) -> int:
        """Approximate number of records in the ring."""
        return len(self._ring)

    def empty(self) -> bool:
        return len(self._ring) == 0

    def full(self) -> bool:
        return len(self._ring) >= self._ring.capacity

    def producers(self) -> list:
        """Registered producers: pid, alive, heartbeat, pending claim."""
        w, out, now = self._words, [], monotonic_ns()
        for i in range(MAX_PRODUCERS):
            off = _TABLE + i * _ENTRY
            pid = w.load(off + _E_PID)
            if pid in (0, _REAPING):
                continue
            beat = w.load(off + _E_BEAT)
            out.append(
                {
                    "pid": pid,
                    "alive": _pid_alive(pid, w.load(off + _E_START)),
                    "heartbeat_ns": beat,
                    "heartbeat_age_s": (now - beat) / 1e9 if beat else None,
                    "pending": max(0, w.load(off + _E_HI) - w.load(off + _E_LO)),
                }
            )
        return out

    # ------------------------------------------------------- registration

    def _register(self) -> None:
        if self._put_ready and self._entry_pid == os.getpid():
            return
        if self._words.load(_H_CLOSED):
            raise ChannelClosed(f"channel {self.name!r} was shut down")
        w, me = self._words, os.getpid()
        if self.multi_producer:
            self._reap()
        else:
            # A dead predecessor is left for the consumer to account, which
            # places its gap exactly; we only note where its stream ended.
            tail = self._ring.tail
            for i in range(MAX_PRODUCERS):
                off = _TABLE + i * _ENTRY
                pid = w.load(off + _E_PID)
                if pid not in (0, _REAPING, me) and not _pid_alive(pid, w.load(off + _E_START)):
                    w.cas(off + _E_TAKEOVER, 0, tail + 1)
            live = [p["pid"] for p in self.producers() if p["alive"] and p["pid"] != me]
            if live:
                raise RuntimeError(f"SPSC channel {self.name!r} already has a live producer (pid {live[0]})")
        for i in range(MAX_PRODUCERS):
            off = _TABLE + i * _ENTRY
            if w.cas(off + _E_PID, 0, me):
                w.store(off + _E_START, _start_time(me))
                w.store(off + _E_BEAT, monotonic_ns())
                w.store(off + _E_SINCE, monotonic_ns())
                self._ring._bind_producer(w, off + _E_LO, off + _E_BEAT)
                w.store(_H_LAST_PID, me)
                self._entry, self._entry_pid = i, me
                self._put_ready = True
                return
        raise RuntimeError(f"channel {self.name!r} has {MAX_PRODUCERS} registered producers already")

    def _unregister(self) -> None:
        if self._entry >= 0 and self._entry_pid == os.getpid():
            off = _TABLE + self._entry * _ENTRY
            if self._words.cas(off + _E_PID, self._entry_pid, _REAPING):
                self._free_entry(off)
        self._entry, self._entry_pid, self._put_ready = -1, 0, False

    def _after_fork(self) -> None:
        # The child inherits the parent's registration; it must take its own.
        self._entry, self._entry_pid, self._put_ready = -1, 0, False

    # -------------------------------------------------- gaps, dead producers

    def _record_gap(self, count: int, pid: int):
        """Count a gap in the header; return its KIND_GAP event (or None)."""
        self._words.add(_H_GAPS, 1)
        self._words.add(_H_LOST, count)
        if not self.emit_gaps:
            return None
        ev = np.zeros(1, dtype=EVENT_DTYPE)
        ev["ts"] = monotonic_ns()
        ev["kind"] = KIND_GAP
        ev["node"] = pid & 0xFFFFFFFF
        ev["seq"] = count & 0xFFFFFFFF
        ev["value"] = count
        return ev

    def _free_entry(self, off: int) -> None:
        # A stale start time would make the next owner look like a reused pid.
        w = self._words
        for field in (_E_START, _E_LO, _E_HI, _E_BEAT, _E_TAKEOVER):
            w.store(off + field, 0)
        w.store(off + _E_PID, 0)

    def _reap(self) -> list:
        """Free the entries of dead producers; return (position, gap event)s."""
        w, ring, found = self._words, self._ring, []
        for i in range(MAX_PRODUCERS):
            off = _TABLE + i * _ENTRY
            pid = w.load(off + _E_PID)
            if pid in (0, _REAPING) or _pid_alive(pid, w.load(off + _E_START)):
                continue
            lo, hi = w.load(off + _E_LO), w.load(off + _E_HI)
            if self.multi_producer:
                # Its claimed slots are skipped one by one by consumers
                # (counted there); the entry stays until they are all past.
                if hi > lo and ring.head < hi:
                    continue
                if w.cas(off + _E_PID, pid, _REAPING):
                    self._free_entry(off)
                continue
            if not w.cas(off + _E_PID, pid, _REAPING):
                continue
            takeover = w.load(off + _E_TAKEOVER)
            end = takeover - 1 if takeover else ring.tail  # where its stream ended
            lost = max(0, hi - max(lo, end))
            self._free_entry(off)
            ev = self._record_gap(lost, pid)
            if ev is not None:
                found.append((end, ev))
        return found

    def _skip_dead_claims(self) -> int:
        ring, w, skipped = self._ring, self._words, 0
        pos = ring.stalled_position()
        if pos < 0:
            self._stall = None
            return 0
        now = time.monotonic()
        if self._stall is None or self._stall[0] != pos:
            self._stall = (pos, now)
        if now - self._stall[1] < self.claim_timeout:
            return 0
        while pos >= 0:
            owner = 0
            for i in range(MAX_PRODUCERS):
                off = _TABLE + i * _ENTRY
                pid = w.load(off + _E_PID)
                if pid in (0, _REAPING):
                    continue
                if w.load(off + _E_LO) <= pos < w.load(off + _E_HI) and not _pid_alive(pid, w.load(off + _E_START)):
                    owner = pid
                    break
            if not owner:
                break
            n = 0
            while pos >= 0 and ring.skip(pos):
                n += 1
                pos = ring.stalled_position()
                if pos >= 0:
                    lo_ok = any(
                        w.load(_TABLE + i * _ENTRY + _E_PID) == owner
                        and w.load(_TABLE + i * _ENTRY + _E_LO) <= pos < w.load(_TABLE + i * _ENTRY + _E_HI)
                        for i in range(MAX_PRODUCERS)
                    )
                    if not lo_ok:
                        break
            if n:
                ev = self._record_gap(n, owner)
                if ev is not None:
                    self._pending.append((0, ev))
                skipped += n
            pos = ring.stalled_position()
        self._stall = None
        return skipped

    def check_producers(self) -> int:
        """Look for dead producers now (as a consumer); return the records lost.

        Consumers call this by themselves, at most every 10 ms, while the
        ring is empty or stalled and every 1024 single gets; call it
        directly only to account for a crash sooner. Gap events found here
        come out of this handle's next get.
        """
        before = self._words.load(_H_LOST)
        self._pending.extend(self._reap())
        if self.multi_producer:
            self._skip_dead_claims()
        return self._words.load(_H_LOST) - before

    # ----------------------------------------------------------------- put

    # put(obj, block=True, timeout=None) and put_nowait(obj) come from
    # ChannelFace: one C call while a slot is free, else _put_slow.

    def _put_slow(self, obj, block, timeout) -> None:
        self._register()
        if self._ring.put(obj):
            return
        deadline = _deadline(block, timeout)
        while True:
            if self._words.load(_H_CLOSED):
                raise ChannelClosed(f"channel {self.name!r} was shut down")
            left = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if left <= 0:
                raise queue.Full(f"channel {self.name!r} is full")
            if self._ring.put(obj, left):
                return

    # put_many(batch, block=True, timeout=None) comes from ChannelFace: one C
    # call when the batch fits, else _put_many_slow with what went in.

    def _put_many_slow(self, batch, done, block, timeout) -> None:
        self._register()
        ring = self._ring
        n = len(batch)
        done += ring.put_many(batch[done:] if done else batch)  # validates the batch
        if done == n:
            return
        deadline = _deadline(block, timeout)
        while done < n:
            if self._words.load(_H_CLOSED):
                raise ChannelClosed(f"channel {self.name!r} was shut down")
            left = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if left <= 0:
                raise ChannelFull(done, n)
            done += ring.put_many(batch[done:], left)

    # claim(n, timeout=0.0) and commit(k=None) (zero copy) come from
    # ChannelFace: one C call each once this process is registered.

    # ----------------------------------------------------------------- get

    def _room(self, n: int) -> int:
        """Records readable before the next pending gap event (0: the gap is due)."""
        if not self._pending:
            return n
        return max(0, min(n, self._pending[0][0] - self._ring.head))

    def _take_gap(self) -> np.ndarray:
        return self._pending.pop(0)[1]

    def _maybe_check(self) -> None:
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + 0.01
            self.check_producers()

    # get(block=True, timeout=None) and get_nowait() come from ChannelFace:
    # one C call while a record is there and no gap event is due, else
    # _get_slow (every 1024th get too, for the periodic producer check).

    def _wait_loop(self, attempt, block, timeout):
        """Call ``attempt(wait_s)`` until it returns something; None = a gap is due."""
        deadline = _deadline(block, timeout)
        while True:
            if self._pending and self._room(1) == 0:
                return None
            out = attempt(0.0)
            if out is not None:
                return out
            # A check reads /proc (~60 us): at most one per 10 ms, or a
            # consumer that keeps up with its producer would spend its time here.
            self._maybe_check()
            if self._pending and self._room(1) == 0:
                return None
            if self._words.load(_H_CLOSED) and len(self._ring) == 0 and attempt(0.0) is None:
                raise ChannelClosed(f"channel {self.name!r} was shut down and is drained")
            left = 0.01 if deadline is None else min(0.01, deadline - time.monotonic())
            if left <= 0:
                raise queue.Empty(f"channel {self.name!r} is empty")
            out = attempt(left)
            if out is not None:
                return out

    def _get_slow(self, block, timeout):
        if self._countdown <= 0:
            self._countdown = 1024
            self._maybe_check()
        rec = self._wait_loop(lambda t: self._ring.get(t), block, timeout)
        return self._take_gap()[0] if rec is None else rec

    # get_many(max_n, block=True, timeout=None) and get_into(out, block=True,
    # timeout=None) come from ChannelFace: one C call while records are there,
    # no gap event is due and the periodic producer check is not due either.

    def _get_many_slow(self, max_n, block, timeout) -> np.ndarray:
        if max_n == 0:
            return self._ring.get_many(0)
        self._maybe_check()
        if not self._pending:
            out = self._ring.get_many(max_n)
            if len(out) or max_n == 0:
                return out

        def attempt(t):
            got = self._ring.get_many(self._room(max_n), t)
            return got if len(got) else None

        out = self._wait_loop(attempt, block, timeout)
        return self._take_gap() if out is None else out

    def _get_into_slow(self, out, block, timeout) -> int:
        self._maybe_check()
        if not self._pending:
            n = self._ring.get_into(out)
            if n:
                return n

        def attempt(t):
            got = self._ring.get_into(out[: self._room(len(out))], t)
            return got if got else None

        got = self._wait_loop(attempt, block, timeout)
        if got is None:
            out[:1] = self._take_gap()
            return 1
        return got

    # peek(n, timeout=0.0) and release(k=None) (zero copy) come from
    # ChannelFace: one C call each.

    # ------------------------------------------------------------- closing

    def shutdown(self) -> None:
        """Mark the stream finished for every handle (like ``queue.Queue.shutdown``)."""
        self._words.store(_H_CLOSED, 1)
        self._ring.shutdown()

    def close(self) -> None:
        """Detach this handle; the creating handle also unlinks the name."""
        if self._mm is None:
            return
        self._unregister()
        self._ring.close()
        self._words.close()
        mm, self._mm = self._mm, None
        try:
            mm.close()
        except BufferError:
            pass  # a claim/peek view is still alive; the mapping goes with it
        if self._owner and self._unlink_on_close and self._creator_pid == os.getpid():
            self.unlink()
        _open_channels.discard(self)

    def unlink(self) -> None:
        """Remove the name from /dev/shm (open handles keep working)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    @staticmethod
    def unlink_name(name: str) -> bool:
        """Remove ``/dev/shm/ctas7-<name>``; True if it existed."""
        try:
            os.unlink(_path(name))
            return True
        except FileNotFoundError:
            return False

    def __enter__(self) -> "Channel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._mm is None:
            return f"<Channel {self.name!r} closed>"
        kind = "mpmc" if self.multi_producer else "spsc"
        return f"<Channel {self.name!r} {kind} {self.qsize()}/{self.capacity} lost={self.lost}>"


def _attach_for_pickle(name, dtype, wait, claim_timeout):
    return Channel.attach(name, dtype=dtype, wait=wait, claim_timeout=claim_timeout)


def sweep(prefix: str = "") -> list:
    """Unlink channels (names starting with ``prefix``) whose creator is dead.

    Returns the names removed. Only segments of this user are touched.

    Examples
    --------
    >>> sweep("no-such-prefix-")
    []
    """
    removed = []
    try:
        entries = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return removed
    for entry in entries:
        if not entry.startswith(PREFIX + prefix):
            continue
        path = os.path.join(SHM_DIR, entry)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if st.st_uid != os.geteuid() or st.st_size < _RING_OFF:
                continue
            head = os.pread(fd, 96, 0)
        finally:
            os.close(fd)
        if int.from_bytes(head[0:8], "little") != MAGIC:
            continue
        creator = int.from_bytes(head[_H_CREATOR : _H_CREATOR + 8], "little")
        start = int.from_bytes(head[_H_CREATOR_START : _H_CREATOR_START + 8], "little")
        if not _pid_alive(creator, start):
            try:
                os.unlink(path)
                removed.append(entry[len(PREFIX) :])
            except FileNotFoundError:
                pass
    return removed


def _reset_after_fork() -> None:
    for ch in list(_open_channels):
        ch._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
