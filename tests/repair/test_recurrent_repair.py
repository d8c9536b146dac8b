"""Repair of a recurrent consumer: an LSTM/GRU whose input features lose channels has its input
projection x_t W^T + Wb refitted like a Gemm (every gate of both directions an output), the
recurrence R, Rb left as it is; a layer without a bias gets one that follows its pruned units."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune import prune
from onnxprune.analysis import analyze
from onnxprune.analysis.oracle import zeroed_reference
from onnxprune.passes.prune_channels import drop_channels
from onnxprune.repair.features import consumers
from onnxprune.repair.reconstruct import repair_consumers
from tests.helpers.oracle import copy, run

T, F, H = 12, 8, 6


def conv_lstm(op: str = "LSTM", bias: bool = True, head: bool = False) -> onnx.ModelProto:
    """x [N, 3, T] -> Conv1d (3 -> 8, kernel 1) -> Transpose [T, N, 8] -> bidirectional op -> Y: the
    8 features span 3 dimensions, so the 4 a 50% cut keeps carry all of them and a refit of the
    input projection restores the output (up to the ridge). With a head, Y @ [H, 5] is the output and
    the hidden units are prunable too."""
    rng = np.random.default_rng(0)
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    inits = [numpy_helper.from_array(rng.standard_normal((F, 3, 1)).astype(np.float32), "wc"),
             numpy_helper.from_array(rng.standard_normal(F).astype(np.float32) * 0.1, "bc"),
             numpy_helper.from_array(rng.standard_normal((2, gates * H, F)).astype(np.float32) * 0.4, "W"),
             numpy_helper.from_array(rng.standard_normal((2, gates * H, H)).astype(np.float32) * 0.4, "R")]
    rnn_in = ["t", "W", "R"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal((2, 2 * gates * H)).astype(np.float32) * 0.2, "B"))
        rnn_in.append("B")
    nodes = [helper.make_node("Conv", ["x", "wc", "bc"], ["c"], name="conv"),
             helper.make_node("Transpose", ["c"], ["t"], perm=[2, 0, 1]),
             helper.make_node(op, rnn_in, ["y"], hidden_size=H, direction="bidirectional", name="rnn")]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [T, 2, "N", H])
    if head:
        inits.append(numpy_helper.from_array(rng.standard_normal((H, 5)).astype(np.float32), "wh"))
        nodes.append(helper.make_node("MatMul", ["y", "wh"], ["z"], name="head"))
        out = helper.make_tensor_value_info("z", TensorProto.FLOAT, [T, 2, "N", 5])
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, T])],
                          [out], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)


@pytest.fixture
def calib(tmp_path):
    p = tmp_path / "calib.npz"
    np.savez(p, x=np.random.default_rng(1).standard_normal((64, 3, T)).astype(np.float32))
    return str(p)


def held_out(n: int = 16) -> dict:
    return {"x": np.random.default_rng(2).standard_normal((n, 3, T)).astype(np.float32)}


def error(model, pruned) -> float:
    (want,), (got,) = run(model, held_out()), run(pruned, held_out())
    return float(np.mean((got - want) ** 2))


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_the_recurrent_layer_is_a_consumer(op):
    analysis = analyze(conv_lstm(op))
    everything = {c for g in analysis.prunable_groups() for c in g.channels}
    layers = [c for c in consumers(analysis, everything) if c.node.op_type == op]
    assert len(layers) == 1 and layers[0].kind == "recurrent"
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    assert layers[0].weight_matrix(analysis.graph).shape == (2 * gates * H, F)
    b = numpy_helper.to_array(next(i for i in analysis.graph.model.graph.initializer if i.name == "B"))
    np.testing.assert_array_equal(layers[0].bias(analysis.graph), b[:, :gates * H].reshape(-1))


@pytest.mark.parametrize("op, bias", [("LSTM", True), ("LSTM", False), ("GRU", True)])
def test_repair_refits_the_input_projection_and_helps(op, bias, calib):
    model = conv_lstm(op, bias)
    none = prune(copy(model), ratio=0.5, round_to=1, calib=calib, criterion="l1", repair="none").model
    fixed = prune(copy(model), ratio=0.5, round_to=1, calib=calib, criterion="l1", repair="lsq").model
    onnx.checker.check_model(fixed, full_check=True)
    assert error(model, fixed) < 0.05 * error(model, none)
    inits = {i.name: numpy_helper.to_array(i) for i in fixed.graph.initializer}
    rnn = next(n for n in fixed.graph.node if n.op_type == op)
    assert len(rnn.input) > 3 and rnn.input[3]  # the refitted input bias, added where there was none
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    b = inits[rnn.input[3]]
    assert b.shape == (2, 2 * gates * H)
    old = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    np.testing.assert_array_equal(inits[rnn.input[2]], old["R"])  # the recurrence stays
    rb = old["B"][:, gates * H:] if bias else np.zeros((2, gates * H), np.float32)
    np.testing.assert_array_equal(b[:, gates * H:], rb)          # and so does its bias Rb


def test_oracle_holds_after_recurrent_repair(calib):
    """The rewrite of the repaired model (a bias added to a bias-less LSTM) is still exact, with the
    LSTM's own units pruned too: the added bias loses them with W and R."""
    model = conv_lstm("LSTM", bias=False, head=True)
    analysis = analyze(copy(model))
    assert len(analysis.prunable_groups()) == 2
    removed = {c for g in analysis.prunable_groups() for c in g.channels[: len(g.channels) // 2]}
    info = repair_consumers(analysis, removed, calib, ("lsq",))
    assert info["chosen"]["lsq"] >= 1
    repaired = analysis.graph.model
    reference = zeroed_reference(repaired, analysis, removed)
    pruned = copy(repaired)
    drop_channels(analyze(pruned), removed)
    onnx.checker.check_model(pruned, full_check=True)
    x = held_out(4)
    for a, b in zip(run(reference, x), run(pruned, x)):
        np.testing.assert_allclose(b, a, atol=1e-4, rtol=1e-3)


def test_an_added_bias_loses_the_pruned_units_in_the_pipeline(calib):
    """Repair runs before the rewrite on the same analysis: a bias it adds to a bias-less LSTM whose
    own units are pruned must be cut with W and R, or the written model does not run."""
    model = conv_lstm("LSTM", bias=False, head=True)
    result = prune(copy(model), ratio=0.5, round_to=1, calib=calib, criterion="l1", repair="lsq")
    onnx.checker.check_model(result.model, full_check=True)
    rnn = next(n for n in result.model.graph.node if n.op_type == "LSTM")
    kept = next(a.i for a in rnn.attribute if a.name == "hidden_size")
    assert kept < H
    b = next(numpy_helper.to_array(i) for i in result.model.graph.initializer if i.name == rnn.input[3])
    assert b.shape == (2, 8 * kept)
    (z,) = run(result.model, held_out(4))
    assert z.shape == (T, 2, 4, 5)
