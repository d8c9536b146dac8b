"""--quantize: prune, repair, then quantize with onnxruntime.quantization and the same calibration
data; the opset and IR version are kept, each step's fidelity is reported, the file is atomic."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from onnxprune.errors import ConfigError
from tests.helpers.oracle import copy, feeds, run
from tests.helpers.cli import invoke

FIX = Path(__file__).resolve().parent / "fixtures"
RESNET = FIX / "torch_resnet_tiny.onnx"
OPSET11 = FIX / "exporters" / "opset11_cnn.onnx"
QDQ = FIX / "exporters" / "qdq_cnn.onnx"


def _calib(tmp_path: Path, model_path: Path, n: int = 16) -> Path:
    model = onnx.load(model_path)
    dims = [d.dim_value or n for d in model.graph.input[0].type.tensor_type.shape.dim]
    dims[0] = n
    path = tmp_path / f"{model_path.stem}_calib.npz"
    np.savez(path, **{model.graph.input[0].name: np.random.default_rng(0).standard_normal(dims).astype(np.float32)})
    return path


def _float_mlp(opset: int = 13) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 32)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((32, 4)).astype(np.float32), "w2")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=7)


def _per_channel_weights(model: onnx.ModelProto) -> int:
    inits = {t.name: t for t in model.graph.initializer}
    n = 0
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits and inits[node.input[0]].data_type == TensorProto.INT8:
            scale = inits[node.input[1]]
            n += len(scale.dims) == 1 and scale.dims[0] > 1
    return n


def test_int8_after_pruning(tmp_path):
    calib = _calib(tmp_path, RESNET)
    model = onnx.load(RESNET)
    result = onnxprune.prune(onnx.load(RESNET), ratio=0.5, calib=str(calib), repair="all", quantize="int8")
    q, f = result.model, result.float_model
    ops = Counter(n.op_type for n in q.graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > ops["QuantizeLinear"]
    assert "QuantizeLinear" not in {n.op_type for n in f.graph.node}  # the float step is kept apart
    assert _per_channel_weights(q) >= 5
    assert [(o.domain, o.version) for o in q.opset_import] == [(o.domain, o.version) for o in model.opset_import]
    assert q.ir_version == model.ir_version
    assert result.report.quantize["per_channel"] and result.report.quantize["calibration_samples"] == 16
    assert result.report.flops_after < result.report.flops_before
    inits = {t.name: t for t in q.graph.initializer}
    producers = {o: n for n in q.graph.node for o in n.output}
    for conv in (n for n in q.graph.node if n.op_type == "Conv"):
        dq = producers[conv.input[1]]
        assert dq.op_type == "DequantizeLinear" and inits[dq.input[0]].data_type == TensorProto.INT8
    onnx.checker.check_model(q, full_check=True)
    inputs = feeds(model)
    (want,), (got,) = run(f, inputs), run(q, inputs)
    assert got.shape == want.shape
    cos = float((want * got).sum() / np.linalg.norm(want) / np.linalg.norm(got))
    assert cos > 0.9  # int8 of the pruned model tracks the pruned float model


def test_quantized_model_prunes_again_and_stays_qdq(tmp_path):
    """What --quantize int8 writes is a QDQ model that onnxprune can prune further."""
    calib = _calib(tmp_path, RESNET)
    q = onnxprune.prune(onnx.load(RESNET), calib=str(calib), quantize="int8").model
    analysis = onnxprune.analyze(q)
    assert len(analysis.prunable_groups()) >= 3
    again = onnxprune.prune(copy(q), ratio=0.5).model
    assert Counter(n.op_type for n in again.graph.node)["DequantizeLinear"] > 0
    assert onnxprune.cost.count_params(again) < onnxprune.cost.count_params(q)


def test_low_opset_keeps_opset_and_quantizes_per_tensor(tmp_path):
    calib = _calib(tmp_path, OPSET11)
    result = onnxprune.prune(onnx.load(OPSET11), calib=str(calib), quantize="int8")
    assert result.model.opset_import[0].version == 11
    assert _per_channel_weights(result.model) == 0
    assert not result.report.quantize["per_channel"]
    assert any("opset 11 < 13" in n for n in result.report.notes)


def test_opset_below_10_is_refused():
    with pytest.raises(ConfigError, match="opset 9 has no QuantizeLinear"):
        onnxprune.prune(_float_mlp(opset=9), quantize="dynamic")


def test_already_quantized_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="already quantized"):
        onnxprune.prune(onnx.load(QDQ), calib=str(_calib(tmp_path, QDQ)), quantize="int8")


def test_int8_needs_calibration():
    with pytest.raises(ConfigError, match="--calib"):
        onnxprune.prune(onnx.load(RESNET), quantize="int8")


def test_dynamic_quantizes_matmuls():
    model = _float_mlp()
    result = onnxprune.prune(model, ratio=0.5, round_to=1, quantize="dynamic")
    ops = Counter(n.op_type for n in result.model.graph.node)
    assert ops["MatMulInteger"] == 2 and ops["DynamicQuantizeLinear"] >= 1
    w1 = next(t for t in result.float_model.graph.initializer if t.name == "w1")
    assert list(w1.dims) == [8, 16]  # pruned first
    x = {"x": np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)}
    (want,), (got,) = run(result.float_model, x), run(result.model, x)
    np.testing.assert_allclose(got, want, atol=0.1 * np.abs(want).max())


def test_cli_reports_each_step_and_json(tmp_path):
    calib = _calib(tmp_path, RESNET)
    out, js = tmp_path / "q.onnx", tmp_path / "r.json"
    res = invoke(str(RESNET), str(out), "--ratio", "0.5", "--calib", str(calib), "--repair", "all",
                                    "--quantize", "int8", "--json", str(js))
    assert res.exit_code == 0, res.output
    assert "step 1: pruned (float)" in res.output and "step 2: quantized (int8, written)" in res.output
    assert "quantized   int8 (QDQ, per-channel" in res.output
    body = json.loads(js.read_text())
    assert body["quantize"]["mode"] == "int8"
    assert body["validation"]["names"] == ["original", "quantized"]
    assert body["validation_pruned_float"]["names"] == ["original", "pruned"]
    assert "QuantizeLinear" in {n.op_type for n in onnx.load(out).graph.node}


def test_cli_exact_mode_with_quantize(tmp_path):
    """Exact pruning is still checked exactly (step 1); the quantized model is reported."""
    calib = _calib(tmp_path, RESNET)
    out = tmp_path / "q.onnx"
    res = invoke(str(RESNET), str(out), "--calib", str(calib), "--quantize", "int8")
    assert res.exit_code == 0, res.output
    assert "(exact mode)" in res.output and res.output.count("PASSED") == 1  # step 1 only has a bound
    assert out.exists()


def test_cli_quantized_model_failing_a_bound_writes_nothing(tmp_path):
    calib = _calib(tmp_path, RESNET)
    out = tmp_path / "q.onnx"
    res = invoke(str(RESNET), str(out), "--calib", str(calib), "--quantize", "int8",
                                    "--max-error", "1e-9")
    assert res.exit_code == 3, res.output
    assert "quantized model does not meet the bounds" in res.output
    assert not out.exists() and not list(tmp_path.glob("*.onnx*"))


def test_cli_int8_without_calib_is_one_line(tmp_path):
    res = invoke(str(RESNET), str(tmp_path / "q.onnx"), "--quantize", "int8")
    assert res.exit_code == 1
    assert res.output.strip().count("\n") == 0 and "--calib" in res.output


def test_int8_symmetric_has_zero_zero_points(tmp_path):
    """The TensorRT form: int8 activations and weights, every zero point 0."""
    calib = _calib(tmp_path, RESNET)
    q = onnxprune.prune(onnx.load(RESNET), calib=str(calib), quantize="int8-symmetric").model
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    zps = [inits[n.input[2]] for n in q.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
           and len(n.input) > 2 and n.input[2] in inits]
    assert zps and all(z.dtype in (np.int8, np.int32) and not z.any() for z in zps)
    assert _per_channel_weights(q) >= 5


def test_int8_quantizes_weights_stored_as_constant_nodes(tmp_path):
    """paddle2onnx stores every weight as a Constant node; onnxruntime.quantization quantizes only
    initializers, so they are moved into initializers first (else int8 writes float weights behind
    quantized activations: slower, and no smaller)."""
    model = onnx.load(RESNET)
    g = model.graph
    consts = [helper.make_node("Constant", [], [t.name], value=t) for t in g.initializer]
    nodes = consts + list(g.node)
    del g.initializer[:]
    del g.node[:]
    g.node.extend(nodes)
    calib = _calib(tmp_path, RESNET)
    result = onnxprune.prune(model, calib=str(calib), quantize="int8")
    q = result.model
    inits = {t.name: t for t in q.graph.initializer}
    producers = {o: n for n in q.graph.node for o in n.output}
    convs = [n for n in q.graph.node if n.op_type == "Conv"]
    assert convs
    for conv in convs:
        dq = producers[conv.input[1]]
        assert dq.op_type == "DequantizeLinear" and inits[dq.input[0]].data_type == TensorProto.INT8
    assert q.ByteSize() < result.float_model.ByteSize()
    assert "Constant" in {n.op_type for n in result.float_model.graph.node}  # the float step is left as it was
