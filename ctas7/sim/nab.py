"""Numenta Anomaly Benchmark (NAB v1.x) scoring, and the meter's per-node detector on NAB.

The scorer follows NAB's own sources at the commit the corpus was copied from
(numenta/NAB ea702d7): ``nab/sweeper.py`` (``scaledSigmoid``,
``Sweeper._getProbationaryLength``, ``Sweeper.calcSweepScore``,
``Sweeper.calcScoreByThreshold``), ``nab/optimizer.py``
(``optimizeThreshold``: one threshold for the whole corpus) and
``nab/runner.py`` (``Runner.normalize``). In short:

* The first ``min(floor(0.15 n), 0.15 * 5000)`` rows of a file (the
  probation period) are not scored at all.
* Every row gets a weight. Inside a window ``[lo, hi]`` of width
  ``W = hi - lo + 1``, row ``i`` has position ``x = -(hi - i + 1) / W`` and
  weight ``tp * S(x) / S(-1)`` with the scaled sigmoid
  ``S(x) = 2 / (1 + exp(5x)) - 1`` (``-1`` for ``x > 3``), so a detection on
  a window's first row is worth exactly ``tp``. Outside windows the weight
  is ``fp * S((i - hi') / (W' - 1))`` after a window ``[lo', hi']`` (a false
  alarm just after a window costs little, one more than three widths away
  costs ``fp``) and ``-fp`` before the first window.
* A detector's score is the sum of the weights of its false alarms, plus,
  per window, the largest weight of its detections there (the earliest; the
  rest count for nothing) or ``-fn`` when it has none.
* NAB sweeps one threshold for the whole corpus and keeps the best (a
  detection is a score at or above it). The null detector (never alarms)
  scores ``-fn`` per scored window; the perfect score is ``tp`` per labelled
  window. The reported **NAB score** is
  ``100 * (raw - null) / (perfect - null)``: 0 for the null detector, 100
  for a detector firing on every window's first row and nowhere else.

The application profiles are NAB v1's ``config/profiles.json``: standard
(tp 1, fp 0.11, fn 1), reward_low_FP_rate (fp 0.22), reward_low_FN_rate
(fn 2). ``tn`` is carried for completeness; NAB's score never uses it.

Examples
--------
A 20-row file with one window on rows 10-13 and no probation:

>>> import numpy as np
>>> f = NabFile("toy.csv", np.arange(20).astype("datetime64[s]"), np.zeros(20), np.array([[10, 13]]))
>>> corpus = NabCorpus((f,), probation_percent=0.0)
>>> hit_first = np.zeros(20, bool); hit_first[10] = True
>>> r = score_corpus([hit_first], corpus)
>>> round(r.raw, 6), r.null, r.perfect, round(r.normalised, 6)
(1.0, -1.0, 1.0, 100.0)
>>> r = score_corpus([np.zeros(20, bool)], corpus)
>>> r.raw, r.normalised, r.caught
(-1.0, 0.0, 0)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = [
    "DEFAULT_NAB_DIR",
    "PROBATION_PERCENT",
    "PROFILES",
    "STANDARD",
    "Profile",
    "NabFile",
    "NabCorpus",
    "NabResult",
    "NabSweep",
    "scaled_sigmoid",
    "probation_length",
    "row_weights",
    "load_corpus",
    "score_corpus",
    "sweep",
    "onsets",
    "persistent",
    "meter_hot",
    "scale_aware_params",
    "pagehinkley_alarms",
    "nab_report",
    "print_report",
    "add_arguments",
    "run",
]

#: The corpus beside the project (``../shared/datasets/NAB`` from its root).
DEFAULT_NAB_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "NAB"
PROBATION_PERCENT = 0.15
#: Thresholds of River's PageHinkley swept for the peer (``asv_bench/peers.py``'s, extended upwards).
PH_THRESHOLDS = (3.0, 5.0, 8.0, 12.0, 20.0, 30.0, 50.0, 80.0, 130.0, 200.0, 300.0, 500.0, 800.0, 1300.0)
_ONSET_EXHAUSTIVE = 2048  # onset sweeps evaluate every candidate threshold up to this many
_ONSET_GRID = 256


@dataclass(frozen=True)
class Profile:
    """A NAB application profile (cost matrix).

    Examples
    --------
    >>> STANDARD
    Profile(name='standard', tp=1.0, fp=0.11, fn=1.0, tn=1.0)
    """

    name: str
    tp: float
    fp: float
    fn: float
    tn: float = 1.0

    def __post_init__(self):
        for key in ("tp", "fp", "fn", "tn"):
            v = getattr(self, key)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                raise ValueError(f"profile {self.name!r}: {key} must be a finite number >= 0, got {v!r}")
        if self.tp <= 0:
            raise ValueError(f"profile {self.name!r}: tp must be > 0, got {self.tp!r}")


STANDARD = Profile("standard", tp=1.0, fp=0.11, fn=1.0)
PROFILES = {
    "standard": STANDARD,
    "reward_low_FP_rate": Profile("reward_low_FP_rate", tp=1.0, fp=0.22, fn=1.0),
    "reward_low_FN_rate": Profile("reward_low_FN_rate", tp=1.0, fp=0.11, fn=2.0),
}


# ---------------------------------------------------------------------------
# Row weights
# ---------------------------------------------------------------------------


def scaled_sigmoid(x):
    """NAB's ``scaledSigmoid``: ``2 * sigmoid(-5 x) - 1``, and ``-1`` for ``x > 3``.

    Examples
    --------
    >>> np.round(scaled_sigmoid(np.array([-1.0, -0.5, 0.0, 1.0, 3.5])), 5)
    array([ 0.98661,  0.84828,  0.     , -0.98661, -1.     ])
    """
    x = np.asarray(x, dtype=np.float64)
    return np.where(x > 3.0, -1.0, 2.0 / (1.0 + np.exp(5.0 * np.minimum(x, 3.0))) - 1.0)


def probation_length(n_rows: int, percent: float = PROBATION_PERCENT) -> int:
    """Rows at the start of a file that NAB does not score: ``min(floor(p n), p * 5000)``.

    Examples
    --------
    >>> probation_length(4032), probation_length(22695), probation_length(100, 0.1)
    (604, 750, 10)
    """
    if not 0.0 <= percent <= 1.0:
        raise ValueError(f"probation percent must be in [0, 1], got {percent!r}")
    return int(math.ceil(min(math.floor(percent * n_rows), percent * 5000)))


def _check_windows(windows, n_rows: int, name: str = "") -> np.ndarray:
    w = np.asarray(windows, dtype=np.int64).reshape(-1, 2) if len(windows) else np.zeros((0, 2), np.int64)
    where = f"{name}: " if name else ""
    if w.size:
        if (w[:, 0] < 0).any() or (w[:, 1] >= n_rows).any() or (w[:, 1] < w[:, 0]).any():
            raise ValueError(f"{where}windows must be [lo, hi] row pairs with 0 <= lo <= hi < {n_rows}, "
                             f"got {w.tolist()}")
        if (w[1:, 0] <= w[:-1, 1]).any():
            raise ValueError(f"{where}windows must be sorted and must not overlap, got {w.tolist()}")
    return w


def row_weights(n_rows: int, windows, profile: Profile = STANDARD) -> tuple[np.ndarray, np.ndarray]:
    """Each row's NAB weight (``sweepScore``) and window index (-1 outside windows).

    ``windows`` holds inclusive ``[lo, hi]`` row pairs, sorted, not
    overlapping. After a one-row window NAB's sweeper would divide by zero;
    here a later false alarm is then placed at distance 2.0, the convention
    of NAB's older ``nab/scorer.py``.

    Examples
    --------
    >>> w, win = row_weights(8, [[2, 4]])
    >>> np.round(w, 4).tolist(), win.tolist()
    ([-0.11, -0.11, 1.0, 0.9437, 0.6915, -0.0933, -0.1085, -0.1099], [-1, -1, 0, 0, 0, -1, -1, -1])
    """
    w = _check_windows(windows, n_rows)
    i = np.arange(n_rows)
    weight = np.full(n_rows, -profile.fp, dtype=np.float64)
    win = np.full(n_rows, -1, dtype=np.int64)
    if not w.size:
        return weight, win
    lo, hi = w[:, 0], w[:, 1]
    width = (hi - lo + 1).astype(np.float64)
    k = np.searchsorted(lo, i, side="right") - 1  # last window starting at or before i
    inside = (k >= 0) & (i <= hi[np.maximum(k, 0)])
    ki = k[inside]
    win[inside] = ki
    max_tp = float(scaled_sigmoid(-1.0))
    weight[inside] = profile.tp * scaled_sigmoid(-(hi[ki] - i[inside] + 1) / width[ki]) / max_tp
    p = np.searchsorted(hi, i, side="left") - 1  # last window ending before i
    after = ~inside & (p >= 0)
    pa = p[after]
    denom = width[pa] - 1.0
    one_row = denom <= 0.0
    dist = np.where(one_row, 2.0, (i[after] - hi[pa]) / np.where(one_row, 1.0, denom))
    weight[after] = profile.fp * scaled_sigmoid(dist)
    return weight, win


# ---------------------------------------------------------------------------
# Corpus
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class NabFile:
    """One labelled series: ``windows`` are inclusive ``[lo, hi]`` row pairs."""

    name: str
    timestamps: np.ndarray
    values: np.ndarray
    windows: np.ndarray

    def __post_init__(self):
        if self.values.ndim != 1 or self.timestamps.shape != self.values.shape:
            raise ValueError(f"{self.name}: timestamps and values must be 1-d of one length, "
                             f"got {self.timestamps.shape} and {self.values.shape}")
        object.__setattr__(self, "windows", _check_windows(self.windows, self.values.shape[0], self.name))

    @property
    def n_rows(self) -> int:
        return int(self.values.shape[0])


@dataclass(frozen=True, eq=False)
class NabCorpus:
    """Labelled files, scored with one probation percent."""

    files: tuple
    probation_percent: float = PROBATION_PERCENT
    path: Path | None = None

    def __post_init__(self):
        object.__setattr__(self, "files", tuple(self.files))
        probation_length(0, self.probation_percent)  # validates the percent

    @property
    def n_rows(self) -> int:
        return sum(f.n_rows for f in self.files)

    @property
    def n_windows(self) -> int:
        """Labelled windows: NAB's perfect score is ``tp`` times this."""
        return sum(len(f.windows) for f in self.files)

    def probation(self, f: NabFile) -> int:
        return probation_length(f.n_rows, self.probation_percent)


