"""Sources: file tailing with rotation, feeds, UDP, synthetic; bad input is dead-lettered."""

import http.server
import json
import os
import socket
import threading

import numpy as np
import pytest

from ctas7.stations.deadletter import DeadLetter
from ctas7.stations.sources import FeedSource, FileTailSource, SourceLike, SyntheticSource, UdpSource, open_source

RSS = """<?xml version="1.0"?>
<rss version="2.0"><channel><title>t</title>
<item><title>Port scan against substation</title><guid>a1</guid><pubDate>Tue, 24 Nov 2026 04:00:00 GMT</pubDate></item>
<item><title>Botnet callback observed</title><guid>a2</guid></item>
</channel></rss>
"""
BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>
<rss><channel><item><title>&lol2;</title></item></channel></rss>
"""


def _dead(path):
    return [json.loads(x) for x in open(path)] if os.path.exists(path) else []


def test_every_source_satisfies_the_protocol(tmp_path):
    for src in (SyntheticSource(n_stations=3), FileTailSource(tmp_path / "x.jsonl"), FeedSource(tmp_path),
                UdpSource(0)):
        assert isinstance(src, SourceLike)
        src.close()


def test_synthetic_sequence_numbers_are_exact_per_station():
    src = SyntheticSource(n_stations=5, rate=1e6, seed=2)
    a, b = src.poll(1000), src.poll(777)
    ev = np.concatenate([a, b])
    assert np.all(np.diff(ev["ts"]) > 0)
    for s in range(5):
        seq = ev["seq"][ev["station"] == s]
        assert seq.tolist() == list(range(seq.shape[0]))
    assert src.produced == 1777
    again = SyntheticSource(n_stations=5, rate=1e6, seed=2).poll(1000)
    assert a.tobytes() == again.tobytes()


def test_synthetic_replays_a_scenario_in_rounds():
    from ctas7.sim.scenarios import SCENARIOS

    name = next(iter(SCENARIOS))
    src = SyntheticSource(n_stations=247, scenario=name, seed=4)
    n = src._loop.shape[0]
    ev = np.concatenate([src.poll(n), src.poll(10)])
    assert np.all(np.diff(ev["ts"][: n]) >= 0) and ev["ts"][n] > ev["ts"][n - 1]


def test_file_tail_follows_appends_partial_lines_and_rotation(tmp_path):
    path = tmp_path / "intel.jsonl"
    dl_path = tmp_path / "dead.jsonl"
    src = FileTailSource(path, station=7, dead_letter=DeadLetter(dl_path))
    assert src.poll().shape == (0,)  # file does not exist yet
    with open(path, "w") as f:
        f.write(json.dumps({"ts": 10, "title": "port scan"}) + "\n")
        f.write('{"ts": 11, "title": "half')  # no newline yet
    ev = src.poll()
    assert ev["ts"].tolist() == [10] and ev["station"].tolist() == [7]
    with open(path, "a") as f:
        f.write(' a line"}\n')
        f.write("{not json}\n")
        f.write("[1, 2]\n")
    with open(path, "ab") as f:
        f.write(b'{"title": "bad \xff utf8"}\n')
    ev = src.poll()
    assert ev["ts"].tolist() == [11] and ev["seq"].tolist() == [1]
    # rotate: rename the old file, write a new one at the same path
    os.rename(path, tmp_path / "intel.jsonl.1")
    with open(path, "w") as f:
        f.write(json.dumps({"ts": 20, "title": "exfil"}) + "\n")
    ev = src.poll()
    assert ev["ts"].tolist() == [20] and ev["seq"].tolist() == [2]
    src.close()
    reasons = [r["reason"] for r in _dead(dl_path)]
    assert any("invalid JSON" in r for r in reasons)
    assert "JSON line is not an object" in reasons
    assert any("bad encoding" in r for r in reasons)
    assert src.dead_letter.total == len(reasons) >= 3
    assert all(r["source"].startswith("file:") and r["position"] >= 1 for r in _dead(dl_path))


def test_file_tail_csv_and_long_lines_and_unknown_station(tmp_path):
    path = tmp_path / "intel.csv"
    path.write_text("ts,station,title\n5,1,port scan\n6,9,exploit seen\n7,1\n8,1," + "x" * 300 + "\n9,1,ok\n")
    src = FileTailSource(path, stations={1}, max_line_bytes=200)
    ev = src.poll()
    assert ev["ts"].tolist() == [5, 9]
    assert src.dead_letter.counts == {"unknown station": 1, "expected 3 fields, got 2": 1, "line too long": 1}
    src.close()


def test_feed_from_file_and_directory_dedups_and_rejects_entities(tmp_path):
    good = tmp_path / "a.rss"
    good.write_text(RSS)
    (tmp_path / "evil.xml").write_text(BILLION_LAUGHS)
    (tmp_path / "broken.atom").write_text("<feed><entry><title>x</title></feed>")
    src = FeedSource(tmp_path, station=3)
    ev = src.poll()
    assert ev.shape == (2,) and set(ev["station"].tolist()) == {3}
    assert src.poll().shape == (0,)  # unchanged inputs: nothing new
    good.write_text(RSS.replace("</channel>", "<item><title>Exfil of records</title><guid>a3</guid></item></channel>"))
    assert src.poll().shape == (1,)  # only the new entry
    reasons = list(src.dead_letter.counts)
    assert sum(src.dead_letter.counts.values()) == 2 and all(r.startswith("invalid XML") for r in reasons)
    src.close()


def test_feed_from_url_on_loopback(tmp_path):
    (tmp_path / "feed.xml").write_text(RSS)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(tmp_path), **k)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        src = FeedSource(f"http://127.0.0.1:{server.server_address[1]}/feed.xml")
        assert src.poll().shape == (2,)
        src.close()
    finally:
        server.shutdown()


def test_udp_datagrams_and_oversize(tmp_path):
    src = UdpSource(0, station=2, max_datagram=64)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for msg in (b"port scan on gateway", b"x" * 100, b"\xff\xfe\xfd", b"botnet callback"):
        tx.sendto(msg, ("127.0.0.1", src.port))
    tx.close()
    got = np.concatenate([src.poll() for _ in range(50)])
    assert got.shape == (2,) and got["seq"].tolist() == [0, 1]
    assert src.dead_letter.total == 2
    assert any("larger than 64" in r for r in src.dead_letter.counts)
    src.close()


def test_open_source_specs(tmp_path):
    assert isinstance(open_source("synthetic"), SyntheticSource)
    assert isinstance(open_source(f"file:{tmp_path}/x.jsonl"), FileTailSource)
    s = open_source("udp:0")
    assert isinstance(s, UdpSource)
    s.close()
    with pytest.raises(ValueError, match="unknown source"):
        open_source("carrier-pigeon:1")


# ---------------------------------------------------------------------------
# FileTailSource: resume position
# ---------------------------------------------------------------------------


def _lines(lo, hi, tag="e"):
    return "".join(json.dumps({"ts": i, "title": f"{tag} {i}"}) + "\n" for i in range(lo, hi))


def _drain(src, chunk=3):
    out = []
    while True:
        ev = src.poll(chunk)
        if not len(ev):
            return out
        out.extend(ev["ts"].tolist())


def test_file_position_resumes_after_appends_and_a_rotation_without_loss_or_duplicate(tmp_path):
    from ctas7.stations.sources import FilePosition

    path = tmp_path / "intel.jsonl"
    path.write_text(_lines(0, 10) + '{"ts": 10, "title": "half')  # a partial last line
    src = FileTailSource(path, station=3)
    assert src.position is None
    first = src.poll(4)["ts"].tolist()
    pos = src.position
    assert first == [0, 1, 2, 3] and isinstance(pos, FilePosition) and pos.line == 4 and pos.seq == 4
    src.close()
    # While the source is down: the partial line completes, more lines come, the file is rotated
    # (renamed, as logrotate does), and the new file gets lines of its own.
    with open(path, "a") as f:
        f.write(' line"}\n' + _lines(11, 15))
    os.rename(path, tmp_path / "intel.jsonl.1")
    path.write_text(_lines(100, 104))
    again = FileTailSource(path, station=3, resume=FilePosition.from_dict(json.loads(json.dumps(pos.to_dict()))))
    got = _drain(again)
    assert got == list(range(4, 15)) + list(range(100, 104))
    # Sequence numbers continue where the first source stopped.
    with open(path, "a") as f:
        f.write(_lines(104, 106))
    ev = again.poll()
    assert ev["ts"].tolist() == [104, 105] and ev["seq"].tolist() == [19, 20]
    # And a position taken after the rotation resumes in the new file.
    pos2 = again.position
    again.close()
    with open(path, "a") as f:
        f.write(_lines(106, 108))
    third = FileTailSource(path, resume=pos2)
    assert _drain(third) == [106, 107]
    assert third.dead_letter.total == 0
    third.close()


def test_file_position_csv_resume_reads_the_header_again(tmp_path):
    path = tmp_path / "intel.csv"
    path.write_text("ts,station,title\n1,0,a\n2,0,b\n3,0,c\n")
    src = FileTailSource(path)
    assert src.poll(2)["ts"].tolist() == [1, 2]
    pos = src.position
    src.close()
    with open(path, "a") as f:
        f.write("4,0,d\n")
    again = FileTailSource(path, resume=pos.to_dict())
    assert _drain(again) == [3, 4] and again.dead_letter.total == 0
    again.close()


def test_file_position_when_the_rotated_file_is_gone_or_truncated(tmp_path):
    path = tmp_path / "intel.jsonl"
    path.write_text(_lines(0, 6))
    src = FileTailSource(path)
    src.poll(2)
    pos = src.position
    src.close()
    # Rotated and deleted: the rest of the old file cannot be read; said so, and the new file is read.
    os.unlink(path)
    path.write_text(_lines(50, 52))
    again = FileTailSource(path, resume=pos)
    assert _drain(again) == [50, 51]
    assert again.dead_letter.counts == {"file rotated away before resume": 1}
    again.close()
    # Truncated in place below the offset (copytruncate): read from its start.
    src = FileTailSource(path)
    src.poll(2)
    pos = src.position
    src.close()
    with open(path, "w") as f:
        f.write(_lines(60, 61))
    again = FileTailSource(path, resume=pos)
    assert _drain(again) == [60] and again.dead_letter.total == 0
    again.close()


def test_file_position_skipping_a_long_line_is_kept(tmp_path):
    path = tmp_path / "intel.jsonl"
    path.write_bytes(b'{"ts": 1, "title": "a"}\n' + b"x" * 300)  # a too-long line, still without its newline
    src = FileTailSource(path, max_line_bytes=100)
    assert src.poll()["ts"].tolist() == [1]
    with open(path, "ab") as f:
        f.write(b"x" * 10)  # still no newline: now it is known to be too long
    assert src.poll().shape == (0,)
    pos = src.position
    assert pos.skipping and src.dead_letter.counts == {"line too long": 1}
    src.close()
    with open(path, "ab") as f:
        f.write(b"y" * 50 + b'\n{"ts": 2, "title": "b"}\n')
    again = FileTailSource(path, resume=pos, max_line_bytes=100)
    assert _drain(again) == [2] and again.dead_letter.total == 0  # the long line is not dead-lettered again
    again.close()


@pytest.mark.parametrize("bad", [{"inode": 1}, {"device": 1, "inode": 1, "offset": -1, "line": 0}, "pos", 3])
def test_file_position_bad_resume_is_refused(tmp_path, bad):
    with pytest.raises((TypeError, ValueError), match="position"):
        FileTailSource(tmp_path / "x.jsonl", resume=bad)
