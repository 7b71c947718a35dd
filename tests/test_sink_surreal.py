"""SurrealSink against the real embedded engine (mem:// and surrealkv://)."""

from __future__ import annotations

import argparse
import json
import os
import threading
import time

import numpy as np
import pytest

surrealdb = pytest.importorskip("surrealdb")

from ctas7.events import EVENT_DTYPE, make_events  # noqa: E402
from ctas7.records import Convergence  # noqa: E402
from ctas7.sinks import surreal as S  # noqa: E402
from ctas7.sinks.surreal import SurrealSink, load_credentials, load_spill, read_spill  # noqa: E402


def _events(n, seed=0):
    rng = np.random.default_rng(seed)
    return make_events(
        ts=np.arange(n, dtype=np.int64) * 1000,
        node=rng.integers(0, 50, n),
        station=rng.integers(0, 247, n),
        kind=rng.integers(0, 8, n),
        seq=np.arange(n),
        sch=rng.integers(0, 2**64, n, dtype=np.uint64),
        value=rng.random(n).astype(np.float32),
    )


def _conv(i=0):
    return Convergence(
        ts=10**9 + i, tick=1000 + i, nodes=(3, 1, 7), groups=(0, 1, 1), first_hot_ts=(1, 2, 3),
        scores=(14.0, 11.0, 9.5), directions=(1, 1, -1), weighted_count=3.0, confidence=0.92,
        pattern_matches=2, window_start_ts=990_000_000, event_count=120,
    )


def _count(url, table, factory=None):
    db = (factory or surrealdb.Surreal)(url)
    if hasattr(db, "connect"):
        db.connect()
    db.use("ctas7", "ctas7")
    try:
        res = db.query(f"SELECT count() FROM {table} GROUP ALL")
        return res[0]["count"] if res else 0
    finally:
        db.close()


class Flaky:
    """Wraps a real connection; raises on the query calls numbered in ``fail_on`` (1-based)."""

    def __init__(self, inner, fail_on=(), delay=0.0):
        self.inner = inner
        self.fail_on = set(fail_on)
        self.delay = delay
        self.calls = 0
        self.failed = 0

    def connect(self):
        self.inner.connect()

    def use(self, ns, db):
        self.inner.use(ns, db)

    def close(self):
        pass  # the test owns the real connection

    def query(self, sql, vars=None):
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        if self.calls in self.fail_on:
            self.failed += 1
            raise ConnectionError(f"injected failure on call {self.calls}")
        return self.inner.query(sql, vars)


@pytest.fixture
def memdb():
    db = surrealdb.Surreal("mem://")
    db.connect()
    db.use("ctas7", "ctas7")
    yield db
    db.close()


def _select_count(db, table):
    res = db.query(f"SELECT count() FROM {table} GROUP ALL")
    return res[0]["count"] if res else 0


# ---------------------------------------------------------------------------


def test_mem_roundtrip_all_tables(memdb, tmp_path):
    ev = _events(2500)
    flaky = Flaky(memdb)
    decision = {"decision_id": "ax-1-abc", "level": "HIGH", "cluster_id": 2**64 - 5, "nodes": (1, 3)}
    with SurrealSink("mem://", spill_path=tmp_path / "s.jsonl", connection_factory=lambda url: flaky) as sink:
        assert sink.submit_events(ev) == 2500
        sink.submit_records("convergences", [_conv(0), _conv(1)])
        sink.submit_records("responses", [decision])
        sink.submit_records("reports", [{"id": "r-1", "summary": "x"}])
        assert sink.flush(timeout=30)
        st = sink.stats
        assert (st.submitted, st.written, st.spilled, st.retried) == (2504, 2504, 0, 0)
        assert st.batches == 3 + 3  # events 1000+1000+500, one per other table
    assert _select_count(memdb, "events") == 2500
    assert _select_count(memdb, "convergences") == 2
    rows = memdb.query("SELECT * FROM events ORDER BY seq")
    got_sch = np.array([r["sch"] for r in rows], dtype=np.int64).view(np.uint64)
    np.testing.assert_array_equal(got_sch, ev["sch"])
    np.testing.assert_array_equal([r["node"] for r in rows], ev["node"])
    np.testing.assert_allclose([r["value"] for r in rows], ev["value"])
    assert rows[7]["id"].id == [sink.run_id, 7]
    conv = memdb.query("SELECT * FROM convergences ORDER BY tick")
    assert conv[0]["nodes"] == [3, 1, 7] and conv[1]["tick"] == 1001
    resp = memdb.query("SELECT * FROM responses")[0]
    assert resp["cluster_id"] & 0xFFFF_FFFF_FFFF_FFFF == 2**64 - 5
    assert resp["nodes"] == [1, 3]
    rep = memdb.query("SELECT * FROM reports")[0]
    assert rep["source_id"] == "r-1"
    assert not (tmp_path / "s.jsonl").exists()