def _parse_timestamps(strings, where: str) -> np.ndarray:
    try:
        return np.array([s.strip().replace(" ", "T") for s in strings], dtype="datetime64[us]")
    except ValueError as exc:
        raise ValueError(f"{where}: bad timestamp: {exc}") from None


def _read_series(path: Path) -> tuple[np.ndarray, np.ndarray]:
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].strip().lower() != "timestamp,value":
        raise ValueError(f"{path}: expected a 'timestamp,value' header, got {lines[:1]!r}")
    rows = [ln.split(",") for ln in lines[1:] if ln.strip()]
    bad = next((k for k, r in enumerate(rows) if len(r) != 2), None)
    if bad is not None:
        raise ValueError(f"{path}: line {bad + 2}: expected 2 columns, got {len(rows[bad])}")
    ts = _parse_timestamps([r[0] for r in rows], str(path))
    try:
        values = np.array([r[1] for r in rows], dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"{path}: bad value: {exc}") from None
    return ts, values


def load_corpus(path=None, *, labels: str = "combined_windows.json", files: Sequence[str] | None = None,
                probation_percent: float = PROBATION_PERCENT) -> NabCorpus:
    """Read NAB's ``data/<category>/<name>.csv`` files and their labelled windows.

    A window boundary is the first row whose timestamp equals it (NAB's
    ``timestamps.index``); a boundary that is no row's timestamp is an error.

    Parameters
    ----------
    path : path, optional
        The corpus folder (holding ``data/`` and ``labels/``); defaults to
        :data:`DEFAULT_NAB_DIR`.
    labels : str
        Windows file under ``labels/``.
    files : sequence of str, optional
        Only these ``category/name.csv`` keys (default: every labelled file).
    probation_percent : float
        NAB's probation share (0.15).

    Examples
    --------
    >>> c = load_corpus(files=["artificialWithAnomaly/art_daily_jumpsup.csv"]) if DEFAULT_NAB_DIR.is_dir() else None
    >>> c is None or (c.files[0].n_rows, c.files[0].windows.tolist()) == (4032, [[2787, 3189]])
    True
    """
    root = Path(DEFAULT_NAB_DIR if path is None else path)
    if not root.is_dir():
        raise FileNotFoundError(f"NAB corpus not found at {root} (pass its folder, holding data/ and labels/)")
    label_path = root / "labels" / labels
    windows = json.loads(label_path.read_text(encoding="utf-8"))
    if not isinstance(windows, dict):
        raise ValueError(f"{label_path}: expected an object of file -> [[start, end], ...]")
    keys = sorted(windows) if files is None else list(files)
    unknown = [k for k in keys if k not in windows]
    if unknown:
        raise ValueError(f"{label_path}: no labels for {', '.join(unknown)}")
    out = []
    for key in keys:
        ts, values = _read_series(root / "data" / key)
        spans = []
        for pair in windows[key]:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise ValueError(f"{label_path}: {key}: a window must be [start, end], got {pair!r}")
            idx = []
            for b in _parse_timestamps(pair, f"{label_path}: {key}"):
                hit = np.flatnonzero(ts == b)
                if not hit.size:
                    raise ValueError(f"{label_path}: {key}: window boundary {b} is not a row timestamp")
                idx.append(int(hit[0]))
            spans.append(idx)
        out.append(NabFile(key, ts.astype("datetime64[s]"), values, np.array(spans, np.int64).reshape(-1, 2)))
    return NabCorpus(tuple(out), probation_percent, root)


