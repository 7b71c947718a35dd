"""TAPS: channelled pub/sub for intel, alerts and tasks (in-process asyncio).

Channels (:data:`CHANNELS`): ThreatIntel, GeoIntel, PhysicalIntel, WMDIntel,
MediaFeed, AlertStream, TaskUpdates, GraphEvents.

:class:`Taps` runs on an asyncio event loop: its own loop on a daemon thread
(``start()``, ``with Taps() as bus``, or simply the first ``publish`` /
``subscribe`` from ordinary code), or the caller's loop
(``async with Taps() as bus``).

- **Subscribers.** Any number per channel. Each has its own bounded buffer
  (``buffer_size``, 10,000 by default) and its own delivery task that calls
  ``handler(message)`` (a function or a coroutine function) with a
  :class:`Message`. Handlers run on the loop: keep them short, or make them
  coroutines that await slow work.
- **Backpressure** is a per-subscriber policy. ``"block"``: a publisher
  waits for room in that subscriber's buffer. ``"drop_oldest"``: the oldest
  buffered message is discarded (counted as ``dropped``) to make room.
- **Retention and replay.** Each channel keeps its last ``retention``
  messages; ``subscribe(..., replay=n)`` (or ``replay=True`` for all)
  delivers them to a late subscriber before live ones.
- **TTL.** A message published with ``ttl`` (seconds; default the bus's
  ``ttl``) that is still buffered when it expires is not delivered; it is
  counted as ``expired``.
- **Dead letters.** A message whose handler raises goes to the dead-letter
  queue (:attr:`Taps.dead_letters`, last ``dead_letter_size`` kept) with the
  subscriber and the reason; delivery goes on with the next message.
- **From threads.** :meth:`Taps.publish` is synchronous and thread-safe: it
  hands the message to the loop through an ordered ingress queue bounded to
  ``buffer_size`` and returns at once (waiting at most ``publish_timeout``
  for ingress room, then raising TimeoutError). This is what AXON's
  ``PublishHandler`` calls. :meth:`Taps.drain` waits until everything
  published has been delivered (or dropped, expired, dead-lettered).

A bus pickles as its configuration: the copy is a fresh bus with no
subscribers and no messages.

Examples
--------
>>> from ctas7.sinks.taps import Taps
>>> seen = []
>>> with Taps(retention=10) as bus:
...     sub = bus.subscribe("AlertStream", lambda m: seen.append((m.seq, m.payload["tier"])))
...     bus.publish("AlertStream", {"tier": "INTERDICT"})
...     bus.publish("AlertStream", {"tier": "MONITOR"})
...     drained = bus.drain(timeout=5)
...     late = []
...     _ = bus.subscribe("AlertStream", lambda m: late.append(m.seq), replay=True)
...     drained = bus.drain(timeout=5)
>>> seen, late, sub.stats["delivered"]
([(1, 'INTERDICT'), (2, 'MONITOR')], [1, 2], 2)
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

__all__ = [
    "CHANNELS",
    "POLICIES",
    "Message",
    "DeadLetter",
    "Subscription",
    "Taps",
]

#: The TAPS channels.
CHANNELS = (
    "ThreatIntel",
    "GeoIntel",
    "PhysicalIntel",
    "WMDIntel",
    "MediaFeed",
    "AlertStream",
    "TaskUpdates",
    "GraphEvents",
)
#: Backpressure policies of a subscriber.
POLICIES = ("block", "drop_oldest")


def _now_ns() -> int:
    return time.monotonic_ns()


@dataclass(frozen=True)
class Message:
    """One published message.

    Attributes
    ----------
    channel : str
    seq : int
        1-based sequence number within the channel.
    payload : object
        What was published (not copied: do not mutate it afterwards).
    published_ns : int
        CLOCK_MONOTONIC ns at publication.
    expires_ns : int or None
        CLOCK_MONOTONIC ns after which it is no longer delivered.
    """

    channel: str
    seq: int
    payload: Any
    published_ns: int
    expires_ns: int | None = None

    def expired(self, now_ns: int | None = None) -> bool:
        return self.expires_ns is not None and (_now_ns() if now_ns is None else now_ns) > self.expires_ns


@dataclass(frozen=True)
class DeadLetter:
    """A message whose handler raised.

    Attributes
    ----------
    message : Message
    subscriber : str
    reason : str
        ``"ExceptionType: text"``.
    traceback : str
        The formatted traceback of the handler's exception.
    """

    message: Message
    subscriber: str
    reason: str
    traceback: str = ""


def _check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    return policy


def _check_int(name: str, v, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ValueError(f"{name} must be an int >= {low}, got {v!r}")
    return v


def _check_ttl(ttl) -> float | None:
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
        raise ValueError(f"ttl must be a number of seconds > 0 or None, got {ttl!r}")
    return float(ttl)


class Subscription:
    """One subscriber of one channel; made by :meth:`Taps.subscribe`.

    Attributes
    ----------
    channel, name, policy : str
    buffer_size : int
    stats : dict
        ``delivered``, ``dropped``, ``expired``, ``failed`` (dead-lettered)
        and ``replayed`` counts.
    """

    def __init__(self, bus: "Taps", channel: str, handler: Callable, name: str, policy: str, buffer_size: int):
        self.bus = bus
        self.channel = channel
        self.handler = handler
        self.name = name
        self.policy = policy
        self.buffer_size = buffer_size
        self.stats = {"delivered": 0, "dropped": 0, "expired": 0, "failed": 0, "replayed": 0}
        self._buf: deque = deque()
        self._busy = False
        self._closed = False
        self._not_empty = asyncio.Event()
        self._not_full = asyncio.Event()
        self._not_full.set()
        self._task: asyncio.Task | None = None
        # Backend hook: awaited with (message, outcome) once a message is
        # delivered, expired, failed or dropped (NATS acks there).
        self._on_done = None

    def __repr__(self) -> str:
        return f"Subscription(channel={self.channel!r}, name={self.name!r}, policy={self.policy!r}, buffered={len(self._buf)})"

    @property
    def buffered(self) -> int:
        """Messages waiting in the buffer."""
        return len(self._buf)

    @property
    def idle(self) -> bool:
        return not self._buf and not self._busy

    def unsubscribe(self) -> None:
        """Stop delivery; buffered messages are discarded (counted as dropped)."""
        self.bus._call(self._close)

    # -- loop side -------------------------------------------------------------

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.stats["dropped"] += len(self._buf)
        if self._on_done is not None:
            for msg in self._buf:
                self.bus._loop.create_task(self._on_done(msg, "dropped"))
        self._buf.clear()
        self._not_empty.set()
        self._not_full.set()
        subs = self.bus._subs.get(self.channel)
        if subs is not None and self in subs:
            subs.remove(self)
            gone = self.bus._gone[self.channel]
            for k, v in self.stats.items():
                gone[k] += v

    def _offer_nowait(self, msg: Message) -> bool:
        """Append if there is room (or by dropping the oldest); False if a block-policy buffer is full."""
        if len(self._buf) >= self.buffer_size:
            if self.policy == "block":
                self._not_full.clear()
                return False
            old = self._buf.popleft()
            self.stats["dropped"] += 1
            if self._on_done is not None:
                self.bus._loop.create_task(self._on_done(old, "dropped"))
        self._buf.append(msg)
        self._not_empty.set()
        return True

    async def _offer(self, msg: Message) -> None:
        while not self._closed and not self._offer_nowait(msg):
            await self._not_full.wait()

    async def _pump(self) -> None:
        buf, stats, clock = self._buf, self.stats, self.bus._clock
        while True:
            if not buf:
                self._not_empty.clear()
                if self._closed:
                    return
                await self._not_empty.wait()
                continue
            msg = buf.popleft()
            if len(buf) < self.buffer_size:
                self._not_full.set()
            self._busy = True
            try:
                if msg.expires_ns is not None and clock() > msg.expires_ns:
                    stats["expired"] += 1
                    outcome = "expired"
                else:
                    try:
                        result = self.handler(msg)
                        if inspect.isawaitable(result):
                            await result
                        stats["delivered"] += 1
                        outcome = "delivered"
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        stats["failed"] += 1
                        outcome = "failed"
                        self.bus._dead_letter(
                            DeadLetter(msg, self.name, f"{type(exc).__name__}: {exc}", traceback.format_exc())
                        )
                if self._on_done is not None:
                    await self._on_done(msg, outcome)
            finally:
                self._busy = False


class Taps:
    """In-process asyncio pub/sub bus with bounded buffers, replay, TTL and a dead-letter queue.

    Parameters
    ----------
    channels : sequence of str
        Channel names (default :data:`CHANNELS`); publishing elsewhere is an error.
    buffer_size : int
        Default per-subscriber buffer, and the bound of the thread ingress queue.
    retention : int
        Messages kept per channel for replay (0 = none).
    ttl : float, optional
        Default time to live of a message, in seconds (None = forever).
    dead_letter_size : int
        Dead letters kept (older ones are counted in ``stats()`` and forgotten).
    publish_timeout : float, optional
        Longest wait of the synchronous :meth:`publish` for ingress room, in
        seconds (None = wait as long as it takes).

    Examples
    --------
    >>> import asyncio
    >>> async def main():
    ...     got = []
    ...     async with Taps(buffer_size=2) as bus:
    ...         sub = bus.subscribe("GeoIntel", got.append, policy="drop_oldest")
    ...         for i in range(5):  # the subscriber cannot run in between: 3 dropped
    ...             await bus.apublish("GeoIntel", i)
    ...         await bus.adrain()
    ...     return [m.payload for m in got], sub.stats["dropped"]
    >>> asyncio.run(main())
    ([3, 4], 3)
    """

    def __init__(
        self,
        channels=CHANNELS,
        *,
        buffer_size: int = 10_000,
        retention: int = 1_000,
        ttl: float | None = None,
        dead_letter_size: int = 10_000,
        publish_timeout: float | None = None,
    ):
        channels = tuple(channels)
        if not channels or not all(isinstance(c, str) and c for c in channels):
            raise ValueError(f"channels must be non-empty strings, got {channels!r}")
        self.channels = channels
        self.buffer_size = _check_int("buffer_size", buffer_size, 1)
        self.retention = _check_int("retention", retention, 0)
        self.ttl = _check_ttl(ttl)
        self.dead_letter_size = _check_int("dead_letter_size", dead_letter_size, 1)
        if publish_timeout is not None and not (isinstance(publish_timeout, (int, float)) and publish_timeout >= 0):
            raise ValueError(f"publish_timeout must be a number >= 0 or None, got {publish_timeout!r}")
        self.publish_timeout = publish_timeout
        self._init_runtime()

    #: Clock of ``Message.published_ns``/``expires_ns`` (NATS: wall clock).
    _clock = staticmethod(_now_ns)

    def _init_runtime(self) -> None:
        self._subs: dict[str, list[Subscription]] = {c: [] for c in self.channels}
        self._retained: dict[str, deque] = {c: deque(maxlen=self.retention) for c in self.channels}
        self._seq = dict.fromkeys(self.channels, 0)
        self._counts = {c: {"published": 0} for c in self.channels}
        self._gone = {c: dict.fromkeys(("delivered", "dropped", "expired", "failed", "replayed"), 0) for c in self.channels}
        self.dead_letters: deque = deque(maxlen=self.dead_letter_size)
        self._dead_total = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._own_loop = False
        self._ingress: deque = deque()
        self._ingress_slots = threading.BoundedSemaphore(self.buffer_size)
        self._ingress_wake: asyncio.Event | None = None
        self._ingress_task: asyncio.Task | None = None
        self._ingress_busy = False
        self._ingress_sleeping = False
        self._start_lock = threading.Lock()
        self._closed = False
        self._names = 0
        self._publish_timeouts = 0

    def __getstate__(self):
        return {
            "channels": self.channels,
            "buffer_size": self.buffer_size,
            "retention": self.retention,
            "ttl": self.ttl,
            "dead_letter_size": self.dead_letter_size,
            "publish_timeout": self.publish_timeout,
        }

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._init_runtime()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._loop is not None else "idle")
        return f"Taps(channels={len(self.channels)}, buffer_size={self.buffer_size}, retention={self.retention}, {state})"

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> "Taps":
        """Run the bus on its own event loop in a daemon thread (idempotent)."""
        with self._start_lock:
            if self._closed:
                raise RuntimeError("Taps bus is closed")
            if self._loop is not None:
                return self
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def main():
                asyncio.set_event_loop(loop)
                self._bind(loop)
                ready.set()
                loop.run_forever()
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

            self._thread = threading.Thread(target=main, name="ctas7-taps", daemon=True)
            self._own_loop = True
            self._thread.start()
            ready.wait()
            return self

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._ingress_wake = asyncio.Event()
        self._ingress_task = loop.create_task(self._ingress_pump())

    async def __aenter__(self) -> "Taps":
        with self._start_lock:
            if self._loop is not None:
                raise RuntimeError("Taps bus already runs on a loop")
            self._bind(asyncio.get_running_loop())
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    def __enter__(self) -> "Taps":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._closed:
            raise RuntimeError("Taps bus is closed")
        if self._loop is None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return self.start()._loop
            raise RuntimeError("inside a running event loop, enter the bus with `async with Taps() as bus` first")
        return self._loop

    def _on_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def _call(self, fn, *args):
        """Run a plain function on the loop and return its result (from any thread)."""
        loop = self._ensure_loop()
        if self._on_loop():
            return fn(*args)

        async def call():
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(call(), loop).result()

    async def adrain(self, poll: float = 0.001) -> None:
        """Wait until everything published so far is delivered, dropped, expired or dead-lettered."""
        while True:
            if (
                not self._ingress
                and not self._ingress_busy
                and all(s.idle for subs in self._subs.values() for s in subs)
            ):
                return
            await asyncio.sleep(poll)

    def drain(self, timeout: float | None = None) -> bool:
        """Synchronous :meth:`adrain` from a thread other than the loop's; False on timeout."""
        loop = self._ensure_loop()
        if self._on_loop():
            raise RuntimeError("drain() would block the bus loop; use `await bus.adrain()`")
        fut = asyncio.run_coroutine_threadsafe(self.adrain(), loop)
        try:
            fut.result(timeout)
            return True
        except TimeoutError:
            fut.cancel()
            return False

    async def aclose(self) -> None:
        """Deliver what is buffered, then stop every subscriber."""
        if self._closed or self._loop is None:
            self._closed = True
            return
        await self.adrain()
        self._closed = True
        for subs in self._subs.values():
            for s in list(subs):
                s._close()
                if s._task is not None:
                    await s._task
        if self._ingress_task is not None:
            self._ingress_task.cancel()
            try:
                await self._ingress_task
            except asyncio.CancelledError:
                pass

    def close(self, timeout: float | None = 30.0) -> None:
        """Drain, stop subscribers and, if the bus owns its loop, the loop thread."""
        if self._closed:
            return
        if self._loop is None:
            self._closed = True
            return
        if self._on_loop():
            raise RuntimeError("close() from the bus loop; use `await bus.aclose()`")
        asyncio.run_coroutine_threadsafe(self.aclose(), self._loop).result(timeout)
        if self._own_loop and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)

    # -- publish -----------------------------------------------------------------

    def _check_channel(self, channel: str) -> None:
        if channel not in self._seq:
            raise ValueError(f"unknown TAPS channel {channel!r}; channels are {', '.join(self.channels)}")

    async def apublish(self, channel: str, payload: Any, *, ttl: float | None = None) -> Message:
        """Publish on the bus loop; waits while a ``block`` subscriber's buffer is full.

        Returns the :class:`Message` (with its sequence number).
        """
        self._check_channel(channel)
        if self._closed:
            raise RuntimeError("Taps bus is closed")
        ttl = _check_ttl(ttl) if ttl is not None else self.ttl
        now = _now_ns()
        seq = self._seq[channel] + 1
        self._seq[channel] = seq
        msg = Message(channel, seq, payload, now, None if ttl is None else now + int(ttl * 1e9))
        self._counts[channel]["published"] += 1
        if self.retention:
            self._retained[channel].append(msg)
        for sub in tuple(self._subs[channel]):
            if not sub._offer_nowait(msg):
                await sub._offer(msg)
        return msg

    def publish(self, channel: str, payload: Any, *, ttl: float | None = None) -> None:
        """Thread-safe, synchronous publish: hand the message to the bus, in order.

        Waits at most ``publish_timeout`` for room in the ingress queue
        (``buffer_size`` messages), then raises TimeoutError. Delivery
        happens on the loop; :meth:`drain` waits for it.

        Raises
        ------
        ValueError
            Unknown channel or bad ttl.
        RuntimeError
            Called from the bus's own loop (use ``await apublish``), or closed.
        TimeoutError
            No ingress room within ``publish_timeout``.
        """
        self._check_channel(channel)
        if ttl is not None:
            _check_ttl(ttl)
        loop = self._ensure_loop()
        if self._on_loop():
            raise RuntimeError("publish() from the bus loop would deadlock on backpressure; use `await bus.apublish()`")
        if not self._ingress_slots.acquire(timeout=self.publish_timeout):
            self._publish_timeouts += 1
            raise TimeoutError(f"TAPS ingress full ({self.buffer_size} messages) for {self.publish_timeout} s")
        self._ingress.append((channel, payload, ttl))
        # Wake the pump only when it sleeps: it raises the flag before its
        # last emptiness check, so either it sees this message or we see the flag.
        if self._ingress_sleeping:
            self._ingress_sleeping = False
            loop.call_soon_threadsafe(self._ingress_wake.set)

    async def _ingress_pump(self) -> None:
        ingress, wake = self._ingress, self._ingress_wake
        while True:
            if not ingress:
                wake.clear()
                self._ingress_sleeping = True
                if ingress:
                    self._ingress_sleeping = False
                    continue
                await wake.wait()
                continue
            self._ingress_busy = True
            try:
                while ingress:
                    channel, payload, ttl = ingress.popleft()
                    try:
                        await self.apublish(channel, payload, ttl=ttl)
                    finally:
                        self._ingress_slots.release()
            finally:
                self._ingress_busy = False

    # -- subscribe ---------------------------------------------------------------

    def subscribe(
        self,
        channel: str,
        handler: Callable[[Message], Any],
        *,
        name: str | None = None,
        policy: str = "block",
        buffer_size: int | None = None,
        replay: int | bool = 0,
    ) -> Subscription:
        """Subscribe ``handler`` to ``channel``.

        Parameters
        ----------
        channel : str
        handler : callable
            ``handler(message)``; may be a coroutine function. If it raises,
            the message is dead-lettered.
        name : str, optional
            Subscriber name in stats and dead letters.
        policy : {"block", "drop_oldest"}
            What a publisher does when this buffer is full.
        buffer_size : int, optional
            Default the bus's ``buffer_size``.
        replay : int or bool
            Deliver the last ``replay`` retained messages first (True = all
            retained), at most ``buffer_size`` of them. Expired ones are
            skipped and counted as expired.
        """
        self._check_channel(channel)
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {type(handler).__name__}")
        _check_policy(policy)
        size = self.buffer_size if buffer_size is None else _check_int("buffer_size", buffer_size, 1)
        if replay is True:
            n_replay = self.retention
        elif replay is False:
            n_replay = 0
        else:
            n_replay = _check_int("replay", replay, 0)
        return self._call(self._subscribe_now, channel, handler, name, policy, size, n_replay)

    def _subscribe_now(self, channel, handler, name, policy, size, n_replay) -> Subscription:
        if self._closed:
            raise RuntimeError("Taps bus is closed")
        self._names += 1
        name = name or f"{channel}-{self._names}"
        sub = Subscription(self, channel, handler, name, policy, size)
        if n_replay:
            now = _now_ns()
            retained = list(self._retained[channel])[-min(n_replay, size):]
            for msg in retained:
                if msg.expired(now):
                    sub.stats["expired"] += 1
                    continue
                sub._buf.append(msg)
                sub.stats["replayed"] += 1
            if sub._buf:
                sub._not_empty.set()
        self._subs[channel].append(sub)
        sub._task = self._loop.create_task(sub._pump())
        return sub

    # -- dead letters and stats ----------------------------------------------------

    def _dead_letter(self, dl: DeadLetter) -> None:
        self._dead_total += 1
        self.dead_letters.append(dl)

    def stats(self) -> dict:
        """Counters: per channel (published, subscribers, retained, and the sums over
        its subscribers, past ones included) and, under ``"_bus"``, dead letters and
        publish timeouts."""
        out = {}
        for c in self.channels:
            subs = list(self._subs[c])
            row = {"published": self._counts[c]["published"], "subscribers": len(subs), "retained": len(self._retained[c])}
            for k in ("delivered", "dropped", "expired", "failed", "replayed"):
                row[k] = self._gone[c][k] + sum(s.stats[k] for s in subs)
            out[c] = row
        out["_bus"] = {
            "dead_letters": self._dead_total,
            "dead_letters_kept": len(self.dead_letters),
            "publish_timeouts": self._publish_timeouts,
        }
        return out
