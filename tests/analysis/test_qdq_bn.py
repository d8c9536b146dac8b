"""QDQ models as `onnxruntime.quantization.quantize_static` writes them without folding
BatchNormalization first: BN scale and bias (int8 / int32 behind DequantizeLinear; the bias with a
per-tensor scale of shape [1] and a zero point of shape []) are parameters like the weights, and a
bias PyTorch tied through Identity is an Identity of a DequantizeLinear output."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import onnxprune
from onnxprune.analysis import analyze
from onnxprune.config import PruneConfig
from onnxprune.graph import ModelGraph
from onnxprune.passes.select_lossy import SelectLossy
from onnxprune.passes.state import PruneState
from tests.helpers.cli import invoke
from tests.helpers.oracle import check_oracle, copy, run

REPO = Path(__file__).resolve().parents[2]
FIX = REPO / "tests" / "fixtures" / "exporters"
FIXTURES = {"per-channel": FIX / "qdq_bn_cnn.onnx", "per-tensor": FIX / "qdq_bn_cnn_pt.onnx"}
DIGITS = REPO / "models" / "digits_cnn.onnx"
DIGITS_CALIB = REPO / "models" / "digits_calib.npz"


def _ratio_selection(ratio: float):
    """The channels `--ratio` picks (l1, as prune() would), for check_oracle."""
    def choose(analysis):
        config = PruneConfig(ratio=ratio, criterion="l1", round_to=1)
        state = PruneState(model=analysis.graph.model, config=config, graph=analysis.graph, analysis=analysis)
        SelectLossy().run(state)
        return state.removed
    return choose


@pytest.mark.parametrize("kind", FIXTURES)
def test_bn_parameters_behind_dequantize_are_constants(kind):
    model = onnx.load(FIXTURES[kind])
    graph = ModelGraph(model)
    assert not graph.dequantize_refused
    bias = graph.dequantized["bn1.bias"]  # int32, scale [1], zero point []: per-tensor
    assert bias.axis is None and graph.const_shape(bias.scale) == (1,) and graph.const_shape(bias.zero_point) == ()
    assert graph.resolve("bn_short.bias") == "bn3.bias"  # Identity(DequantizeLinear(...)) is the tie
    assert np.array_equal(graph.const_value("bn_short.bias"), graph.const_value("bn3.bias"))
    analysis = analyze(copy(model))
    assert [(g.size, g.prunable) for g in analysis.groups] == [(8, True), (8, True), (8, True), (16, True), (10, False)]


@pytest.mark.parametrize("kind", FIXTURES)
def test_ratio_03_oracle_holds(kind):
    info = check_oracle(onnx.load(FIXTURES[kind]), choose=_ratio_selection(0.3))
    assert info["removed"] == 2 + 2 + 2 + 4  # 30% of 8, 8, 8, 16, the kept counts rounded up


@pytest.mark.parametrize("kind", FIXTURES)
def test_ratio_03_with_repair_stays_qdq_and_helps(kind, tmp_path):
    model = onnx.load(FIXTURES[kind])
    rng = np.random.default_rng(0)
    calib = tmp_path / "calib.npz"
    np.savez(calib, input=rng.standard_normal((64, 3, 16, 16)).astype(np.float32))
    held = {"input": np.random.default_rng(7).standard_normal((64, 3, 16, 16)).astype(np.float32)}
    outs = {}
    for repair in ("none", "all"):
        out, js = tmp_path / f"{repair}.onnx", tmp_path / f"{repair}.json"
        res = invoke(FIXTURES[kind], out, "--ratio", "0.3", "--calib", calib, "--repair", repair,
                     "--criterion", "l1", "--round-to", "1", "--json", js)
        assert res.exit_code == 0, res.output
        pruned = onnx.load(out)
        onnx.checker.check_model(pruned, full_check=True)
        assert Counter(n.op_type for n in pruned.graph.node) == Counter(n.op_type for n in model.graph.node)
        inits = {t.name: numpy_helper.to_array(t) for t in pruned.graph.initializer}
        assert inits["bn1.bias_quantized"].dtype == np.int32 and inits["bn1.scale_quantized"].dtype == np.int8
        assert inits["bn1.bias_quantized"].shape == (6,)  # 8 channels, 30% of them gone
        assert json.loads(js.read_text())["channels_removed"] == 10
        outs[repair] = run(pruned, held)[0]
    (want,) = run(model, held)
    err = {k: float(np.abs(v - want).mean()) for k, v in outs.items()}
    assert err["all"] < err["none"]


@pytest.mark.parametrize("per_channel", [True, False])
def test_digits_quantized_without_folding_bn_prunes_like_float(per_channel, tmp_path):
    """The shipped model quantized as its users would: every group prunable as in float (before: 0)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    x = np.load(DIGITS_CALIB)["input"][:16]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"input": x[i:i + 1]} for i in range(len(x))])

        def get_next(self):
            return next(self.items, None)

    qdq = tmp_path / "digits_qdq.onnx"
    quantize_static(str(DIGITS), str(qdq), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel)
    model = onnx.load(qdq)
    assert any(n.op_type == "BatchNormalization" for n in model.graph.node)
    float_groups = [(g.size, g.prunable) for g in analyze(onnx.load(DIGITS)).groups]
    assert [(g.size, g.prunable) for g in analyze(copy(model)).groups] == float_groups
    info = check_oracle(model, choose=_ratio_selection(0.3))
    assert info["removed"] > 0
    result = onnxprune.prune(copy(model), ratio=0.3, validate=False)
    assert result.report.channels_removed > 0