# ---------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NabResult:
    """A detector's NAB result at one setting.

    ``windows`` counts the windows with scored rows (the ones a detector can
    catch or miss); ``windows_labelled`` all windows (the perfect score's).
    ``false_alarms`` are scored detections outside windows, ``detections``
    all scored detections.
    """

    raw: float
    normalised: float
    null: float
    perfect: float
    caught: int
    windows: int
    windows_labelled: int
    false_alarms: int
    detections: int
    threshold: float | None = None


@dataclass(frozen=True)
class _Flat:
    """The scored rows of a corpus, concatenated, with their weights."""

    weight: np.ndarray
    window: np.ndarray  # global window id, -1 outside
    bounds: tuple  # per file: (first scored row, offset in the flat arrays)
    n_scorable: int
    null: float
    perfect: float
    n_labelled: int


def _flatten(corpus: NabCorpus, profile: Profile) -> _Flat:
    weights, wins, bounds = [], [], []
    base = off = scorable = 0
    for f in corpus.files:
        start = corpus.probation(f)
        w, k = row_weights(f.n_rows, f.windows, profile)
        w, k = w[start:], k[start:]
        ids = np.unique(k[k >= 0])
        scorable += ids.size
        weights.append(w)
        wins.append(np.where(k >= 0, k + base, -1))
        bounds.append((start, off))
        base += len(f.windows)
        off += w.size
    return _Flat(np.concatenate(weights) if weights else np.zeros(0),
                 np.concatenate(wins) if wins else np.zeros(0, np.int64),
                 tuple(bounds), scorable, 0.0 - profile.fn * scorable, profile.tp * corpus.n_windows,
                 corpus.n_windows)


