"""Tests for ctas7.channel: named shared-memory channels and crash recovery.

Child processes use the 'fork' start method: it is what a station worker
inherits from the cluster on Linux, it starts in milliseconds (the crash
tests start many), and it exercises the after-fork re-registration. One
test uses 'spawn' to check that a Channel pickles as "attach by name".
"""

import itertools
import multiprocessing as mp
import os
import pickle
import queue
import signal
import time

import numpy as np
import pytest

from ctas7 import channel as chmod
from ctas7.channel import Channel, ChannelClosed, ChannelError, ChannelFull, ChannelVersionError, sweep
from ctas7.events import EVENT_DTYPE, KIND_GAP, make_events

FORK = mp.get_context("fork")
_counter = itertools.count()
PREFIX = f"t{os.getpid()}-"


def events(n, start=0, station=0):
    return make_events(ts=np.arange(start, start + n), seq=np.arange(start, start + n), station=station)


def leftovers():
    return sorted(f for f in os.listdir("/dev/shm") if f.startswith(chmod.PREFIX + PREFIX))


@pytest.fixture
def name():
    yield f"{PREFIX}{next(_counter)}"
    assert leftovers() == [], "a test leaked a shared-memory segment"


def wait_for(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("condition not reached in time")
        time.sleep(0.002)


# --------------------------------------------------------------------------- children


def _claim_and_hang(name, n, ready, multi=False):
    ch = Channel.attach(name)
    ch.put_many(events(5, station=1))
    view = ch.claim(n)
    view[:] = events(len(view), 100, station=1)
    ready.set()
    time.sleep(60)


def _put_and_exit(name, start, n, station=2):
    with Channel.attach(name) as ch:
        ch.put_many(events(n, start, station=station))


def _stream_producer(name, n, how, seed):
    """Write seq 0..n-1 in pieces of random size, by claim/commit or put_many."""
    rng = np.random.default_rng(seed)
    data = events(n)
    raw = data.view(np.uint8)
    rsize = EVENT_DTYPE.itemsize
    with Channel.attach(name) as ch:
        done = 0
        while done < n:
            want = min(int(rng.integers(1, 300)), n - done)
            if how == "put_many":
                ch.put_many(data[done:done + want], timeout=10)
                done += want
                continue
            view = ch.claim(want, timeout=10)
            k = len(view)
            assert k, "no free slot for 10 s"
            view.view(np.uint8)[:] = raw[done * rsize:(done + k) * rsize]
            # now and then publish only part of the claim (the rest is dropped)
            k = ch.commit(int(rng.integers(0, k + 1)) if rng.random() < 0.1 else None)
            done += k


def _create_and_die(name):
    Channel.create(name, 8)
    os._exit(0)


def _spawned_producer(ch, n):
    ch.put_many(events(n, station=3))
    ch.put((99, 0, 0, 0, 3, 0, 1.0))
    ch.close()


# --------------------------------------------------------------------------- basics


def test_create_attach_unlink(name):
    with Channel.create(name, 16) as ch:
        path = f"/dev/shm/ctas7-{name}"
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert ch.capacity == 16 and not ch.multi_producer and ch.dtype == EVENT_DTYPE
        with pytest.raises(FileExistsError):
            Channel.create(name, 16)
        ch.put_many(events(3))
        with Channel.attach(name) as other:
            assert other.qsize() == 3 and other.capacity == 16
            assert other.get_many(10)["seq"].tolist() == [0, 1, 2]
        assert ch.empty()
    assert not os.path.exists(path)


def test_unlink_keeps_open_handles_working(name):
    ch = Channel.create(name, 8)
    other = Channel.attach(name)
    ch.unlink()
    assert leftovers() == []
    ch.put(events(1)[0])
    assert other.get(timeout=1)["seq"] == 0
    with pytest.raises(FileNotFoundError):
        Channel.attach(name)
    other.close()
    ch.close()


def test_bad_names_and_missing():
    for bad in ["", "a/b", "../x", "x" * 300, None]:
        with pytest.raises(ValueError, match="name"):
            Channel.create(bad, 8)
    with pytest.raises(FileNotFoundError):
        Channel.attach(f"{PREFIX}does-not-exist")
    with pytest.raises(TypeError, match="create"):
        Channel()
    assert not Channel.unlink_name(f"{PREFIX}does-not-exist")


def test_bad_capacity(name):
    with pytest.raises(ValueError, match="power of two"):
        Channel.create(name, 100)
    assert leftovers() == []


def test_attach_not_a_channel(name):
    path = f"/dev/shm/ctas7-{name}"
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.write(fd, b"\x00" * 20000)
        with pytest.raises(ChannelError, match="not a ctas7 channel"):
            Channel.attach(name)
        os.ftruncate(fd, 100)
        with pytest.raises(ChannelError, match="not a ctas7 channel"):
            Channel.attach(name)
    finally:
        os.close(fd)
        os.unlink(path)


def test_attach_wrong_version_size_mode(name):
    with Channel.create(name, 8) as ch:
        path = ch.path
        with pytest.raises(ChannelError, match="16 bytes"):
            Channel.attach(name, dtype=np.dtype([("a", "<u8"), ("b", "<u8")]))
        with open(path, "r+b") as f:
            f.seek(8)
            f.write((7).to_bytes(8, "little"))
        with pytest.raises(ChannelVersionError, match="version 7"):
            Channel.attach(name)
        with open(path, "r+b") as f:
            f.seek(8)
            f.write((chmod.VERSION).to_bytes(8, "little"))
        os.chmod(path, 0o644)
        with pytest.raises(PermissionError, match="0600"):
            Channel.attach(name)
        os.chmod(path, 0o600)
        Channel.attach(name).close()


def test_full_empty_timeouts(name):
    with Channel.create(name, 4) as ch:
        for i in range(4):
            ch.put(events(1, i)[0])
        assert ch.full()
        t0 = time.monotonic()
        with pytest.raises(queue.Full):
            ch.put(events(1)[0], timeout=0.05)
        assert time.monotonic() - t0 >= 0.04
        with pytest.raises(queue.Full):
            ch.put_nowait(events(1)[0])
        with pytest.raises(ChannelFull) as info:
            ch.put_many(events(3), timeout=0.02)
        assert info.value.written == 0 and isinstance(info.value, queue.Full)
        assert [int(ch.get()["seq"]) for _ in range(4)] == [0, 1, 2, 3]
        t0 = time.monotonic()
        with pytest.raises(queue.Empty):
            ch.get(timeout=0.05)
        assert time.monotonic() - t0 >= 0.04
        with pytest.raises(queue.Empty):
            ch.get_nowait()
        with pytest.raises(queue.Empty):
            ch.get_many(10, block=False)
        with pytest.raises(queue.Empty):
            ch.get_into(np.zeros(4, EVENT_DTYPE), timeout=0.01)
        with pytest.raises(ValueError, match="timeout"):
            ch.get(timeout=-1)
        with pytest.raises(TypeError, match="dtype"):
            ch.put_many(np.zeros(3))


def test_partial_put_many_reports_written(name):
    with Channel.create(name, 4) as ch:
        with pytest.raises(ChannelFull) as info:
            ch.put_many(events(6), timeout=0.02)
        assert info.value.written == 4 and info.value.total == 6


def test_zero_copy_and_get_into(name):
    with Channel.create(name, 8) as ch:
        view = ch.claim(5)
        view[:] = events(5)
        assert ch.commit(3) == 3
        out = np.zeros(8, EVENT_DTYPE)
        assert ch.get_into(out) == 3
        assert out["seq"][:3].tolist() == [0, 1, 2]
        ch.put_many(events(2, 10))
        assert ch.peek(8)["seq"].tolist() == [10, 11]
        ch.release()
        assert ch.empty()


@pytest.mark.parametrize("how", ["claim", "put_many"])
def test_zero_copy_across_processes(name, how):
    """claim/commit or put_many in a child -> peek/release here: no loss, no repeats, in order."""
    n = 200_000
    with Channel.create(name, 512) as ch:  # small: hundreds of wraps, short claims and peeks
        p = FORK.Process(target=_stream_producer, args=(name, n, how, 7))
        p.start()
        rng = np.random.default_rng(8)
        seen = np.empty(n, np.uint32)
        got = 0
        while got < n:
            view = ch.peek(int(rng.integers(1, 400)), timeout=10)
            assert len(view), "nothing arrived for 10 s"
            k = len(view) if rng.random() < 0.7 else int(rng.integers(0, len(view) + 1))
            assert got + k <= n, "more records than were written"
            seen[got:got + k] = view["seq"][:k]
            got += k
            assert ch.release(k) == k
            del view
        p.join(30)
        assert p.exitcode == 0
        assert len(ch.peek(8, timeout=0.05)) == 0
        ch.release()
        assert (seen == np.arange(n, dtype=np.uint32)).all()
        assert ch.lost == 0 and ch.gaps == 0


def test_zero_copy_views_and_registration(name):
    with Channel.create(name, 16) as ch, Channel.attach(name) as writer:
        assert writer.producers() == []
        view = writer.claim(4)  # the first claim registers this handle as the producer
        assert [pr["pid"] for pr in writer.producers()] == [os.getpid()]
        view[:] = events(4)
        assert writer.commit() == 4
        peeked = ch.peek(16)
        assert peeked["seq"].tolist() == [0, 1, 2, 3] and not peeked.flags.writeable
        with pytest.raises(ValueError, match="outside"):
            ch.release(5)
        ch.release(1)
        ch.close()  # the creator goes while a view is alive: the mapping stays with the view
        assert peeked["seq"].tolist() == [0, 1, 2, 3]
        with pytest.raises(ValueError):
            ch.peek(1)
        del peeked
        writer.shutdown()
    with Channel.create(name, 16) as ch:
        ch.shutdown()
        with pytest.raises(ChannelClosed):
            ch.claim(1)


def test_shutdown(name):
    with Channel.create(name, 8) as ch, Channel.attach(name) as reader:
        ch.put_many(events(2))
        ch.shutdown()
        assert reader.closed
        with pytest.raises(ChannelClosed):
            ch.put(events(1)[0])
        with pytest.raises(ChannelClosed):
            Channel.attach(name).put_many(events(1))
        assert reader.get_many(10)["seq"].tolist() == [0, 1]
        with pytest.raises(ChannelClosed):
            reader.get(timeout=1)



def test_queue_face_fast_and_slow_paths(name):
    """The C fast paths and the Python slow paths hand records over in order."""
    with Channel.create(name, 64) as ch, Channel.attach(name) as reader:
        got = []
        for i in range(3000):  # crosses the periodic producer check (every 1024 gets)
            ch.put(events(1, i)[0])
            if i % 3 == 2:
                got += [int(reader.get()["seq"]) for _ in range(3)]
        assert got == list(range(3000))
        ch.put_many(events(40, 3000))
        second = events(40, 3040)
        with pytest.raises(ChannelFull) as info:
            ch.put_many(second, timeout=0.01)  # fast path writes 24, the slow path times out
        assert info.value.written == 24
        out = np.zeros(16, EVENT_DTYPE)
        assert reader.get_into(out) == 16
        ch.put_many(second[24:])
        rest = reader.get_many(30)["seq"].tolist() + [int(reader.get(timeout=1)["seq"]) for _ in range(34)]
        assert out["seq"].tolist() + rest == list(range(3000, 3080))
        assert reader.qsize() == 0
        ch.shutdown()
        with pytest.raises(ChannelClosed):
            ch.put_nowait(events(1)[0])
        with pytest.raises(ChannelClosed):
            ch.put_many(events(1))
        with pytest.raises(TypeError):
            ch.get_many("3")

def test_pickle_and_spawn(name):
    with Channel.create(name, 1024) as ch:
        clone = pickle.loads(pickle.dumps(ch))
        assert clone.name == name and clone.capacity == 1024
        clone.close()
        p = mp.get_context("spawn").Process(target=_spawned_producer, args=(ch, 100))
        p.start()
        p.join(60)
        assert p.exitcode == 0
        got = ch.get_many(1000, timeout=5)
        assert got["seq"].tolist()[:100] == list(range(100)) and got["ts"][-1] == 99
        assert p.exitcode == 0 and ch.lost == 0


def test_fork_child_registers_itself(name):
    with Channel.create(name, 64) as ch:
        ch.put(events(1)[0])  # the parent is a producer ...
        assert ch.producer_pid == os.getpid()
        assert ch.get()["seq"] == 0
        ch.close()  # ... then hands the channel over


def test_second_live_spsc_producer_refused(name):
    with Channel.create(name, 64) as ch:
        ready = FORK.Event()
        p = FORK.Process(target=_claim_and_hang, args=(name, 3, ready))
        p.start()
        assert ready.wait(10)
        with pytest.raises(RuntimeError, match="live producer"):
            ch.put(events(1)[0])
        p.kill()
        p.join()


# --------------------------------------------------------------------------- crashes


@pytest.mark.parametrize("who_notices", ["consumer", "restarted producer"])
def test_spsc_producer_killed_mid_claim(name, who_notices):
    with Channel.create(name, 64) as ch:
        ready = FORK.Event()
        p = FORK.Process(target=_claim_and_hang, args=(name, 7, ready))
        p.start()
        assert ready.wait(10)
        assert ch.producers()[0]["pending"] == 7
        assert ch.get_many(100, timeout=5)["seq"].tolist() == list(range(5))
        os.kill(p.pid, signal.SIGKILL)
        if who_notices == "restarted producer":
            p.join()
            q = FORK.Process(target=_put_and_exit, args=(name, 1000, 4))
            q.start()
            q.join(10)
            assert q.exitcode == 0
            assert ch.producers()[0]["pid"] == p.pid  # left for the consumer to account
        else:
            t0 = time.monotonic()
            gap = ch.get(timeout=5)
            assert time.monotonic() - t0 < 1.0
            assert gap["kind"] == KIND_GAP and gap["value"] == 7 and gap["node"] == p.pid
            p.join()
            q = FORK.Process(target=_put_and_exit, args=(name, 1000, 4))
            q.start()
            q.join(10)
        got = np.concatenate([ch.get_many(100, timeout=5) for _ in range(2 if who_notices != "consumer" else 1)])
        data = got[got["kind"] != KIND_GAP]
        assert data["seq"].tolist() == [1000, 1001, 1002, 1003]
        if who_notices != "consumer":
            gap = got[got["kind"] == KIND_GAP]
            assert gap["value"].tolist() == [7] and gap["node"].tolist() == [p.pid]
        assert ch.lost == 7 and ch.gaps == 1
        assert ch.producers() == []


def test_gap_found_late_is_still_delivered(name):
    """A consumer busy reading a restarted producer still reports the gap."""
    with Channel.create(name, 1 << 12) as ch:
        ready = FORK.Event()
        p = FORK.Process(target=_claim_and_hang, args=(name, 9, ready))
        p.start()
        assert ready.wait(10)
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        q = FORK.Process(target=_put_and_exit, args=(name, 1000, 3000))
        q.start()
        q.join(10)
        parts = []
        while sum(map(len, parts)) < 5 + 3000 + 1:
            parts.append(ch.get_many(64, timeout=5))
        got = np.concatenate(parts)
        kinds = got["kind"].tolist()
        assert kinds.count(KIND_GAP) == 1 and got["value"][kinds.index(KIND_GAP)] == 9
        data = got[got["kind"] != KIND_GAP]
        assert data["seq"].tolist() == list(range(5)) + list(range(1000, 1000 + len(data) - 5))


def test_mpmc_dead_claim_is_skipped(name):
    with Channel.create(name, 64, multi_producer=True, claim_timeout=0.05) as ch:
        ready = FORK.Event()
        p = FORK.Process(target=_claim_and_hang, args=(name, 3, ready))
        p.start()
        assert ready.wait(10)
        q = FORK.Process(target=_put_and_exit, args=(name, 500, 6))
        q.start()
        q.join(10)
        assert ch.get_many(100, timeout=5)["seq"].tolist() == list(range(5))
        with pytest.raises(queue.Empty):  # stuck behind the live claim: waits
            ch.get_many(100, timeout=0.15)
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        gap = ch.get_many(100, timeout=5)
        assert gap["kind"].tolist() == [KIND_GAP] and gap["value"][0] == 3
        assert ch.get_many(100, timeout=5)["seq"].tolist() == list(range(500, 506))
        assert ch.lost == 3 and ch.ring.skipped == 3
        ch.check_producers()
        assert ch.producers() == []


def test_gap_counter_without_events(name):
    with Channel.create(name, 64, emit_gaps=False) as ch:
        ready = FORK.Event()
        p = FORK.Process(target=_claim_and_hang, args=(name, 4, ready))
        p.start()
        assert ready.wait(10)
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        assert ch.get_many(100, timeout=5)["seq"].tolist() == list(range(5))
        with pytest.raises(queue.Empty):
            ch.get_many(100, timeout=0.05)
        assert ch.lost == 4


def test_pid_alive_sees_zombies_and_reuse():
    p = FORK.Process(target=os._exit, args=(0,))
    p.start()
    wait_for(lambda: open(f"/proc/{p.pid}/stat").read().split(")")[1].split()[0] == "Z")
    assert not chmod._pid_alive(p.pid, 0)
    p.join()
    assert not chmod._pid_alive(p.pid, 0)
    me = os.getpid()
    assert chmod._pid_alive(me, chmod._start_time(me))
    assert not chmod._pid_alive(me, chmod._start_time(me) + 1)


def test_sweep_removes_segments_of_dead_creators(name):
    p = FORK.Process(target=_create_and_die, args=(name,))
    p.start()
    p.join()
    assert leftovers() == [f"ctas7-{name}"]
    with Channel.create(name + "-live", 8):
        assert sweep(PREFIX) == [name]
    assert leftovers() == []
