"""`analyze` reports per-layer weight sparsity: exact zeros, near-zero weights, all-zero filters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx

from onnxprune.analysis import analyze
from onnxprune.analysis.sparsity import weight_sparsity
from onnxprune.graph import ModelGraph
from onnxprune.passes.untie import untie_shared
from tests.helpers.mask import mask_channels
from tests.helpers.cli import invoke

FIX = Path(__file__).resolve().parents[1] / "fixtures"


def _masked(path: Path, seed: int = 0):
    """The model with two filters of its first prunable group zeroed and 50% of one weight set to 1e-9."""
    model = onnx.load(path)
    untie_shared(model)
    analysis = analyze(model)
    group = analysis.prunable_groups()[0]
    mask_channels(analysis, set(group.channels[:2]))
    return analysis.graph.model, group


def test_zero_filters_and_near_zero_weights_are_counted(tmp_path):
    model, group = _masked(FIX / "torch_resnet_tiny.onnx")
    graph = ModelGraph(model)
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    w = graph.const_value(conv.input[1]).copy()
    flat = w.reshape(-1)
    flat[::2] = np.where(flat[::2] != 0, 1e-9, 0)  # tiny, not zero
    graph.replace_const(conv.input[1], w)
    layers = {x.node: x for x in weight_sparsity(ModelGraph(model))}
    first = layers[conv.name]
    assert first.zeros < first.near_zero
    assert first.near_zero >= 0.5
    assert sum(x.zero_channels for x in layers.values()) == 2 * len(group.sources)  # each source lost 2 filters
    path = tmp_path / "masked.onnx"
    onnx.save(model, path)
    res = invoke("analyze", str(path), "--json", str(tmp_path / "a.json"))
    assert res.exit_code == 0, res.output
    assert "weight sparsity:" in res.output and "zero channels" in res.output
    rows = json.loads((tmp_path / "a.json").read_text())["sparsity"]
    assert {r["node"] for r in rows} == set(layers)
    assert sum(r["zero_channels"] for r in rows) == 2 * len(group.sources)


def test_qdq_weights_zero_at_their_zero_point():
    model, group = _masked(FIX / "exporters" / "qdq_cnn.onnx")
    layers = weight_sparsity(ModelGraph(model))
    assert all(x.quantized for x in layers)
    assert sum(x.zero_channels for x in layers) == 2 * len(group.sources)