def _per_file(arrays, corpus: NabCorpus, what: str, dtype) -> np.ndarray:
    arrays = list(arrays)
    if len(arrays) != len(corpus.files):
        raise ValueError(f"{what}: expected one array per file ({len(corpus.files)}), got {len(arrays)}")
    out = []
    for a, f in zip(arrays, corpus.files):
        a = np.asarray(a)
        if a.shape != (f.n_rows,):
            raise ValueError(f"{what}: {f.name}: expected shape ({f.n_rows},), got {a.shape}")
        out.append(a[corpus.probation(f):].astype(dtype, copy=False))
    return np.concatenate(out) if out else np.zeros(0, dtype)


def _normalised(raw: float, null: float, perfect: float) -> float:
    return 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0


def _result(flat: _Flat, det: np.ndarray, profile: Profile, threshold=None) -> NabResult:
    fp = det & (flat.window < 0)
    hit = np.flatnonzero(det & (flat.window >= 0))
    first = np.unique(flat.window[hit], return_index=True)[1]  # rows are in order: earliest per window
    tp_sum = float(np.maximum(flat.weight[hit[first]], -profile.fn).sum())
    caught = int(first.size)
    raw = float(flat.weight[fp].sum()) + tp_sum - profile.fn * (flat.n_scorable - caught)
    return NabResult(raw, _normalised(raw, flat.null, flat.perfect), flat.null, flat.perfect, caught,
                     flat.n_scorable, flat.n_labelled, int(fp.sum()), int(det.sum()), threshold)


def score_corpus(detections, corpus: NabCorpus, profile: Profile = STANDARD) -> NabResult:
    """NAB result of fixed detections (one boolean array per file).

    Examples
    --------
    >>> f = NabFile("a", np.arange(30).astype("datetime64[s]"), np.zeros(30), np.array([[10, 19]]))
    >>> c = NabCorpus((f,), probation_percent=0.0)
    >>> d = np.zeros(30, bool); d[[15, 18, 25]] = True   # 15 counts, 18 is ignored, 25 is a false alarm
    >>> r = score_corpus([d], c)
    >>> r.caught, r.false_alarms, r.detections, round(r.raw, 4)
    (1, 1, 3, 0.7574)
    """
    flat = _flatten(corpus, profile)
    det = _per_file(detections, corpus, "detections", bool)
    return _result(flat, det, profile)


