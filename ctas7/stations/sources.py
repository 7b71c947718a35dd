"""Event sources: one interface, several kinds of input.

A source turns some input into ``EVENT_DTYPE`` batches. ``poll(max_records)``
never blocks for long: it returns what is ready (possibly an empty batch).
Raw records are parsed, classified and hashed by TETH
(:func:`ctas7.stages.teth.parse_records`) and stamped with the station id and
a per-station sequence number. Bad input never stops a source: a malformed
line, a bad encoding, an unknown station, an oversized datagram or invalid
XML goes to the :class:`~ctas7.stations.deadletter.DeadLetter` with its
position and reason, and is counted.

Third parties implement :class:`Source` (or anything with ``name``,
``poll``, ``close``, ``produced`` and ``dead_letter``).

>>> import numpy as np
>>> src = SyntheticSource(n_stations=4, rate=1_000_000, seed=1)
>>> batch = src.poll(1000)
>>> batch.shape, int(batch["station"].max()) < 4
((1000,), True)
"""

from __future__ import annotations

import csv
import json
import os
import socket
import time
import urllib.request
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ctas7.events import empty
from ctas7.stations.deadletter import DeadLetter

__all__ = [
    "SourceLike",
    "Source",
    "SyntheticSource",
    "FileTailSource",
    "FilePosition",
    "FeedSource",
    "UdpSource",
    "open_source",
]

MAX_LINE_BYTES = 65_536
MAX_DATAGRAM_BYTES = 8_192
MAX_FEED_BYTES = 8 << 20


def _wall_ns() -> int:
    return time.time_ns()


@runtime_checkable
class SourceLike(Protocol):
    name: str
    produced: int
    dead_letter: DeadLetter

    def poll(self, max_records: int = 65_536) -> np.ndarray: ...

    def close(self) -> None: ...


class Source:
    """Base class: parse raw records through TETH, number them, dead-letter the bad ones.

    Parameters
    ----------
    station : int
        Station id stamped on every event.
    node : int, optional
        Meter node of every event (defaults to the station).
    dead_letter : DeadLetter or path, optional
        Where rejected input goes (counts only when ``None``).
    stations : set of int, optional
        Known station ids: a record naming another ``station`` is rejected.
    kinds : KindTable, optional
        TETH classification table.
    """

    name = "source"

    def __init__(self, station: int = 0, node=None, dead_letter=None, stations=None, kinds=None):
        if not 0 <= int(station) <= 0xFFFF:
            raise ValueError(f"station must lie in [0, 65535], got {station}")
        self.station = int(station)
        self.node = node
        self.stations = None if stations is None else frozenset(int(s) for s in stations)
        self.kinds = kinds
        self.dead_letter = dead_letter if isinstance(dead_letter, DeadLetter) else DeadLetter(dead_letter)
        self.produced = 0
        self._seq = 0

    def _parse(self, items) -> np.ndarray:
        """``items``: list of (position, record, ts or None). Returns the accepted events."""
        from ctas7.stages.teth import parse_records

        records, ts, positions = [], [], []
        now = _wall_ns()
        for pos, rec, t in items:
            if self.stations is not None and isinstance(rec, dict) and "station" in rec:
                st = rec["station"]
                if not isinstance(st, int) or st not in self.stations:
                    self.dead_letter.add(self.name, pos, "unknown station", json.dumps(rec, default=str))
                    continue
            records.append(rec)
            ts.append(now if t is None else t)
            positions.append(pos)
        if not records:
            return empty(0)

        def on_error(i, rec, exc):
            raw = rec if isinstance(rec, (bytes, str)) else json.dumps(rec, default=str)
            self.dead_letter.add(self.name, positions[i], str(exc), raw)

        ev = parse_records(
            records, ts=np.asarray(ts, dtype=np.int64), station=self.station, node=self.node,
            seq_start=self._seq, kinds=self.kinds, on_error=on_error,
        )
        self._seq += ev.shape[0]
        self.produced += ev.shape[0]
        return ev

    def poll(self, max_records: int = 65_536) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement poll(max_records)")

    def close(self) -> None:
        self.dead_letter.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------
# Synthetic
# ---------------------------------------------------------------------------


