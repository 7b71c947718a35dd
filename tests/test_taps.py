"""TAPS in-process asyncio bus: fan-out, backpressure, replay, TTL, dead letters, thread facade."""

from __future__ import annotations

import asyncio
import pickle
import threading
import time

import pytest

from ctas7.sinks.taps import CHANNELS, Message, Taps


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def until(pred, timeout=5.0):
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.001)


def test_channels():
    assert CHANNELS == ("ThreatIntel", "GeoIntel", "PhysicalIntel", "WMDIntel", "MediaFeed",
                        "AlertStream", "TaskUpdates", "GraphEvents")


def test_fanout_in_order_to_every_subscriber():
    async def main():
        got = {k: [] for k in "abc"}
        async with Taps() as bus:
            for k in "abc":
                bus.subscribe("ThreatIntel", lambda m, k=k: got[k].append(m.payload), name=k)

            async def slow(m):
                await asyncio.sleep(0)
                got.setdefault("async", []).append(m.seq)

            bus.subscribe("ThreatIntel", slow)
            other = []
            bus.subscribe("GeoIntel", other.append)
            msgs = [await bus.apublish("ThreatIntel", i) for i in range(500)]
            await bus.adrain()
            st = bus.stats()
        assert [m.seq for m in msgs] == list(range(1, 501))
        assert all(got[k] == list(range(500)) for k in "abc")
        assert got["async"] == list(range(1, 501))
        assert other == []
        assert st["ThreatIntel"]["published"] == 500 and st["ThreatIntel"]["delivered"] == 2000
        assert st["ThreatIntel"]["subscribers"] == 4

    run(main())


def test_block_policy_holds_the_publisher_and_loses_nothing():
    async def main():
        gate = asyncio.Event()
        got = []

        async def handler(m):
            await gate.wait()
            got.append(m.payload)

        async with Taps(buffer_size=4) as bus:
            sub = bus.subscribe("TaskUpdates", handler, policy="block")
            pub = asyncio.create_task(_publish_all(bus, "TaskUpdates", range(20)))
            await until(lambda: sub.buffered == 4)
            await asyncio.sleep(0.05)
            assert not pub.done()  # held by backpressure
            assert sub.buffered == 4 and bus.stats()["TaskUpdates"]["published"] == 6  # 1 in handler, 4 buffered, 1 waiting
            gate.set()
            await pub
            await bus.adrain()
        assert got == list(range(20))
        assert sub.stats["dropped"] == 0 and sub.stats["delivered"] == 20

    run(main())


async def _publish_all(bus, channel, items, **kw):
    for i in items:
        await bus.apublish(channel, i, **kw)


def test_drop_oldest_keeps_newest_and_counts():
    async def main():
        gate = asyncio.Event()
        slow_got, fast_got = [], []

        async def slow(m):
            await gate.wait()
            slow_got.append(m.payload)

        async with Taps(buffer_size=5) as bus:
            sub = bus.subscribe("MediaFeed", slow, policy="drop_oldest")
            fast = bus.subscribe("MediaFeed", fast_got.append, policy="block", buffer_size=1000)
            await bus.apublish("MediaFeed", 0)
            await until(lambda: sub.buffered == 0)  # message 0 is in the handler
            await _publish_all(bus, "MediaFeed", range(1, 100))  # never blocks: the block sub has room
            assert sub.buffered == 5
            gate.set()
            await bus.adrain()
        assert slow_got == [0, 95, 96, 97, 98, 99]
        assert sub.stats["dropped"] == 94 and sub.stats["delivered"] == 6
        assert [m.payload for m in fast_got] == list(range(100)) and fast.stats["dropped"] == 0

    run(main())


def test_replay_of_retained_messages():
    async def main():
        async with Taps(retention=5) as bus:
            await _publish_all(bus, "GraphEvents", range(8))
            every, last2, none = [], [], []
            bus.subscribe("GraphEvents", lambda m: every.append(m.seq), replay=True)
            bus.subscribe("GraphEvents", lambda m: last2.append(m.seq), replay=2)
            s3 = bus.subscribe("GraphEvents", lambda m: none.append(m.seq))
            small = []
            s4 = bus.subscribe("GraphEvents", lambda m: small.append(m.seq), replay=True, buffer_size=3)
            await bus.apublish("GraphEvents", 8)
            await bus.adrain()
        assert every == [4, 5, 6, 7, 8, 9]
        assert last2 == [7, 8, 9]
        assert none == [9] and s3.stats["replayed"] == 0
        assert small == [6, 7, 8, 9] and s4.stats["replayed"] == 3

    run(main())


def test_ttl_expired_messages_are_not_delivered():
    async def main():
        gate = asyncio.Event()
        got = []

        async def handler(m):
            await gate.wait()
            got.append(m.payload)

        async with Taps(retention=10, ttl=60) as bus:
            sub = bus.subscribe("PhysicalIntel", handler)
            await bus.apublish("PhysicalIntel", "first")  # held in the handler
            await until(lambda: sub.buffered == 0)
            await bus.apublish("PhysicalIntel", "short", ttl=0.02)
            await bus.apublish("PhysicalIntel", "long")
            await asyncio.sleep(0.05)
            gate.set()
            await bus.adrain()
            assert got == ["first", "long"]
            assert sub.stats["expired"] == 1 and sub.stats["delivered"] == 2
            late = []
            sub2 = bus.subscribe("PhysicalIntel", lambda m: late.append(m.payload), replay=True)
            await bus.adrain()
            assert late == ["first", "long"] and sub2.stats["expired"] == 1
            with pytest.raises(ValueError, match="ttl"):
                await bus.apublish("PhysicalIntel", "x", ttl=0)

    run(main())