@dataclass(frozen=True)
class NabSweep:
    """A threshold sweep: raw score at each candidate threshold (descending; the
    first, ``inf``, detects nothing) and the best setting, chosen as NAB's
    optimizer does (the highest score; among ties the highest threshold)."""

    thresholds: np.ndarray
    raw: np.ndarray
    best: NabResult
    alarm: str
    exhaustive: bool = field(default=True)


def onsets(above) -> np.ndarray:
    """Rows where a run of ``True`` starts (an alarm at the onset of each run).

    Examples
    --------
    >>> onsets(np.array([0, 1, 1, 0, 1], bool)).astype(int).tolist()
    [0, 1, 0, 0, 1]
    """
    above = np.asarray(above, dtype=bool)
    return above & ~np.r_[False, above[:-1]]


def _row_sweep(flat: _Flat, s: np.ndarray, profile: Profile):
    order = np.argsort(-s, kind="stable")
    s_sorted, w, g = s[order], flat.weight[order], flat.window[order]
    inc = np.where(g < 0, w, 0.0)
    pos = np.flatnonzero(g >= 0)
    if pos.size:
        # A window's term is the running max of its activated weights (from -fn),
        # so each activation adds the rise of that max.
        grp = np.argsort(g[pos], kind="stable")
        gs, ws = g[pos][grp], np.maximum(w[pos][grp], -profile.fn)
        cuts = np.flatnonzero(np.diff(gs)) + 1
        starts, ends = np.r_[0, cuts], np.r_[cuts, gs.size]
        cm = np.empty_like(ws)
        for a, b in zip(starts.tolist(), ends.tolist()):
            cm[a:b] = np.maximum.accumulate(ws[a:b])
        prev = np.r_[-profile.fn, cm[:-1]]
        prev[starts] = -profile.fn
        rise = np.empty_like(cm)
        rise[grp] = cm - prev
        inc[pos] = rise
    total = flat.null + np.cumsum(inc)
    if not s_sorted.size:
        return np.r_[np.inf], np.r_[flat.null]
    last = np.r_[np.flatnonzero(s_sorted[1:] != s_sorted[:-1]), s_sorted.size - 1]  # end of each distinct score
    return np.r_[np.inf, s_sorted[last]], np.r_[flat.null, total[last]]


class _OnsetEval:
    """Raw NAB score of onset alarms (``s[i] >= t > s[i-1]``) at any threshold."""

    def __init__(self, flat: _Flat, s: np.ndarray, prev: np.ndarray, profile: Profile):
        cap = s > prev  # rows that are an onset for some threshold
        order = np.argsort(-s[cap], kind="stable")
        self.s = s[cap][order]
        self.prev = prev[cap][order]
        self.w = flat.weight[cap][order]
        self.g = flat.window[cap][order]
        self.neg_s = -self.s
        self.flat, self.fn = flat, profile.fn
        self.init = np.zeros(int(flat.window.max(initial=-1)) + 1)
        ids = np.unique(flat.window[flat.window >= 0])
        self.init[ids] = -profile.fn
        self.candidates = np.unique(np.r_[self.s, self.prev[np.isfinite(self.prev)]])[::-1]

    def __call__(self, t: float) -> float:
        k = int(np.searchsorted(self.neg_s, -t, side="right"))
        act = self.prev[:k] < t
        g, w = self.g[:k][act], self.w[:k][act]
        out = g < 0
        best = self.init.copy()
        np.maximum.at(best, g[~out], w[~out])
        return float(w[out].sum() + best.sum())


def _onset_sweep(ev: _OnsetEval, thresholds):
    cand = ev.candidates if thresholds is None else np.unique(np.asarray(thresholds, np.float64))[::-1]
    exhaustive = True
    if thresholds is None and cand.size > _ONSET_EXHAUSTIVE:
        # Coarse-to-fine over the sorted candidates: evaluate a grid, then zoom
        # in between the best point's neighbours until the span is small.
        exhaustive = False
        lo, hi = 0, cand.size - 1
        seen: dict[int, float] = {}
        while True:
            idx = np.unique(np.linspace(lo, hi, min(_ONSET_GRID, hi - lo + 1)).round().astype(int))
            for j in idx.tolist():
                if j not in seen:
                    seen[j] = ev(float(cand[j]))
            if hi - lo + 1 <= _ONSET_GRID:
                break
            j = int(idx[int(np.argmax([seen[j] for j in idx.tolist()]))])
            pos = int(np.searchsorted(idx, j))
            lo, hi = int(idx[max(pos - 1, 0)]), int(idx[min(pos + 1, idx.size - 1)])
        keys = np.array(sorted(seen))
        thr = cand[keys]
        raw = np.array([seen[j] for j in keys.tolist()])
    else:
        thr = cand
        raw = np.array([ev(float(t)) for t in thr.tolist()])
    return np.r_[np.inf, thr], np.r_[ev.flat.null, raw], exhaustive


