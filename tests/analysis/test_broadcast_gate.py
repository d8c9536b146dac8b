"""One channel broadcast over many: a spatial attention map [N, 1, H, W] times the features (CBAM's
spatial gate, a Split-off gate channel), and MobileViTv2's linear attention, whose context vector is
expand_as(value): Expand(x, Shape(value)). Before these rules both operands' groups were blocked
("inputs carry different channel counts"; "Expand shape computed at run time"): timm's
mobilevitv2_050 kept 27 of 37 groups prunable, a CBAM ResNet-18 24 of 38."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from tests.helpers.oracle import check_oracle, copy, run


def _model(nodes, inits, name, out_channels=4):
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", out_channels, 8, 8])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _w(rng, *shape):
    return (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)


def spatial_gate(split: bool) -> onnx.ModelProto:
    """conv(3 -> 16) gated by sigmoid of a 1-channel map: its own conv (16 -> 1, CBAM) or a channel
    split off a 17-channel conv; then conv(16 -> 4)."""
    rng = np.random.default_rng(0)
    if split:
        inits = {"wa": _w(rng, 17, 3, 1, 1), "sizes": np.array([1, 16], np.int64), "wb": _w(rng, 4, 16, 1, 1)}
        nodes = [helper.make_node("Conv", ["x", "wa"], ["a"]),
                 helper.make_node("Split", ["a", "sizes"], ["g0", "v"], axis=1),
                 helper.make_node("Sigmoid", ["g0"], ["g"])]
    else:
        inits = {"wa": _w(rng, 16, 3, 1, 1), "wg": _w(rng, 1, 16, 1, 1), "wb": _w(rng, 4, 16, 1, 1)}
        nodes = [helper.make_node("Conv", ["x", "wa"], ["v"]),
                 helper.make_node("Conv", ["v", "wg"], ["g0"]),
                 helper.make_node("Sigmoid", ["g0"], ["g"])]
    nodes += [helper.make_node("Mul", ["v", "g"], ["m"]), helper.make_node("Conv", ["m", "wb"], ["y"])]
    return _model(nodes, inits, "spatial_gate")


def linear_attention() -> onnx.ModelProto:
    """MobileViTv2's LinearSelfAttention over [N, C, P, T]: qkv conv split [1, d, d], softmax of the
    query over the tokens, context = sum(key * scores, keepdim) expanded as the value, relu(value) *
    context, out conv, residual."""
    rng = np.random.default_rng(1)
    d = 8
    inits = {"wi": _w(rng, 8, 3, 3, 3), "wq": _w(rng, 1 + 2 * d, 8, 1, 1), "sizes": np.array([1, d, d], np.int64),
             "axes": np.array([-1], np.int64), "wo": _w(rng, 8, d, 1, 1), "wh": _w(rng, 4, 8, 1, 1)}
    nodes = [helper.make_node("Conv", ["x", "wi"], ["i"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["i", "wq"], ["qkv"]),
             helper.make_node("Split", ["qkv", "sizes"], ["q", "k", "v"], axis=1),
             helper.make_node("Softmax", ["q"], ["s"], axis=-1),
             helper.make_node("Mul", ["k", "s"], ["ks"]),
             helper.make_node("ReduceSum", ["ks", "axes"], ["ctx"], keepdims=1),
             helper.make_node("Relu", ["v"], ["rv"]),
             helper.make_node("Shape", ["v"], ["vshape"]),
             helper.make_node("Expand", ["ctx", "vshape"], ["ctx_x"]),
             helper.make_node("Mul", ["rv", "ctx_x"], ["o"]),
             helper.make_node("Conv", ["o", "wo"], ["p"]),
             helper.make_node("Add", ["i", "p"], ["r"]),
             helper.make_node("Conv", ["r", "wh"], ["y"])]
    return _model(nodes, inits, "linear_attention")


@pytest.mark.parametrize("split", [False, True])
def test_a_one_channel_gate_broadcasts_over_the_features(split):
    model = spatial_gate(split)
    analysis = onnxprune.analyze(copy(model))
    features = next(g for g in analysis.groups if g.size >= 16)
    assert features.prunable, features.reasons
    for seed in range(3):
        assert check_oracle(model, seed=seed)["removed"] > 0
    result = onnxprune.prune(copy(model), ratio=0.5, round_to=1)
    assert result.report.channels_removed >= 7
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    assert run(result.model, {"x": x})[0].shape == (2, 4, 8, 8)
    # the gate's one channel stays: a Split keeps its piece of 1
    if split:
        sizes = next(numpy_helper.to_array(t) for t in result.model.graph.initializer if t.name.startswith("sizes"))
        assert sizes[0] == 1 and sizes[1] < 16


def test_expand_as_keeps_counting_the_values_channels():
    model = linear_attention()
    analysis = onnxprune.analyze(copy(model))
    # qkv's 17 outputs: the query's one channel, and the key's and value's 8 tied pairwise (the
    # context, made from the keys, is expanded as the values and multiplies them)
    assert sorted((g.size, g.prunable) for g in analysis.groups) == [(4, False), (8, True), (9, True)]
    for seed in range(3):
        assert check_oracle(model, seed=seed)["removed"] > 0
    result = onnxprune.prune(copy(model), ratio=0.5, round_to=1)
    assert result.report.channels_removed >= 6
    assert not any(t.name.endswith("_frozen") for t in result.model.graph.initializer)  # Shape(value) read as it is
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    assert run(result.model, {"x": x})[0].shape == (3, 4, 8, 8)


def eca_block() -> onnx.ModelProto:
    """ECA-Net's channel attention (timm's eca*): conv(3 -> 8) -> GlobalAveragePool -> Reshape
    [N, 1, 8] -> Conv1d(1 -> 1, kernel 3, pads 1) sliding along the channels -> Sigmoid -> Reshape
    [N, 8, 1, 1] -> times the features -> conv(8 -> 4)."""
    rng = np.random.default_rng(2)
    inits = {"wa": _w(rng, 8, 3, 3, 3), "to_seq": np.array([0, 1, -1], np.int64),
             "weca": rng.standard_normal((1, 1, 3)).astype(np.float32), "to_map": np.array([0, -1, 1, 1], np.int64),
             "wb": _w(rng, 4, 8, 1, 1)}
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["a"], ["p"]),
             helper.make_node("Reshape", ["p", "to_seq"], ["s"]),
             helper.make_node("Conv", ["s", "weca"], ["e"], pads=[1, 1]),
             helper.make_node("Sigmoid", ["e"], ["g"]),
             helper.make_node("Reshape", ["g", "to_map"], ["gm"]),
             helper.make_node("Mul", ["a", "gm"], ["m"]),
             helper.make_node("Conv", ["m", "wb"], ["y"])]
    return _model(nodes, inits, "eca")


def test_eca_slides_over_the_channels_in_lossy_mode():
    """It was `channels on axis 2, Conv reads axis 1`: timm's ecaresnet26t kept 19 of 40 groups
    prunable, 23 of 24 with this rule. Removing channels changes the neighbours a window reads, so
    the features go in lossy mode only (the lossy oracle slides the conv over the kept ones)."""
    model = eca_block()
    features = next(g for g in onnxprune.analyze(copy(model)).groups if g.size == 8)
    assert features.prunable and not features.exact and "ECA" in features.inexact[0]
    for seed in range(3):
        assert check_oracle(model, seed=seed, lossy=True)["removed"] > 0
    result = onnxprune.prune(copy(model), ratio=0.5, round_to=1)
    assert result.report.channels_removed == 4
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    assert run(result.model, {"x": x})[0].shape == (2, 4, 8, 8)
