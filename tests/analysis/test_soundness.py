"""Exact mode never changes an output, and no model gives an internal error (issue 12, classes 1-4).

Each model here was a counterexample: pruned in exact mode, its outputs changed (non-finite values,
Cast), or the analysis crashed (Squeeze without axes, BatchNormalization with spatial=0)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune.api import analyze_model, prune
from tests.helpers.oracle import check_oracle, copy, feeds, run

F = TensorProto.FLOAT


def _model(nodes, inits, in_shape, out_shape, opset=17, out_type=F):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, in_shape)],
                              [helper.make_tensor_value_info("y", out_type, out_shape)],
                              initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8 if opset >= 13 else 7
    onnx.checker.check_model(m, full_check=True)
    return m


def _conv_pair(w1, w2, b1=None, middle=(), middle_inits=None):
    """x[1,2,4,4] -> Conv(w1[, b1]) -> middle ops -> Conv(w2) -> y."""
    inits = {"w1": np.asarray(w1, np.float32), "w2": np.asarray(w2, np.float32), **(middle_inits or {})}
    c1 = ["x", "w1"] + (["b1"] if b1 is not None else [])
    if b1 is not None:
        inits["b1"] = np.asarray(b1, np.float32)
    nodes = [helper.make_node("Conv", c1, ["a0"])]
    cur = "a0"
    for k, (op, extra, attrs) in enumerate(middle):
        nodes.append(helper.make_node(op, [cur, *extra], [f"a{k + 1}"], **attrs))
        cur = f"a{k + 1}"
    nodes.append(helper.make_node("Conv", [cur, "w2"], ["y"]))
    return _model(nodes, inits, [1, 2, 4, 4], [1, len(w2), 4, 4])


def assert_same_outputs(a, b, seed=0):
    """NaN-aware: NaN and Inf positions must match exactly, finite ones to float tolerance."""
    inputs = feeds(a, batch=1, seed=seed)
    for x, y in zip(run(a, inputs), run(b, inputs)):
        assert x.shape == y.shape
        np.testing.assert_array_equal(np.isnan(x), np.isnan(y))
        np.testing.assert_array_equal(np.where(np.isinf(x), x, 0), np.where(np.isinf(y), y, 0))
        np.testing.assert_allclose(y, x, atol=1e-5, rtol=1e-4)


def _exact(model):
    result = prune(copy(model))
    assert_same_outputs(model, result.model)
    return result.report.channels_removed


def _w1_with_inf():
    w1 = np.ones((3, 2, 1, 1), np.float32)
    w1[1, 0] = np.inf
    return w1


# -- class 1: non-finite values ---------------------------------------------------------------

def test_inf_channel_read_through_a_zero_column_stays():
    w2 = np.ones((2, 3, 1, 1), np.float32)
    w2[:, 1] = 0  # 0 * Inf = NaN: the column does not ignore the channel
    assert _exact(_conv_pair(_w1_with_inf(), w2)) == 0


def test_inf_channel_times_a_zero_constant_stays():
    scale = np.array([1, 0, 1], np.float32).reshape(3, 1, 1)
    m = _conv_pair(_w1_with_inf(), np.ones((2, 3, 1, 1)), middle=[("Mul", ["s"], {})], middle_inits={"s": scale})
    assert _exact(m) == 0


def test_nonfinite_from_an_op_taints_what_follows():
    """Log(Relu(x)) is -Inf where x <= 0: a zero filter over it gives NaN, not its bias."""
    w1 = np.ones((3, 2, 1, 1), np.float32)
    w2 = np.ones((2, 3, 1, 1), np.float32)
    w2[:, 1] = 0
    m = _conv_pair(w1, w2, middle=[("Relu", [], {}), ("Log", [], {})])
    assert _exact(m) == 0


def test_division_by_a_constant_with_a_zero_entry_taints_its_output():
    """x / [1, 0, 2] is Inf in channel 1, and the zero column of w2 over it gives NaN: that channel
    stays. Divisors with no zero keep the tensor finite and the channel goes."""
    from onnxprune.analysis.finite import nonfinite_tensors
    from onnxprune.graph import ModelGraph

    w2 = np.ones((2, 3, 1, 1), np.float32)
    w2[:, 1] = 0
    for divisor, tainted, removed in (([1, 0, 2], True, 0), ([1, 3, 2], False, 1)):
        d = np.array(divisor, np.float32).reshape(3, 1, 1)
        m = _conv_pair(np.ones((3, 2, 1, 1)), w2, middle=[("Div", ["d"], {})], middle_inits={"d": d})
        assert ("a1" in nonfinite_tensors(ModelGraph(copy(m)))) == tainted
        assert _exact(m) == removed


def test_finite_model_still_loses_a_zero_column_channel():
    w2 = np.ones((2, 3, 1, 1), np.float32)
    w2[:, 1] = 0
    assert _exact(_conv_pair(np.ones((3, 2, 1, 1)), w2)) == 1


# -- class 2: Cast ----------------------------------------------------------------------------

@pytest.mark.parametrize("to, bias", [(TensorProto.INT32, 1.5), (TensorProto.BOOL, 0.5), (TensorProto.INT64, -2.7),
                                      (TensorProto.UINT8, 300.0), (TensorProto.FLOAT16, 1.0001)])
def test_cast_round_trip_is_tracked_exactly(to, bias):
    """A constant channel (zero filter, bias) cast away and back, minus the bias it had: Relu of a
    value that the old rule called 0. Removing it changes the output unless it really is 0."""
    w1 = np.ones((3, 2, 1, 1), np.float32)
    w1[1] = 0
    b1 = np.array([0, bias, 0], np.float32)
    sub = np.array([0, bias, 0], np.float32).reshape(3, 1, 1)
    middle = [("Cast", [], {"to": to}), ("Cast", [], {"to": F}), ("Sub", ["s"], {}), ("Abs", [], {})]
    m = _conv_pair(w1, np.ones((2, 3, 1, 1)), b1=b1, middle=middle, middle_inits={"s": sub})
    _exact(m)


def test_cast_of_a_zero_channel_is_still_removed():
    w1 = np.ones((3, 2, 1, 1), np.float32)
    w1[1] = 0
    m = _conv_pair(w1, np.ones((2, 3, 1, 1)), middle=[("Cast", [], {"to": TensorProto.INT32}),
                                                     ("Cast", [], {"to": F})])
    assert _exact(m) == 1


# -- class 3: Squeeze without axes ------------------------------------------------------------

@pytest.mark.parametrize("opset", [11, 13])
def test_squeeze_without_axes_keeps_the_channel_axis(opset):
    """[1,2,1,1] -> Squeeze() -> [2] -> Unsqueeze -> Gemm: pruning to one channel must not let
    Squeeze take the channel axis too."""
    unsq = ({"axes": [0]}, []) if opset < 13 else ({}, ["ax"])
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"]), helper.make_node("Squeeze", ["c"], ["s"]),
             helper.make_node("Unsqueeze", ["s", *unsq[1]], ["u"], **unsq[0]),
             helper.make_node("Gemm", ["u", "wg"], ["y"])]
    wg = np.ones((2, 4), np.float32)
    wg[1] = 0
    inits = {"w1": np.ones((2, 3, 1, 1), np.float32), "wg": wg}
    if opset >= 13:
        inits["ax"] = np.array([0], np.int64)
    m = _model(nodes, inits, [1, 3, 1, 1], [1, 4], opset=opset)
    assert _exact(m) == 1
    check_oracle(m, choose=lambda a: {a.prunable_groups()[0].channels[1]})


# -- class 4: BatchNormalization with spatial=0 ------------------------------------------------

def test_batchnorm_spatial0_is_analysed_and_pruned():
    rng = np.random.default_rng(0)
    w2 = np.ones((2, 3, 1, 1), np.float32)
    w2[:, 1] = 0
    bn = {k: rng.uniform(0.5, 1.5, (3, 4, 4)).astype(np.float32) for k in ("g", "b", "m", "v")}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"]),
             helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["n"], spatial=0),
             helper.make_node("Conv", ["n", "w2"], ["y"])]
    m = _model(nodes, {"w1": np.ones((3, 2, 1, 1), np.float32), "w2": w2, **bn}, [1, 2, 4, 4], [1, 2, 4, 4], opset=7)
    assert any(g.prunable for g in analyze_model(copy(m)).groups)
    assert _exact(m) == 1
    result = prune(copy(m), fold_bn=True)
    assert_same_outputs(m, result.model)
    check_oracle(m, choose=lambda a: {a.prunable_groups()[0].channels[0]})


# -- found by the fuzz harness (tools/fuzz.py) ------------------------------------------------

def test_channels_reaching_an_input_the_rule_does_not_follow_are_blocked():
    """A Conv's output used as a ConvTranspose *weight*: the rule follows only input 0, so those
    channels must be blocked, not removed because no consumer column reads them."""
    g = helper.make_graph(
        [helper.make_node("Conv", ["w_in", "wc"], ["w"]), helper.make_node("ConvTranspose", ["x", "w"], ["t"]),
         helper.make_node("Conv", ["t", "w2"], ["y"])], "g",
        [helper.make_tensor_value_info("x", F, [1, 1, 3, 3]), helper.make_tensor_value_info("w_in", F, [1, 2, 3, 3])],
        [helper.make_tensor_value_info("y", F, [1, 2, 5, 5])],
        initializer=[numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "wc"),
                     numpy_helper.from_array(np.array([[[[0]], [[1]]], [[[0]], [[1]]]], np.float32), "w2")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    groups = analyze_model(copy(m)).groups
    source = next(gr for gr in groups if "Conv(w)" in gr.sources)
    assert not source.prunable and any("input 1 of ConvTranspose" in r for r in source.reasons)
    assert _exact(m) == 0


def test_batchnorm_with_zero_scale_and_shift_is_a_zero_channel():
    """gamma = beta = 0 (a mask-pruned BN): the channel is 0 for any finite input, and goes."""
    bn = {"g": np.array([1, 0, 1], np.float32), "b": np.array([0.1, 0, 0.2], np.float32),
          "m": np.array([0.5, 0.3, 0], np.float32), "v": np.array([1, 2, 1], np.float32)}
    m = _conv_pair(np.ones((3, 2, 1, 1)), np.ones((2, 3, 1, 1)), middle=[("BatchNormalization", ["g", "b", "m", "v"], {})],
                   middle_inits=bn)
    assert _exact(m) == 1
    w1 = _w1_with_inf()  # ... but not when the channel may be Inf: Inf * 0 is NaN
    assert _exact(_conv_pair(w1, np.ones((2, 3, 1, 1)), middle=[("BatchNormalization", ["g", "b", "m", "v"], {})],
                             middle_inits=bn)) == 0


# -- constant values through Clip -----------------------------------------------------------------

@pytest.mark.parametrize("bound_shape", [(), (1,)])
def test_constant_channel_through_clip_keeps_its_value(bound_shape):
    """A zero filter with bias 3 is the constant 3, and Clip(0, 6) leaves it 3: read through non-zero
    columns it must stay. Bounds as scalars and as one-element tensors (clip_bounds_1d)."""
    w1 = np.ones((3, 2, 1, 1), np.float32)
    w1[1] = 0
    bounds = {"lo": np.zeros(bound_shape, np.float32), "hi": np.full(bound_shape, 6, np.float32)}
    m = _conv_pair(w1, np.ones((2, 3, 1, 1)), b1=[0.5, 3, -0.5], middle=[("Clip", ["lo", "hi"], {})],
                   middle_inits=bounds)
    assert _exact(m) == 0
