"""Sinks: SurrealDB batched writes (embedded mem://) and TAPS in-process publish -> deliver.

Each benchmark has a peer measured in the same run:

- ``SurrealWrite.time_sink_*`` vs ``time_raw_insert``: the same rows
  written by hand with one ``INSERT`` per batch on a bare SDK connection
  (no queue, no thread, no ids); the ratio is the sink's overhead.
- ``TapsThroughput.time_taps`` vs ``time_asyncio_queue``: the same messages
  fanned out through plain ``asyncio.Queue`` objects (no TTL, no stats,
  no dead letters).
"""

import asyncio
import tempfile
import threading
from pathlib import Path

import numpy as np

from ctas7.events import make_events
from ctas7.sinks.surreal import SurrealSink, _event_rows
from ctas7.sinks.taps import Taps

from .common import rng


def _events(n):
    r = rng(7)
    return make_events(
        ts=np.arange(n, dtype=np.int64) * 1000,
        node=r.integers(0, 64, n),
        station=r.integers(0, 247, n),
        kind=r.integers(0, 8, n),
        seq=np.arange(n),
        sch=r.integers(0, 2**63, n, dtype=np.uint64),
        value=r.random(n).astype(np.float32),
    )


class SurrealWrite:
    """5,000 events into a fresh embedded mem:// database."""

    params = [[100, 1000]]
    param_names = ["batch_size"]
    number = 1
    repeat = 5
    timeout = 120

    def setup(self, batch_size):
        self.spill = Path(tempfile.mkdtemp()) / "spill.jsonl"
        self.events = _events(5000)
        self.rows = _event_rows("bench", 0, self.events)
        for r in self.rows:  # the raw peer lets the database pick ids
            del r["id"]

    def time_sink_events(self, batch_size):
        with SurrealSink("mem://", batch_size=batch_size, spill_path=self.spill) as sink:
            for chunk in np.split(self.events, 10):
                sink.submit_events(chunk)
        assert sink.stats.written == len(self.events) and sink.stats.spilled == 0

    def time_raw_insert(self, batch_size):
        from surrealdb import Surreal

        db = Surreal("mem://")
        db.connect()
        db.use("ctas7", "ctas7")
        for i in range(0, len(self.rows), batch_size):
            db.query("INSERT INTO events $rows RETURN NONE", {"rows": self.rows[i : i + batch_size]})
        db.close()

    def track_sink_rows_per_second(self, batch_size):
        import time

        t0 = time.perf_counter()
        self.time_sink_events(batch_size)
        return len(self.events) / (time.perf_counter() - t0)

    track_sink_rows_per_second.unit = "rows/s"


class TapsThroughput:
    """20,000 messages published on one channel and delivered to every subscriber."""

    params = [[1, 4]]
    param_names = ["subscribers"]
    n = 20_000
    repeat = 5

    def time_taps(self, subscribers):
        async def main():
            counts = [0] * subscribers
            async with Taps() as bus:
                for k in range(subscribers):
                    def h(m, k=k):
                        counts[k] += 1

                    bus.subscribe("ThreatIntel", h)
                for i in range(self.n):
                    await bus.apublish("ThreatIntel", i)
                await bus.adrain()
            assert counts == [self.n] * subscribers

        asyncio.run(main())

    def time_asyncio_queue(self, subscribers):
        async def main():
            counts = [0] * subscribers
            queues = [asyncio.Queue(10_000) for _ in range(subscribers)]

            async def consume(k, q):
                while True:
                    m = await q.get()
                    if m is None:
                        return
                    counts[k] += 1

            tasks = [asyncio.create_task(consume(k, q)) for k, q in enumerate(queues)]
            for i in range(self.n):
                for q in queues:
                    await q.put(i)
            for q in queues:
                await q.put(None)
            await asyncio.gather(*tasks)
            assert counts == [self.n] * subscribers

        asyncio.run(main())

    def time_taps_sync_publish_from_thread(self, subscribers):
        counts = [0] * subscribers
        with Taps() as bus:
            for k in range(subscribers):
                def h(m, k=k):
                    counts[k] += 1

                bus.subscribe("ThreatIntel", h)

            def work():
                for i in range(self.n):
                    bus.publish("ThreatIntel", i)

            t = threading.Thread(target=work)
            t.start()
            t.join()
            assert bus.drain(timeout=60)
        assert counts == [self.n] * subscribers
