"""TETH: parse-and-hash, temporal patterns over event kinds, L* learning, beaconing.

Four parts, one stage:

* **Parse and hash.** :func:`parse_records` turns raw records (JSON/CSV row
  dicts, RSS/Atom entry dicts, text lines, datagram bytes) into an
  ``EVENT_DTYPE`` batch: each record is normalised to canonical content
  (:func:`normalise`), classified to a ``kind`` by a :class:`KindTable`, and
  stamped with ``sch`` = xxHash3-64 of the canonical bytes, so identical intel
  from different stations shares an ``sch``.
* **Patterns.** A small CEP language over kinds (below) compiled by
  :func:`compile_pattern` into a minimal DFA transition table.
* **Learned patterns.** :func:`learn_pattern` runs Angluin's L* (AALpy) with
  a state-bounded W-method equivalence oracle and validates the learned DFA
  on held-out sequences before it is used.
* **Periodicity.** Regular inter-arrival times of one ``sch`` (beaconing).

The :class:`Teth` stage matches every pattern per key (node or station) over
whole batches in Cython with the GIL released, writes matches into
``frame.matches`` (:data:`ctas7.records.MATCH_DTYPE`) and beacon detections
into ``frame.extras["beacons"]`` (:data:`BEACON_DTYPE`).

Pattern language
----------------
A pattern is a chain of *elements* joined by *connectors*, optionally followed
by ``within <duration>``::

    pattern   := alt [ "within" DURATION ]
    alt       := chain ( "|" chain )*
    chain     := element ( connector element )*
    connector := "->" | "next"            strict: the key's next event
               | "~>" | "followed_by"     relaxed: other events may come between
    element   := atom [ repeat ] [ "not" negset ]
    atom      := KIND | "any" | "(" alt ")"
    repeat    := "{" m [ "," [ n ] ] "}"  copies joined strictly   (A{2,4}, A{3}, A{2,})
               | "~{" m [ "," [ n ] ] "}" copies joined relaxed
               | "?" | "+"                 {0,1} and {1,}
    negset    := KIND | "(" KIND ( "|" KIND )* ")"
    KIND      := a name from the kind table, or a number (decimal or 0x..)
    DURATION  := number with unit ns, us, ms, s, m, h or d (e.g. 500ms, 1.5s, 5m)

Examples: ``"recon ~> exploit ~> exfil within 10m"`` (a kill chain inside ten
minutes), ``"exploit -> intrusion"`` (intrusion is the very next event),
``"recon ~> exfil not exploit"`` (exfil after recon with no exploit between),
``"c2{3}"`` (three c2 events in a row), ``"recon ~> exploit{1,3} -> exfil"``.

``not`` restricts the relaxed gap *before* its element, so it needs ``~>``
in front. Kinds are symbols: the named kinds get one column each and every
other non-control kind shares an "other" column, so ``a -> b`` is broken by an
unrelated event between them, while ``a ~> b`` is not. With
``compile_pattern(..., alphabet=[...])`` only the named kinds and the listed
ones take part; all other kinds are ignored (transparent). Control kinds
(``>= 0xFF00``: heartbeats, gaps) are always ignored.

Matching semantics
------------------
Matching searches anywhere in each key's stream (the DFA is built for
``.* pattern``). When a key's DFA reaches an accepting state, one match is
emitted for the completing event (its ``ts`` and ``node``, and the pattern
index) and that key's state resets to the start: matches never overlap, and
each ends at the earliest event that completes the pattern since the last
reset. ``within T`` is measured from the event that took the key out of the
start state: an event more than ``T`` after it first resets the key, then is
processed from the start state. This is conservative: a match whose first
event came *after* an earlier, expired partial match of the same run can be
missed (the DFA does not keep one start time per overlapping partial match).

Examples
--------
>>> from ctas7.events import make_events
>>> from ctas7.stage import Frame
>>> teth = Teth(patterns=["recon ~> exploit -> exfil within 1s"], beacons=False)
>>> kinds = [DEFAULT_KINDS.id(k) for k in ("recon", "media", "exploit", "exfil")]
>>> frame = teth.process(Frame(make_events(ts=[0, 10, 20, 30], node=7, kind=kinds)))
>>> frame.matches.tolist()
[(30, 7, 0)]
>>> ev = parse_records([{"title": "Port SCAN seen", "station": 1}, {"title": "port scan  seen", "station": 2}],
...                    ts=[5, 6])
>>> ev["kind"].tolist() == [DEFAULT_KINDS.id("recon")] * 2, bool(ev["sch"][0] == ev["sch"][1])
(True, True)
"""

from __future__ import annotations

import html
import json
import math
import re
import unicodedata
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import xxhash

from ctas7._core._teth import BEACON_DTYPE as _BEACON_DTYPE
from ctas7._core._teth import DOOR_DTYPE, SLOT_DTYPE, BeaconTable, PatternBank
from ctas7.events import KIND_CONTROL_BASE, make_events, validate_batch
from ctas7.records import MATCH_DTYPE
from ctas7.stage import Frame, Stage

__all__ = [
    "KindRule",
    "KindTable",
    "DEFAULT_KINDS",
    "RecordError",
    "normalise",
    "canonical_bytes",
    "content_hash",
    "classify",
    "parse_records",
    "PatternError",
    "CompiledPattern",
    "compile_pattern",
    "accepts",
    "reference_match",
    "LearningError",
    "ValidationReport",
    "LearnedPattern",
    "learn_pattern",
    "BEACON_DTYPE",
    "SLOT_DTYPE",
    "DOOR_DTYPE",
    "reference_beacons",
    "DEFAULT_PATTERNS",
    "Teth",
]

# ---------------------------------------------------------------------------
# Kinds
# ---------------------------------------------------------------------------

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_RESERVED = frozenset({"next", "followed_by", "not", "within", "any"})


@dataclass(frozen=True)
class KindRule:
    """One kind: its id, its name, and the keywords that classify a record to it.

    A keyword matches at the start of a word of the normalised text, so
    ``"exfiltrat"`` matches "exfiltration" and "exfiltrated".
    """

    kind: int
    name: str
    keywords: tuple = ()


