"""paddle2onnx builds a CRNN's LSTM initial states at run time from a zero Constant
[1, dirs * layers, H]: Tile by [batch, 1, 1] (the batch read with Shape), Transpose to
[dirs * layers, batch, H], Slice per layer (PP-OCRv2's recognizer, the plate recognizer). The states
are zeros, so a layer that loses hidden units may drop them (a missing initial state is zero); a
non-zero constant in the same form blocks the units."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune.analysis import analyze
from onnxprune.api import prune
from tests.helpers.oracle import check_oracle, copy, run

H, C, T, K = 6, 8, 12, 5


def paddle_crnn(state_value: float = 0.0, seed: int = 0) -> onnx.ModelProto:
    """x [N, 3, 4, T] -> Conv(C) -> Relu -> ReduceMean over H -> [T, N, C] -> two bidirectional
    LSTMs (H units) whose states come from Paddle's zero-state form -> MatMul to K classes [T, N, K]."""
    rng = np.random.default_rng(seed)

    def init(name, shape, scale=0.4):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    def const(name, value):
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name + "_v"))

    inits = [init("conv_w", (C, 3, 3, 3)), init("conv_b", (C,)),
             init("w0", (2, 4 * H, C)), init("r0", (2, 4 * H, H)), init("b0", (2, 8 * H), 0.1),
             init("w1", (2, 4 * H, 2 * H)), init("r1", (2, 4 * H, H)), init("b1", (2, 8 * H), 0.1),
             init("fc_w", (2 * H, K)), init("fc_b", (K,), 0.1)]
    nodes = [
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("ReduceMean", ["r"], ["m"], axes=[2], keepdims=0, name="pool"),   # [N, C, T]
        helper.make_node("Transpose", ["m"], ["seq"], perm=[2, 0, 1], name="to_seq"),        # [T, N, C]
        # the state: Tile(Constant [1, 4, H], Concat(Shape(x)[0:1], [1, 1])) -> [N, 4, H] -> [4, N, H]
        helper.make_node("Shape", ["x"], ["shape"], name="shape"),
        const("s0", np.array([0], np.int64)), const("s1", np.array([1], np.int64)),
        helper.make_node("Slice", ["shape", "s0", "s1"], ["batch"], name="batch"),
        const("ones", np.array([1, 1], np.int64)),
        helper.make_node("Concat", ["batch", "ones"], ["repeats"], axis=-1, name="repeats"),
        const("zeros", np.full((1, 4, H), state_value, np.float32)),
        helper.make_node("Tile", ["zeros", "repeats"], ["tiled"], name="tile"),
        helper.make_node("Transpose", ["tiled"], ["states"], perm=[1, 0, 2], name="states"),
        const("a0", np.array([0], np.int64)), const("a2", np.array([2], np.int64)),
        const("a4", np.array([4], np.int64)),
        helper.make_node("Slice", ["states", "a0", "a2", "a0"], ["h0"], name="state0"),
        helper.make_node("Slice", ["states", "a2", "a4", "a0"], ["h1"], name="state1"),
        helper.make_node("LSTM", ["seq", "w0", "r0", "b0", "", "h0", "h0"], ["y0"], hidden_size=H,
                         direction="bidirectional", name="lstm0"),                          # [T, 2, N, H]
        helper.make_node("Transpose", ["y0"], ["y0t"], perm=[0, 2, 1, 3], name="y0t"),
        const("flat", np.array([0, 0, -1], np.int64)),
        helper.make_node("Reshape", ["y0t", "flat"], ["seq1"], name="seq1"),                 # [T, N, 2H]
        helper.make_node("LSTM", ["seq1", "w1", "r1", "b1", "", "h1", "h1"], ["y1"], hidden_size=H,
                         direction="bidirectional", name="lstm1"),
        helper.make_node("Transpose", ["y1"], ["y1t"], perm=[0, 2, 1, 3], name="y1t"),
        helper.make_node("Reshape", ["y1t", "flat"], ["feat"], name="feat"),
        helper.make_node("MatMul", ["feat", "fc_w"], ["logits0"], name="fc"),
        helper.make_node("Add", ["logits0", "fc_b"], ["logits"], name="fc_bias"),
    ]
    graph = helper.make_graph(nodes, "paddle_crnn",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, T])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [T, "N", K])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7)
    onnx.checker.check_model(model)
    return model


def _lstm_groups(analysis):
    return [g for g in analysis.groups if any(s.startswith("lstm") for s in g.sources)]


def test_zero_states_built_at_run_time_leave_the_units_prunable():
    groups = _lstm_groups(analyze(paddle_crnn()))
    assert len(groups) == 2 and all(g.prunable for g in groups)


def test_a_nonzero_state_in_the_same_form_blocks_the_units():
    groups = _lstm_groups(analyze(paddle_crnn(state_value=0.5)))
    assert groups and not any(g.prunable for g in groups)
    assert any("initial state" in r for g in groups for r in g.reasons)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_oracle_with_units_removed_from_both_layers(seed):
    model = paddle_crnn(seed=seed)

    def choose(analysis):
        rng = np.random.default_rng(seed)
        return {int(c) for g in _lstm_groups(analysis) for c in rng.choice(g.channels, 2, replace=False)}

    info = check_oracle(model, seed=seed, choose=choose)
    assert info["removed"] == 4


def test_pruned_model_drops_the_states_and_runs_at_any_batch():
    model = paddle_crnn()
    result = prune(copy(model), ratio=0.5, round_to=1)
    lstms = [n for n in result.model.graph.node if n.op_type == "LSTM"]
    assert all(next(a.i for a in n.attribute if a.name == "hidden_size") < H for n in lstms) and len(lstms) == 2
    assert all(n.input[5] == "" and n.input[6] == "" for n in lstms)
    assert not any(n.op_type == "Tile" for n in result.model.graph.node)  # the state's subgraph went too
    for batch in (1, 3):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 4, T)).astype(np.float32)
        (out,) = run(result.model, {"x": x})
        assert out.shape == (T, batch, K)


def test_layers_that_keep_their_units_keep_their_states():
    model = paddle_crnn()
    result = prune(copy(model), ratio=0.5, round_to=1, keep=("lstm1",))  # lstm1 reads lstm0: both keep their units
    conv = next(n for n in result.model.graph.initializer if n.name == "conv_w")
    assert conv.dims[0] < C  # the run pruned something
    lstms = [n for n in result.model.graph.node if n.op_type == "LSTM"]
    assert all(n.input[5] and n.input[6] for n in lstms)
