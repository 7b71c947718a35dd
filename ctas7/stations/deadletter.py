"""The dead-letter file: bad input is written down with its reason and counted.

>>> import tempfile, os, json
>>> path = os.path.join(tempfile.mkdtemp(), "dead.jsonl")
>>> dl = DeadLetter(path)
>>> dl.add("file:feed.jsonl", 12, "invalid JSON", b"{oops")
>>> dl.counts, dl.total
({'invalid JSON': 1}, 1)
>>> json.loads(open(path).readline())["position"]
12
"""

from __future__ import annotations

import json
import os
import threading

__all__ = ["DeadLetter"]

_MAX_TEXT = 1024


class DeadLetter:
    """Append-only JSONL of rejected input: ``{source, position, reason, text}``.

    ``path=None`` keeps the counts only. Thread-safe; the file is opened
    lazily so a clean run leaves no file behind.
    """

    def __init__(self, path=None):
        self.path = None if path is None else os.fspath(path)
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._f = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, source: str, position, reason: str, raw=b"") -> None:
        """Record one rejected item. ``raw`` is kept, truncated, for inspection."""
        if isinstance(raw, (bytes, bytearray, memoryview)):
            text = bytes(raw[:_MAX_TEXT]).decode("utf-8", "backslashreplace")
        else:
            text = str(raw)[:_MAX_TEXT]
        line = json.dumps({"source": source, "position": position, "reason": reason, "text": text})
        with self._lock:
            self.counts[reason] = self.counts.get(reason, 0) + 1
            if self.path is not None:
                if self._f is None:
                    self._f = open(self.path, "a", encoding="utf-8")
                self._f.write(line + "\n")
                self._f.flush()

    def close(self) -> None:
        with self._lock:
            if self._f is not None:
                self._f.close()
                self._f = None
