import pickle

import numpy as np
import pytest

from ctas7 import checks
from ctas7.events import make_events
from ctas7.stage import Frame, FunctionStage, Pipeline, Stage, stage


class Scale(Stage):
    def __init__(self, factor=2.0):
        self.factor = factor

    def process(self, frame):
        from ctas7.events import validate_batch

        validate_batch(frame.events)
        frame.events["value"] *= self.factor
        return frame


@stage
def tag_nodes(frame):
    frame.extras["nodes"] = np.unique(frame.events["node"])
    return frame


class Foreign:
    """Never subclasses Stage; satisfies the protocol by shape alone."""

    name = "foreign"

    def process(self, frame):
        frame.extras["foreign"] = len(frame.events)
        return frame


class Noisy(Stage):
    def process(self, frame):
        from ctas7.events import validate_batch

        validate_batch(frame.events)
        frame.extras["r"] = np.random.random()
        return frame


class Lax(Stage):
    def process(self, frame):
        return frame


def test_pipe_composes_and_flattens():
    p = Scale() | Scale(3.0) | tag_nodes
    assert isinstance(p, Pipeline) and len(p.stages) == 3
    out = p.process(Frame(make_events(ts=[0, 1], node=[5, 5], value=1.0)))
    assert out.events["value"].tolist() == [6.0, 6.0]
    assert out.extras["nodes"].tolist() == [5]
    assert list(p.latency) == ["scale", "scale_1", "tag_nodes"]
    assert all(h.get_total_count() == 1 for h in p.latency.values())


def test_pipeline_is_a_stage_and_nests():
    inner = Scale() | Scale()
    outer = Pipeline([inner, Foreign()])
    out = outer.process(Frame(make_events(ts=[0], value=1.0)))
    assert out.events["value"][0] == 4.0 and out.extras["foreign"] == 1


def test_non_stage_rejected():
    with pytest.raises(TypeError, match="not a stage"):
        Pipeline([object()])


def test_pipeline_validates_batch():
    with pytest.raises(TypeError, match="EVENT_DTYPE"):
        (Scale() | Scale()).process(Frame(np.zeros(3)))


def test_clone_and_params():
    s = Scale(5.0)
    assert s.get_params() == {"factor": 5.0}
    assert s.clone().factor == 5.0 and s.clone() is not s
    assert repr(s) == "Scale(factor=5.0)"


def test_pipeline_pickles_with_histograms():
    p = Scale() | tag_nodes
    p.process(Frame(make_events(ts=[0, 1], value=1.0)))
    q = pickle.loads(pickle.dumps(p))
    assert q.latency["scale"].get_total_count() == 1


@pytest.mark.parametrize("s", [Scale(), tag_nodes, Scale() | tag_nodes], ids=["scale", "function", "pipeline"])
def test_conformance_of_python_stages(s):
    checks.check_stage(s)


def test_checks_catch_a_nondeterministic_stage():
    with pytest.raises(AssertionError, match="check_clone|check_deterministic|check_pickle"):
        checks.check_stage(Noisy())


def test_checks_catch_a_stage_that_accepts_garbage():
    with pytest.raises(AssertionError, match="malformed"):
        checks.check_stage(Lax())


def test_function_stage_requires_callable():
    with pytest.raises(TypeError, match="callable"):
        FunctionStage(3)
