"""Tests for SlotGraph (ctas7.stages.slotgraph, ctas7._core._slotgraph)."""

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctas7 import checks
from ctas7._core import _slotgraph
from ctas7.events import KIND_HEARTBEAT, empty, make_events
from ctas7.sim.synthetic import batches
from ctas7.stage import Frame
from ctas7.stages.slotgraph import (
    COMEBACK,
    MOVE_DTYPE,
    MOVE_FROM_PENDING,
    MOVE_REPLACED,
    TIMEOUT,
    SlotGraph,
    StationSpec,
    Task,
    reference_best,
    reference_scan,
    reference_score,
)


def beats(ts, station, value=0.0):
    return make_events(ts=ts, kind=KIND_HEARTBEAT, station=station, value=value)


def graph(specs, timeout=100, **kw):
    return SlotGraph(stations=specs, heartbeat_timeout_ns=timeout, **kw)


# ---------------------------------------------------------------------------
# Placement: filter, score, tie-break
# ---------------------------------------------------------------------------


def test_filter_excludes_offline_full_and_missing_capability():
    g = graph(
        [
            (0, "g", {"a"}, 4, 1.0),  # will go offline
            (1, "g", {"a"}, 1, 1.0),  # too few slots for 2
            (2, "g", {"b"}, 8, 1.0),  # lacks "a"
            (3, "g", {"a", "b"}, 2, 50.0),  # the only one left
        ]
    )
    g.process(Frame(beats([0, 150], [1, 1])))  # 0, 2, 3 time out at 150
    g.process(Frame(beats([151, 151], [2, 3])))  # 2 and 3 come back
    assert not g.is_online(0) and g.is_online(3)
    assert g.submit(Task(1, {"a"}, slots=2)).station == 3
    assert g.submit(Task(2, {"a"}, slots=2)) is None  # 3 is full now
    assert g.pending() == [2]


def test_hand_computed_scores():
    # candidates for a 1-slot {"a"} task; max latency among them is 40.
    specs = [
        (0, "g", {"a"}, 4, 40.0),  # lat 0,    cap 3/4, fit 2/2 -> 0 + .225 + .3  = .525
        (1, "g", {"a", "b"}, 2, 10.0),  # .75,  cap 1/2, fit 2/3 -> .3 + .15 + .2 = .65
        (2, "g", {"a", "b", "c"}, 8, 20.0),  # .5, 7/8, 2/4 -> .2 + .2625 + .15 = .6125
    ]
    assert reference_score(40.0, 40.0, 4, 1, 4, 1, 1) == pytest.approx(0.525)
    assert reference_score(10.0, 40.0, 2, 1, 2, 1, 2) == pytest.approx(0.65)
    assert reference_score(20.0, 40.0, 8, 1, 8, 1, 3) == pytest.approx(0.6125)
    g = graph(specs)
    assert g.submit(Task(1, {"a"})).station == 1
    # Station 1 now has 1 free: cap 0 -> .3 + 0 + .2 = .5 < .525 < .6125.
    assert g.submit(Task(2, {"a"})).station == 2
    # Station 2: 6/8 -> .2 + .225 + .15 = .575 > .525 > .5
    assert g.submit(Task(3, {"a"})).station == 2
    # A task needing a, b, c only fits 2: fit 4/4.
    assert g.submit(Task(4, {"a", "b", "c"}, slots=6)).station == 2
    assert g.submit(Task(5, {"a", "b", "c"})) is None


def test_zero_latency_everywhere_scores_latency_one():
    assert reference_score(0.0, 0.0, 2, 1, 2, 0, 0) == pytest.approx(0.4 + 0.15 + 0.3)
    g = graph([(5, "g", (), 2, 0.0), (6, "g", (), 4, 0.0)])
    assert g.submit(Task(1)).station == 6  # more room left


def test_tie_goes_to_lowest_station_id():
    specs = [(i, "g", {"x"}, 2, 7.0) for i in (9, 3, 5)]
    g = graph(specs)
    placed = [g.submit(Task(i, {"x"})).station for i in range(6)]
    # All tie at first -> 3; then 3 has less room, so 5, then 9, then 3 again...
    assert placed == [3, 5, 9, 3, 5, 9]
    assert g.submit(Task(99, {"x"})) is None


