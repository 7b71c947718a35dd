"""SurrealDB sink: batched writes off the hot path, retry, spill, reload.

:class:`SurrealSink` takes what a chain produces -- event batches
(:data:`~ctas7.events.EVENT_DTYPE` arrays, all or every n-th event),
convergences, AXON decisions and PRISM reports -- and writes them to the
tables ``events``, ``convergences``, ``responses`` and ``reports`` in
batches of ``batch_size`` rows (1,000 by default), on its own writer thread.

**Where.** ``url`` is ``surrealkv://PATH`` (embedded, on disk; the default is
``surrealkv://.ctas7-data/surreal``), ``mem://`` (embedded, in memory) or
``ws://HOST:PORT`` / ``wss://`` / ``http(s)://`` for a server. Credentials
for a server come from the environment (``CTAS7_SURREAL_USER`` and
``CTAS7_SURREAL_PASS``) or a JSON file (``credentials_file=`` or
``CTAS7_SURREAL_CREDENTIALS``; keys ``username`` and ``password``; the file
must not be readable by group or others). A URL carrying ``user:pass@`` is
refused, so credentials never travel on a command line; they are never
logged and never appear in a ``repr``.

**Never blocking the caller.** ``submit*`` copies the records and puts them
on a queue bounded to ``max_pending`` records. If the queue is full, the
caller waits at most ``put_timeout`` seconds; after that the records are
written straight to the spill file (counted as ``backlog`` and ``spilled``),
so a slow database costs the caller at most ``put_timeout`` plus one
appended line.

**Nothing lost.** Each row gets a deterministic record id
``table:[run_id, n]`` and is written with ``INSERT IGNORE``, so a retried or
reloaded batch never duplicates rows. A failed batch is retried up to
``max_attempts`` times with exponential backoff (``backoff * 2**k``, capped
at ``backoff_max``; network connections are reopened between attempts), and
then appended to a local JSONL spill file (mode 0600, fsync'd).
:func:`load_spill` (CLI: ``ctas7-intel surreal-load SPILL``) loads such a
file back. After :meth:`SurrealSink.flush` or :meth:`SurrealSink.close`,
``stats.written + stats.spilled == stats.submitted``.

**Type mapping.** SurrealDB integers are signed 64-bit: unsigned 64-bit
values (the event ``sch`` hash, cluster ids) are stored as their two's
complement (``np.uint64(x).view(np.int64)``; recover them with
``& 0xFFFF_FFFF_FFFF_FFFF``). A record's own ``id`` key, if any, is stored as
``source_id``. Enums are stored by name, tuples and arrays as lists.

Examples
--------
>>> from ctas7.events import make_events
>>> from ctas7.sinks.surreal import SurrealSink
>>> with SurrealSink("mem://", batch_size=2) as sink:
...     kept = sink.submit_events(make_events(ts=[1, 2, 3], node=[7, 8, 9]))
...     n = sink.submit_records("reports", [{"summary": "three nodes", "confidence": 0.9}])
...     ok = sink.flush()
...     rows = sink.query("SELECT node FROM events ORDER BY node")
>>> [r["node"] for r in rows], sink.stats.written, sink.stats.spilled
([7, 8, 9], 4, 0)
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import enum
import json
import logging
import os
import stat
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import urlsplit

import numpy as np

from ctas7.events import EVENT_DTYPE, as_batch, validate_batch

__all__ = [
    "TABLES",
    "DEFAULT_DATA_DIR",
    "SurrealSink",
    "SinkStats",
    "LoadResult",
    "Credentials",
    "load_credentials",
    "default_url",
    "to_row",
    "read_spill",
    "load_spill",
    "add_arguments",
    "run",
]

log = logging.getLogger("ctas7.sinks.surreal")

#: Tables the sink writes.
TABLES = ("events", "convergences", "responses", "reports")
#: Default folder for embedded data and spill files (relative to the cwd).
DEFAULT_DATA_DIR = ".ctas7-data"

_EMBEDDED = ("mem", "memory", "surrealkv", "surrealkv+versioned", "file")
_NETWORK = ("ws", "wss", "http", "https")
_SPILL_VERSION = 1
_U64_SIGN = 1 << 63
_U64_MAX = 1 << 64
_ENV_USER = "CTAS7_SURREAL_USER"
_ENV_PASS = "CTAS7_SURREAL_PASS"
_ENV_CREDS = "CTAS7_SURREAL_CREDENTIALS"
_ENV_URL = "CTAS7_SURREAL_URL"


def default_url(data_dir: str | os.PathLike = DEFAULT_DATA_DIR) -> str:
    """The embedded on-disk database in ``data_dir``: ``surrealkv://DATA_DIR/surreal``.

    >>> default_url("/var/lib/ctas7")
    'surrealkv:///var/lib/ctas7/surreal'
    """
    return f"surrealkv://{Path(data_dir) / 'surreal'}"


def _check_url(url: str) -> str:
    """Validate ``url``; return its scheme."""
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(f"SurrealDB url must look like mem://, surrealkv://PATH or ws://HOST:PORT, got {url!r}")
    scheme = url.split("://", 1)[0].lower()
    if scheme not in _EMBEDDED + _NETWORK:
        raise ValueError(f"unsupported SurrealDB url scheme {scheme!r}; use one of {', '.join(_EMBEDDED + _NETWORK)}")
    if scheme in _NETWORK:
        parts = urlsplit(url)
        if parts.username is not None or parts.password is not None:
            # Do not echo the url: it holds the secret.
            raise ValueError(
                "SurrealDB url must not carry credentials; set CTAS7_SURREAL_USER/CTAS7_SURREAL_PASS "
                "or a credentials file instead"
            )
        if not parts.hostname:
            raise ValueError(f"SurrealDB url {url!r} has no host")
    return scheme


def _embedded_path(url: str) -> Path | None:
    scheme, rest = url.split("://", 1)
    if scheme.lower() in ("mem", "memory") or not rest:
        return None
    return Path(rest)


# ---------------------------------------------------------------------------
# Credentials
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """A root/namespace user for a SurrealDB server; the password never shows in a repr.

    >>> Credentials("root", "s3cret")
    Credentials(username='root', password='***')
    """

    username: str
    password: str = dataclasses.field(repr=False)

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password='***')"

    def signin_vars(self) -> dict:
        return {"username": self.username, "password": self.password}


def load_credentials(path: str | os.PathLike | None = None, environ=None) -> Credentials | None:
    """Credentials from a JSON file, else from the environment, else None.

    Parameters
    ----------
    path : path-like, optional
        JSON file with exactly the keys ``username`` and ``password``. Must
        not be readable or writable by group or others. Defaults to
        ``$CTAS7_SURREAL_CREDENTIALS`` if set.
    environ : mapping, optional
        Environment to read (default ``os.environ``): ``CTAS7_SURREAL_USER``
        and ``CTAS7_SURREAL_PASS``.

    Examples
    --------
    >>> load_credentials(environ={"CTAS7_SURREAL_USER": "ops", "CTAS7_SURREAL_PASS": "x"})
    Credentials(username='ops', password='***')
    >>> load_credentials(environ={}) is None
    True
    """
    env = os.environ if environ is None else environ
    if path is None:
        path = env.get(_ENV_CREDS) or None
    if path is not None:
        p = Path(path)
        st = p.stat()
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise PermissionError(f"credentials file {p} is accessible by group/others (mode {oct(st.st_mode & 0o777)}); chmod 600 it")
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"credentials file {p} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
        if not isinstance(data, dict):
            raise ValueError(f"credentials file {p} must hold a JSON object")
        unknown = set(data) - {"username", "password"}
        missing = {"username", "password"} - set(data)
        if unknown or missing:
            raise ValueError(
                f"credentials file {p}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}; "
                "expected exactly 'username' and 'password'"
            )
        if not all(isinstance(data[k], str) and data[k] for k in ("username", "password")):
            raise ValueError(f"credentials file {p}: username and password must be non-empty strings")
        return Credentials(data["username"], data["password"])
    user, password = env.get(_ENV_USER), env.get(_ENV_PASS)
    if user and password:
        return Credentials(user, password)
    if user or password:
        raise ValueError(f"set both {_ENV_USER} and {_ENV_PASS}, or neither")
    return None


# ---------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------


def _plain(value, where: str):
    """A CBOR/JSON-ready copy of ``value`` (u64 -> i64 two's complement)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, int):
        if value >= _U64_SIGN:
            if value >= _U64_MAX:
                raise ValueError(f"{where}: integer {value} does not fit in 64 bits")
            return value - _U64_MAX
        if value < -_U64_SIGN:
            raise ValueError(f"{where}: integer {value} does not fit in 64 bits")
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, np.generic):
        if isinstance(value, np.unsignedinteger) and value.dtype.itemsize == 8:
            return int(value.view(np.int64))
        return _plain(value.item(), where)
    if isinstance(value, np.ndarray):
        return [_plain(v, where) for v in value.tolist()]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: dict keys must be str, got {type(k).__name__} {k!r}")
            out[k] = _plain(v, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"{where}: cannot store a {type(value).__name__} in SurrealDB (use numbers, str, lists, dicts)")