class SyntheticSource(Source):
    """A seeded synthetic stream for ``n_stations`` stations at ``rate`` events/s of event time.

    Event time advances by ``1/rate`` per event; station, kind and ``sch`` are
    drawn uniformly, and per-station sequence numbers are exact. With a
    ``scenario`` (a name from :data:`ctas7.sim.scenarios.SCENARIOS`), the
    scenario's events are replayed instead, over and over, shifted in time.
    """

    name = "synthetic"

    def __init__(self, n_stations: int = 247, rate: float = 5e6, seed: int = 0, scenario: str | None = None,
                 first_station: int = 0, n_kinds: int = 8, dead_letter=None):
        super().__init__(station=first_station, dead_letter=dead_letter)
        if n_stations < 1 or first_station + n_stations > 0x10000:
            raise ValueError(f"n_stations={n_stations} from {first_station} does not fit 16-bit station ids")
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.n_stations = n_stations
        self.rate = rate
        self.seed = seed
        self.scenario = scenario
        self.first_station = first_station
        self.n_kinds = n_kinds
        self._rng = np.random.default_rng(seed)
        self._t = 0
        self._seqs = np.zeros(n_stations, dtype=np.int64)
        self._loop = None
        if scenario is not None:
            from ctas7.sim.scenarios import get

            run = get(scenario).generate(seed)
            self._loop = run.events
            self._loop_span = int(run.n_ticks) * int(run.tick_ns)
            self._loop_pos = 0
            self._loop_round = 0

    def poll(self, max_records: int = 65_536) -> np.ndarray:
        n = int(max_records)
        if self._loop is not None:
            return self._poll_scenario(n)
        out = empty(n)
        step = 1e9 / self.rate
        out["ts"] = self._t + (np.arange(1, n + 1) * step).astype(np.int64)
        self._t = int(out["ts"][-1]) if n else self._t
        st = self._rng.integers(0, self.n_stations, size=n)
        out["station"] = st + self.first_station
        out["node"] = out["station"]
        out["kind"] = self._rng.integers(0, self.n_kinds, size=n)
        out["value"] = 1.0
        out["sch"] = self._rng.integers(0, 2**63, size=n, dtype=np.uint64)
        counts = np.bincount(st, minlength=self.n_stations)
        # seq: running count per station, in stream order.
        order = np.argsort(st, kind="stable")
        starts = np.cumsum(counts) - counts
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n) - np.repeat(starts, counts)
        out["seq"] = (self._seqs[st] + rank).astype(np.uint32)
        self._seqs += counts
        self.produced += n
        return out

    def _poll_scenario(self, n: int) -> np.ndarray:
        loop = self._loop
        take = min(n, loop.shape[0] - self._loop_pos)
        out = loop[self._loop_pos : self._loop_pos + take].copy()
        out["ts"] += self._loop_round * self._loop_span
        st = out["station"].astype(np.int64) % self.n_stations
        out["station"] = st + self.first_station
        counts = np.bincount(st, minlength=self.n_stations)
        order = np.argsort(st, kind="stable")
        starts = np.cumsum(counts) - counts
        rank = np.empty(take, dtype=np.int64)
        rank[order] = np.arange(take) - np.repeat(starts, counts)
        out["seq"] = (self._seqs[st] + rank).astype(np.uint32)
        self._seqs += counts
        self._loop_pos += take
        if self._loop_pos >= loop.shape[0]:
            self._loop_pos = 0
            self._loop_round += 1
        self.produced += take
        return out


# ---------------------------------------------------------------------------
# File tailing
# ---------------------------------------------------------------------------


_HEAD_BYTES = 1024


def _head(fd: int, n: int) -> int:
    import zlib

    return zlib.crc32(os.pread(fd, n, 0)) if n else 0