def sweep(scores, corpus: NabCorpus, profile: Profile = STANDARD, *, alarm: str = "row",
          thresholds=None) -> NabSweep:
    """Sweep one threshold over a detector's scores on the whole corpus, as NAB's optimizer does.

    Parameters
    ----------
    scores : sequence of arrays
        One float array per file (any scale; NaN is an error).
    alarm : {"row", "onset"}
        ``"row"``: every scored row at or above the threshold is a detection
        (NAB's own rule; the sweep is exact over every distinct score).
        ``"onset"``: a detection is the first row of each run at or above
        the threshold. With ``thresholds=None`` every candidate is tried when
        there are at most 2,048, otherwise a grid of 256 is refined around its
        best point (``exhaustive`` is then False).
    thresholds : array_like, optional
        Candidate thresholds for ``"onset"``.

    Examples
    --------
    >>> f = NabFile("a", np.arange(40).astype("datetime64[s]"), np.zeros(40), np.array([[20, 29]]))
    >>> c = NabCorpus((f,), probation_percent=0.0)
    >>> s = np.zeros(40); s[20] = 0.9; s[5] = 0.5; s[33] = 0.3
    >>> sw = sweep([s], c)
    >>> sw.best.threshold, sw.best.caught, sw.best.false_alarms, round(sw.best.normalised, 6)
    (0.9, 1, 0, 100.0)
    >>> np.round(sw.raw, 4).tolist()
    [-1.0, 1.0, 0.89, 0.8015, -2.0791]
    """
    if alarm not in ("row", "onset"):
        raise ValueError(f"alarm must be 'row' or 'onset', got {alarm!r}")
    flat = _flatten(corpus, profile)
    s = _per_file(scores, corpus, "scores", np.float64)
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    if alarm == "row":
        if thresholds is not None:
            raise ValueError("thresholds apply to alarm='onset' only (the row sweep tries every distinct score)")
        thr, raw = _row_sweep(flat, s, profile)
        exhaustive = True
    else:
        prev = _per_file((np.r_[-np.inf, np.asarray(a, np.float64)[:-1]] for a in scores), corpus, "scores",
                         np.float64)
        thr, raw, exhaustive = _onset_sweep(_OnsetEval(flat, s, prev, profile), thresholds)
    j = int(np.argmax(raw))
    t = float(thr[j])
    if alarm == "row":
        det = s >= t
    else:
        det = (s >= t) & (prev < t)
    return NabSweep(thr, raw, _result(flat, det, profile, threshold=t), alarm, exhaustive)


# ---------------------------------------------------------------------------
# Detectors on NAB
# ---------------------------------------------------------------------------


def persistent(raw, m: int, n: int) -> np.ndarray:
    """``True`` where at least ``m`` of the last ``n`` rows (this one included) are ``True``.

    Examples
    --------
    >>> persistent(np.array([1, 1, 0, 1, 1, 1], bool), 3, 3).astype(int).tolist()
    [0, 0, 0, 0, 0, 1]
    """
    if not 1 <= m <= n:
        raise ValueError(f"need 1 <= m <= n, got m={m}, n={n}")
    c = np.r_[0, np.cumsum(np.asarray(raw, dtype=np.int64))]
    i = np.arange(1, c.size)
    return (c[i] - c[np.maximum(i - n, 0)]) >= m


def meter_hot(scores, params) -> np.ndarray:
    """The meter's hot rule for one node: score at or above node 0's threshold
    on ``persistence_m`` of the last ``persistence_n`` rows (a single node gets
    no family correction).

    Examples
    --------
    >>> from ctas7.stages.meter import MeterParams
    >>> p = MeterParams(score_threshold=5.0, persistence_m=2, persistence_n=3)
    >>> meter_hot(np.array([6.0, 1.0, 7.0, 1.0, 1.0]), p).astype(int).tolist()
    [0, 0, 1, 0, 0]
    """
    thr = dict(params.node_thresholds).get(0, params.score_threshold)
    return persistent(np.asarray(scores) >= thr, params.persistence_m, params.persistence_n)


