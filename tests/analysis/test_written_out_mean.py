"""jax2tf's LayerNorm (Google's Magika): the mean and the mean of squares as ReduceSum over the
channels times 1/C, the variance E[x^2] - mean^2, and the scale computed at run time as
rsqrt(var + eps) [N, 1] * gamma [1, C]. The sums are statistics of the kept channels once 1/C
becomes 1/C' (lossy only), and gamma is the channels' parameter though it reaches them through a
product with a tensor that broadcasts. Before, both blocked the group ('ReduceSum reduces over the
channel axis', then 'has 512 entries on the channel axis and carries no channels')."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from tests.helpers.oracle import check_oracle, copy

C = 8


def _model(scale_op: str = "Mul") -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    k = np.array(1.0 / C if scale_op == "Mul" else float(C), np.float32)
    inits = {"w1": rng.standard_normal((6, C)), "k": k, "axes": np.array([1], np.int64), "col": np.array([-1, 1], np.int64),
             "eps": np.array(1e-6, np.float32), "zero": np.array(0.0, np.float32),
             "gamma": 1 + 0.2 * rng.standard_normal((1, C)), "beta": 0.1 * rng.standard_normal(C),
             "w2": rng.standard_normal((C, 3))}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]),
             helper.make_node("ReduceSum", ["h", "axes"], ["s"], keepdims=0),
             helper.make_node(scale_op, ["s", "k"], ["mean"]),
             helper.make_node("Mul", ["h", "h"], ["h2"]),
             helper.make_node("ReduceSum", ["h2", "axes"], ["s2"], keepdims=0),
             helper.make_node(scale_op, ["s2", "k"], ["meansq"]),
             helper.make_node("Mul", ["mean", "mean"], ["m2"]),
             helper.make_node("Sub", ["meansq", "m2"], ["v0"]),
             helper.make_node("Max", ["v0", "zero"], ["v"]),
             helper.make_node("Reshape", ["mean", "col"], ["mean_c"]),
             helper.make_node("Reshape", ["v", "col"], ["v_c"]),
             helper.make_node("Add", ["v_c", "eps"], ["ve"]),
             helper.make_node("Sqrt", ["ve"], ["sd"]),
             helper.make_node("Reciprocal", ["sd"], ["rs"]),
             helper.make_node("Mul", ["rs", "gamma"], ["g"]),
             helper.make_node("Sub", ["h", "mean_c"], ["d"]),
             helper.make_node("Mul", ["d", "g"], ["n"]),
             helper.make_node("Add", ["n", "beta"], ["ln"]),
             helper.make_node("MatMul", ["ln", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "jax_ln", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                              [numpy_helper.from_array(np.asarray(v, dtype=np.int64 if v.dtype == np.int64 else np.float32), name)
                               for name, v in ((n, np.asarray(v)) for n, v in inits.items())])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return model


@pytest.mark.parametrize("scale_op", ["Mul", "Div"])
def test_written_out_mean_is_a_statistic_of_the_kept_channels(scale_op):
    model = _model(scale_op)
    analysis = onnxprune.analyze(copy(model))
    (group,) = analysis.prunable_groups()
    assert group.size == C and not group.exact
    assert any("ReduceSum over the channel axis scaled by their count" in r for r in group.inexact)
    for seed in range(3):
        assert check_oracle(model, seed=seed, lossy=True)["removed"] > 0


def test_the_count_and_gamma_follow_the_kept_channels():
    result = onnxprune.prune(copy(_model()), ratio=0.5)
    g = result.model.graph
    values = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    kept = values["w1"].shape[1]
    assert kept < C
    scales = [values[n.input[1]] for n in g.node if n.op_type == "Mul" and n.input[0] in ("s", "s2")]
    assert len(scales) == 2 and all(np.isclose(float(v), 1.0 / kept) for v in scales)
    assert all(v.shape == () for v in scales)  # a scalar stays a scalar
    assert values["gamma"].shape == (1, kept)


def test_a_sum_scaled_by_another_count_is_not_a_mean():
    """ReduceSum times a constant that is not 1/C (a sum, weighted): blocked as before."""
    model = _model()
    for t in model.graph.initializer:
        if t.name == "k":
            t.CopyFrom(numpy_helper.from_array(np.array(0.2, np.float32), "k"))
    analysis = onnxprune.analyze(copy(model))
    assert not analysis.prunable_groups()