@dataclass(frozen=True)
class FilePosition:
    """Where a :class:`FileTailSource` has got to: enough to resume exactly, across rotation.

    Parameters
    ----------
    device, inode : int
        The file being read (``os.stat``): after a rotation the path names
        another file, and this one is found again by its inode.
    offset : int
        Byte offset of the first byte not yet consumed (a partial last line
        is not consumed: it is read again on resume).
    line : int
        Lines consumed in that file (dead-letter positions continue from it).
    seq : int
        Events the source has produced (sequence numbers continue from it).
    skipping : bool
        Inside a line longer than ``max_line_bytes`` whose start was already
        dead-lettered (the rest of it is skipped, not dead-lettered again).
    head, head_len : int
        CRC-32 of the file's first ``head_len`` bytes (up to 1,024, never
        past ``offset``): a file deleted while the source was down may leave
        its inode number to a new file, which this tells apart.

    Examples
    --------
    >>> p = FilePosition(device=1, inode=2, offset=30, line=3, seq=2)
    >>> FilePosition.from_dict(p.to_dict()) == p
    True
    """

    device: int
    inode: int
    offset: int
    line: int
    seq: int = 0
    skipping: bool = False
    head: int = 0
    head_len: int = 0

    def to_dict(self) -> dict:
        """A JSON-ready dict (:meth:`from_dict` reads it back)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FilePosition":
        """The inverse of :meth:`to_dict`; a clear error on anything else."""
        if isinstance(d, cls):
            return d
        if not isinstance(d, dict):
            raise TypeError(f"a file position is a dict or FilePosition, got {type(d).__name__}")
        try:
            p = cls(device=int(d["device"]), inode=int(d["inode"]), offset=int(d["offset"]), line=int(d["line"]),
                    seq=int(d.get("seq", 0)), skipping=bool(d.get("skipping", False)), head=int(d.get("head", 0)),
                    head_len=int(d.get("head_len", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a file position: {d!r} ({exc})") from None
        if min(p.offset, p.line, p.seq, p.head_len) < 0 or p.head_len > min(p.offset, _HEAD_BYTES):
            raise ValueError(f"file position fields must be >= 0: {d!r}")
        return p


class FileTailSource(Source):
    """Follow a JSONL or CSV file as it grows, across rotation, resumable from a :class:`FilePosition`.

    Complete lines are parsed; a partial last line waits for its newline.
    Rotation (a new inode at the path, or the file shrinking) is detected on
    each poll: the rest of the old file is read first, then the new one from
    its start. Each JSON object (or CSV row, keyed by the header) is one raw
    record; an integer ``ts`` field is used as event time, otherwise the
    arrival time. Lines longer than ``max_line_bytes``, bad UTF-8, invalid
    JSON, non-object JSON and CSV rows of the wrong width are dead-lettered
    with the file and line number.

    **Restart.** :attr:`position` is what the polls so far have consumed;
    a new source given it as ``resume`` returns exactly the lines after it,
    none twice. If the path names another file by then (it was rotated),
    the old file is looked for by its inode in the same directory (where
    ``mv log log.1`` leaves it), its rest is read, then the new file from
    its start. If the old file is gone, that is dead-lettered (reason
    ``"file rotated away before resume"``) and the new file is read from
    its start; if the file shrank below the offset (truncated in place), it
    is read from its start.

    Parameters
    ----------
    path : path-like
    fmt : {"jsonl", "csv"}, optional
        By default from the suffix (``.csv``: CSV, anything else JSONL).
    from_start : bool
        Without ``resume``: read what the file holds already (default), or
        only what is appended from now on.
    resume : FilePosition or dict, optional
        Continue after this position (from :attr:`position`).
    max_line_bytes : int
    **kw
        :class:`Source` arguments (``station``, ``dead_letter``, ...).

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "intel.jsonl")
    >>> _ = open(path, "w").write('{"ts": 1, "title": "port scan"}\\n{"ts": 2, "title": "exfil"}\\n')
    >>> src = FileTailSource(path)
    >>> src.poll(1)["ts"].tolist()
    [1]
    >>> pos = src.position
    >>> src.close()
    >>> os.rename(path, path + ".1")  # rotated before the restart
    >>> _ = open(path, "w").write('{"ts": 3, "title": "beacon"}\\n')
    >>> again = FileTailSource(path, resume=pos)
    >>> again.poll()["ts"].tolist(), again.poll()["ts"].tolist()
    ([2], [3])
    >>> again.close()
    """

    name = "file"

    def __init__(self, path, *, fmt: str | None = None, from_start: bool = True, resume=None,
                 max_line_bytes: int = MAX_LINE_BYTES, **kw):
        super().__init__(**kw)
        self.path = Path(path)
        fmt = fmt or ("csv" if self.path.suffix.lower() == ".csv" else "jsonl")
        if fmt not in ("csv", "jsonl"):
            raise ValueError(f"fmt must be 'csv' or 'jsonl', got {fmt!r}")
        self.fmt = fmt
        self.from_start = from_start
        self.max_line_bytes = max_line_bytes
        self.name = f"file:{self.path}"
        self._resume = None if resume is None else FilePosition.from_dict(resume)
        if self._resume is not None:
            self._seq = self._resume.seq
        self._f = None
        self._buf = b""
        self._line = 0
        self._skipping = False
        self._header = None
        self._head = (0, 0)  # (crc32, length) of the current file's first bytes, for position

    @property
    def position(self) -> FilePosition | None:
        """What the polls so far have consumed (``None`` before the file was first opened).

        Take it between polls; pass it as ``resume`` to a new source to go on
        from there (after a restart, a crash or a rotation in between).
        """
        if self._f is None:
            return self._resume
        fd = self._f.fileno()
        st = os.fstat(fd)
        offset = self._f.tell() - len(self._buf)
        n = min(offset, _HEAD_BYTES)
        if self._head[1] != n:
            self._head = (_head(fd, n), n)
        return FilePosition(device=st.st_dev, inode=st.st_ino, offset=offset, line=self._line, seq=self._seq,
                            skipping=self._skipping, head=self._head[0], head_len=n)

    def _open(self, at_end: bool) -> bool:
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return False
        if at_end:
            f.seek(0, os.SEEK_END)
        self._f, self._buf, self._line, self._skipping, self._header = f, b"", 0, False, None
        self._head = (0, 0)
        return True

    def _find_rotated(self, pos: FilePosition):
        """The file of ``pos`` under another name in the path's directory (where rotation moves it), or None."""
        try:
            entries = list(os.scandir(self.path.parent))
        except OSError:
            return None
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_ino == pos.inode and st.st_dev == pos.device and e.is_file(follow_symlinks=False):
                return e.path
        return None

    def _open_resume(self) -> bool:
        """Open where :attr:`_resume` points (first poll of a resumed source)."""
        pos = self._resume
        try:
            st = os.stat(self.path)
            here = (st.st_dev, st.st_ino) == (pos.device, pos.inode)
        except FileNotFoundError:
            here = False
        where = str(self.path) if here else self._find_rotated(pos)
        f = None
        if where is not None:
            f = open(where, "rb")
            size = os.fstat(f.fileno()).st_size
            if size >= pos.head_len and _head(f.fileno(), pos.head_len) != pos.head:
                f.close()  # the inode number of a deleted file, reused by another: not ours
                f = None
        if f is None:
            if not self._open(at_end=False):
                return False  # neither file exists (yet): try again at the next poll
            self.dead_letter.add(self.name, pos.line + 1, "file rotated away before resume",
                                 json.dumps({"inode": pos.inode, "offset": pos.offset}))
            self._resume = None
            return True
        self._f, self._buf, self._line, self._skipping, self._header = f, b"", 0, False, None
        self._head = (0, 0)
        self._resume = None
        if size < pos.offset:
            return True  # truncated in place since: read it from the start, like a rotation
        if self.fmt == "csv" and pos.offset > 0:
            # The header is the file's first line: read it again (no line of it is counted or emitted twice).
            self._decode(f.readline().rstrip(b"\r\n"))
        f.seek(pos.offset)
        self._line, self._skipping = pos.line, pos.skipping
        return True

    def _rotated(self) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        own = os.fstat(self._f.fileno())
        return st.st_ino != own.st_ino or st.st_size < self._f.tell()

    def poll(self, max_records: int = 65_536) -> np.ndarray:
        if self._f is None:
            opened = self._open_resume() if self._resume is not None else self._open(at_end=not self.from_start)
            if not opened:
                return empty(0)
        items = self._read_lines(max_records)
        if not items and self._rotated():
            self._f.close()
            self._open(at_end=False)
            items = self._read_lines(max_records)
        return self._parse(items)

    def _read_lines(self, max_records: int) -> list:
        items = []
        while len(items) < max_records:
            nl = self._buf.find(b"\n")
            if nl < 0:
                chunk = self._f.read(1 << 16)
                if not chunk:
                    break
                self._buf += chunk
                if b"\n" not in self._buf and len(self._buf) > self.max_line_bytes:
                    if not self._skipping:
                        self.dead_letter.add(self.name, self._line + 1, "line too long", self._buf)
                        self._skipping = True
                    self._buf = b""
                continue
            raw, self._buf = self._buf[:nl], self._buf[nl + 1 :]
            self._line += 1
            if self._skipping:
                self._skipping = False
                continue
            if len(raw) > self.max_line_bytes:
                self.dead_letter.add(self.name, self._line, "line too long", raw)
                continue
            item = self._decode(raw)
            if item is not None:
                items.append(item)
        return items

    def _decode(self, raw: bytes):
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            self.dead_letter.add(self.name, self._line, f"bad encoding: {exc.reason}", raw)
            return None
        if not text:
            return None
        if self.fmt == "jsonl":
            try:
                rec = json.loads(text)
            except json.JSONDecodeError as exc:
                self.dead_letter.add(self.name, self._line, f"invalid JSON: {exc.msg}", raw)
                return None
            if not isinstance(rec, dict):
                self.dead_letter.add(self.name, self._line, "JSON line is not an object", raw)
                return None
        else:
            row = next(csv.reader([text]))
            if self._header is None:
                self._header = [h.strip() for h in row]
                return None
            if len(row) != len(self._header):
                self.dead_letter.add(self.name, self._line, f"expected {len(self._header)} fields, got {len(row)}", raw)
                return None
            rec = dict(zip(self._header, row))
            for key in ("ts", "station"):
                if key in rec:
                    try:
                        rec[key] = int(rec[key])
                    except ValueError:
                        self.dead_letter.add(self.name, self._line, f"field {key!r} is not an integer", raw)
                        return None
        t = rec.get("ts")
        t = t if isinstance(t, int) and not isinstance(t, bool) and 0 <= t < 2**63 else None
        return (self._line, rec, t)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        super().close()


