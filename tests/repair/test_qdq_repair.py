"""--repair on a QDQ model: layers are refitted on their dequantized weights, each candidate scored
as it will be stored (rounded to the weight's own integers, scales and zero points unchanged), and
the graph stays QDQ."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import onnxprune
from onnxprune.graph import ModelGraph
from onnxprune.passes.normalize import remove_unused
from tests.helpers.oracle import copy, run

QDQ_CNN = Path(__file__).resolve().parents[1] / "fixtures" / "exporters" / "qdq_cnn.onnx"


@pytest.fixture(scope="module")
def calib(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("qdq_repair") / "calib.npz"
    np.savez(path, input=np.random.default_rng(0).standard_normal((64, 3, 16, 16)).astype(np.float32))
    return str(path)


def _held_out() -> dict:
    return {"input": np.random.default_rng(7).standard_normal((64, 3, 16, 16)).astype(np.float32)}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum() / np.linalg.norm(a) / np.linalg.norm(b))


def _inits(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _float_twin(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same model with every QDQ weight stored as float (its dequantized values): same outputs."""
    twin = copy(model)
    graph = ModelGraph(twin, infer=False)
    values = {name: graph.const_value(name) for name in graph.dequantized}
    nodes = [n for n in twin.graph.node if n.op_type != "DequantizeLinear" or n.output[0] not in values]
    del twin.graph.node[:]
    twin.graph.node.extend(nodes)
    twin.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in values.items())
    remove_unused(twin)
    return twin


def test_repair_refits_qdq_weights_in_place_and_helps(calib):
    model = onnx.load(QDQ_CNN)
    plain = onnxprune.prune(copy(model), ratio=0.5, calib=calib, repair="none", criterion="l1").model
    result = onnxprune.prune(copy(model), ratio=0.5, calib=calib, repair="bias,lsq", criterion="l1")
    repaired = result.model
    assert Counter(n.op_type for n in repaired.graph.node) == Counter(n.op_type for n in model.graph.node)
    assert any("QDQ layer(s) repaired" in n for n in result.report.notes)
    a, b = _inits(plain), _inits(repaired)
    assert a.keys() == b.keys()
    scales = [k for k in a if k.endswith("_scale") or k.endswith("_zero_point")]
    assert scales and all(np.array_equal(a[k], b[k]) for k in scales)  # the quantization is not touched
    changed = [k for k in a if k.endswith("_quantized") and not np.array_equal(a[k], b[k])]
    assert changed and all(b[k].dtype == a[k].dtype for k in changed)  # refitted, still integers
    x = _held_out()
    (want,), (got_plain,), (got_repaired,) = run(model, x), run(plain, x), run(repaired, x)
    assert _cosine(want, got_repaired) > _cosine(want, got_plain)


def test_candidates_are_scored_as_stored(calib):
    """Refits are rounded to each weight's integers and saturate at their range (the scales were set
    by the original weights' extremes): the error the per-layer choice sees is the stored weights',
    higher than for the same model with float weights, where nothing rounds."""
    model = onnx.load(QDQ_CNN)
    found = {}
    for key, m in (("qdq", model), ("float", _float_twin(model))):
        result = onnxprune.prune(copy(m), ratio=0.5, calib=calib, repair="lsq", criterion="l1")
        (found[key],) = [p.result.details for p in result.report.passes if p.name == "repair-consumers"]
    assert found["qdq"]["saturated"] > 0 and found["float"]["saturated"] == 0
    assert found["qdq"]["quantized_layers"] == 4 and found["float"]["quantized_layers"] == 0
    ratio = {k: {d["layer"]: d["held_out_error_ratio"] for d in v["per_layer"]} for k, v in found.items()}
    assert ratio["qdq"].keys() == ratio["float"].keys() == {"conv2", "conv3", "conv4", "fc"}
    assert ratio["qdq"]["fc"] > 1.5 * ratio["float"]["fc"]


def test_as_stored_rounds_to_the_grid_and_counts_saturation():
    model = onnx.load(QDQ_CNN)
    graph = ModelGraph(model, infer=False)
    name = next(k for k in graph.dequantized if "conv2.weight" in k)
    w = graph.const_value(name)
    same, saturated = graph.as_stored(name, w)
    assert np.array_equal(same, w) and saturated == 0
    scale = graph.const_value(graph.dequantized[name].scale).reshape(-1, 1, 1, 1)
    nudged, saturated = graph.as_stored(name, w + 0.3 * scale)
    assert np.array_equal(nudged, w) and saturated == 0  # less than half a step rounds back
    big = w.copy()
    big[0, 0, 0, 0] = 1000 * scale[0, 0, 0, 0]
    clipped, saturated = graph.as_stored(name, big)
    assert saturated == 1 and clipped[0, 0, 0, 0] == 127 * scale[0, 0, 0, 0]
    plain = next(t.name for t in model.graph.initializer if t.name.endswith("_scale"))
    assert graph.as_stored(plain, np.float32(3.3))[1] == 0