def scale_aware_params(values, warm: int):
    """The meter parameters of ``tests/test_meter_nab.py``: a variance floor from
    the series' own (unscored) warm-up rows. They were chosen by looking at NAB.

    Examples
    --------
    >>> p = scale_aware_params(np.r_[np.full(30, 2.0), np.full(30, 4.0)], 60)
    >>> p.var_floor, p.lookback_ticks, p.poisson_floor
    (0.25, 256.0, 0.0)
    """
    from ctas7.stages.meter import MeterParams

    head = np.asarray(values, dtype=np.float64)[:warm]
    scale = max(float(np.std(head)), 1e-3 * float(np.mean(np.abs(head))), 1e-6)
    return MeterParams(lookback_ticks=256.0, min_samples=30, outlier_sigma=4.0, poisson_floor=0.0,
                       var_floor=(0.5 * scale) ** 2)


def pagehinkley_alarms(values, warm: int, threshold: float = 50.0) -> np.ndarray:
    """River ``drift.PageHinkley`` (defaults but ``threshold``) on values
    standardised by the warm-up rows: ``True`` on each row where it reports drift.

    Examples
    --------
    >>> x = np.r_[np.zeros(200), np.full(200, 5.0)] + np.random.default_rng(0).normal(0, 0.1, 400)
    >>> int(np.flatnonzero(pagehinkley_alarms(x, 100, threshold=20.0))[0])
    200
    """
    from river import drift

    v = np.asarray(values, dtype=np.float64)
    head = v[:warm] if warm > 0 else v
    z = (v - head.mean()) / max(float(head.std()), 1e-12)
    ph, alarm = drift.PageHinkley(threshold=threshold), np.zeros(v.size, bool)
    for i, x in enumerate(z.tolist()):
        ph.update(x)
        if ph.drift_detected:
            alarm[i] = True
    return alarm


def _row(detector: str, sample: str, rule: str, r: NabResult, **extra) -> dict:
    d = {"detector": detector, "sample": sample, "rule": rule}
    d.update(asdict(r))
    d.update(extra)
    return d


