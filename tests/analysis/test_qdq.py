"""QDQ input models: weights stored as integers behind DequantizeLinear are read through it, pruned
together with their per-channel scales and zero points, and the graph stays QDQ. Integer ops
(ConvInteger, MatMulInteger: dynamic quantization) block their channels with a reason."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


import onnxprune
from onnxprune.analysis import analyze
from onnxprune.graph import ModelGraph
from onnxprune.passes.untie import untie_shared
from tests.helpers.mask import mask_channels, pick_channels
from tests.helpers.oracle import assert_outputs_match, check_oracle, copy, feeds, run, without_activation_qdq
from tests.helpers.cli import invoke

QDQ_CNN = Path(__file__).resolve().parents[1] / "fixtures" / "exporters" / "qdq_cnn.onnx"


def _qdq_weights_consistent(model: onnx.ModelProto) -> int:
    """Every QDQ weight's per-channel scale and zero point match its data; returns how many there are."""
    graph = ModelGraph(model, infer=False)
    for name, w in graph.dequantized.items():
        shape = graph.const_shape(w.data)
        if w.axis is not None:
            assert graph.const_shape(w.scale) == (shape[w.axis],), name
            if w.zero_point:
                assert graph.const_shape(w.zero_point) == (shape[w.axis],), name
    return len(graph.dequantized)


def _q(value, scale, zp, dtype=np.int8, axis=None):
    s, z = np.asarray(scale, np.float64), np.asarray(zp, np.float64)
    if axis is not None:
        shape = [1] * value.ndim
        shape[axis] = -1
        s, z = s.reshape(shape), z.reshape(shape)
    info = np.iinfo(dtype)
    return np.clip(np.rint(value / s) + z, info.min, info.max).astype(dtype)