def test_priority_orders_pending_retry():
    g = graph([(0, "g", (), 2, 1.0)])
    g.submit(Task(1, slots=2))
    assert g.submit(Task(2, slots=1, priority=0)) is None
    assert g.submit(Task(3, slots=1, priority=5)) is None
    assert g.submit(Task(4, slots=2, priority=9)) is None
    assert g.pending() == [4, 3, 2]
    placed = g.release(1)
    assert [a.task for a in placed] == [4]
    assert g.pending() == [3, 2]
    g.release(4)
    assert g.assignments() == {3: 0, 2: 0}


def test_pending_skips_large_task_blocking_small_ones():
    g = graph([(0, "g", (), 3, 1.0)])
    g.submit(Task(1, slots=3))
    g.submit(Task(2, slots=3, priority=1))
    g.submit(Task(3, slots=1))
    g.submit(Task(10, slots=1, priority=-1))
    g.submit(Task(11, slots=1, priority=-1))
    g.release(10)  # pending: nothing freed (10 was pending)
    assert g.pending() == [2, 3, 11]
    g.release(1)  # 3 free: task 2 (3 slots, higher priority) takes all
    assert g.assignments() == {2: 0}
    assert g.pending() == [3, 11]


def test_pending_placed_when_station_added():
    g = graph([], gateways=["north"])
    assert g.submit(Task(1, {"sar"}, slots=3)) is None
    assert g.add_station(4, "north", {"sar", "ir"}, slots=2, latency_ms=1.0) == []
    placed = g.add_station(5, "north", {"sar"}, slots=3, latency_ms=9.0)
    assert [(a.task, a.station, a.gateway) for a in placed] == [(1, 5, "north")]
    assert g.topology() == {"north": (4, 5)}
    assert g.station_load()[["station", "used", "slots"]].tolist() == [(4, 0, 2), (5, 3, 3)]


def test_release_and_lookup():
    g = graph([(0, "g", (), 2, 1.0)])
    g.submit(Task(1))
    assert g.assignment(1).station == 0
    g.release(1)
    with pytest.raises(KeyError):
        g.assignment(1)
    with pytest.raises(KeyError):
        g.release(1)
    assert g.station_load()["used"].tolist() == [0]


# ---------------------------------------------------------------------------
# Kernel vs reference
# ---------------------------------------------------------------------------

station_strategy = st.lists(
    st.tuples(
        st.booleans(),  # online
        st.integers(1, 6),  # slots
        st.integers(0, 6),  # used (clipped)
        st.sampled_from([0.0, 1.0, 2.0, 5.0, 10.0, 2.5]),  # latency: ties likely
        st.integers(0, 15),  # mask
    ),
    min_size=0,
    max_size=25,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(station_strategy, st.integers(0, 15), st.integers(1, 4))
def test_best_station_matches_reference(stations, need, k):
    t = _slotgraph.StationTable(10)
    ref = []
    for sid, (online, slots, used, lat, mask) in enumerate(stations):
        t.set_station(sid, mask, slots, lat)
        used = min(used, slots)
        t.take(sid, used)
        if not online:
            t.set_online(sid, False)
        ref.append((sid, online, slots - used, slots, lat, mask))
    assert t.best(need, k) == reference_best(ref, need, k)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    st.integers(1, 6),  # stations registered: 0..n-1
    st.lists(st.tuples(st.integers(0, 40), st.integers(0, 8), st.booleans()), max_size=60),
    st.integers(0, 15),  # timeout
    st.lists(st.integers(1, 20), max_size=5),  # batch cut points
    st.booleans(),
)
def test_scan_matches_reference(n, steps, timeout, cuts, data_live):
    # steps: (dt, station, heartbeat?) with occasional backwards time.
    ts, station, kind = [], [], []
    t0 = 0
    for i, (dt, s, hb) in enumerate(steps):
        t0 = t0 + dt if i % 7 else t0 - dt  # some out-of-order events
        ts.append(t0)
        station.append(s)
        kind.append(KIND_HEARTBEAT if hb else 3)
    ev = make_events(ts=ts, station=station, kind=kind, value=np.arange(len(ts), dtype=np.float32))
    t = _slotgraph.StationTable(timeout, data_live)
    for s in range(n):
        t.set_station(s, 0, 1, 0.0)
    got = []
    pos = 0
    for c in sorted(set(cuts)) + [len(ev)]:
        c = min(c, len(ev))
        if c < pos:
            continue
        k, s, tt = t.scan(ev[pos:c])
        got += list(zip(k.tolist(), s.tolist(), tt.tolist()))
        pos = c
    last_seen = {s: None for s in range(n)}
    alive = {s: True for s in range(n)}
    want, wm = reference_scan(ev, last_seen, alive, None, timeout, data_live)
    assert got == want
    assert t.array("alive").tolist() == [int(alive[s]) for s in range(n)]
    if len(ev):
        assert t.watermark == wm
        assert t.array("last_seen").tolist() == [last_seen[s] for s in range(n)]


