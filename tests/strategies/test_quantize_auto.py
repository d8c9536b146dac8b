"""--quantize auto picks int8 only where the timer says it is faster, falls back to the float model
when nothing pays; every --quantize run measures what it writes against the pruned float model.
Timed by tests/helpers/fake_timer.py (deterministic); the CLI tests time tiny models with ONNX Runtime."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from onnxprune.quantize import quantize_model
from onnxprune.strategies.precision import KEEP, chain_form, int8_nodes, LayerTiming
from tests.helpers.cli import invoke
from tests.helpers.fake_timer import FakeTimer


def _net() -> onnx.ModelProto:
    """dense 3x3 conv -> ReLU -> depthwise 3x3 conv -> ReLU -> 1x1 conv -> ReLU -> pool -> Gemm."""
    rng = np.random.default_rng(0)

    def w(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)

    inits = [w("w0", 32, 8, 3, 3), w("b0", 32), w("w1", 32, 1, 3, 3), w("b1", 32), w("w2", 32, 32, 1, 1), w("b2", 32),
             w("wf", 10, 32), w("bf", 10)]
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="dense", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
             helper.make_node("Conv", ["r0", "w1", "b1"], ["c1"], name="depthwise", group=32, pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="pointwise"),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _calib(tmp_path, n: int = 8):
    path = tmp_path / "calib.npz"
    np.savez(path, x=np.random.default_rng(1).standard_normal((n, 8, 16, 16)).astype(np.float32))
    return str(path)


def _int8_convs(model: onnx.ModelProto) -> set[str]:
    """Names of the Conv/Gemm nodes whose weight a DequantizeLinear makes."""
    producer = {o: n for n in model.graph.node for o in n.output}
    return {n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm")
            and getattr(producer.get(n.input[1]), "op_type", None) == "DequantizeLinear"}


def _auto(tmp_path, timer, **options):
    return onnxprune.prune(_net(), calib=_calib(tmp_path), quantize="auto", timer=timer, **options)


def test_auto_quantizes_only_the_layers_the_timer_finds_faster(tmp_path):
    # int8 multiply-adds 10x cheaper for dense convs, 5x dearer for depthwise ones
    result = _auto(tmp_path, FakeTimer(mac_ns=0.01, int8_mac=0.1, int8_depthwise=5.0))
    q = result.report.quantize
    by_head = {t["nodes"][0]: t for t in q["auto"]["layers"]}
    assert by_head["dense"]["int8"] and by_head["pointwise"]["int8"]
    assert not by_head["depthwise"]["int8"]
    assert by_head["depthwise"]["int8_alone_ms"] > by_head["depthwise"]["float_ms"]
    assert q["written"] == "quantized" and q["auto"]["fallback"] is None
    assert _int8_convs(result.model) >= {"dense", "pointwise"} and "depthwise" not in _int8_convs(result.model)
    assert q["speed"]["time_ratio"] <= KEEP and not q["speed"]["slower"]
    assert result.model.ByteSize() < result.float_model.ByteSize()
    assert "QuantizeLinear" not in {n.op_type for n in result.float_model.graph.node}


def test_auto_falls_back_to_float_when_no_layer_pays(tmp_path):
    result = _auto(tmp_path, FakeTimer(int8_mac=3.0, int8_depthwise=3.0))
    q = result.report.quantize
    assert q["written"] == "float" and q["auto"]["int8_layers"] == 0 and q["auto"]["candidates"] == []
    assert "no layer is faster in int8" in q["auto"]["fallback"]
    assert result.float_model is None
    assert not {"QuantizeLinear", "DequantizeLinear"} & {n.op_type for n in result.model.graph.node}
    assert any(n.startswith("--quantize auto wrote the pruned float model") for n in result.report.notes)


def test_auto_falls_back_when_the_whole_model_is_slower(tmp_path):
    # each layer pays alone, but the whole quantized model pays a cost no layer timed alone sees
    timer = FakeTimer(mac_ns=0.01, int8_mac=0.1, int8_depthwise=0.1, whole_nodes=12, whole_int8_overhead=1.0)
    result = _auto(tmp_path, timer)
    q = result.report.quantize
    assert q["auto"]["int8_layers"] == len(q["auto"]["layers"])
    assert q["auto"]["candidates"] and all(c["speed"]["time_ratio"] > 1 for c in q["auto"]["candidates"])
    assert q["written"] == "float" and "pruned float model's time" in q["auto"]["fallback"]
    assert not {"QuantizeLinear", "DequantizeLinear"} & {n.op_type for n in result.model.graph.node}


def test_int8_is_measured_and_a_slower_model_warned(tmp_path):
    result = onnxprune.prune(_net(), calib=_calib(tmp_path), quantize="int8", timer=FakeTimer(int8_mac=3.0), batch=4)
    speed = result.report.quantize["speed"]
    assert speed["batch"] == 4 and speed["clock"] == "fake" and speed["slower"] and speed["time_ratio"] > 1
    assert speed["quantized_ms"] > speed["pruned_float_ms"]
    assert any(n.startswith("warning: the quantized model is slower than the pruned float model at batch 4")
               for n in result.report.notes)
    fast = onnxprune.prune(_net(), calib=_calib(tmp_path), quantize="int8", timer=FakeTimer(mac_ns=0.01, int8_mac=0.1))
    assert not fast.report.quantize["speed"]["slower"] and fast.report.quantize["speed"]["time_ratio"] < 1
    assert not any(n.startswith("warning:") for n in fast.report.notes)


def test_non_layer_nodes_follow_their_inputs():
    model = _net()
    layers = [LayerTiming(["dense", "relu0"], int8=True), LayerTiming(["depthwise", "relu1"]),
              LayerTiming(["pointwise", "relu2"], int8=True), LayerTiming(["fc"])]
    # pool and flatten read only int8 nodes; fc is a float layer
    assert int8_nodes(model, layers) == {"dense", "relu0", "pointwise", "relu2", "pool", "flatten"}
    layers[2].int8 = False
    assert int8_nodes(model, layers) == {"dense", "relu0"}


def test_chain_form_takes_integers_in_and_out(tmp_path):
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((16, 8, 1, 1)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="c")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 4, 4])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    q, _ = quantize_model(model, "int8", feeds=[{"x": rng.standard_normal((1, 8, 4, 4)).astype(np.float32)}])
    chain = chain_form(q)
    assert chain.graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8
    assert chain.graph.output[0].type.tensor_type.elem_type == TensorProto.UINT8
    assert Counter(n.op_type for n in chain.graph.node)["QuantizeLinear"] == Counter(
        n.op_type for n in q.graph.node)["QuantizeLinear"] - 1
    sess = ort.InferenceSession(chain.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {sess.get_inputs()[0].name: np.full((1, 8, 4, 4), 128, np.uint8)})
    assert out.dtype == np.uint8 and out.shape == (1, 16, 4, 4)


def test_cli_auto_and_int8_report_speed_in_json(tmp_path):
    model_path, calib = tmp_path / "net.onnx", _calib(tmp_path)
    onnx.save(_net(), model_path)
    for mode in ("int8", "auto"):
        out, report = tmp_path / f"{mode}.onnx", tmp_path / f"{mode}.json"
        result = invoke(str(model_path), str(out), "--calib", calib, "--quantize", mode, "--threads", "1",
                        "--json", str(report))
        assert result.exit_code == 0, result.output
        q = json.loads(report.read_text())["quantize"]
        assert q["mode"] == mode and q["written"] in ("quantized", "float")
        ops = {n.op_type for n in onnx.load(out).graph.node}
        assert ("QuantizeLinear" in ops) == (q["written"] == "quantized")
        if q["written"] == "quantized":
            speed = q["speed"]
            assert {"batch", "threads", "device", "clock", "pruned_float_ms", "quantized_ms", "time_ratio",
                    "slower"} <= set(speed)
            assert speed["batch"] == 1 and speed["threads"] == 1 and speed["device"] == "cpu"
            assert "speed       quantized" in result.output
        if mode == "auto":
            assert {"layers", "int8_layers", "float_layers", "chain_pays", "run", "candidates", "chosen",
                    "fallback"} <= set(q["auto"])
            assert "quantized   auto:" in result.output
            if q["written"] == "quantized":
                assert q["speed"]["time_ratio"] <= KEEP and out.stat().st_size < model_path.stat().st_size