@dataclass(frozen=True)
class KindTable:
    """Kind ids, their names, and the keyword rules that classify records.

    Rules are tried in order; the first rule with a keyword in the record's
    normalised text gives the kind; otherwise ``default``.

    Parameters
    ----------
    rules : tuple of KindRule
        Unique ids in ``[0, 0xFF00)`` and unique identifier-like names (not a
        pattern keyword: next, followed_by, not, within, any).
    default : int
        Kind of a record that no rule matches; must be one of the ids.

    Examples
    --------
    >>> t = KindTable((KindRule(0, "noise"), KindRule(1, "scan", ("scan", "probe"))))
    >>> t.classify("probes of the dmz"), t.classify("weather"), t.id("scan"), t.name(1)
    (1, 0, 1, 'scan')
    """

    rules: tuple
    default: int = 0

    def __post_init__(self):
        rules = tuple(self.rules)
        object.__setattr__(self, "rules", rules)
        ids, names = set(), set()
        for r in rules:
            if not isinstance(r, KindRule):
                raise TypeError(f"rules must be KindRule instances, got {type(r).__name__}")
            if not isinstance(r.kind, (int, np.integer)) or not 0 <= int(r.kind) < KIND_CONTROL_BASE:
                raise ValueError(f"kind id {r.kind!r} of {r.name!r} must be an int in [0, {KIND_CONTROL_BASE:#x})")
            if not isinstance(r.name, str) or not _NAME_RE.match(r.name) or r.name in _RESERVED:
                raise ValueError(f"kind name {r.name!r} must be an identifier and not one of {sorted(_RESERVED)}")
            if r.kind in ids or r.name in names:
                raise ValueError(f"duplicate kind id or name: {r.kind} {r.name!r}")
            if isinstance(r.keywords, str):
                raise TypeError(f"keywords of {r.name!r} must be a sequence of strings, not one string")
            ids.add(int(r.kind))
            names.add(r.name)
        if self.default not in ids:
            raise ValueError(f"default kind {self.default} is not in the table")

    @cached_property
    def _by_name(self) -> dict:
        return {r.name: int(r.kind) for r in self.rules}

    @cached_property
    def _by_id(self) -> dict:
        return {int(r.kind): r.name for r in self.rules}

    @cached_property
    def _regexes(self) -> list:
        out = []
        for r in self.rules:
            words = [_norm_text(str(k), markup=False) for k in r.keywords]
            words = [w for w in words if w]
            if words:
                alt = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
                out.append((int(r.kind), re.compile(rf"(?<!\w)(?:{alt})")))
        return out

    @property
    def names(self) -> tuple:
        """Kind names in table order."""
        return tuple(r.name for r in self.rules)

    def id(self, kind) -> int:
        """The id of a kind given by name or number (numbers pass through if valid)."""
        if isinstance(kind, str):
            try:
                return self._by_name[kind]
            except KeyError:
                raise KeyError(f"unknown kind {kind!r}; known: {', '.join(self.names)}") from None
        k = int(kind)
        if not 0 <= k < KIND_CONTROL_BASE:
            raise ValueError(f"kind {k} outside [0, {KIND_CONTROL_BASE:#x})")
        return k

    def name(self, kind: int) -> str:
        """The name of a kind id (its decimal text if the table does not name it)."""
        return self._by_id.get(int(kind), str(int(kind)))

    def classify(self, text: str) -> int:
        """Kind of an already-normalised text (first matching rule, else ``default``)."""
        for kind, rx in self._regexes:
            if rx.search(text):
                return kind
        return self.default


#: The built-in kind table: 8 kinds, ids 0..7 (the synthetic stream's range).
DEFAULT_KINDS = KindTable(
    (
        KindRule(0, "other"),
        KindRule(1, "recon", ("recon", "scan", "probe", "probing", "enumerat", "port sweep", "fingerprint")),
        KindRule(2, "exploit", ("exploit", "cve-", "vulnerab", "rce", "remote code execution", "injection",
                                "zero-day", "zero day", "overflow")),
        KindRule(3, "intrusion", ("breach", "compromis", "backdoor", "intrusion", "unauthori", "ransomware",
                                  "malware", "lateral movement")),
        KindRule(4, "exfil", ("exfil", "data leak", "leaked", "stolen data", "data dump", "dumped")),
        KindRule(5, "c2", ("c2", "command and control", "command-and-control", "beacon", "callback", "botnet")),
        KindRule(6, "physical", ("explosion", "blackout", "power outage", "sabotage", "drone", "evacuat",
                                 "derail", "outage")),
        KindRule(7, "media", ("disinformation", "propaganda", "viral", "deepfake", "trending", "hashtag")),
    ),
    default=0,
)

# ---------------------------------------------------------------------------
# Parse and hash
# ---------------------------------------------------------------------------


class RecordError(ValueError):
    """A raw record that cannot be normalised (too big, undecodable, bad type)."""


#: Field names (case-folded) that describe *how* a record arrived, not what it
#: says; they are left out of the canonical content.
SOURCE_FIELDS = frozenset(
    {
        "station", "source", "feed", "feed_url", "received", "received_at", "ingested", "ingest_ns",
        "ts", "time", "timestamp", "published", "updated", "created", "created_at", "date", "pubdate",
        "seq", "sequence", "id", "guid", "guidislink", "link", "links", "node", "kind", "value",
    }
)
#: Aliases folded onto the two text fields, so feeds and rows agree.
FIELD_ALIASES = {
    "headline": "title", "subject": "title", "name": "title",
    "summary": "body", "description": "body", "content": "body", "text": "body",
    "message": "body", "msg": "body", "details": "body",
}
_TEXT_FIELDS = frozenset({"title", "body"})
_TAG_RE = re.compile(r"<[^>]*>")
_WS_RE = re.compile(r"\s+")
_MAX_DEPTH = 8


def _norm_text(s: str, markup: bool) -> str:
    if markup:
        s = html.unescape(_TAG_RE.sub(" ", s))
    s = unicodedata.normalize("NFKC", s).casefold()
    return _WS_RE.sub(" ", s).strip()


def _norm_value(v, text: bool, limit: int, depth: int):
    if isinstance(v, str):
        if len(v) > limit:
            raise RecordError(f"field of {len(v)} characters exceeds the {limit}-byte record bound")
        return _norm_text(v, markup=text)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return str(int(f)) if f.is_integer() and abs(f) < 2**63 else repr(f)
    if v is None:
        return None
    if depth >= _MAX_DEPTH:
        raise RecordError(f"record nested deeper than {_MAX_DEPTH} levels")
    if isinstance(v, Mapping):
        if text and "value" in v:  # feedparser content/summary detail: {"value": ..., "type": ...}
            return _norm_value(v["value"], True, limit, depth + 1)
        return _norm_dict(v, limit, depth + 1)
    if isinstance(v, (list, tuple)):
        items = [_norm_value(x, text, limit, depth + 1) for x in v]
        items = [x for x in items if x not in (None, "", [], {})]
        if text and all(isinstance(x, str) for x in items):
            return " ".join(items)
        return items
    raise RecordError(f"unsupported value type {type(v).__name__} in record")


def _norm_dict(d: Mapping, limit: int, depth: int) -> dict:
    out: dict = {}
    for k, v in d.items():
        if not isinstance(k, str):
            raise RecordError(f"record keys must be strings, got {type(k).__name__}")
        key = _WS_RE.sub("_", k.strip().casefold())
        key = FIELD_ALIASES.get(key, key)
        if key in SOURCE_FIELDS or key.endswith(("_detail", "_parsed")):
            continue
        val = _norm_value(v, key in _TEXT_FIELDS, limit, depth)
        if val in (None, "", [], {}):
            continue
        if key in out and out[key] != val:
            # e.g. both "summary" and "description": keep both, order-free.
            parts = sorted({json.dumps(out[key], sort_keys=True), json.dumps(val, sort_keys=True)})
            val = " ".join(json.loads(p) if isinstance(json.loads(p), str) else p for p in parts)
        out[key] = val
    return out