def test_scan_keeps_load_of_latest_heartbeat_and_counts_unknown():
    t = _slotgraph.StationTable(1000)
    t.set_station(0, 0, 1, 0.0)
    t.scan(make_events(ts=[5, 3, 5, 9], kind=KIND_HEARTBEAT, station=[0, 0, 0, 7], value=[1.0, 2.0, 3.0, 4.0]))
    assert t.array("load")[0] == 3.0  # ts 5 seen twice: the later one; ts 3 is late
    assert t.n_heartbeats == 3 and t.n_unknown == 1


# ---------------------------------------------------------------------------
# Heartbeats in the stream
# ---------------------------------------------------------------------------


def three_stations():
    return graph(
        [(0, "east", {"a"}, 4, 1.0), (1, "east", {"a"}, 4, 5.0), (2, "west", {"a", "b"}, 2, 2.0)],
        timeout=100,
        tasks=[Task(i, {"a"}) for i in range(5)] + [Task(9, {"b"}, slots=2, priority=3)],
    )


def test_timeout_moves_tasks_and_reports_moves():
    g = three_stations()
    # By hand (lmax 5): 0..3 go to station 0 (0.845, 0.77, 0.695, 0.62 against
    # station 2's 0.59), 4 to station 2 (0.59 > station 1's 0.525), and 9
    # (needs b, 2 slots) waits: station 2 has 1 slot left.
    assert g.assignments() == {0: 0, 1: 0, 2: 0, 3: 0, 4: 2}
    assert g.pending() == [9]
    # Stations 1 and 2 keep beating, 0 falls silent.
    f = g.process(Frame(beats([0, 50, 60, 100, 110, 160], [1, 2, 1, 2, 1, 2], value=0.5)))
    moves = f.extras["slotgraph"]
    assert moves.dtype == MOVE_DTYPE
    # Re-placed in order: 0 -> 1 (0.525 vs 0.44), 1 -> 1 (0.45 vs 0.44),
    # 2 -> 2 (0.375 vs 0.44), 3 -> 1 (station 2 is full).
    assert moves[["task", "src", "dst"]].tolist() == [(0, 0, 1), (1, 0, 1), (2, 0, 2), (3, 0, 1)]
    assert set(moves["reason"].tolist()) == {MOVE_REPLACED}
    assert (moves["ts"] == 110).all()  # the first event more than 100 past 0's last beat (0)
    trans = f.extras["slotgraph_stations"]
    assert trans[["station", "kind", "ts"]].tolist() == [(0, TIMEOUT, 110)]
    assert not g.is_online(0)
    assert g.assignments() == {0: 1, 1: 1, 2: 2, 3: 1, 4: 2}
    load = g.station_load()
    assert load["online"].tolist() == [False, True, True]
    assert load["used"].tolist() == [0, 3, 2]
    assert load["reported_load"].tolist() == [0.0, 0.5, 0.5]
    assert load["last_seen"].tolist()[1:] == [110, 160]


def test_unplaceable_tasks_go_pending_then_return_on_comeback():
    g = graph([(0, "g", {"a"}, 2, 1.0), (1, "g", {"a"}, 1, 1.0)], timeout=100, tasks=[Task(1, {"a"}, slots=2)])
    assert g.assignment(1).station == 0
    f = g.process(Frame(beats([0, 90, 180], [1, 1, 1])))
    assert f.extras["slotgraph"][["task", "src", "dst"]].tolist() == [(1, 0, -1)]
    assert g.pending() == [1]
    # Station 0 comes back: the pending task is placed on it.
    f = g.process(Frame(beats([200], [0])))
    assert f.extras["slotgraph_stations"][["station", "kind"]].tolist() == [(0, COMEBACK)]
    m = f.extras["slotgraph"]
    assert m[["task", "src", "dst", "reason"]].tolist() == [(1, -1, 0, MOVE_FROM_PENDING)]
    assert g.pending() == []


def test_comeback_does_not_move_old_tasks_back():
    g = graph([(0, "g", (), 4, 1.0), (1, "g", (), 4, 9.0)], timeout=100, tasks=[Task(1), Task(2)])
    assert g.assignments() == {1: 0, 2: 0}
    g.process(Frame(beats([0, 90, 150], [1, 1, 1])))
    assert g.assignments() == {1: 1, 2: 1}
    f = g.process(Frame(beats([160, 170], [0, 1])))
    assert g.is_online(0)
    assert len(f.extras["slotgraph"]) == 0
    assert g.assignments() == {1: 1, 2: 1}
    assert g.submit(Task(3)).station == 0  # new work does go to it