def test_frame_submit_and_sampling(memdb, tmp_path):
    from ctas7.stage import Frame

    ev = _events(1000)
    with SurrealSink("mem://", event_every=3, spill_path=tmp_path / "s.jsonl", connection_factory=lambda url: Flaky(memdb)) as sink:
        for chunk in np.array_split(ev, 7):  # sampling counts across batches
            sink.submit(Frame(events=np.ascontiguousarray(chunk), convergences=[_conv()]))
    assert sink.stats.skipped == 1000 - 334
    assert sink.stats.written == 334 + 7
    seqs = sorted(r["seq"] for r in memdb.query("SELECT seq FROM events"))
    assert seqs == list(range(0, 1000, 3))


def test_surrealkv_persists(tmp_path):
    url = f"surrealkv://{tmp_path}/data/surreal"
    with SurrealSink(url, batch_size=300, spill_path=tmp_path / "s.jsonl") as sink:
        sink.submit_events(_events(1000))
        sink.submit_records("reports", [{"summary": "r"}])
    assert sink.stats.written == 1001
    assert oct((tmp_path / "data").stat().st_mode & 0o777) == "0o700"
    assert _count(url, "events") == 1000
    assert _count(url, "reports") == 1


def test_transient_failure_is_retried_not_duplicated(memdb, tmp_path):
    flaky = Flaky(memdb, fail_on={2, 3})
    with SurrealSink("mem://", batch_size=500, backoff=0.001, spill_path=tmp_path / "s.jsonl",
                     connection_factory=lambda url: flaky) as sink:
        sink.submit_events(_events(2000))
    assert flaky.failed == 2
    assert sink.stats.retried == 2 and sink.stats.spilled == 0 and sink.stats.written == 2000
    assert _select_count(memdb, "events") == 2000


def test_persistent_failure_spills_then_loads_back(memdb, tmp_path):
    spill = tmp_path / "spill" / "s.jsonl"
    # calls 2..4 fail: batch 2 exhausts max_attempts=3 and is spilled, the rest go through
    flaky = Flaky(memdb, fail_on={2, 3, 4})
    with SurrealSink("mem://", batch_size=1000, max_attempts=3, backoff=0.001, spill_path=spill,
                     connection_factory=lambda url: flaky) as sink:
        sink.submit_events(_events(4000))
        sink.submit_records("convergences", [_conv(i) for i in range(5)])
    st = sink.stats
    assert st.failed_batches == 1 and st.retried == 2
    assert st.spilled == 1000 and st.written == 3005
    assert st.written + st.spilled == st.submitted == 4005
    assert oct(spill.stat().st_mode & 0o777) == "0o600"
    assert _select_count(memdb, "events") == 3000
    [(table, rows)] = list(read_spill(spill))
    assert table == "events" and [r["id"][1] for r in rows] == list(range(1000, 2000))

    res = load_spill(spill, "mem://", connection_factory=lambda url: Flaky(memdb))
    assert (res.loaded, res.inserted) == (1000, 1000)
    assert _select_count(memdb, "events") == 4000
    got = sorted(r["seq"] for r in memdb.query("SELECT seq FROM events"))
    assert got == list(range(4000))
    again = load_spill(spill, "mem://", connection_factory=lambda url: Flaky(memdb))
    assert (again.loaded, again.inserted, again.already_present) == (1000, 0, 1000)
    assert _select_count(memdb, "events") == 4000


