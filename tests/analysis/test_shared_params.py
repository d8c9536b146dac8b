"""A weight read by two nodes (PyTorch ties tensors through Identity, which untie leaves alone) may
lose positions on an axis only if both nodes follow that axis."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from onnxprune.analysis import analyze
from onnxprune.graph import ModelGraph
from tests.helpers.oracle import check_oracle


def tied_gemms(trans_b: int) -> onnx.ModelProto:
    """Gemm 1 reads conv channels through W; Gemm 2 reads a graph input through Identity(W)."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 8)).astype(np.float32)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "conv_w"),
             numpy_helper.from_array(w, "W")]
    nodes = [helper.make_node("Conv", ["x", "conv_w"], ["c"], name="conv", pads=[1] * 4),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "W"], ["y1"], name="gemm1", transB=trans_b),
             helper.make_node("Identity", ["W"], ["W_tied"], name="tie"),
             helper.make_node("Gemm", ["z", "W_tied"], ["y2"], name="gemm2", transB=trans_b),
             helper.make_node("Add", ["y1", "y2"], ["y"], name="add")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8]),
              helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 8])]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def test_weight_tied_to_a_node_that_reads_no_channels_keeps_its_input_axis():
    """The analysis on its own (no untie; If/Loop bodies keep their shared tensors): slicing W's
    input axis for gemm1 would break gemm2, so the conv channels are blocked."""
    for trans_b in (0, 1):
        analysis = analyze(ModelGraph(tied_gemms(trans_b)))
        conv = next(g for g in analysis.groups if "conv" in g.sources)
        assert not conv.prunable
        assert any("gemm2" in r and "'W'" in r for r in conv.reasons), conv.reasons


def test_tied_weight_untied_by_prune_stays_valid():
    """prune() gives the Identity its own copy first: gemm1's W loses rows, gemm2's does not."""
    model = tied_gemms(1)
    info = check_oracle(model, seed=0)
    assert info["prunable"] == 1 and info["removed"] >= 1
    pruned = onnxprune.prune(model, ratio=0.5).model
    onnx.checker.check_model(pruned, full_check=True)
    w = {t.name: numpy_helper.to_array(t).shape for t in pruned.graph.initializer}
    gemm1, gemm2 = (n for n in pruned.graph.node if n.op_type == "Gemm")
    tie = next(n for n in pruned.graph.node if n.op_type == "Identity")
    assert w[gemm1.input[1]] == (8, 4) and w[tie.input[0]] == (8, 8) and gemm2.input[1] == tie.output[0]