def test_station_silent_inside_one_batch_times_out_and_returns():
    g = graph([(0, "g", (), 1, 1.0), (1, "g", (), 1, 5.0)], timeout=100, tasks=[Task(1)])
    f = g.process(Frame(beats([0, 50, 100, 150, 200, 250, 260], [1, 1, 1, 1, 1, 1, 0])))
    trans = f.extras["slotgraph_stations"][["station", "kind", "ts"]].tolist()
    assert trans == [(0, TIMEOUT, 150), (0, COMEBACK, 260)]
    assert g.assignments() == {1: 1}


def test_unknown_station_heartbeats_are_counted():
    g = graph([(0, "g", (), 1, 1.0)])
    g.process(Frame(beats([0, 1, 2], [0, 42, 42])))
    assert g.heartbeats == 1 and g.unknown_heartbeats == 2
    assert g.watermark == 2


def _fleet_stream(seed=3, n_stations=40, n_events=6000):
    rng = np.random.default_rng(seed)
    ts = np.cumsum(rng.integers(0, 5, size=n_events))
    station = rng.integers(0, n_stations + 2, size=n_events)  # ids past the fleet: unknown
    # Some stations go silent for a stretch, some for good.
    silent = (station % 7 == 3) & (ts > ts[-1] * 0.3) & (ts < ts[-1] * 0.6)
    silent |= (station % 11 == 5) & (ts > ts[-1] * 0.5)
    kind = np.where(rng.random(n_events) < 0.6, KIND_HEARTBEAT, 2)
    keep = ~silent
    return make_events(ts=ts[keep], station=station[keep], kind=kind[keep], value=rng.random(keep.sum()))


def _fleet(seed=3, n_stations=40):
    rng = np.random.default_rng(seed)
    caps = ["a", "b", "c", "d"]
    specs = [
        StationSpec(i, f"gw{i % 3}", {c for c in caps if rng.random() < 0.6}, int(rng.integers(1, 6)), float(rng.integers(1, 20)))
        for i in range(n_stations)
    ]
    tasks = [
        Task(i, {c for c in caps if rng.random() < 0.25}, int(rng.integers(1, 3)), int(rng.integers(0, 3)))
        for i in range(120)
    ]
    return SlotGraph(stations=specs, heartbeat_timeout_ns=60, tasks=tasks)


@pytest.mark.parametrize("size", [1, 7, 100, 1024])
def test_batch_split_invariance(size):
    stream = _fleet_stream()
    whole = _fleet()
    f = whole.process(Frame(stream.copy()))
    split = _fleet()
    moves = [split.process(Frame(b.copy())).extras["slotgraph"] for b in batches(stream, size)]
    assert split.assignments() == whole.assignments()
    assert split.pending() == whole.pending()
    assert np.concatenate(moves).tobytes() == f.extras["slotgraph"].tobytes()
    assert split.station_load().tobytes() == whole.station_load().tobytes()
    assert len(f.extras["slotgraph"]) > 10  # the stream really does move tasks


# ---------------------------------------------------------------------------
# Conformance, pickling, bad input
# ---------------------------------------------------------------------------


def test_check_stage_default_frames():
    g = SlotGraph(
        stations=[(i, f"g{i % 2}", {"a"} if i % 3 else {"a", "b"}, 3, float(i)) for i in range(12)],
        heartbeat_timeout_ns=2_000_000,
        tasks=[Task(j, {"a"} if j % 2 else {"b"}) for j in range(30)],
        data_is_liveness=True,
    )
    checks.check_stage(g)


def test_check_stage_with_heartbeats():
    frames = [Frame(b) for b in batches(_fleet_stream(seed=5), 512)]
    checks.check_stage(_fleet(), frames=frames)


def test_pickle_keeps_placement_state():
    g = _fleet()
    g.process(Frame(_fleet_stream()[:3000]))
    h = pickle.loads(pickle.dumps(g))
    assert h.assignments() == g.assignments() and h.pending() == g.pending()
    assert h.submit(Task(10_000, {"a"})) == g.submit(Task(10_000, {"a"}))
    assert h.release(3) == g.release(3)