def normalise(record, *, max_bytes: int = 65_536) -> dict:
    """Canonical content of one raw record.

    Rules: keys are case-folded, aliases fold onto ``title``/``body``
    (:data:`FIELD_ALIASES`), delivery fields are dropped
    (:data:`SOURCE_FIELDS`, and keys ending ``_detail``/``_parsed``); text is
    NFKC-normalised, case-folded and whitespace-collapsed (markup stripped
    and entities unescaped in title/body); numbers become canonical text
    (``5``, ``5.0`` and ``"5"`` agree); empty values are dropped.

    Parameters
    ----------
    record : Mapping, str, bytes
        A JSON/CSV row or feed entry dict; a text line (a JSON object if it
        parses as one, else the body text); or datagram bytes (UTF-8).
    max_bytes : int
        Bound on the raw size and on the canonical size.

    Returns
    -------
    dict

    Raises
    ------
    RecordError
        Too large, not UTF-8, nested too deep or of an unsupported type.

    Examples
    --------
    >>> normalise({"Title": "  Port   SCAN ", "summary": "<b>seen</b> &amp; logged", "station": 4})
    {'title': 'port scan', 'body': 'seen & logged'}
    >>> normalise(b'{"headline": "Port scan", "count": 5.0}')
    {'title': 'port scan', 'count': '5'}
    """
    if isinstance(record, (bytes, bytearray, memoryview)):
        raw = bytes(record)
        if len(raw) > max_bytes:
            raise RecordError(f"record of {len(raw)} bytes exceeds the {max_bytes}-byte bound")
        try:
            record = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecordError(f"record is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    if isinstance(record, str):
        if len(record) > max_bytes:
            raise RecordError(f"record of {len(record)} characters exceeds the {max_bytes}-byte bound")
        s = record.strip()
        if s.startswith("{"):
            try:
                obj = json.loads(s)
            except json.JSONDecodeError:
                obj = None
            if isinstance(obj, dict):
                return normalise(obj, max_bytes=max_bytes)
        body = _norm_text(s, markup=False)
        return {"body": body} if body else {}
    if isinstance(record, Mapping):
        return _norm_dict(record, max_bytes, 0)
    raise RecordError(f"cannot normalise a record of type {type(record).__name__}")


def _canonical(content: dict, max_bytes: int) -> bytes:
    raw = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(raw) > max_bytes:
        raise RecordError(f"canonical record of {len(raw)} bytes exceeds the {max_bytes}-byte bound")
    return raw


def _hash(raw: bytes) -> int:
    h = xxhash.xxh3_64_intdigest(raw)
    return h or 1  # sch 0 means "not hashed"


def canonical_bytes(record, *, max_bytes: int = 65_536) -> bytes:
    """The bytes that :func:`content_hash` hashes: sorted-key compact UTF-8 JSON of :func:`normalise`.

    >>> canonical_bytes({"body": "B", "title": "A"})
    b'{"body":"b","title":"a"}'
    """
    return _canonical(normalise(record, max_bytes=max_bytes), max_bytes)


def content_hash(record, *, max_bytes: int = 65_536) -> int:
    """``sch``: xxHash3-64 of :func:`canonical_bytes` (0 is reserved, mapped to 1).

    >>> content_hash({"title": "Port scan", "station": 1}) == content_hash('{"TITLE": "port  scan"}')
    True
    """
    return _hash(canonical_bytes(record, max_bytes=max_bytes))


def _leaves(v, out: list):
    if isinstance(v, str):
        out.append(v)
    elif isinstance(v, dict):
        for k in sorted(v):
            _leaves(v[k], out)
    elif isinstance(v, list):
        for x in v:
            _leaves(x, out)


def _explicit_kind(record, kinds: KindTable):
    if isinstance(record, Mapping):
        for k in ("kind", "Kind", "KIND"):
            if k in record and record[k] not in (None, ""):
                v = record[k]
                try:
                    if isinstance(v, str) and not v.strip().isdigit():
                        return kinds.id(v.strip())
                    return kinds.id(int(v))
                except (KeyError, ValueError, TypeError) as exc:
                    raise RecordError(f"bad explicit kind {v!r}: {exc}") from None
    return None


def classify(record, kinds: KindTable | None = None, *, max_bytes: int = 65_536) -> int:
    """Kind of a raw record: its explicit ``kind`` field if any, else the keyword rules.

    The rules see the record's normalised string values (sorted-key order).

    >>> classify({"title": "Data LEAK at port authority"})
    4
    >>> classify({"title": "anything", "kind": "c2"})
    5
    """
    kinds = DEFAULT_KINDS if kinds is None else kinds
    explicit = _explicit_kind(record, kinds)
    if explicit is not None:
        return explicit
    parts: list = []
    _leaves(normalise(record, max_bytes=max_bytes), parts)
    return kinds.classify(" ".join(parts))


def parse_records(
    records: Iterable,
    *,
    ts=None,
    station=0,
    node=None,
    seq_start: int = 0,
    value: float = 1.0,
    kinds: KindTable | None = None,
    max_record_bytes: int = 65_536,
    max_records: int = 1_000_000,
    on_error: Callable[[int, Any, Exception], None] | None = None,
) -> np.ndarray:
    """Normalise, classify and hash raw records into an ``EVENT_DTYPE`` batch.

    Parameters
    ----------
    records : iterable
        Dicts (JSON/CSV rows, feed entries), text lines or datagram bytes.
    ts : int or array_like of int, optional
        Event times (ns). If omitted, every record must be a mapping with an
        integer ``ts`` field.
    station, node : int or array_like, optional
        Source station and meter node (``node`` defaults to ``station``).
    seq_start : int
        Sequence number of the first record (then +1 per accepted record).
    value : float
        Activity per record.
    kinds : KindTable, optional
        Classification table (:data:`DEFAULT_KINDS`).
    max_record_bytes, max_records : int
        Size bounds; exceeding ``max_records`` raises ValueError.
    on_error : callable, optional
        ``on_error(index, record, exc)`` is called for a bad record, which is
        then skipped (for dead-lettering); without it the first bad record
        raises :class:`RecordError` naming its index.

    Returns
    -------
    numpy.ndarray of EVENT_DTYPE

    Examples
    --------
    >>> bad = []
    >>> ev = parse_records([b"botnet callback to 10.0.0.1", b"\\xff\\xfe", "port scan"], ts=[1, 2, 3],
    ...                    station=9, on_error=lambda i, r, e: bad.append(i))
    >>> ev["kind"].tolist(), ev["seq"].tolist(), ev["node"].tolist(), bad
    ([5, 1], [0, 1], [9, 9], [1])
    """
    kinds = DEFAULT_KINDS if kinds is None else kinds
    if not isinstance(records, (list, tuple)):
        records = list(records)
    n = len(records)
    if n > max_records:
        raise ValueError(f"{n} records exceed max_records={max_records}")
    ts_arr = None if ts is None else np.broadcast_to(np.asarray(ts, dtype=np.int64), (n,))
    st_arr = np.broadcast_to(np.asarray(station, dtype=np.int64), (n,))
    nd_arr = st_arr if node is None else np.broadcast_to(np.asarray(node, dtype=np.int64), (n,))
    if n and (st_arr.min() < 0 or st_arr.max() > 0xFFFF):
        raise ValueError("station ids must lie in [0, 65535]")
    if n and (nd_arr.min() < 0 or nd_arr.max() > 0xFFFFFFFF):
        raise ValueError("node ids must lie in [0, 2**32)")
    keep, schs, kinds_out, tss = [], [], [], []
    for i, rec in enumerate(records):
        try:
            content = normalise(rec, max_bytes=max_record_bytes)
            if not content:
                raise RecordError("record has no content")
            sch = _hash(_canonical(content, max_record_bytes))
            kind = _explicit_kind(rec, kinds)
            if kind is None:
                parts: list = []
                _leaves(content, parts)
                kind = kinds.classify(" ".join(parts))
            if ts_arr is None:
                t = rec.get("ts") if isinstance(rec, Mapping) else None
                if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
                    raise RecordError("no ts given and the record has no integer 'ts' field")
                t = int(t)
            else:
                t = int(ts_arr[i])
        except RecordError as exc:
            if on_error is None:
                raise RecordError(f"record {i}: {exc}") from exc
            on_error(i, rec, exc)
            continue
        keep.append(i)
        schs.append(sch)
        kinds_out.append(kind)
        tss.append(t)
    idx = np.asarray(keep, dtype=np.int64)
    return make_events(
        ts=np.asarray(tss, dtype=np.int64),
        node=nd_arr[idx],
        kind=np.asarray(kinds_out, dtype=np.uint16),
        value=value,
        station=st_arr[idx],
        seq=seq_start + np.arange(idx.shape[0], dtype=np.int64),
        sch=np.asarray(schs, dtype=np.uint64),
    )


# ---------------------------------------------------------------------------
# Pattern language: lexer and parser
# ---------------------------------------------------------------------------


class PatternError(ValueError):
    """An invalid pattern; says where (``pos``, with a caret line) and what was expected."""

    def __init__(self, message: str, source: str, pos: int):
        self.message = message
        self.source = source
        self.pos = pos
        super().__init__(f"{message} at position {pos}\n  {source}\n  {' ' * pos}^")


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<arrow>->)
  | (?P<tarrow>~>)
  | (?P<trep>~\{)
  | (?P<num>0[xX][0-9A-Fa-f]+|\d+(?:\.\d+)?(?:[A-Za-z]+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[{}(),|?+])
    """,
    re.VERBOSE,
)
_UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
          "h": 3_600_000_000_000, "d": 86_400_000_000_000}
_MAX_REPEAT = 64


@dataclass
class _Tok:
    type: str
    text: str
    pos: int


def _lex(src: str) -> list:
    toks, pos = [], 0
    while pos < len(src):
        m = _TOKEN_RE.match(src, pos)
        if m is None:
            raise PatternError(f"unexpected character {src[pos]!r}", src, pos)
        if m.lastgroup != "ws":
            toks.append(_Tok(m.lastgroup, m.group(), pos))
        pos = m.end()
    toks.append(_Tok("eof", "", len(src)))
    return toks


def _describe(t: _Tok) -> str:
    return "end of pattern" if t.type == "eof" else repr(t.text)


class _Parser:
    # AST: ("sym", kinds|None, pos) | ("alt", [nodes]) | ("seq", [(conn, negs, node)]) | ("rep", node, lo, hi, relaxed)
    def __init__(self, src: str, kinds: KindTable):
        self.src, self.kinds = src, kinds
        self.toks = _lex(src)
        self.i = 0

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def fail(self, expected: str, tok: _Tok | None = None):
        tok = self.tok if tok is None else tok
        raise PatternError(f"expected {expected}, got {_describe(tok)}", self.src, tok.pos)

    def take(self) -> _Tok:
        t = self.tok
        self.i += 1
        return t

    def is_word(self, *words) -> bool:
        return self.tok.type == "ident" and self.tok.text in words

    def is_punct(self, p) -> bool:
        return self.tok.type == "punct" and self.tok.text == p

    def parse(self):
        if self.tok.type == "eof":
            self.fail("a kind name, a number, 'any' or '('")
        node = self.alt()
        within = 0
        if self.is_word("within"):
            self.take()
            within = self.duration()
        if self.tok.type != "eof":
            self.fail("a connector ('->', '~>', 'next', 'followed_by'), '|', 'within' or end of pattern")
        return node, within

    def duration(self) -> int:
        t = self.tok
        m = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]+)?", t.text) if t.type == "num" else None
        if m is None or m.group(2) is None:
            self.fail("a duration such as 500ms, 1.5s or 5m (units: " + ", ".join(_UNITS) + ")")
        if m.group(2) not in _UNITS:
            raise PatternError(f"unknown time unit {m.group(2)!r}; expected one of {', '.join(_UNITS)}",
                               self.src, t.pos + len(m.group(1)))
        ns = round(float(m.group(1)) * _UNITS[m.group(2)])
        if ns <= 0:
            raise PatternError("a 'within' duration must be positive", self.src, t.pos)
        self.take()
        return ns

    def alt(self):
        branches = [self.chain()]
        while self.is_punct("|"):
            self.take()
            branches.append(self.chain())
        return branches[0] if len(branches) == 1 else ("alt", branches)

    def connector(self):
        if self.tok.type == "arrow" or self.is_word("next"):
            self.take()
            return "strict"
        if self.tok.type == "tarrow" or self.is_word("followed_by"):
            self.take()
            return "relaxed"
        return None

    def chain(self):
        items = []
        conn = None
        while True:
            node = self.element()
            negs = ()
            if self.is_word("not"):
                not_tok = self.take()
                if conn != "relaxed":
                    raise PatternError("'not' restricts the gap before its element, which needs a relaxed "
                                       "connector ('~>' or 'followed_by') in front", self.src, not_tok.pos)
                negs = self.negset()
            items.append((conn, negs, node))
            conn = self.connector()
            if conn is None:
                break
        return items[0][2] if len(items) == 1 else ("seq", items)

    def kind(self, what: str) -> int:
        t = self.tok
        if t.type == "ident" and t.text not in _RESERVED:
            try:
                k = self.kinds.id(t.text)
            except KeyError:
                raise PatternError(f"unknown kind {t.text!r} (known: {', '.join(self.kinds.names)})",
                                   self.src, t.pos) from None
        elif t.type == "num" and re.fullmatch(r"0[xX][0-9A-Fa-f]+|\d+", t.text):
            k = int(t.text, 0) if t.text[:2].lower() == "0x" else int(t.text)
            if k >= KIND_CONTROL_BASE:
                raise PatternError(f"kind {k} is a control kind (>= {KIND_CONTROL_BASE:#x}); matching ignores those",
                                   self.src, t.pos)
        else:
            self.fail(what)
        self.take()
        return k

    def negset(self) -> tuple:
        if self.is_punct("("):
            self.take()
            ks = [self.kind("a kind name or number")]
            while self.is_punct("|"):
                self.take()
                ks.append(self.kind("a kind name or number"))
            if not self.is_punct(")"):
                self.fail("'|' or ')'")
            self.take()
            return tuple(ks)
        return (self.kind("a kind name or number, or '(' after 'not'"),)

    def element(self):
        t = self.tok
        if self.is_punct("("):
            self.take()
            node = self.alt()
            if not self.is_punct(")"):
                self.fail("a connector, '|' or ')'")
            self.take()
        elif self.is_word("any"):
            self.take()
            node = ("sym", None, t.pos)
        else:
            node = ("sym", (self.kind("a kind name, a number, 'any' or '('"),), t.pos)
        return self.repeat(node)

    def count(self) -> int:
        t = self.tok
        if t.type != "num" or not t.text.isdigit():
            self.fail("a repeat count (a non-negative integer)")
        self.take()
        return int(t.text)

    def repeat(self, node):
        t = self.tok
        if self.is_punct("?"):
            self.take()
            return ("rep", node, 0, 1, False)
        if self.is_punct("+"):
            self.take()
            return ("rep", node, 1, None, False)
        if not (self.is_punct("{") or t.type == "trep"):
            return node
        relaxed = t.type == "trep"
        self.take()
        lo = self.count()
        hi = lo
        if self.is_punct(","):
            self.take()
            hi = None if self.is_punct("}") else self.count()
        if not self.is_punct("}"):
            self.fail("',' or '}'" if hi == lo else "'}'")
        self.take()
        if hi is not None and hi < lo:
            raise PatternError(f"repeat bounds {{{lo},{hi}}} are reversed", self.src, t.pos)
        if hi == 0:
            raise PatternError("a repeat of at most 0 copies matches nothing", self.src, t.pos)
        if max(lo, hi or 0) > _MAX_REPEAT:
            raise PatternError(f"repeat counts are limited to {_MAX_REPEAT}", self.src, t.pos)
        return ("rep", node, lo, hi, relaxed)


def _ast_kinds(node, out: set):
    tag = node[0]
    if tag == "sym":
        if node[1] is not None:
            out.update(node[1])
    elif tag == "alt":
        for b in node[1]:
            _ast_kinds(b, out)
    elif tag == "seq":
        for _, negs, n in node[1]:
            out.update(negs)
            _ast_kinds(n, out)
    else:
        _ast_kinds(node[1], out)


# ---------------------------------------------------------------------------
# NFA -> DFA -> minimal DFA
# ---------------------------------------------------------------------------


class _NFA:
    def __init__(self, col_of: dict, n_cols: int):
        self.eps: list = []
        self.trans: list = []
        self.col_of = col_of
        self.all_cols = frozenset(range(n_cols))

    def new(self) -> int:
        self.eps.append([])
        self.trans.append([])
        return len(self.eps) - 1

    def gap(self, a: int, b: int, negs=()):
        g = self.new()
        self.eps[a].append(g)
        self.trans[g].append((self.all_cols - {self.col_of[k] for k in negs}, g))
        self.eps[g].append(b)

    def join(self, a: int, b: int, how: str | None, negs=()):
        if how == "relaxed":
            self.gap(a, b, negs)
        else:
            self.eps[a].append(b)

    def build(self, node) -> tuple:
        tag = node[0]
        if tag == "sym":
            s, e = self.new(), self.new()
            cols = self.all_cols if node[1] is None else frozenset(self.col_of[k] for k in node[1])
            self.trans[s].append((cols, e))
            return s, e
        if tag == "alt":
            s, e = self.new(), self.new()
            for b in node[1]:
                bs, be = self.build(b)
                self.eps[s].append(bs)
                self.eps[be].append(e)
            return s, e
        if tag == "seq":
            start = end = None
            for conn, negs, n in node[1]:
                ns, ne = self.build(n)
                if start is None:
                    start = ns
                else:
                    self.join(end, ns, conn, negs)
                end = ne
            return start, end
        _, sub, lo, hi, relaxed = node
        how = "relaxed" if relaxed else "strict"
        s = cur = self.new()
        first = True
        for _ in range(lo):
            cs, ce = self.build(sub)
            self.join(cur, cs, None if first else how)
            cur, first = ce, False
        end = self.new()
        self.eps[cur].append(end)
        if hi is None:
            cs, ce = self.build(sub)
            self.join(cur, cs, None if first else how)
            self.join(ce, cs, how)
            self.eps[ce].append(end)
        else:
            for _ in range(hi - lo):
                cs, ce = self.build(sub)
                self.join(cur, cs, None if first else how)
                self.eps[ce].append(end)
                cur, first = ce, False
        return s, end

    def closure(self, states) -> frozenset:
        seen = set(states)
        stack = list(states)
        while stack:
            for t in self.eps[stack.pop()]:
                if t not in seen:
                    seen.add(t)
                    stack.append(t)
        return frozenset(seen)


def _determinise(nfa: _NFA, start: int, final: int, n_cols: int, max_states: int, src: str):
    d0 = nfa.closure([start])
    index = {d0: 0}
    order = [d0]
    rows: list = []
    acc: list = []
    i = 0
    while i < len(order):
        cur = order[i]
        is_acc = final in cur
        acc.append(is_acc)
        row = []
        for c in range(n_cols):
            if is_acc:
                row.append(i)  # accepting states are sinks: the matcher resets there
                continue
            moved = {t for s in cur for cols, t in nfa.trans[s] if c in cols}
            nxt = nfa.closure(moved)
            if nxt not in index:
                if len(order) >= max_states:
                    raise PatternError(f"pattern needs more than {max_states} DFA states; simplify it or raise "
                                       "max_states", src, 0)
                index[nxt] = len(order)
                order.append(nxt)
            row.append(index[nxt])
        rows.append(row)
        i += 1
    return np.asarray(rows, dtype=np.int32).reshape(len(order), n_cols), np.asarray(acc, dtype=np.uint8)


def _minimise(table: np.ndarray, accepting: np.ndarray) -> tuple:
    """Moore partition refinement, then BFS renumbering from state 0 (a canonical form).

    All accepting states become one sink, matching the reset-on-match semantics.
    """
    table = np.asarray(table, dtype=np.int64)
    acc = np.asarray(accepting, dtype=bool)
    n, k = table.shape
    table = np.where(acc[:, None], np.arange(n)[:, None], table)
    part = acc.astype(np.int64)
    while True:
        sig = np.concatenate([part[:, None], part[table]], axis=1)
        _, new = np.unique(sig, axis=0, return_inverse=True)
        new = new.reshape(-1)
        if len(np.unique(new)) == len(np.unique(part)):
            part = new
            break
        part = new
    # Canonical BFS order from the start class.
    n_cls = int(part.max()) + 1
    rep = np.zeros(n_cls, dtype=np.int64)
    rep[part[::-1]] = np.arange(n)[::-1]
    order = {int(part[0]): 0}
    queue = [int(part[0])]
    while queue:
        c = queue.pop(0)
        for col in range(k):
            nc = int(part[table[rep[c], col]])
            if nc not in order:
                order[nc] = len(order)
                queue.append(nc)
    m = len(order)
    out = np.zeros((m, k), dtype=np.int32)
    out_acc = np.zeros(m, dtype=np.uint8)
    for c, new_id in order.items():
        out[new_id] = [order[int(part[table[rep[c], col]])] for col in range(k)]
        out_acc[new_id] = acc[rep[c]]
    return out, out_acc


@dataclass(frozen=True, eq=False)
class CompiledPattern:
    """A pattern compiled to a DFA over kind columns.

    Attributes
    ----------
    source : str
        The pattern text (or a description, for learned patterns).
    kinds : tuple of int
        The named kinds, in column order; column ``len(kinds)`` is "other".
    table : numpy.ndarray of int32, shape (n_states, n_cols)
        Transitions; state 0 is the start; accepting states are sinks.
    accepting : numpy.ndarray of uint8, shape (n_states,)
    kind_map : numpy.ndarray of int16
        Column of each kind id below its length (-1 = ignored).
    default_col : int
        Column of kinds at or past ``len(kind_map)`` (-1 = ignored).
    within_ns : int
        Time bound from the first event of a run (0 = none).
    """

    source: str
    kinds: tuple
    table: np.ndarray
    accepting: np.ndarray
    kind_map: np.ndarray
    default_col: int
    within_ns: int = 0

    def __post_init__(self):
        for name, dt in (("table", np.int32), ("accepting", np.uint8), ("kind_map", np.int16)):
            arr = np.array(getattr(self, name), dtype=dt, copy=True)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "kinds", tuple(int(k) for k in self.kinds))

    def __eq__(self, other):
        if not isinstance(other, CompiledPattern):
            return NotImplemented
        return (
            self.source == other.source and self.kinds == other.kinds and self.default_col == other.default_col
            and self.within_ns == other.within_ns and np.array_equal(self.table, other.table)
            and np.array_equal(self.accepting, other.accepting) and np.array_equal(self.kind_map, other.kind_map)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self):
        return f"CompiledPattern({self.source!r}, n_states={self.n_states}, n_cols={self.n_cols})"

    @property
    def n_states(self) -> int:
        return int(self.table.shape[0])

    @property
    def n_cols(self) -> int:
        return int(self.table.shape[1])

    def column(self, kind: int) -> int:
        """The column of a kind id (-1 if matching ignores it)."""
        kind = int(kind)
        if kind >= KIND_CONTROL_BASE:
            return -1
        return int(self.kind_map[kind]) if kind < self.kind_map.shape[0] else self.default_col

    def spec(self) -> tuple:
        """The tuple :class:`ctas7._core._teth.PatternBank` takes."""
        return (self.table, self.accepting, self.kind_map, self.default_col, self.within_ns)

    def equivalent(self, other: "CompiledPattern") -> bool:
        """Same language on every kind (time bound aside): equal canonical tables and columns."""
        return (
            self.kinds == other.kinds and self.default_col == other.default_col
            and np.array_equal(self.kind_map, other.kind_map)
            and np.array_equal(self.table, other.table) and np.array_equal(self.accepting, other.accepting)
        )


def _kind_map(named: Sequence[int], alphabet) -> tuple:
    other = len(named)
    extra = () if alphabet is None else tuple(int(k) for k in alphabet)
    for k in extra:
        if not 0 <= k < KIND_CONTROL_BASE:
            raise ValueError(f"alphabet kind {k} outside [0, {KIND_CONTROL_BASE:#x})")
    size = max([*named, *extra], default=-1) + 1
    fill = other if alphabet is None else -1
    km = np.full(size, fill, dtype=np.int16)
    for k in extra:
        km[k] = other
    for i, k in enumerate(named):
        km[k] = i
    return km, fill


def compile_pattern(
    source,
    kinds: KindTable | None = None,
    *,
    alphabet: Iterable[int] | None = None,
    max_states: int = 4096,
) -> CompiledPattern:
    """Compile pattern text to a minimal DFA (see the module docstring for the syntax).

    Parameters
    ----------
    source : str or CompiledPattern
        Pattern text (a CompiledPattern passes through unchanged).
    kinds : KindTable, optional
        Resolves kind names (:data:`DEFAULT_KINDS`).
    alphabet : iterable of int, optional
        Kinds that take part besides the named ones; all others are ignored.
        By default every non-control kind takes part.
    max_states : int
        Bound on the DFA size (subset construction can blow up).

    Returns
    -------
    CompiledPattern

    Raises
    ------
    PatternError
        With the position, a caret line and what was expected.

    Examples
    --------
    >>> p = compile_pattern("recon ~> exploit{2} within 5m")
    >>> p.kinds, p.n_states, p.within_ns, p.accepting.tolist()
    ((1, 2), 4, 300000000000, [0, 0, 0, 1])
    >>> compile_pattern("recon ~> ~> exfil")
    Traceback (most recent call last):
    ...
    ctas7.stages.teth.PatternError: expected a kind name, a number, 'any' or '(', got '~>' at position 9
      recon ~> ~> exfil
               ^
    """
    if isinstance(source, CompiledPattern):
        return source
    if not isinstance(source, str):
        raise TypeError(f"a pattern must be a string or CompiledPattern, got {type(source).__name__}")
    kinds = DEFAULT_KINDS if kinds is None else kinds
    ast, within = _Parser(source, kinds).parse()
    named_set: set = set()
    _ast_kinds(ast, named_set)
    named = tuple(sorted(named_set))
    col_of = {k: i for i, k in enumerate(named)}
    n_cols = len(named) + 1
    nfa = _NFA(col_of, n_cols)
    s, e = nfa.build(ast)
    root = nfa.new()
    nfa.trans[root].append((nfa.all_cols, root))  # search anywhere in the stream
    nfa.eps[root].append(s)
    if e in nfa.closure([root]):
        raise PatternError("pattern can match an empty sequence of events", source, 0)
    table, acc = _determinise(nfa, root, e, n_cols, max_states, source)
    table, acc = _minimise(table, acc)
    km, default = _kind_map(named, alphabet)
    return CompiledPattern(source, named, table, acc, km, default, within)


# ---------------------------------------------------------------------------
# Pure-Python reference matcher
# ---------------------------------------------------------------------------


def accepts(pattern: CompiledPattern, kinds_seq: Iterable[int]) -> bool:
    """Whether a fresh matcher reports a match somewhere in ``kinds_seq`` (time ignored).

    >>> p = compile_pattern("recon -> exfil")
    >>> accepts(p, [1, 4]), accepts(p, [1, 0, 4]), accepts(p, [1, 0xFFFF, 4])
    (True, False, True)
    """
    s = 0
    table, acc = pattern.table, pattern.accepting
    for k in kinds_seq:
        c = pattern.column(k)
        if c < 0:
            continue
        s = int(table[s, c])
        if acc[s]:
            return True
    return False


def reference_match(events: np.ndarray, patterns: Sequence, *, key: str = "node", state: dict | None = None,
                    kinds: KindTable | None = None) -> tuple:
    """A plain loop over events with the same tables and rules as the Cython matcher.

    Returns ``(matches, state)``: a MATCH_DTYPE array and the per-(key,
    pattern) ``[dfa_state, t0]`` dict to pass back in for the next batch.
    """
    validate_batch(events, name="events")
    pats = [compile_pattern(p, kinds) for p in patterns]
    state = {} if state is None else state
    keys = events[key].tolist()
    out = []
    for ts, node, kind, k in zip(events["ts"].tolist(), events["node"].tolist(), events["kind"].tolist(), keys):
        if kind >= KIND_CONTROL_BASE:
            continue
        for p, pat in enumerate(pats):
            col = pat.column(kind)
            if col < 0:
                continue
            st = state.setdefault((k, p), [0, 0])
            s = st[0]
            if s != 0 and pat.within_ns > 0 and ts - st[1] > pat.within_ns:
                s = 0
            nxt = int(pat.table[s, col])
            if pat.accepting[nxt]:
                out.append((ts, node, p))
                st[0] = 0
            else:
                if s == 0 and nxt != 0:
                    st[1] = ts
                st[0] = nxt
    return np.array(out, dtype=MATCH_DTYPE), state


# ---------------------------------------------------------------------------
# L* learning (AALpy)
# ---------------------------------------------------------------------------


class LearningError(ValueError):
    """Learning failed, or the learned DFA disagrees with the held-out traces."""

    def __init__(self, message: str, report: "ValidationReport | None" = None):
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class ValidationReport:
    """How a learned DFA did on held-out sequences.

    Attributes
    ----------
    n_holdout : int
        Held-out sequences checked.
    agreement : float
        Share on which the learned DFA and the oracle agree.
    n_positive : int
        Held-out sequences the oracle accepts (shows both labels were tested).
    n_states : int
        States of the learned (minimised) DFA.
    membership_queries : int
        Membership queries that reached the oracle (AALpy caches repeats).
    equivalence_steps : int
        Symbols the W-method equivalence oracle fed to the system.
    counterexamples : tuple
        Up to five disagreeing sequences.
    """

    n_holdout: int
    agreement: float
    n_positive: int
    n_states: int
    membership_queries: int
    equivalence_steps: int
    counterexamples: tuple = ()


@dataclass(frozen=True)
class LearnedPattern:
    """A learned pattern (usable wherever a :class:`CompiledPattern` is) and its validation."""

    pattern: CompiledPattern
    report: ValidationReport


def _make_sul(step_fn, reset_fn):
    from aalpy.base import SUL

    class _Sul(SUL):
        def pre(self):
            reset_fn()

        def post(self):
            pass

        def step(self, letter):
            return step_fn(letter)

    return _Sul()


def _run_batch(pattern: CompiledPattern, seqs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Vectorised :func:`accepts` over padded kind sequences (``seqs[i, :lengths[i]]``)."""
    n, L = seqs.shape
    state = np.zeros(n, dtype=np.int64)
    hit = np.zeros(n, dtype=bool)
    kinds = seqs.astype(np.int64)
    inmap = kinds < pattern.kind_map.shape[0]
    cols = np.where(inmap, pattern.kind_map[np.minimum(kinds, max(pattern.kind_map.shape[0] - 1, 0))]
                    if pattern.kind_map.shape[0] else pattern.default_col, pattern.default_col)
    cols = np.where(kinds >= KIND_CONTROL_BASE, -1, cols)
    for j in range(L):
        live = (j < lengths) & (cols[:, j] >= 0) & ~hit
        state = np.where(live, pattern.table[state, np.maximum(cols[:, j], 0)], state)
        hit |= pattern.accepting[state].astype(bool)
    return hit


def learn_pattern(
    target,
    alphabet: Sequence[int] | None = None,
    *,
    other: int | None = None,
    kinds: KindTable | None = None,
    max_states: int = 8,
    within_ns: int | None = None,
    n_holdout: int = 10_000,
    max_length: int = 40,
    holdout: Mapping | None = None,
    min_agreement: float = 1.0,
    seed: int = 0,
) -> LearnedPattern:
    """Learn a pattern DFA with L* (AALpy) and validate it on held-out sequences.

    The membership question is "does a fresh matcher report a match in this
    sequence of kinds?", i.e. the first-match semantics of the stage. The
    equivalence oracle is AALpy's W-method bounded by ``max_states``.

    Parameters
    ----------
    target : str, CompiledPattern or callable
        A reference pattern, or a membership oracle ``f(tuple_of_kinds) -> bool``.
    alphabet : sequence of int, optional
        Kinds to learn over (defaults to the reference pattern's named kinds).
    other : int, optional
        A kind standing for "any kind not in ``alphabet``". If given, all such
        kinds share its learned column; otherwise they are ignored by the
        learned pattern. Defaults, for a reference pattern that lets other
        kinds take part, to the smallest kind it does not name.
    kinds : KindTable, optional
        For compiling a string target.
    max_states : int
        State bound of the W-method oracle (keep it near the true size: the
        test suite grows as ``|alphabet| ** (max_states - n + 1)``).
    within_ns : int, optional
        Time bound of the learned pattern (defaults to the reference's).
    n_holdout, max_length : int
        Random held-out sequences (uniform kinds over ``alphabet`` +
        ``other``, lengths 1..``max_length``), drawn with ``seed``.
    holdout : Mapping, optional
        Extra labelled sequences ``{tuple_of_kinds: bool}`` checked too.
    min_agreement : float
        Required held-out agreement (1.0 = all).

    Returns
    -------
    LearnedPattern

    Raises
    ------
    LearningError
        If agreement is below ``min_agreement`` (the report is attached).

    Examples
    --------
    >>> lp = learn_pattern("recon ~> exfil not exploit", n_holdout=500)
    >>> lp.report.agreement, lp.pattern.equivalent(compile_pattern("recon ~> exfil not exploit"))
    (1.0, True)
    """
    from aalpy.learning_algs import run_Lstar
    from aalpy.oracles import WMethodEqOracle

    ref = None
    if isinstance(target, (str, CompiledPattern)):
        ref = compile_pattern(target, kinds)
        if alphabet is None:
            alphabet = ref.kinds
        if other is None and ref.default_col == len(ref.kinds):
            other = next(k for k in range(KIND_CONTROL_BASE) if k not in ref.kinds)
        if within_ns is None:
            within_ns = ref.within_ns
    elif not callable(target):
        raise TypeError(f"target must be a pattern or a callable oracle, got {type(target).__name__}")
    if alphabet is None or len(alphabet) == 0:
        raise ValueError("learn_pattern needs a non-empty alphabet of kinds")
    alphabet = tuple(sorted({int(k) for k in alphabet}))
    for k in alphabet:
        if not 0 <= k < KIND_CONTROL_BASE:
            raise ValueError(f"alphabet kind {k} outside [0, {KIND_CONTROL_BASE:#x})")
    if other is not None and (other in alphabet or not 0 <= other < KIND_CONTROL_BASE):
        raise ValueError(f"other={other} must be a non-control kind outside the alphabet")
    if max_states < 1:
        raise ValueError(f"max_states must be >= 1, got {max_states}")
    letters = list(alphabet) + ([other] if other is not None else [])

    if ref is not None:
        cur = [0]

        def step(letter):
            if letter is not None and not ref.accepting[cur[0]]:
                c = ref.column(letter)
                if c >= 0:
                    cur[0] = int(ref.table[cur[0], c])
            return bool(ref.accepting[cur[0]])

        def reset():
            cur[0] = 0

        oracle = lambda seq: accepts(ref, seq)  # noqa: E731
    else:
        prefix: list = []

        def step(letter):
            if letter is not None:
                prefix.append(letter)
            return bool(target(tuple(prefix)))

        def reset():
            prefix.clear()

        oracle = lambda seq: bool(target(tuple(seq)))  # noqa: E731

    sul = _make_sul(step, reset)
    eq = WMethodEqOracle(letters, sul, max_number_of_states=max_states)
    dfa = run_Lstar(letters, sul, eq, automaton_type="dfa", print_level=0)

    # AALpy DFA -> tables over (alphabet columns + other column).
    states = list(dfa.states)
    idx = {id(s): i for i, s in enumerate(states)}
    n = len(states)
    oc = len(alphabet)
    table = np.zeros((n, oc + 1), dtype=np.int32)
    acc = np.zeros(n, dtype=np.uint8)
    for s in states:
        i = idx[id(s)]
        acc[i] = s.is_accepting
        for c, k in enumerate(alphabet):
            table[i, c] = idx[id(s.transitions[k])]
        table[i, oc] = idx[id(s.transitions[other])] if other is not None else i
    init = idx[id(dfa.initial_state)]
    perm = [init] + [i for i in range(n) if i != init]
    inv = np.empty(n, dtype=np.int32)
    inv[perm] = np.arange(n, dtype=np.int32)
    table = inv[table[perm]]
    acc = acc[perm]
    if acc[0]:
        raise LearningError("the oracle accepts the empty sequence; a pattern needs at least one event")
    table, acc = _minimise(table, acc)
    km, default = _kind_map(alphabet, None if other is not None else ())
    desc = f"learned({ref.source if ref is not None else getattr(target, '__name__', 'oracle')})"
    learned = CompiledPattern(desc, alphabet, table, acc, km, default, int(within_ns or 0))

    # Held-out validation.
    rng = np.random.default_rng(seed)
    pool = np.asarray(letters, dtype=np.int64)
    lengths = rng.integers(1, max_length + 1, size=n_holdout)
    seqs = pool[rng.integers(0, len(pool), size=(n_holdout, max_length))]
    got = _run_batch(learned, seqs, lengths)
    want = (_run_batch(ref, seqs, lengths) if ref is not None
            else np.array([oracle(tuple(seqs[i, : lengths[i]].tolist())) for i in range(n_holdout)], dtype=bool))
    bad = [tuple(seqs[i, : lengths[i]].tolist()) for i in np.flatnonzero(got != want)[:5]]
    agree = int((got == want).sum())
    total = n_holdout
    positives = int(want.sum())
    for seq, label in (holdout or {}).items():
        total += 1
        positives += bool(label)
        if accepts(learned, seq) == bool(label):
            agree += 1
        elif len(bad) < 5:
            bad.append(tuple(seq))
    report = ValidationReport(
        n_holdout=total,
        agreement=agree / total if total else 1.0,
        n_positive=positives,
        n_states=learned.n_states,
        membership_queries=int(sul.num_queries),
        equivalence_steps=int(eq.num_steps),
        counterexamples=tuple(bad),
    )
    if total == 0 or report.agreement < min_agreement:
        raise LearningError(
            f"learned DFA agrees on {report.agreement:.4%} of {total} held-out sequences, "
            f"below the required {min_agreement:.4%}; e.g. {bad[:1]}", report)
    return LearnedPattern(learned, report)


# ---------------------------------------------------------------------------
# Periodicity (beaconing)
# ---------------------------------------------------------------------------

#: One beaconing detection (the event that made an ``sch`` look periodic):
#: ts, sch, node of that event, count of arrivals so far, mean interval
#: ``period_ns`` and coefficient of variation ``cv`` of the intervals.
BEACON_DTYPE = _BEACON_DTYPE

_M64 = (1 << 64) - 1


def _fmix64(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & _M64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & _M64
    k ^= k >> 33
    return k


def reference_beacons(events: np.ndarray, *, capacity: int = 4096, min_count: int = 8, max_cv: float = 0.1,
                      min_gap_ns: int = 1_000_000, probes: int = 4, slots: np.ndarray | None = None,
                      door: np.ndarray | None = None) -> tuple:
    """Pure-Python twin of the beacon kernel; returns ``(detections, slots, door)``.

    Per ``sch`` (0 and control kinds are skipped) it keeps the last arrival,
    the arrival count and Welford's running mean and M2 of the intervals.
    Arrivals closer than ``min_gap_ns`` to the last counted one are
    duplicates (the same intel relayed by several stations) and are skipped.
    When ``count >= min_count`` and the intervals' coefficient of variation
    (sample std / mean) is ``<= max_cv``, the sch is flagged and one
    detection is emitted; it can fire again after it stops looking periodic.

    Memory is bounded: a direct-mapped *door* (``capacity`` entries, index
    from the high half of ``fmix64(sch)``) holds each sch's first arrival; a
    second arrival admits it to the open-addressed table (``probes`` slots
    from ``fmix64(sch)``), into the first empty slot or else over the slot
    with the fewest arrivals (then the stalest). One-off sch values never
    evict a tracked one; a period longer than the time the door takes to be
    overwritten by other traffic cannot be learned.
    """
    validate_batch(events, name="events")
    mask = capacity - 1
    probes = min(probes, capacity)
    tab = np.zeros(capacity, dtype=SLOT_DTYPE) if slots is None else np.array(slots, copy=True)
    dr = np.zeros(capacity, dtype=DOOR_DTYPE) if door is None else np.array(door, copy=True)
    rows = [list(r) for r in tab.tolist()]  # key, last_ts, mean, m2, count, flagged
    drows = [list(r) for r in dr.tolist()]  # key, ts
    out = []
    for ts, sch, node, kind in zip(events["ts"].tolist(), events["sch"].tolist(), events["node"].tolist(),
                                   events["kind"].tolist()):
        if sch == 0 or kind >= KIND_CONTROL_BASE:
            continue
        h = _fmix64(sch)
        e = None
        for j in range(probes):
            r = rows[(h + j) & mask]
            if r[0] == sch:
                e = r
                break
            if r[0] == 0:
                break
        if e is None:
            d = drows[(h >> 32) & mask]
            if d[0] != sch:
                d[:] = [sch, ts]
                continue
            dt = ts - d[1]
            if dt < min_gap_ns:
                continue
            d[0] = 0
            victim = h & mask
            for j in range(probes):
                slot = (h + j) & mask
                r, v = rows[slot], rows[victim]
                if r[0] == 0:
                    victim = slot
                    break
                if r[4] < v[4] or (r[4] == v[4] and r[1] < v[1]):
                    victim = slot
            e = rows[victim]
            e[:] = [sch, ts, float(dt), 0.0, 2, 0]
        else:
            dt = ts - e[1]
            if dt < min_gap_ns:
                continue
            e[1] = ts
            e[4] += 1
            k = e[4] - 1
            x = float(dt)
            delta = x - e[2]
            e[2] += delta / k
            e[3] += delta * (x - e[2])
        k = e[4] - 1
        if e[4] < min_count or k < 2:
            continue
        cv = math.sqrt(e[3] / (k - 1)) / e[2]
        if cv <= max_cv and not e[5]:
            e[5] = 1
            out.append((ts, sch, node, e[4], e[2], cv))
        elif cv > max_cv:
            e[5] = 0
    new = np.array([tuple(r) for r in rows], dtype=SLOT_DTYPE)
    new_door = np.array([tuple(r) for r in drows], dtype=DOOR_DTYPE)
    return np.array(out, dtype=BEACON_DTYPE), new, new_door


# ---------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------

#: Patterns the default chain runs (names from :data:`DEFAULT_KINDS`).
DEFAULT_PATTERNS = (
    "recon ~> exploit ~> exfil within 10m",
    "exploit -> intrusion",
    "c2{3}",
)


class Teth(Stage):
    """Match temporal patterns per key and flag beaconing ``sch`` values.

    Parameters
    ----------
    patterns : sequence of str, CompiledPattern or LearnedPattern
        Pattern ``i`` reports ``pattern == i`` in :data:`~ctas7.records.MATCH_DTYPE`.
    kinds : KindTable, optional
        Resolves kind names in pattern text (:data:`DEFAULT_KINDS`).
    key : {"node", "station"}
        What a pattern's state is kept per.
    max_key : int
        Largest key accepted (the per-key state grows on demand up to it).
    beacons : bool
        Run the periodicity detector.
    beacon_min_count, beacon_max_cv, beacon_min_gap_ns, beacon_capacity :
        See :func:`reference_beacons` (``capacity`` is a power of two).

    Notes
    -----
    Pickling (also mid-stream) carries the per-key DFA states and start
    times and the beacon table: the Cython kernels implement ``__reduce__``.
    ``process`` sets ``frame.matches`` to this batch's matches (appended to
    matches already there from an earlier TETH stage; an empty MATCH_DTYPE
    array if none), and, with ``beacons``, ``frame.extras["beacons"]`` to the
    new BEACON_DTYPE detections. Matches are in event order, then pattern
    order; see the module docstring for the semantics.

    Examples
    --------
    >>> from ctas7.events import make_events
    >>> from ctas7.stage import Frame
    >>> t = Teth(patterns=["c2{3}"], beacon_min_count=4, beacon_min_gap_ns=1)
    >>> ev = make_events(ts=[0, 100, 200, 300], node=3, kind=5, sch=42)
    >>> f = t.process(Frame(ev))
    >>> f.matches.tolist(), f.extras["beacons"][["sch", "count", "period_ns"]].tolist()
    ([(200, 3, 0)], [(42, 4, 100.0)])
    """

    def __init__(
        self,
        patterns: Sequence = DEFAULT_PATTERNS,
        kinds: KindTable | None = None,
        key: str = "node",
        max_key: int = 1 << 22,
        beacons: bool = True,
        beacon_min_count: int = 8,
        beacon_max_cv: float = 0.1,
        beacon_min_gap_ns: int = 1_000_000,
        beacon_capacity: int = 4096,
    ):
        self.patterns = patterns
        self.kinds = kinds
        self.key = key
        self.max_key = max_key
        self.beacons = beacons
        self.beacon_min_count = beacon_min_count
        self.beacon_max_cv = beacon_max_cv
        self.beacon_min_gap_ns = beacon_min_gap_ns
        self.beacon_capacity = beacon_capacity
        if key not in ("node", "station"):
            raise ValueError(f"key must be 'node' or 'station', got {key!r}")
        if isinstance(patterns, (str, CompiledPattern, LearnedPattern)):
            raise TypeError("patterns must be a sequence of patterns; wrap a single one in a list")
        self.compiled = tuple(
            p.pattern if isinstance(p, LearnedPattern) else compile_pattern(p, kinds) for p in patterns
        )
        self._bank = PatternBank([p.spec() for p in self.compiled], key == "node", int(max_key))
        self._beacon_table = (
            BeaconTable(int(beacon_capacity), int(beacon_min_count), float(beacon_max_cv),
                        int(beacon_min_gap_ns)) if beacons else None
        )

    def reset(self) -> None:
        """Forget every key's partial matches and every sch's history."""
        self._bank.reset()
        if self._beacon_table is not None:
            self._beacon_table.reset()

    def process(self, frame: Frame) -> Frame:
        ev = validate_batch(frame.events, name="teth: frame.events")
        found = self._bank.run(ev)
        prev = frame.matches
        if isinstance(prev, np.ndarray) and prev.dtype == MATCH_DTYPE and prev.shape[0]:
            found = np.concatenate([prev, found])
        frame.matches = found
        if self._beacon_table is not None:
            frame.extras["beacons"] = self._beacon_table.run(ev)
        return frame