# ---------------------------------------------------------------------------
# RSS / Atom
# ---------------------------------------------------------------------------


def _check_xml(data: bytes) -> None:
    """Refuse DTDs and entities (billion laughs, XXE) and malformed XML, before feedparser sees it."""
    from defusedxml import ElementTree as DET

    DET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)


class FeedSource(Source):
    """RSS/Atom entries from a file, a directory of feeds, or an http(s) URL.

    Each poll re-reads inputs that changed (files by mtime and size, URLs at
    most every ``interval`` seconds) and emits only entries not seen before
    (by id, else link, else title). Feeds larger than ``max_bytes``, with a
    DTD or entities, or not well-formed are dead-lettered; feedparser only
    ever sees pre-checked bytes.
    """

    name = "feed"

    def __init__(self, location, *, interval: float = 60.0, max_bytes: int = MAX_FEED_BYTES,
                 timeout: float = 10.0, max_seen: int = 100_000, **kw):
        super().__init__(**kw)
        self.location = str(location)
        self.interval = interval
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.max_seen = max_seen
        self.name = f"feed:{self.location}"
        self._is_url = self.location.startswith(("http://", "https://"))
        self._stamp: dict[str, tuple] = {}
        self._seen: OrderedDict = OrderedDict()
        self._pending: list = []

    def _inputs(self):
        if self._is_url:
            return [self.location]
        p = Path(self.location)
        if p.is_dir():
            return sorted(str(q) for q in p.iterdir() if q.suffix.lower() in (".xml", ".rss", ".atom") and q.is_file())
        return [str(p)]

    def _fetch(self, where: str):
        now = time.monotonic()
        if self._is_url:
            last = self._stamp.get(where)
            if last is not None and now - last[0] < self.interval:
                return None
            self._stamp[where] = (now,)
            with urllib.request.urlopen(where, timeout=self.timeout) as resp:
                data = resp.read(self.max_bytes + 1)
        else:
            try:
                st = os.stat(where)
            except FileNotFoundError:
                return None
            stamp = (st.st_mtime_ns, st.st_size)
            if self._stamp.get(where) == stamp:
                return None
            self._stamp[where] = stamp
            if st.st_size > self.max_bytes:
                self.dead_letter.add(self.name, where, f"feed larger than {self.max_bytes} bytes", b"")
                return None
            with open(where, "rb") as f:
                data = f.read(self.max_bytes + 1)
        if len(data) > self.max_bytes:
            self.dead_letter.add(self.name, where, f"feed larger than {self.max_bytes} bytes", data[:256])
            return None
        return data

    def _entries(self, where: str, data: bytes) -> list:
        import feedparser

        try:
            _check_xml(data)
        except Exception as exc:  # defusedxml raises ParseError or its own *Forbidden errors
            self.dead_letter.add(self.name, where, f"invalid XML: {type(exc).__name__}: {exc}", data[:256])
            return []
        parsed = feedparser.parse(data)
        items = []
        for i, e in enumerate(parsed.entries):
            key = e.get("id") or e.get("link") or e.get("title")
            if key is None:
                self.dead_letter.add(self.name, f"{where}#{i}", "entry has no id, link or title", str(dict(e)))
                continue
            if key in self._seen:
                continue
            self._seen[key] = None
            if len(self._seen) > self.max_seen:
                self._seen.popitem(last=False)
            rec = {k: e.get(k) for k in ("title", "summary", "link", "id") if e.get(k) is not None}
            t = e.get("published_parsed") or e.get("updated_parsed")
            ts = int(time.mktime(t) - time.timezone) * 1_000_000_000 if t else None
            items.append((f"{where}#{i}", rec, ts))
        return items

    def poll(self, max_records: int = 65_536) -> np.ndarray:
        if not self._pending:
            for where in self._inputs():
                try:
                    data = self._fetch(where)
                except OSError as exc:
                    self.dead_letter.add(self.name, where, f"cannot read feed: {exc}", b"")
                    continue
                if data is not None:
                    self._pending.extend(self._entries(where, data))
        items, self._pending = self._pending[:max_records], self._pending[max_records:]
        return self._parse(items)