def to_row(record) -> dict:
    """A storable dict for one record: ``to_dict()``, a dataclass or a mapping.

    >>> to_row({"id": 5, "sch": 2**64 - 1, "nodes": (1, 2)})
    {'source_id': 5, 'sch': -1, 'nodes': [1, 2]}
    """
    if hasattr(record, "to_dict") and callable(record.to_dict):
        data = record.to_dict()
    elif dataclasses.is_dataclass(record) and not isinstance(record, type):
        data = dataclasses.asdict(record)
    elif isinstance(record, dict):
        data = record
    else:
        raise TypeError(f"a record must have to_dict(), be a dataclass or a dict, got {type(record).__name__}")
    if not isinstance(data, dict):
        raise TypeError(f"{type(record).__name__}.to_dict() returned {type(data).__name__}, expected dict")
    row = _plain(data, type(record).__name__)
    if "id" in row:
        if "source_id" in row:
            raise ValueError("a record with both 'id' and 'source_id' keys cannot be stored ('id' is the row key)")
        row = {("source_id" if k == "id" else k): v for k, v in row.items()}
    return row


def _event_rows(run_id: str, first: int, arr: np.ndarray) -> list:
    cols = {name: arr[name].tolist() for name in EVENT_DTYPE.names if name != "sch"}
    cols["sch"] = arr["sch"].view(np.int64).tolist()
    names = list(cols)
    values = [cols[n] for n in names]
    return [
        {"id": [run_id, first + i], **dict(zip(names, vals))}
        for i, vals in enumerate(zip(*values))
    ]


