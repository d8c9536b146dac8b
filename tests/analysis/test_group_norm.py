"""GroupNorm: G runs of C / G channels, each normalized over the run and the spatial dims.

One channel a group (G = C) is InstanceNorm: a zero channel normalizes to its bias and goes in exact
mode. Otherwise fewer channels change their group's statistics: the channels go in lossy mode only,
every group that keeps channels keeping the same number and whole groups going with the count.
Two forms: ONNX's GroupNormalization (the dynamo exporter at opset 21) and torch's / paddle2onnx's
Reshape(x, [0, G, -1]) -> InstanceNormalization -> Reshape(., Shape(x)). Before these rules the
first was blocked ("mixes neighbouring channels") and the second too ("Reshape splits the channel
axis"), with every conv feeding them. The lossy oracle (analysis/oracle.lossy_reference) recomputes
each GroupNorm over the kept channels of the unpruned model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from tests.helpers.oracle import check_oracle, copy, run

FIX = Path(__file__).resolve().parents[1] / "fixtures"
FORMS = ["torch_groupnorm_tiny", "torch_groupnorm_tiny_dynamo"]


def _load(name):
    return onnx.load(str(FIX / f"{name}.onnx"))


@pytest.mark.parametrize("name", FORMS)
def test_group_norm_groups_are_prunable_in_lossy_mode(name):
    analysis = onnxprune.analyze(_load(name))
    groups = sorted((g.size, g.prunable, g.exact) for g in analysis.groups)
    # 16: the residual stream (GroupNorm(4), GroupNorm(1), GroupNorm(16) after a depthwise conv);
    # 24: the head (GroupNorm(4)); 32: the MLP's hidden channels; 10: the classes.
    assert groups == [(10, False, False), (16, True, False), (24, True, False), (32, True, True)]
    stream = next(g for g in analysis.groups if g.size == 16)
    assert "GroupNorm" in stream.inexact[0] and "4 channels a group" in stream.inexact[0]


@pytest.mark.parametrize("name", FORMS)
@pytest.mark.parametrize("seed", range(3))
def test_group_norm_oracle(name, seed):
    model = _load(name)
    assert check_oracle(model, seed=seed)["removed"] > 0  # the MLP group only
    assert check_oracle(model, seed=seed, lossy=True)["removed"] > 0


def _thin(k, whole):
    """Channels 1..k of every group of the head's GroupNorm(4, 24), and the groups in `whole` entirely."""
    def choose(analysis):
        group = next(g for g in analysis.groups if g.size == 24)
        removed = set()
        for i, part in enumerate(analysis.parts_of_group[group.id]):
            part = list(dict.fromkeys(part.tolist()))
            removed |= set(part if i in whole else part[1:1 + k])
        return removed
    return choose


@pytest.mark.parametrize("name", FORMS)
@pytest.mark.parametrize("k, whole", [(1, ()), (2, (0,)), (3, (1, 3))])
def test_group_norm_thinned_and_whole_groups(name, k, whole):
    """Each group thinned alike, some groups gone: the group count and its scale and bias follow."""
    info = check_oracle(_load(name), choose=_thin(k, whole), lossy=True)
    assert info["removed"] == 6 * len(whole) + k * (4 - len(whole))


@pytest.mark.parametrize("name", FORMS)
def test_unequal_cuts_are_evened_out(name):
    """A cut leaving the GroupNorm's groups unequal counts is given back until the groups that keep
    channels keep equal counts (as selection does): here group 0 goes whole, group 1 keeps all."""
    from onnxprune.passes.select import restore_nonempty

    model = _load(name)
    analysis = onnxprune.analyze(copy(model))
    group = next(g for g in analysis.groups if g.size == 24)
    parts = [list(dict.fromkeys(p.tolist())) for p in analysis.parts_of_group[group.id]]
    cut = set(parts[0]) | {parts[1][0]}
    info = check_oracle(model, choose=lambda a: restore_nonempty(a, cut), lossy=True)
    assert info["removed"] == 6


def test_pruned_group_norm_runs_at_other_sizes():
    """torch's form keeps its dynamic dims: the restoring Reshape reads Shape(x) at run time."""
    result = onnxprune.prune(_load("torch_groupnorm_tiny"), ratio=0.5)
    assert result.report.channels_removed >= 30
    onnx.checker.check_model(result.model, full_check=True)
    for shape in [(1, 3, 32, 32), (3, 3, 48, 40)]:
        (y,) = run(result.model, {"input": np.random.default_rng(1).standard_normal(shape).astype(np.float32)})
        assert y.shape == (shape[0], 10)


def _instance_norm_per_channel(zero: int = 2) -> onnx.ModelProto:
    """conv (filter `zero` all zero, bias 0) -> GroupNorm(8, 8) in torch's form (that channel's beta 0)
    -> conv: the channel is 0 throughout."""
    rng = np.random.default_rng(0)
    beta = rng.standard_normal(8).astype(np.float32)
    beta[zero] = 0
    w1 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    w1[zero] = 0
    b1 = rng.standard_normal(8).astype(np.float32)
    b1[zero] = 0
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"),
             numpy_helper.from_array(np.array([0, 8, -1], np.int64), "groups"),
             numpy_helper.from_array(np.ones(8, np.float32), "gamma"),
             numpy_helper.from_array(beta, "beta"),
             numpy_helper.from_array(rng.standard_normal((4, 8, 1, 1)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Reshape", ["c1", "groups"], ["r"]),
             helper.make_node("InstanceNormalization", ["r", "gamma", "beta"], ["n"], epsilon=1e-5),
             helper.make_node("Shape", ["c1"], ["s"]),
             helper.make_node("Reshape", ["n", "s"], ["back"]),
             helper.make_node("Relu", ["back"], ["a"]),
             helper.make_node("Conv", ["a", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "gn_per_channel",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 6, 6])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_one_channel_a_group_goes_in_exact_mode():
    model = _instance_norm_per_channel()
    result = onnxprune.prune(copy(model))
    assert result.report.channels_removed == 1
    x = np.random.default_rng(2).standard_normal((2, 3, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(run(result.model, {"x": x})[0], run(model, {"x": x})[0], rtol=1e-4, atol=1e-4)
    target = next(numpy_helper.to_array(t) for t in result.model.graph.initializer if t.name.startswith("groups"))
    assert target.tolist() == [0, 7, -1]
    assert check_oracle(model)["removed"] > 0
