import numpy as np
import pytest

from ctas7 import events


def test_record_is_32_bytes():
    assert events.EVENT_DTYPE.itemsize == 32
    assert events.EVENT_DTYPE.names == ("ts", "sch", "seq", "node", "station", "kind", "value")


def test_make_events_broadcasts():
    b = events.make_events(ts=[1, 2, 3], node=7, value=[1.0, 2.0, 3.0])
    assert b["node"].tolist() == [7, 7, 7]
    assert b["value"].tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="node"):
        events.make_events(ts=[1, 2, 3], node=[1, 2])


def test_validate_rejects_wrong_dtype_shape_layout():
    good = events.empty(8)
    assert events.validate_batch(good) is good
    with pytest.raises(TypeError, match="EVENT_DTYPE"):
        events.validate_batch(np.zeros(8, dtype=np.float32))
    with pytest.raises(TypeError, match="numpy array"):
        events.validate_batch([1, 2, 3])
    with pytest.raises(ValueError, match="1-dimensional"):
        events.validate_batch(events.empty(8).reshape(2, 4))
    with pytest.raises(ValueError, match="contiguous"):
        events.validate_batch(events.empty(8)[::2])


def test_as_batch_zero_copy_and_size_check():
    raw = bytearray(64)
    view = events.as_batch(raw)
    view["node"][1] = 42
    assert events.as_batch(raw)["node"][1] == 42
    with pytest.raises(ValueError, match="whole number"):
        events.as_batch(bytearray(33))


def test_control_kinds():
    b = events.make_events(ts=[0, 1, 2], kind=[0, events.KIND_HEARTBEAT, events.KIND_GAP])
    assert events.is_control(b).tolist() == [False, True, True]