@dataclass
class _Segment:
    """Consecutive rows of one table: an event slice or ready rows."""

    table: str
    first: int  # id of the first row
    events: np.ndarray | None = None
    rows: list | None = None

    def __len__(self) -> int:
        return len(self.events) if self.events is not None else len(self.rows)

    def split(self, k: int) -> tuple["_Segment", "_Segment"]:
        if self.events is not None:
            return (
                _Segment(self.table, self.first, events=self.events[:k]),
                _Segment(self.table, self.first + k, events=self.events[k:]),
            )
        return (
            _Segment(self.table, self.first, rows=self.rows[:k]),
            _Segment(self.table, self.first + k, rows=self.rows[k:]),
        )

    def to_rows(self, run_id: str) -> list:
        if self.events is not None:
            return _event_rows(run_id, self.first, self.events)
        return self.rows

    def spill_line(self, run_id: str, reason: str) -> str:
        entry = {"v": _SPILL_VERSION, "table": self.table, "run": run_id, "first": self.first, "reason": reason}
        if self.events is not None:
            entry["count"] = len(self.events)
            entry["events"] = base64.b64encode(np.ascontiguousarray(self.events).tobytes()).decode("ascii")
        else:
            entry["rows"] = self.rows
        return json.dumps(entry, separators=(",", ":"), allow_nan=True) + "\n"


# ---------------------------------------------------------------------------
# Bounded queue (bounded in records, not items)
# ---------------------------------------------------------------------------


class _Backlog:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self.pending = 0
        self._items: deque = deque()
        self._cond = threading.Condition()

    def put(self, item, n: int, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            # A batch bigger than the whole capacity still goes in when the queue is empty.
            while n and self.pending and self.pending + n > self.capacity:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            self._items.append((item, n))
            self.pending += n
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None):
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
                if not self._items:
                    raise TimeoutError
            item, n = self._items.popleft()
            self.pending -= n
            self._cond.notify_all()
            return item