def test_clone_is_fresh():
    g = _fleet()
    g.process(Frame(_fleet_stream()))
    c = g.clone()
    assert c.watermark is None and c.assignments() == _fleet().assignments()


def test_empty_batch_reports_no_moves():
    f = _fleet().process(Frame(empty(0)))
    assert f.extras["slotgraph"].shape == (0,)


@pytest.mark.parametrize(
    "bad, exc",
    [
        (np.zeros(4, dtype=np.float32), TypeError),
        (empty(8).reshape(2, 4), ValueError),
        (empty(16)[::2], ValueError),
    ],
)
def test_malformed_batch_raises(bad, exc):
    with pytest.raises(exc):
        _fleet().process(Frame(bad))


def test_bad_arguments():
    with pytest.raises(ValueError):
        SlotGraph(heartbeat_timeout_ns=-1)
    with pytest.raises(TypeError):
        SlotGraph(heartbeat_timeout_ns=1.5)
    with pytest.raises(TypeError):
        Task(1, "radar")  # a bare string is not a set of capabilities
    with pytest.raises(ValueError):
        Task(1, slots=0)
    with pytest.raises(ValueError):
        Task(-1)
    g = graph([(0, "g", (), 1, 1.0)])
    with pytest.raises(KeyError):
        g.add_station(1, "nowhere")
    with pytest.raises(ValueError):
        g.add_station(0, "g")
    with pytest.raises(ValueError):
        g.add_station(70_000, "g")
    with pytest.raises(ValueError):
        g.add_station(1, "g", latency_ms=float("nan"))
    with pytest.raises(ValueError):
        g.add_station(1, "g", slots=0)
    with pytest.raises(ValueError):
        g.add_gateway("g")
    with pytest.raises(TypeError):
        g.submit((1, "a"))
    g.submit(Task(1))
    with pytest.raises(ValueError):
        g.submit(Task(1))
    with pytest.raises(ValueError):
        g.submit_many([Task(2), Task(2)])
    with pytest.raises(ValueError):
        g.submit(Task(5, {f"c{i}" for i in range(65)}))
    with pytest.raises(KeyError):
        g.is_online(3)


def test_submit_many_equals_sequential_submit():
    a, b = _fleet(), _fleet()
    rng = np.random.default_rng(1)
    tasks = [Task(1000 + i, {c for c in "abcd" if rng.random() < 0.3}, int(rng.integers(1, 4))) for i in range(200)]
    out = a.submit_many(tasks)
    seq = [b.submit(t) for t in tasks]
    assert out.tolist() == [-1 if r is None else r.station for r in seq]
    assert a.assignments() == b.assignments() and a.pending() == b.pending()


def test_scale_10k_stations_100k_tasks():
    rng = np.random.default_rng(7)
    n_st, n_t = 10_000, 100_000
    caps = [f"c{i}" for i in range(8)]
    st_masks = rng.random((n_st, 8)) < 0.5
    slots = rng.integers(8, 17, size=n_st)
    specs = [
        StationSpec(i, f"gw{i % 50}", {caps[j] for j in np.flatnonzero(st_masks[i])}, int(slots[i]), float(rng.uniform(1, 100)))
        for i in range(n_st)
    ]
    g = SlotGraph(stations=specs, heartbeat_timeout_ns=3_000)
    need = rng.integers(0, 8, size=(n_t, 2))
    nk = rng.integers(0, 3, size=n_t)
    tasks = [Task(i, {caps[c] for c in need[i, : nk[i]]}, int(1 + (i % 2))) for i in range(n_t)]
    out = g.submit_many(tasks)
    load = g.station_load()
    # Conservation: used slots are exactly the placed tasks' slots; no station over capacity.
    placed = out >= 0
    assert load["used"].sum() == sum(t.slots for t, p in zip(tasks, placed) if p)
    assert (load["used"] <= load["slots"]).all()
    assert placed.sum() > 0.7 * n_t and len(g.pending()) == n_t - placed.sum()
    # Every placement respects the capability filter.
    for t, s in zip(tasks[:2000], out[:2000]):
        if s >= 0:
            assert t.capabilities <= set(specs[s].capabilities)
    # All but 100 stations fall silent: their tasks move or go pending.
    alive = np.arange(100)
    f = g.process(Frame(beats(np.arange(0, 20_001, 10), np.resize(alive, 2001))))
    moves = f.extras["slotgraph"]
    assert len(moves) == int(placed.sum()) - sum(1 for s in out if 0 <= s < 100)
    load = g.station_load()
    assert load["used"][100:].sum() == 0 and (load["used"] <= load["slots"]).all()