# ---------------------------------------------------------------------------
# UDP
# ---------------------------------------------------------------------------


class UdpSource(Source):
    """Datagrams on a UDP port (127.0.0.1 unless told otherwise), one raw record each.

    A datagram larger than ``max_datagram`` bytes is dead-lettered (it is
    received into a buffer one byte larger, so truncation is detected).
    """

    name = "udp"

    def __init__(self, port: int = 0, host: str = "127.0.0.1", *, max_datagram: int = MAX_DATAGRAM_BYTES, **kw):
        super().__init__(**kw)
        self.host = host
        self.max_datagram = max_datagram
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self._sock.bind((host, port))
        self._sock.setblocking(False)
        self.port = self._sock.getsockname()[1]
        self.name = f"udp:{host}:{self.port}"
        self._n = 0

    def poll(self, max_records: int = 65_536) -> np.ndarray:
        items = []
        while len(items) < max_records:
            try:
                data, addr = self._sock.recvfrom(self.max_datagram + 1)
            except BlockingIOError:
                break
            self._n += 1
            if len(data) > self.max_datagram:
                self.dead_letter.add(self.name, self._n, f"datagram larger than {self.max_datagram} bytes", data[:256])
                continue
            items.append((self._n, data, None))
        return self._parse(items)

    def close(self) -> None:
        self._sock.close()
        super().close()


def open_source(spec: str, **kw) -> Source:
    """A source from a ``--source`` spec: ``synthetic``, ``file:PATH``, ``rss:PATH_OR_URL`` or ``udp:PORT``."""
    kind, _, arg = spec.partition(":")
    if kind == "synthetic":
        return SyntheticSource(scenario=arg or None, **kw)
    if kind == "file" and arg:
        return FileTailSource(arg, **kw)
    if kind == "rss" and arg:
        return FeedSource(arg, **kw)
    if kind == "udp" and arg:
        return UdpSource(int(arg), **kw)
    raise ValueError(f"unknown source {spec!r}: expected synthetic, file:PATH, rss:PATH_OR_URL or udp:PORT")