# ---------------------------------------------------------------------------
# The sink
# ---------------------------------------------------------------------------


@dataclass
class SinkStats:
    """Counters of a :class:`SurrealSink` (records unless said otherwise).

    Attributes
    ----------
    submitted : int
        Records accepted by ``submit*`` (after event sampling).
    skipped : int
        Events left out by sampling (``event_every``); never submitted.
    written : int
        Records confirmed stored.
    spilled : int
        Records appended to the spill file (after failed retries, or backlog).
    backlog : int
        Of ``spilled``, the records spilled because the queue stayed full.
    retried : int
        Failed write attempts that were retried (batches).
    batches : int
        Batches written.
    failed_batches : int
        Batches spilled after ``max_attempts`` failures.
    last_error : str
        The last write error, ``""`` if none.
    """

    submitted: int = 0
    skipped: int = 0
    written: int = 0
    spilled: int = 0
    backlog: int = 0
    retried: int = 0
    batches: int = 0
    failed_batches: int = 0
    last_error: str = ""

    @property
    def in_flight(self) -> int:
        """Submitted records neither written nor spilled yet."""
        return self.submitted - self.written - self.spilled


_FLUSH = object()
_STOP = object()


class SurrealSink:
    """Batched, retrying, spilling SurrealDB writer on its own thread.

    Parameters
    ----------
    url : str, optional
        ``surrealkv://PATH``, ``mem://`` or ``ws://HOST:PORT`` (also ``wss``,
        ``http``, ``https``). Default ``$CTAS7_SURREAL_URL`` or
        ``surrealkv://.ctas7-data/surreal``.
    namespace, database : str
        Where to write.
    batch_size : int
        Rows per INSERT (default 1,000).
    max_pending : int
        Records the queue holds before ``submit*`` waits (default 100,000).
    put_timeout : float
        Longest wait of ``submit*`` for queue space, in seconds, before the
        records are spilled instead.
    flush_interval : float
        A partial batch is written after this many idle seconds.
    max_attempts : int
        Write attempts per batch before spilling it.
    backoff, backoff_max : float
        Retry delay ``min(backoff * 2**k, backoff_max)`` seconds after the
        k-th failure (k from 0).
    spill_path : path-like, optional
        JSONL spill file. Default ``.ctas7-data/spill/surreal-RUN_ID.jsonl``.
        Created (mode 0600) only when something spills.
    event_every : int
        Keep every n-th submitted event (1 = all, 0 = none). Sampling counts
        across batches, so it is deterministic for a given stream.
    run_id : str, optional
        First part of every record id; default a fresh ``YYYYmmddTHHMMSS-hex``.
    credentials : Credentials, optional
        For servers; default :func:`load_credentials` ``(credentials_file)``.
        Ignored by embedded engines.
    credentials_file : path-like, optional
        See :func:`load_credentials`.
    connection_factory : callable, optional
        Hook ``factory(url) -> connection`` (default ``surrealdb.Surreal``).
        The connection needs ``query(sql, vars)`` and ``use(ns, db)``, and may
        have ``connect()``, ``signin(vars)`` and ``close()``. Use it to wrap the
        real connection, e.g. to inject faults in tests.

    Attributes
    ----------
    stats : SinkStats
        Live counters (read them after :meth:`flush` for exact totals).
    spill_path : pathlib.Path
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        namespace: str = "ctas7",
        database: str = "ctas7",
        batch_size: int = 1000,
        max_pending: int = 100_000,
        put_timeout: float = 0.1,
        flush_interval: float = 0.25,
        max_attempts: int = 5,
        backoff: float = 0.05,
        backoff_max: float = 2.0,
        spill_path: str | os.PathLike | None = None,
        event_every: int = 1,
        run_id: str | None = None,
        credentials: Credentials | None = None,
        credentials_file: str | os.PathLike | None = None,
        connection_factory: Callable[[str], Any] | None = None,
    ):
        if url is None:
            url = os.environ.get(_ENV_URL) or default_url()
        self._scheme = _check_url(url)
        for name, v in (("batch_size", batch_size), ("max_pending", max_pending), ("max_attempts", max_attempts)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if not isinstance(event_every, (int, np.integer)) or isinstance(event_every, bool) or event_every < 0:
            raise ValueError(f"event_every must be an int >= 0, got {event_every!r}")
        for name, v in (("put_timeout", put_timeout), ("flush_interval", flush_interval), ("backoff", backoff), ("backoff_max", backoff_max)):
            if not (isinstance(v, (int, float)) and v >= 0):
                raise ValueError(f"{name} must be a number >= 0, got {v!r}")
        for name, v in (("namespace", namespace), ("database", database)):
            if not isinstance(v, str) or not v:
                raise ValueError(f"{name} must be a non-empty str, got {v!r}")
        self.url = url
        self.namespace = namespace
        self.database = database
        self.batch_size = int(batch_size)
        self.max_pending = int(max_pending)
        self.put_timeout = float(put_timeout)
        self.flush_interval = float(flush_interval)
        self.max_attempts = int(max_attempts)
        self.backoff = float(backoff)
        self.backoff_max = float(backoff_max)
        self.event_every = int(event_every)
        self.run_id = run_id or f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        if not isinstance(self.run_id, str):
            raise TypeError(f"run_id must be a str, got {type(self.run_id).__name__}")
        self.spill_path = Path(spill_path) if spill_path is not None else Path(DEFAULT_DATA_DIR) / "spill" / f"surreal-{self.run_id}.jsonl"
        if self._scheme in _NETWORK:
            self._credentials = credentials if credentials is not None else load_credentials(credentials_file)
        else:
            self._credentials = None
        self._factory = connection_factory
        self.stats = SinkStats()
        self._offered_events = 0
        self._next_id = dict.fromkeys(TABLES, 0)
        self._submit_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._spill_lock = threading.Lock()
        self._queue = _Backlog(self.max_pending)
        self._conn = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"ctas7-surreal-{self.run_id}", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"SurrealSink(url={self.url!r}, namespace={self.namespace!r}, database={self.database!r}, run_id={self.run_id!r})"

    def __enter__(self) -> "SurrealSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ submit

    def submit(self, frame) -> None:
        """Submit everything a :class:`~ctas7.stage.Frame` carries.

        Its events, convergences, responses (AXON decisions) and reports.
        """
        self.submit_events(frame.events)
        self.submit_records("convergences", frame.convergences)
        self.submit_records("responses", frame.responses)
        self.submit_records("reports", frame.reports)

    def submit_events(self, batch: np.ndarray) -> int:
        """Queue a batch of events (sampled by ``event_every``); return how many were kept.

        The batch is copied; the caller may reuse it at once.
        """
        validate_batch(batch, name="events")
        with self._submit_lock:
            self._check_open()
            n = len(batch)
            every = self.event_every
            if every == 0:
                kept = batch[:0]
            elif every == 1:
                kept = batch
            else:
                kept = batch[(-self._offered_events) % every :: every]
            self._offered_events += n
            kept = np.array(kept, dtype=EVENT_DTYPE, copy=True)
            with self._stats_lock:
                self.stats.skipped += n - len(kept)
            if len(kept):
                self._enqueue(_Segment("events", self._take_ids("events", len(kept)), events=kept))
            return len(kept)

    def submit_records(self, table: str, records: Iterable) -> int:
        """Queue records for ``table`` (one of :data:`TABLES` except ``events``); return their count.

        Records are converted (:func:`to_row`) here, so a record that cannot
        be stored raises TypeError/ValueError in the caller, not later.
        """
        if table not in TABLES or table == "events":
            raise ValueError(f"table must be one of {TABLES[1:]}, got {table!r} (events go through submit_events)")
        rows = [to_row(r) for r in records]
        if not rows:
            return 0
        with self._submit_lock:
            self._check_open()
            first = self._take_ids(table, len(rows))
            for i, row in enumerate(rows):
                row["id"] = [self.run_id, first + i]
            self._enqueue(_Segment(table, first, rows=rows))
        return len(rows)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("SurrealSink is closed")

    def _take_ids(self, table: str, n: int) -> int:
        first = self._next_id[table]
        self._next_id[table] = first + n
        return first

    def _enqueue(self, seg: _Segment) -> None:
        with self._stats_lock:
            self.stats.submitted += len(seg)
        if not self._queue.put(seg, len(seg), self.put_timeout):
            self._spill([seg], "backlog: queue full", backlog=True)

    # ------------------------------------------------------------------ control

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is written or spilled.

        Returns False if ``timeout`` (seconds) ran out first.
        """
        if self._closed:
            return True
        done = threading.Event()
        self._queue.put((_FLUSH, done), 0, None)
        return done.wait(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Drain the queue (write or spill everything), stop the thread, close the connection."""
        with self._submit_lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(_STOP, 0, None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"SurrealSink did not drain within {timeout} s; {self.stats.in_flight} records in flight")

    def query(self, sql: str, vars: dict | None = None):
        """Run one SurrealQL statement on the sink's connection (on its thread) and return the result."""
        if self._closed:
            raise RuntimeError("SurrealSink is closed")
        box: dict = {}
        done = threading.Event()
        self._queue.put((("query", sql, vars or {}, box), done), 0, None)
        done.wait()
        if "error" in box:
            raise box["error"]
        return box["result"]

    # ------------------------------------------------------------------ writer thread

    def _connect(self):
        if self._conn is None:
            if self._factory is None:
                from surrealdb import Surreal

                factory = Surreal
            else:
                factory = self._factory
            path = _embedded_path(self.url) if self._scheme in _EMBEDDED else None
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            conn = factory(self.url)
            try:
                if hasattr(conn, "connect"):
                    conn.connect()
                if self._credentials is not None:
                    conn.signin(self._credentials.signin_vars())
                conn.use(self.namespace, self.database)
            except BaseException:
                self._close_conn(conn)
                raise
            self._conn = conn
        return self._conn

    @staticmethod
    def _close_conn(conn) -> None:
        close = getattr(conn, "close", None)
        if close is not None:
            try:
                close()
            except Exception as exc:  # already broken; nothing more to do
                log.debug("closing SurrealDB connection failed: %s", exc)

    def _run(self) -> None:
        pending: dict[str, deque] = {t: deque() for t in TABLES}
        counts = dict.fromkeys(TABLES, 0)
        try:
            while True:
                try:
                    item = self._queue.get(self.flush_interval if any(counts.values()) else None)
                except TimeoutError:
                    self._write_all(pending, counts)
                    continue
                if item is _STOP:
                    self._write_all(pending, counts)
                    return
                if isinstance(item, tuple) and item[0] is _FLUSH:
                    self._write_all(pending, counts)
                    item[1].set()
                    continue
                if isinstance(item, tuple) and isinstance(item[0], tuple):
                    self._write_all(pending, counts)
                    (_, sql, vars_, box), done = item
                    try:
                        box["result"] = self._connect().query(sql, vars_)
                    except Exception as exc:
                        box["error"] = exc
                    done.set()
                    continue
                seg = item
                pending[seg.table].append(seg)
                counts[seg.table] += len(seg)
                while counts[seg.table] >= self.batch_size:
                    self._write_batch(self._take(pending, counts, seg.table, self.batch_size))
        finally:
            if self._conn is not None:
                self._close_conn(self._conn)
                self._conn = None

    def _take(self, pending, counts, table: str, k: int) -> list:
        out, q = [], pending[table]
        while k and q:
            seg = q.popleft()
            if len(seg) > k:
                head, tail = seg.split(k)
                q.appendleft(tail)
                seg = head
            out.append(seg)
            k -= len(seg)
            counts[table] -= len(seg)
        return out

    def _write_all(self, pending, counts) -> None:
        for table in TABLES:
            while counts[table]:
                self._write_batch(self._take(pending, counts, table, self.batch_size))

    def _write_batch(self, segs: list) -> None:
        table = segs[0].table
        n = sum(len(s) for s in segs)
        try:
            rows = [row for s in segs for row in s.to_rows(self.run_id)]
        except Exception as exc:  # cannot happen for validated input; never lose the data
            self._spill(segs, f"encode: {type(exc).__name__}: {exc}")
            return
        sql = f"INSERT IGNORE INTO {table} $rows RETURN NONE"
        for attempt in range(self.max_attempts):
            try:
                self._connect().query(sql, {"rows": rows})
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                with self._stats_lock:
                    self.stats.last_error = reason
                if self._scheme in _NETWORK and self._conn is not None:
                    self._close_conn(self._conn)
                    self._conn = None
                if attempt + 1 < self.max_attempts:
                    with self._stats_lock:
                        self.stats.retried += 1
                    log.info("SurrealDB write of %d %s failed (attempt %d/%d): %s", n, table, attempt + 1, self.max_attempts, reason)
                    time.sleep(min(self.backoff * 2**attempt, self.backoff_max))
                    continue
                with self._stats_lock:
                    self.stats.failed_batches += 1
                self._spill(segs, reason)
                return
            with self._stats_lock:
                self.stats.written += n
                self.stats.batches += 1
            return

    def _spill(self, segs: list, reason: str, backlog: bool = False) -> None:
        n = sum(len(s) for s in segs)
        lines = "".join(s.spill_line(self.run_id, reason) for s in segs)
        with self._spill_lock:
            self.spill_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.spill_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                data = lines.encode("utf-8")
                while data:
                    data = data[os.write(fd, data):]
                os.fsync(fd)
            finally:
                os.close(fd)
        with self._stats_lock:
            self.stats.spilled += n
            if backlog:
                self.stats.backlog += n
        log.warning("spilled %d %s records to %s (%s)", n, segs[0].table, self.spill_path, reason)


# ---------------------------------------------------------------------------
# Spill files
# ---------------------------------------------------------------------------


@dataclass
class LoadResult:
    """Outcome of :func:`load_spill`.

    Attributes
    ----------
    loaded : int
        Records read from the spill file and confirmed stored.
    inserted : int
        Of those, rows that were new (the rest were already there).
    batches : int
        INSERT statements run.
    retried : int
        Failed attempts that were retried.
    """

    loaded: int = 0
    inserted: int = 0
    batches: int = 0
    retried: int = 0

    @property
    def already_present(self) -> int:
        return self.loaded - self.inserted


_SPILL_KEYS = {"v", "table", "run", "first", "reason", "count", "events", "rows"}


def read_spill(path: str | os.PathLike) -> Iterator[tuple[str, list]]:
    """Yield ``(table, rows)`` per line of a spill file, rows carrying their ids.

    Raises ValueError naming the line for anything malformed (unknown keys,
    version or table; bad base64; a truncated line).
    """
    p = Path(path)
    with p.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            where = f"{p}:{lineno}"
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not a JSON line ({exc.msg}); truncated spill file?") from None
            if not isinstance(entry, dict):
                raise ValueError(f"{where}: expected a JSON object")
            unknown = set(entry) - _SPILL_KEYS
            if unknown:
                raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
            if entry.get("v") != _SPILL_VERSION:
                raise ValueError(f"{where}: unsupported spill version {entry.get('v')!r}")
            table = entry.get("table")
            if table not in TABLES:
                raise ValueError(f"{where}: unknown table {table!r}")
            if table == "events":
                try:
                    raw = base64.b64decode(entry["events"], validate=True)
                    arr = as_batch(raw)
                    run_id, first, count = entry["run"], int(entry["first"]), int(entry["count"])
                except (KeyError, TypeError, ValueError) as exc:
                    raise ValueError(f"{where}: bad events entry: {exc}") from None
                if len(arr) != count:
                    raise ValueError(f"{where}: {len(arr)} events decoded, header says {count}")
                yield table, _event_rows(run_id, first, arr)
            else:
                rows = entry.get("rows")
                if not isinstance(rows, list) or not all(isinstance(r, dict) and "id" in r for r in rows):
                    raise ValueError(f"{where}: 'rows' must be a list of objects with an 'id'")
                yield table, rows


def load_spill(
    path: str | os.PathLike,
    url: str | None = None,
    *,
    namespace: str = "ctas7",
    database: str = "ctas7",
    batch_size: int = 1000,
    max_attempts: int = 5,
    backoff: float = 0.05,
    backoff_max: float = 2.0,
    credentials: Credentials | None = None,
    credentials_file: str | os.PathLike | None = None,
    connection_factory: Callable[[str], Any] | None = None,
) -> LoadResult:
    """Load a spill file written by :class:`SurrealSink` into a database.

    Rows keep their record ids and are inserted with ``INSERT IGNORE``, so
    loading a file twice (or loading rows that did reach the database after
    all) adds nothing twice. The file is left in place.

    Parameters
    ----------
    path : path-like
        The JSONL spill file.
    url : str, optional
        Target database, as for :class:`SurrealSink`.
    namespace, database, batch_size, max_attempts, backoff, backoff_max, credentials, credentials_file, connection_factory
        As for :class:`SurrealSink`.

    Returns
    -------
    LoadResult

    Raises
    ------
    ValueError
        A malformed spill file (nothing after the bad line is loaded).
    RuntimeError
        A batch still failed after ``max_attempts``; rows before it are
        loaded, and loading the file again is safe.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from ctas7.events import make_events
    >>> spill = pathlib.Path(tempfile.mkdtemp()) / "spill.jsonl"
    >>> class Down:  # a connection that always fails, so everything spills
    ...     def use(self, ns, db): pass
    ...     def query(self, sql, vars=None): raise ConnectionError("down")
    >>> with SurrealSink("mem://", spill_path=spill, max_attempts=2, backoff=0,
    ...                  connection_factory=lambda url: Down()) as sink:
    ...     _ = sink.submit_events(make_events(ts=[1, 2, 3]))
    >>> sink.stats.spilled
    3
    >>> load_spill(spill, "mem://").loaded
    3
    """
    scheme = _check_url(url or os.environ.get(_ENV_URL) or default_url())
    url = url or os.environ.get(_ENV_URL) or default_url()
    if credentials is None and scheme in _NETWORK:
        credentials = load_credentials(credentials_file)
    if connection_factory is None:
        from surrealdb import Surreal

        connection_factory = Surreal
    path_ = _embedded_path(url) if scheme in _EMBEDDED else None
    if path_ is not None:
        path_.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    result = LoadResult()
    conn = None

    def connect():
        c = connection_factory(url)
        if hasattr(c, "connect"):
            c.connect()
        if credentials is not None and scheme in _NETWORK:
            c.signin(credentials.signin_vars())
        c.use(namespace, database)
        return c

    try:
        for table, rows in read_spill(path):
            for i in range(0, len(rows), batch_size):
                chunk = rows[i : i + batch_size]
                for attempt in range(max_attempts):
                    try:
                        if conn is None:
                            conn = connect()
                        out = conn.query(f"INSERT IGNORE INTO {table} $rows RETURN id", {"rows": chunk})
                        break
                    except Exception as exc:
                        if conn is not None and scheme in _NETWORK:
                            SurrealSink._close_conn(conn)
                            conn = None
                        if attempt + 1 == max_attempts:
                            raise RuntimeError(
                                f"loading {path} into {table} failed after {max_attempts} attempts "
                                f"({result.loaded} records loaded so far; loading again is safe): {type(exc).__name__}: {exc}"
                            ) from exc
                        result.retried += 1
                        time.sleep(min(backoff * 2**attempt, backoff_max))
                result.loaded += len(chunk)
                result.inserted += len(out) if isinstance(out, list) else 0
                result.batches += 1
    finally:
        if conn is not None:
            SurrealSink._close_conn(conn)
    return result


# ---------------------------------------------------------------------------
# CLI: ctas7-intel surreal-load SPILL
# ---------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``ctas7-intel surreal-load``."""
    parser.add_argument("spill", nargs="+", type=Path, help="spill file(s) written by the SurrealDB sink (JSONL)")
    parser.add_argument(
        "--url",
        default=None,
        help="target database: surrealkv://PATH, mem:// or ws://HOST:PORT "
        f"(default ${_ENV_URL} or {default_url()}); server credentials come from "
        f"${_ENV_USER}/${_ENV_PASS} or ${_ENV_CREDS}, never from the command line",
    )
    parser.add_argument("--namespace", default="ctas7")
    parser.add_argument("--database", default="ctas7")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--max-attempts", type=int, default=5)


def run(args) -> int:
    """Load each spill file; print what was loaded. Returns 0, or 1 if a file failed."""
    url = args.url or os.environ.get(_ENV_URL) or default_url()
    status = 0
    for path in args.spill:
        try:
            res = load_spill(
                path,
                url,
                namespace=args.namespace,
                database=args.database,
                batch_size=args.batch_size,
                max_attempts=args.max_attempts,
            )
        except (ValueError, RuntimeError) as exc:
            print(f"surreal-load: {path}: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{path}: loaded {res.loaded} records ({res.inserted} new, {res.already_present} already present) into {url}")
    return status
