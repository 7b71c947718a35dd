"""The meter's per-node scorer on the NAB corpus (real labelled anomalies).

Every series in ``NAB/data/*/*.csv`` is scored with
:func:`ctas7.stages.meter.score_series`; an alarm is a score at or above a
threshold. NAB's first ``min(15% rows, 750)`` rows are warm-up and are not
scored. An alarm is the onset of a run of scores at or above the
threshold. The scorer must catch labelled windows clearly more often than the
same number of alarms placed uniformly at random in each file would, and a
larger share of its alarms must fall inside windows than random placement
gives (the share of scored rows inside windows).
"""

import json
import math

import numpy as np
import pytest

from ctas7.stages.meter import MeterParams, score_series

THRESHOLD_BITS = 20.0  # |z| about 4.9


def _load(path):
    ts, vals = [], []
    with open(path, encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            t, v = line.rstrip("\n").split(",")
            ts.append(t)
            vals.append(float(v))
    return np.array(ts, dtype="datetime64[s]"), np.array(vals, dtype=np.float32)


def _params_for(values, warm):
    # The variance floor follows the series' own scale (set from the unscored
    # warm-up rows only): NAB mixes percentages, counts and 1e6-scale values.
    head = values[:warm].astype(np.float64)
    scale = max(float(np.std(head)), 1e-3 * float(np.mean(np.abs(head))), 1e-6)
    return MeterParams(lookback_ticks=256.0, min_samples=30, outlier_sigma=4.0, poisson_floor=0.0,
                       var_floor=(0.5 * scale) ** 2, score_threshold=THRESHOLD_BITS)


def _cusum_params_for(values, warm):
    # The meter's two-sided CUSUM alone on the raw standardised residual
    # (asv_bench/peers.py's scale-aware CUSUM; k = 1 was chosen on NAB).
    return _params_for(values, warm).replace(transform="none", detector="cusum", smoothing=1.0, cusum_k=1.0,
                                             cusum_offset=0.0)


def _expected_hits(n_rows, n_alarms, lengths):
    """Expected windows hit by n_alarms distinct rows drawn uniformly."""
    if n_alarms == 0:
        return 0.0
    out = 0.0
    for L in lengths:
        # 1 - C(n - L, k) / C(n, k), in logs.
        if n_rows - L < n_alarms:
            out += 1.0
            continue
        miss = (math.lgamma(n_rows - L + 1) - math.lgamma(n_rows - L - n_alarms + 1)
                - math.lgamma(n_rows + 1) + math.lgamma(n_rows - n_alarms + 1))
        out += 1.0 - math.exp(miss)
    return out


@pytest.mark.parametrize("make_params", [_params_for, _cusum_params_for], ids=["surprisal+cusum", "cusum"])
def test_nab_scorer_beats_random_alarms(nab_dir, make_params):
    windows = json.loads((nab_dir / "labels" / "combined_windows.json").read_text())
    files = sorted(nab_dir.glob("data/*/*.csv"))
    assert len(files) >= 50
    hits = expected = alarms_in = alarms = rows_in = rows = 0.0
    n_windows = 0
    for path in files:
        key = f"{path.parent.name}/{path.name}"
        ts, values = _load(path)
        warm = min(int(0.15 * len(values)), 750)
        scores = score_series(values, make_params(values, warm))
        assert scores.shape == values.shape and not np.isnan(scores).any()
        scored = np.zeros(len(values), bool)
        scored[warm:] = True
        above = scores >= THRESHOLD_BITS
        # An alarm is the onset of a run of high scores, as a detector reports it.
        alarm = scored & above & ~np.r_[False, above[:-1]]
        inside = np.zeros(len(values), bool)
        lengths = []
        for start, end in windows[key]:
            lo, hi = np.searchsorted(ts, np.datetime64(start[:19])), np.searchsorted(ts, np.datetime64(end[:19]), "right")
            lo = max(lo, warm)
            if hi <= lo:
                continue
            inside[lo:hi] = True
            lengths.append(hi - lo)
            hits += bool(alarm[lo:hi].any())
            n_windows += 1
        n_scored, k = int(scored.sum()), int(alarm.sum())
        expected += _expected_hits(n_scored, k, lengths)
        alarms += k
        alarms_in += int((alarm & inside).sum())
        rows += n_scored
        rows_in += int((scored & inside).sum())
    assert n_windows >= 60
    precision, base_rate = alarms_in / alarms, rows_in / rows
    report = (f"windows hit {hits:.0f}/{n_windows} vs {expected:.1f} expected at random; "
              f"alarms in windows {precision:.3f} vs {base_rate:.3f} of rows; {alarms:.0f} alarms")
    print(report)
    assert hits >= 1.3 * expected, report
    assert precision >= 1.5 * base_rate, report
