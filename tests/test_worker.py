"""Tests for ctas7.stations.worker: the Cython generator vs its numpy model, and the worker's stamps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctas7._core import _synth
from ctas7.events import EVENT_DTYPE, empty, make_events
from ctas7.stations.worker import KIND_STAMP, FastSyntheticSource, reference_fill


def test_splitmix64_known_values():
    # Reference outputs of splitmix64 seeded with 0 (Vigna's splitmix64.c).
    out = _synth.splitmix64(np.array([0], dtype=np.uint64), 3)
    assert out.tolist() == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(0, 600), seed=st.integers(0, 2**64 - 1), n_stations=st.integers(1, 300),
    first=st.integers(0, 1000), n_kinds=st.integers(1, 20), t_first=st.integers(0, 10**15),
    step=st.floats(0, 1e6), bursty=st.booleans(), share=st.floats(0, 1), n_burst=st.integers(0, 5),
    period=st.integers(1, 10**6), blen=st.integers(0, 10**6), chunks=st.integers(1, 3),
)
def test_fill_matches_reference(n, seed, n_stations, first, n_kinds, t_first, step, bursty, share, n_burst, period,
                                blen, chunks):
    n_burst = min(n_burst, n_stations)
    kw = dict(n_stations=n_stations, first_station=first, n_kinds=n_kinds)
    if bursty:
        kw.update(burst_period_ns=period, burst_len_ns=blen, burst_share=share, n_burst=n_burst)
    src = FastSyntheticSource(seed=seed, **kw)
    state = np.array([seed], dtype=np.uint64)
    seqs = np.zeros(n_stations, dtype=np.uint64)
    # Several calls in a row continue the same stream (state and seqs carry over).
    for c in range(chunks):
        out = empty(n)
        t0 = t_first + c * 10**9
        assert src.fill(out, t0, step) == n
        ref = reference_fill(n, seed=seed, t_first=t0, step_ns=step, state=state, seqs=seqs, **kw)
        assert np.array_equal(out, ref)
    assert np.array_equal(src.seqs, seqs)
    assert int(src.state[0]) == int(state[0])


def test_bursts_concentrate_events():
    src = FastSyntheticSource(n_stations=100, seed=3, burst_period_ns=10**6, burst_len_ns=5 * 10**5,
                              burst_share=0.5, n_burst=4)
    out = empty(100_000)
    src.fill(out, 0, 20.0)  # 2 ms of event time: two bursts
    in_burst = out["ts"] % 10**6 < 5 * 10**5
    share_burst = np.isin(out["station"][in_burst], [0, 1, 2, 3]).mean()
    share_calm = np.isin(out["station"][~in_burst], [0, 1, 2, 3]).mean()
    assert share_burst > 0.45 and share_calm < 0.1
    # Sequence numbers stay exact per station.
    for s in (0, 50):
        assert out["seq"][out["station"] == s].tolist() == list(range((out["station"] == s).sum()))


def test_fill_rejects_bad_input():
    src = FastSyntheticSource(n_stations=4)
    with pytest.raises(TypeError):
        src.fill(np.zeros(4), 0, 1.0)
    ro = empty(4)
    ro.flags.writeable = False
    with pytest.raises(ValueError):
        src.fill(ro, 0, 1.0)
    with pytest.raises(ValueError):
        src.fill(empty(4), 0, -1.0)
    for bad in (dict(n_stations=0), dict(n_stations=10, first_station=65530), dict(n_kinds=0),
                dict(n_burst=5, n_stations=4), dict(burst_share=1.5)):
        with pytest.raises(ValueError):
            FastSyntheticSource(**bad)
    with pytest.raises(ValueError):
        FastSyntheticSource(n_stations=4, seqs=np.zeros(3, dtype=np.uint64))
    with pytest.raises(ValueError):
        _synth.fill(empty(2), np.zeros(1, np.uint64), np.zeros(4, np.uint64), 4, 0, 8, -5, 1.0, 10, 5, 0.5, 1)


def test_fill_writes_in_place_into_a_view():
    buf = np.zeros(10, dtype=EVENT_DTYPE)
    src = FastSyntheticSource(n_stations=3, seed=9)
    src.fill(buf[2:7], 100, 1.0)
    assert buf["ts"].tolist() == [0, 0, 100, 101, 102, 103, 104, 0, 0, 0]


def test_stamp_kind_is_control_and_distinct():
    from ctas7.events import KIND_CONTROL_BASE, KIND_GAP, KIND_HEARTBEAT

    assert KIND_CONTROL_BASE <= KIND_STAMP < 0x10000
    assert KIND_STAMP not in (KIND_GAP, KIND_HEARTBEAT)
    ev = make_events(ts=[1], kind=KIND_STAMP)
    assert ev["kind"][0] == KIND_STAMP