def nab_report(corpus: NabCorpus, params=None, *, profile: Profile = STANDARD, peer: bool = True,
               params_label: str | None = None) -> dict:
    """The meter's per-node detector, and River's PageHinkley, on NAB.

    Rows (``sample`` says what saw NAB):

    * meter with ``params`` (default: :class:`~ctas7.stages.meter.MeterParams`,
      the Monte Carlo's point, tuned on the scenarios only) at its own hot rule
      (threshold and persistence), an alarm at each onset: out-of-sample;
    * the same scores with one threshold swept on NAB, as NAB does for every
      detector, with every row at or above it a detection (NAB's rule) and
      with onsets only: threshold in-sample;
    * the meter with :func:`scale_aware_params` (chosen by looking at NAB)
      at 20 bits (``tests/test_meter_nab.py``) and swept: in-sample;
    * PageHinkley on warm-up-standardised values at River's default
      threshold 50 and swept over :data:`PH_THRESHOLDS`.

    Returns a dict with ``corpus``, ``profile`` and ``rows``.
    """
    from ctas7.chain import load_params
    from ctas7.stages.meter import score_series

    p = load_params(params)
    if params_label is None:
        params_label = "tuned params (Monte Carlo, never saw NAB)" if params is None else "params from file"
    tuned_sample = "out-of-sample" if params is None else "params as given"
    warm = [corpus.probation(f) for f in corpus.files]
    tuned = [score_series(f.values.astype(np.float32), p).astype(np.float64) for f in corpus.files]
    scaled = [score_series(f.values.astype(np.float32), scale_aware_params(f.values, w)).astype(np.float64)
              for f, w in zip(corpus.files, warm)]
    thr = dict(p.node_thresholds).get(0, p.score_threshold)
    rows = []
    own = score_corpus([onsets(meter_hot(s, p)) for s in tuned], corpus, profile)
    rows.append(_row(f"meter, {params_label}", tuned_sample,
                     f"hot: >= {thr:g} bits on {p.persistence_m} of {p.persistence_n} rows; onset",
                     NabResult(**{**asdict(own), "threshold": float(thr)})))
    tuned_row = sweep(tuned, corpus, profile, alarm="row")
    tuned_on = sweep(tuned, corpus, profile, alarm="onset")
    thr_sample = "threshold in-sample"
    rows.append(_row(f"meter, {params_label}", thr_sample, "bits >= t, every row (NAB sweep)", tuned_row.best))
    rows.append(_row(f"meter, {params_label}", thr_sample, "bits >= t, onset (NAB sweep)", tuned_on.best,
                     exhaustive=tuned_on.exhaustive))
    at20 = score_corpus([onsets(s >= 20.0) for s in scaled], corpus, profile)
    rows.append(_row("meter, scale-aware params (test_meter_nab)", "in-sample", "bits >= 20, onset",
                     NabResult(**{**asdict(at20), "threshold": 20.0})))
    sc_row = sweep(scaled, corpus, profile, alarm="row")
    sc_on = sweep(scaled, corpus, profile, alarm="onset")
    rows.append(_row("meter, scale-aware params (test_meter_nab)", "in-sample", "bits >= t, every row (NAB sweep)",
                     sc_row.best))
    rows.append(_row("meter, scale-aware params (test_meter_nab)", "in-sample", "bits >= t, onset (NAB sweep)",
                     sc_on.best, exhaustive=sc_on.exhaustive))
    if peer:
        curve = []
        for t in PH_THRESHOLDS:
            alarms = [pagehinkley_alarms(f.values, w, t) for f, w in zip(corpus.files, warm)]
            r = score_corpus(alarms, corpus, profile)
            curve.append(NabResult(**{**asdict(r), "threshold": t}))
        default = next(r for r in curve if r.threshold == 50.0)
        best = max(reversed(curve), key=lambda r: r.raw)  # ties: the highest threshold, as NAB's optimizer
        rows.append(_row("River PageHinkley, standardised values", "out-of-sample",
                         "drift (threshold 50, River default)", default))
        rows.append(_row("River PageHinkley, standardised values", "threshold in-sample",
                         f"drift, threshold swept over {len(PH_THRESHOLDS)} values", best))
    return {
        "corpus": {"path": str(corpus.path) if corpus.path else None, "files": len(corpus.files),
                   "rows": corpus.n_rows, "windows_labelled": corpus.n_windows,
                   "probation_percent": corpus.probation_percent},
        "profile": asdict(profile),
        "rows": rows,
    }


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ctas7-intel nab-score``."""
    parser.add_argument("--nab", default=None, metavar="PATH",
                        help=f"NAB corpus folder with data/ and labels/ (default: {DEFAULT_NAB_DIR})")
    parser.add_argument("--params", default=None, metavar="FILE",
                        help="meter parameters JSON (default: the built-in tuned MeterParams)")
    parser.add_argument("--profile", default="standard", choices=sorted(PROFILES),
                        help="NAB application profile (default standard)")
    parser.add_argument("--no-peer", dest="peer", action="store_false",
                        help="skip River's PageHinkley")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _fmt_thr(t) -> str:
    if t is None:
        return "-"
    return "none" if math.isinf(t) else f"{t:.4g}"


def print_report(rep: dict, console=None) -> None:
    """Render :func:`nab_report`'s result as a rich table."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    c, prof = rep["corpus"], rep["profile"]
    rows = rep["rows"]
    t = Table(title=f"NAB ({c['files']} files, {c['rows']:,} rows, {c['windows_labelled']} windows), "
                    f"{prof['name']} profile (tp {prof['tp']:g}, fp {prof['fp']:g}, fn {prof['fn']:g})",
              box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for name, just in (("detector", "left"), ("sample", "left"), ("alarm rule", "left"), ("threshold", "right"),
                       ("caught", "right"), ("false alarms", "right"), ("raw", "right"), ("NAB score", "right")):
        t.add_column(name, justify=just)
    for r in rows:
        rule = r["rule"] + ("" if r.get("exhaustive", True) else " (grid)")
        t.add_row(r["detector"], r["sample"], rule, _fmt_thr(r["threshold"]),
                  f"{r['caught']}/{r['windows']}", str(r["false_alarms"]), f"{r['raw']:.2f}",
                  f"{r['normalised']:.1f}")
    if rows:
        t.caption = (f"NAB score = 100 (raw - null) / (perfect - null); null {rows[0]['null']:g}, "
                     f"perfect {rows[0]['perfect']:g}. First {c['probation_percent']:.0%} of each file "
                     "(at most 750 rows) not scored. In-sample: chosen on NAB."
                     + ("" if all(r.get("exhaustive", True) for r in rows)
                        else " (grid): coarse-to-fine threshold search, not every threshold."))
    console.print(t)


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def run(args) -> int:
    """Entry point of ``ctas7-intel nab-score``."""
    if args.peer:
        try:
            import river  # noqa: F401
        except ImportError:
            print("ctas7-intel nab-score: error: the PageHinkley peer needs River (pip install 'ctas7[bench]'); "
                  "or pass --no-peer", file=sys.stderr)
            return 2
    try:
        corpus = load_corpus(args.nab)
        rep = nab_report(corpus, args.params, profile=PROFILES[args.profile], peer=args.peer,
                         params_label=None if args.params is None else f"params {Path(args.params).name}")
    except (TypeError, ValueError) as exc:
        print(f"ctas7-intel nab-score: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(_jsonable(rep), indent=2, allow_nan=False))
    else:
        print_report(rep)
    return 0