def test_backlog_spills_and_submit_stays_bounded(memdb, tmp_path):
    spill = tmp_path / "s.jsonl"
    slow = Flaky(memdb, delay=0.05)
    with SurrealSink("mem://", batch_size=100, max_pending=200, put_timeout=0.01, spill_path=spill,
                     connection_factory=lambda url: slow) as sink:
        worst = 0.0
        for i in range(40):
            t0 = time.perf_counter()
            sink.submit_events(_events(100, seed=i))
            sink.submit_records("responses", [{"decision_id": f"d{i}"}])
            worst = max(worst, time.perf_counter() - t0)
    st = sink.stats
    assert st.backlog > 0 and st.spilled == st.backlog
    assert st.written + st.spilled == st.submitted == 40 * 101
    assert worst < 1.0  # two bounded puts plus one spill append, never a database write
    res = load_spill(spill, "mem://", connection_factory=lambda url: Flaky(memdb))
    assert res.loaded == st.spilled == res.inserted
    assert _select_count(memdb, "events") + _select_count(memdb, "responses") == st.submitted


def test_unreachable_database_spills_everything(tmp_path):
    spill = tmp_path / "s.jsonl"

    def refuse(url):
        raise ConnectionRefusedError("no server")

    with SurrealSink("ws://127.0.0.1:9", max_attempts=2, backoff=0, spill_path=spill, credentials=S.Credentials("u", "p"),
                     connection_factory=refuse) as sink:
        sink.submit_events(_events(10))
    assert (sink.stats.spilled, sink.stats.written, sink.stats.failed_batches) == (10, 0, 1)
    assert "ConnectionRefusedError" in sink.stats.last_error
    url = f"surrealkv://{tmp_path}/db"
    assert load_spill(spill, url).loaded == 10
    assert _count(url, "events") == 10


def test_cli_surreal_load(tmp_path, capsys):
    spill = tmp_path / "s.jsonl"
    class Down:
        def use(self, ns, db):
            pass

        def query(self, sql, vars=None):
            raise TimeoutError("server gone")

    with SurrealSink("mem://", spill_path=spill, max_attempts=1, connection_factory=lambda url: Down()) as sink:
        sink.submit_events(_events(50))
        sink.submit_records("reports", [{"summary": "a"}, {"summary": "b"}])
    url = f"surrealkv://{tmp_path}/cli-db"
    parser = argparse.ArgumentParser()
    S.add_arguments(parser)
    assert S.run(parser.parse_args([str(spill), "--url", url])) == 0
    out = capsys.readouterr().out
    assert "loaded 52 records (52 new, 0 already present)" in out
    assert _count(url, "events") == 50 and _count(url, "reports") == 2

    bad = tmp_path / "bad.jsonl"
    bad.write_text(spill.read_text()[:-20])  # a truncated last line
    assert S.run(parser.parse_args([str(bad), "--url", url])) == 1
    assert "truncated" in capsys.readouterr().err


def test_read_spill_rejects_malformed(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps({"v": 1, "table": "events", "run": "r", "first": 0, "count": 1, "events": "AAAA"}) + "\n")
    with pytest.raises(ValueError, match=":1: bad events entry"):
        list(read_spill(p))
    p.write_text(json.dumps({"v": 1, "table": "users", "rows": []}) + "\n")
    with pytest.raises(ValueError, match="unknown table"):
        list(read_spill(p))
    p.write_text(json.dumps({"v": 1, "table": "reports", "rows": [], "extra": 1}) + "\n")
    with pytest.raises(ValueError, match="unknown keys"):
        list(read_spill(p))