def test_dead_letter_queue_records_reason_and_goes_on():
    async def main():
        got = []

        def handler(m):
            if m.payload % 3 == 0:
                raise ValueError(f"bad payload {m.payload}")
            got.append(m.payload)

        async with Taps(dead_letter_size=2) as bus:
            sub = bus.subscribe("WMDIntel", handler, name="checker")
            await _publish_all(bus, "WMDIntel", range(10))
            await bus.adrain()
            st = bus.stats()
        assert got == [1, 2, 4, 5, 7, 8]
        assert sub.stats["failed"] == 4 and sub.stats["delivered"] == 6
        assert st["_bus"]["dead_letters"] == 4 and st["_bus"]["dead_letters_kept"] == 2
        dl = list(bus.dead_letters)
        assert [d.message.payload for d in dl] == [6, 9]
        assert dl[-1].subscriber == "checker" and dl[-1].reason == "ValueError: bad payload 9"
        assert "raise ValueError" in dl[-1].traceback

    run(main())


def test_sync_facade_from_threads_keeps_per_thread_order():
    got = []
    with Taps(buffer_size=64) as bus:  # a small ingress bound: publishers wait, nothing is lost
        bus.subscribe("ThreatIntel", lambda m: got.append(m.payload))

        def work(k):
            for i in range(2000):
                bus.publish("ThreatIntel", (k, i))

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert bus.drain(timeout=30)
        st = bus.stats()
    assert len(got) == 8000 and st["ThreatIntel"]["delivered"] == 8000
    for k in range(4):
        assert [i for kk, i in got if kk == k] == list(range(2000))


def test_sync_publish_times_out_when_ingress_stays_full():
    gate = threading.Event()
    with Taps(buffer_size=2, publish_timeout=0.05) as bus:
        bus.subscribe("AlertStream", lambda m: gate.wait(5))  # blocks the loop: nothing moves
        bus.publish("AlertStream", 1)
        time.sleep(0.05)
        bus.publish("AlertStream", 2)
        bus.publish("AlertStream", 3)
        with pytest.raises(TimeoutError):
            for i in range(10):
                bus.publish("AlertStream", i)
        gate.set()
        assert bus.drain(timeout=10)
        assert bus.stats()["_bus"]["publish_timeouts"] == 1


def test_axon_publish_handler_reaches_alertstream():
    from ctas7.records import Convergence
    from ctas7.stage import Frame
    from ctas7.stages.axon import Axon, PublishHandler

    alerts = []
    with Taps() as bus:
        bus.subscribe("AlertStream", lambda m: alerts.append(m.payload))
        axon = Axon(handlers=[PublishHandler(bus, "AlertStream")])
        c = Convergence(ts=10**9, tick=1000, nodes=(3, 1, 7), groups=(0, 1, 1),
                        first_hot_ts=(998_000_000, 999_000_000, 10**9), scores=(14.0, 11.0, 9.5),
                        directions=(1, 1, 1), weighted_count=3.0, confidence=0.92, pattern_matches=2,
                        window_start_ts=990_000_000, event_count=120)
        (d,) = axon.process(Frame(convergences=[c])).responses
        assert axon.flush(timeout=10)
        assert bus.drain(timeout=10)
        axon.close()
    assert alerts == [d.to_dict()]


def test_unsubscribe_and_stats_keep_past_counts():
    async def main():
        got = []
        async with Taps() as bus:
            sub = bus.subscribe("GeoIntel", got.append)
            await _publish_all(bus, "GeoIntel", range(3))
            await bus.adrain()
            sub.unsubscribe()
            await bus.apublish("GeoIntel", 3)
            await bus.adrain()
            st = bus.stats()["GeoIntel"]
        assert [m.payload for m in got] == [0, 1, 2]
        assert isinstance(got[0], Message) and got[0].channel == "GeoIntel"
        assert st == {"published": 4, "subscribers": 0, "retained": 4, "delivered": 3,
                      "dropped": 0, "expired": 0, "failed": 0, "replayed": 0}

    run(main())


def test_errors_and_pickle():
    bus = Taps(buffer_size=7, retention=3, ttl=2.0)
    with pytest.raises(ValueError, match="unknown TAPS channel"):
        bus.publish("Nope", 1)
    with pytest.raises(ValueError, match="policy"):
        bus.subscribe("GeoIntel", print, policy="drop_newest")
    with pytest.raises(TypeError, match="callable"):
        bus.subscribe("GeoIntel", 42)
    for kw in ({"buffer_size": 0}, {"retention": -1}, {"ttl": -1}, {"channels": ()}):
        with pytest.raises(ValueError):
            Taps(**kw)
    bus.subscribe("GeoIntel", print)  # starts the loop thread
    clone = pickle.loads(pickle.dumps(bus))
    assert (clone.buffer_size, clone.retention, clone.ttl) == (7, 3, 2.0)
    assert clone.stats()["GeoIntel"]["subscribers"] == 0
    bus.close()
    with pytest.raises(RuntimeError, match="closed"):
        bus.publish("GeoIntel", 1)

    async def in_loop():
        async with Taps() as b:
            with pytest.raises(RuntimeError, match="apublish"):
                b.publish("GeoIntel", 1)
        with pytest.raises(RuntimeError, match="async with"):
            Taps().publish("GeoIntel", 1)

    run(in_loop())