def qdq_mlp(per_channel=True, seed=0, share_data=False) -> onnx.ModelProto:
    """x[N,8] -> MatMul(DQ W1[8,16], per-channel axis 1) + b -> Relu -> Q/DQ (per-tensor uint8)
    -> MatMul(DQ W2[16,4], per-tensor) -> y. Hand-made, so the quantization layout is explicit."""
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((8, 16)).astype(np.float32)
    w2 = rng.standard_normal((16, 4)).astype(np.float32)
    s1 = (np.abs(w1).max(axis=0) / 127).astype(np.float32) if per_channel else np.float32(np.abs(w1).max() / 127)
    zp1 = np.zeros_like(s1, dtype=np.int8)
    s2 = np.float32(np.abs(w2).max() / 127)
    inits = [
        numpy_helper.from_array(_q(w1, s1, zp1, axis=1 if per_channel else None), "w1_q"),
        numpy_helper.from_array(np.asarray(s1), "w1_scale"),
        numpy_helper.from_array(np.asarray(zp1), "w1_zp"),
        numpy_helper.from_array(_q(w2, s2, 0), "w2_q"),
        numpy_helper.from_array(np.asarray(s2), "w2_scale"),
        numpy_helper.from_array(np.asarray(np.int8(0)), "w2_zp"),
        numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b1"),
        numpy_helper.from_array(np.asarray(np.float32(0.05)), "act_scale"),
        numpy_helper.from_array(np.asarray(np.uint8(0)), "act_zp"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["w1_q", "w1_scale", "w1_zp"], ["w1"], axis=1),
        helper.make_node("DequantizeLinear", ["w2_q", "w2_scale", "w2_zp"], ["w2"]),
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Add", ["h", "b1"], ["hb"]),
        helper.make_node("Relu", ["hb"], ["r"]),
        helper.make_node("QuantizeLinear", ["r", "act_scale", "act_zp"], ["rq"]),
        helper.make_node("DequantizeLinear", ["rq", "act_scale", "act_zp"], ["rd"]),
        helper.make_node("MatMul", ["rd", "w2"], ["y"]),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])]
    if share_data:  # a second reader of W1's integers
        nodes.append(helper.make_node("DequantizeLinear", ["w1_q", "act_scale"], ["w1_seen"]))
        outputs.append(helper.make_tensor_value_info("w1_seen", TensorProto.FLOAT, [8, 16]))
    graph = helper.make_graph(nodes, "qdq_mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def test_qdq_export_groups_follow_the_dequantized_weights():
    model = onnx.load(QDQ_CNN)
    analysis = analyze(copy(model))
    assert [(g.size, g.prunable) for g in analysis.groups] == [(8, True), (8, True), (16, True), (10, False)]
    params = {m.param for g in analysis.groups for m in g.members}
    assert "conv2.weight_DequantizeLinear_Output" in params  # read through DequantizeLinear
    assert analysis.groups[0].sources == ["conv1", "conv3"]  # the residual Add couples them, as in float


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_qdq_export_oracle(seed):
    """Zeroing QDQ weights (the integer data set to its zero point) gives what the pruned QDQ model gives."""
    model = onnx.load(QDQ_CNN)
    got = check_oracle(model, seed=seed)  # also asserts that no op was added or removed: still QDQ
    assert got["removed"] > 0 and got["prunable"] == 3


def test_qdq_lossy_prune_slices_scales_and_stays_qdq():
    model = onnx.load(QDQ_CNN)
    result = onnxprune.prune(copy(model), ratio=0.5)
    pruned = result.model
    onnx.checker.check_model(pruned, full_check=True)
    assert Counter(n.op_type for n in pruned.graph.node) == Counter(n.op_type for n in model.graph.node)
    assert _qdq_weights_consistent(pruned) == _qdq_weights_consistent(model) == 10
    before = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    after = {t.name: numpy_helper.to_array(t) for t in pruned.graph.initializer}
    assert after["conv2.weight_quantized"].shape == (4, 4, 3, 3)
    assert after["conv2.weight_scale"].shape == (4,) and after["conv2.bias_quantized_scale"].shape == (4,)
    assert after["relu_1_scale"] == before["relu_1_scale"]  # per-tensor activation scales stay
    assert after["conv2.weight_quantized"].dtype == np.int8  # still stored as integers
    # the kept filters and their scales are the original ones, unrequantized
    kept = [k for k in range(8) if any(np.array_equal(after["conv2.weight_scale"][j], before["conv2.weight_scale"][k])
                                       for j in range(4))]
    assert len(kept) >= 4
    assert result.report.params_after < result.report.params_before
    assert result.report.flops_after < result.report.flops_before
    (y,) = run(pruned, feeds(model))
    assert y.shape == (2, 10) and np.all(np.isfinite(y))


def test_qdq_exact_mode_removes_dead_channels():
    """A QDQ model whose mask-pruned channels have zero integer weights (at the zero point): exact mode
    removes them, the outputs are unchanged, and the oracle holds for the removed set."""
    model = onnx.load(QDQ_CNN)
    untie_shared(model)
    analysis = analyze(model)
    chosen = pick_channels(analysis, np.random.default_rng(0), 0.4)
    mask_channels(analysis, chosen)  # quantizes zeros to the zero point through the DequantizeLinear view
    masked = analysis.graph.model
    result = onnxprune.prune(copy(masked))
    assert result.report.mode == "exact"
    assert result.report.channels_removed == len(chosen) > 0
    assert Counter(n.op_type for n in result.model.graph.node) == Counter(n.op_type for n in masked.graph.node)
    inputs = feeds(masked, seed=4)
    for want, got in zip(run(masked, inputs), run(result.model, inputs)):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    check_oracle(masked, choose=lambda a: {c for g in a.prunable_groups() for c in g.channels if c in chosen}
                 or set())


@pytest.mark.parametrize("group", [0, 1, 2])
def test_one_step_allowance_does_not_hide_a_wrong_slice(group):
    """The neighbours of the zeroed channels pruned instead: the QDQ output is many quantization steps
    off (the one-step allowance does not cover it) and the float view fails the strict tolerance."""
    from onnxprune.analysis.oracle import zeroed_reference
    from onnxprune.passes.prune_channels import drop_channels

    model = onnx.load(QDQ_CNN)
    untie_shared(model)
    analysis = analyze(copy(model))
    g = analysis.prunable_groups()[group]
    reference = zeroed_reference(model, analysis, {g.channels[0]})
    wrong = copy(model)
    drop_channels(analyze(wrong), {g.channels[1]})
    inputs = feeds(model)
    with pytest.raises(AssertionError, match="quantization steps apart"):
        assert_outputs_match(model, run(reference, inputs), run(wrong, inputs), 1e-4, 1e-3)
    with pytest.raises(AssertionError, match="Not equal to tolerance"):
        assert_outputs_match(without_activation_qdq(model), run(without_activation_qdq(reference), inputs),
                             run(without_activation_qdq(wrong), inputs), 1e-4, 1e-3)


def test_cli_exact_mode_on_qdq_allows_one_step(tmp_path):
    js = tmp_path / "r.json"
    res = invoke(str(QDQ_CNN), str(tmp_path / "out.onnx"), "--json", str(js))
    assert res.exit_code == 0, res.output
    thresholds = json.loads(js.read_text())["validation"]["thresholds"]
    assert thresholds["atol"] == 1e-4 and thresholds["quant_step"] == {"output": pytest.approx(0.016933374)}


@pytest.mark.parametrize("per_channel", [True, False])
def test_hand_made_qdq_matmul_oracle(per_channel):
    """MatMul weights quantized per channel along axis 1 (the output features) or per tensor."""
    model = qdq_mlp(per_channel)
    analysis = analyze(copy(model))
    assert [(g.size, g.prunable) for g in analysis.groups] == [(16, True), (4, False)]
    for seed in range(3):
        check_oracle(model, seed=seed)
    pruned = onnxprune.prune(copy(model), ratio=0.5, round_to=1).model
    w1_scale = next(t for t in pruned.graph.initializer if t.name == "w1_scale")
    assert list(w1_scale.dims) == ([8] if per_channel else [])
    assert _qdq_weights_consistent(pruned) == 2


def test_shared_quantized_data_blocks_with_a_reason():
    model = qdq_mlp(share_data=True)
    graph = ModelGraph(model)
    assert "w1" not in graph.dequantized and "shared" in graph.dequantize_refused["w1"]
    analysis = analyze(graph)
    assert [g.sources for g in analysis.groups] == [["MatMul(y)"]]  # W1's MatMul makes no group


def test_fold_bn_leaves_qdq_weights_alone():
    model = onnx.load(QDQ_CNN)
    folded = onnxprune.prune(copy(model), fold_bn=True).model
    assert [t.name for t in folded.graph.initializer] == [t.name for t in model.graph.initializer]


def test_dynamic_quantized_graph_is_blocked_with_a_reason(tmp_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "w2")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), tmp_path / "f.onnx")
    quantize_dynamic(str(tmp_path / "f.onnx"), str(tmp_path / "d.onnx"), weight_type=QuantType.QInt8)
    model = onnx.load(tmp_path / "d.onnx")
    assert "MatMulInteger" in {n.op_type for n in model.graph.node}
    analysis = onnxprune.analyze(model)
    assert analysis.groups and analysis.prunable_groups() == []
    assert any("MatMulInteger computes on integers" in r for g in analysis.groups for r in g.reasons)