def test_bad_input_raises_in_caller(tmp_path):
    with SurrealSink("mem://", spill_path=tmp_path / "s.jsonl") as sink:
        with pytest.raises(TypeError):
            sink.submit_events(np.zeros(3, dtype=np.float64))
        with pytest.raises(ValueError):
            sink.submit_events(_events(10)[::2])
        with pytest.raises(ValueError, match="table must be one of"):
            sink.submit_records("users", [{}])
        with pytest.raises(ValueError, match="table must be one of"):
            sink.submit_records("events", [{}])
        with pytest.raises(TypeError, match="cannot store a set"):
            sink.submit_records("reports", [{"x": {1, 2}}])
        with pytest.raises(TypeError, match="to_dict"):
            sink.submit_records("reports", [42])
        with pytest.raises(ValueError, match="64 bits"):
            sink.submit_records("reports", [{"x": 2**64}])
        assert sink.stats.submitted == 0
    with pytest.raises(RuntimeError, match="closed"):
        sink.submit_events(_events(1))
    for kw in ({"batch_size": 0}, {"event_every": -1}, {"put_timeout": -1}, {"namespace": ""}):
        with pytest.raises(ValueError):
            SurrealSink("mem://", **kw)
    with pytest.raises(ValueError, match="scheme"):
        SurrealSink("postgres://x")


def test_credentials_never_in_url_repr_or_errors(tmp_path):
    with pytest.raises(ValueError) as err:
        SurrealSink("ws://root:hunter2@127.0.0.1:8000")
    assert "hunter2" not in str(err.value)
    env = {"CTAS7_SURREAL_USER": "ops", "CTAS7_SURREAL_PASS": "hunter2"}
    creds = load_credentials(environ=env)
    assert creds.password == "hunter2" and "hunter2" not in repr(creds)
    with pytest.raises(ValueError, match="both"):
        load_credentials(environ={"CTAS7_SURREAL_USER": "ops"})
    f = tmp_path / "creds.json"
    f.write_text(json.dumps({"username": "a", "password": "hunter2"}))
    os.chmod(f, 0o644)
    with pytest.raises(PermissionError):
        load_credentials(f, environ={})
    os.chmod(f, 0o600)
    assert load_credentials(f, environ={}).username == "a"
    assert load_credentials(environ={"CTAS7_SURREAL_CREDENTIALS": str(f)}).username == "a"
    f.write_text(json.dumps({"username": "a", "password": "p", "token": "t"}))
    with pytest.raises(ValueError, match="unknown keys"):
        load_credentials(f, environ={})

    signed = []

    class Server:
        def use(self, ns, db):
            pass

        def signin(self, vars):
            signed.append(vars)

        def query(self, sql, vars=None):
            return []

    os.chmod(f, 0o600)
    f.write_text(json.dumps({"username": "a", "password": "hunter2"}))
    with SurrealSink("ws://127.0.0.1:8000", credentials_file=f, spill_path=tmp_path / "s.jsonl",
                     connection_factory=lambda url: Server()) as sink:
        sink.submit_records("reports", [{"a": 1}])
        assert "hunter2" not in repr(sink)
    assert signed == [{"username": "a", "password": "hunter2"}]
    assert sink.stats.written == 1


def test_concurrent_submitters_account_exactly(memdb, tmp_path):
    flaky = Flaky(memdb, fail_on={3, 9})
    sink = SurrealSink("mem://", batch_size=250, backoff=0.001, spill_path=tmp_path / "s.jsonl",
                       connection_factory=lambda url: flaky)

    def work(k):
        for i in range(10):
            sink.submit_events(_events(97, seed=k * 100 + i))
            sink.submit_records("convergences", [_conv(k * 100 + i)])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sink.close()
    assert sink.stats.written + sink.stats.spilled == sink.stats.submitted == 4 * 10 * 98
    assert _select_count(memdb, "events") == 4 * 10 * 97
    ids = sorted(r["id"].id[1] for r in memdb.query("SELECT id FROM events"))
    assert ids == list(range(4 * 10 * 97))
    assert EVENT_DTYPE.itemsize == 32
