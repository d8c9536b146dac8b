"""Exact mode: removes exactly the channels that cannot change outputs, and nothing on dense models."""

from pathlib import Path

import numpy as np
import onnx
import pytest

from onnxprune.analysis import analyze
from onnxprune.api import prune
from onnxprune.passes.select import restore_nonempty
from onnxprune.passes.untie import untie_shared
from tests.helpers.mask import mask_channels, pick_channels
from tests.helpers.oracle import copy, feeds, run

REPO = Path(__file__).resolve().parents[2]
FIXTURES = sorted((REPO / "tests" / "fixtures").glob("*.onnx"))
REAL = [REPO / "models" / "digits_cnn.onnx", *FIXTURES]


def _outputs_equal(a, b, model, atol=1e-5):
    inputs = feeds(model, seed=3)
    for x, y in zip(run(a, inputs), run(b, inputs)):
        assert x.shape == y.shape
        np.testing.assert_allclose(y, x, atol=atol, rtol=1e-4)


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.stem)
def test_dense_model_is_unchanged(path):
    model = onnx.load(path)
    result = prune(copy(model))
    assert result.report.channels_removed == 0
    assert result.report.params_after == result.report.params_before
    assert result.model.SerializeToString() == model.SerializeToString()


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.stem)
def test_fold_bn_only_folds(path):
    model = onnx.load(path)
    result = prune(copy(model), fold_bn=True)
    assert result.report.channels_removed == 0
    assert not any(n.op_type == "BatchNormalization" and n.input[0] in
                   {c.output[0] for c in result.model.graph.node if c.op_type == "Conv"}
                   for n in result.model.graph.node)
    assert result.model.ir_version == model.ir_version
    _outputs_equal(model, result.model, model, atol=1e-4)


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.stem)
@pytest.mark.parametrize("seed", [0, 1])
def test_mask_pruned_channels_are_removed_exactly(path, seed):
    model = onnx.load(path)
    masked = copy(model)
    untie_shared(masked)  # masking a tensor several layers read would zero channels of all of them
    analysis = analyze(masked)
    chosen = restore_nonempty(analysis, pick_channels(analysis, np.random.default_rng(seed)))
    if not chosen:
        pytest.skip("no prunable group")
    mask_channels(analysis, chosen)
    result = prune(copy(masked))
    removed = sum(g.size - g.kept for g in result.report.groups)
    assert removed == len(chosen)
    assert result.report.params_after < result.report.params_before
    assert result.report.flops_after < result.report.flops_before
    onnx.checker.check_model(result.model, full_check=True)
    _outputs_equal(masked, result.model, masked)


def test_fold_bn_uses_epsilon():
    """Running variances near epsilon, so that a fold without it is far off (the trained fixtures'
    variances are near 1, where epsilon is below the tolerance)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    c = 6
    p = {"w": rng.standard_normal((c, 3, 3, 3)).astype(np.float32), "g": rng.uniform(0.5, 1.5, c).astype(np.float32),
         "b": rng.standard_normal(c).astype(np.float32), "m": rng.standard_normal(c).astype(np.float32) * 0.1,
         "v": rng.uniform(1e-5, 1e-3, c).astype(np.float32), "w2": rng.standard_normal((4, c, 1, 1)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["y0"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["y0", "g", "b", "m", "v"], ["y1"], name="bn", epsilon=1e-3),
             helper.make_node("Relu", ["y1"], ["y2"]),
             helper.make_node("Conv", ["y2", "w2"], ["y"], name="conv2")]
    graph = helper.make_graph(nodes, "bn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])],
                              [numpy_helper.from_array(v, k) for k, v in p.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    folded = prune(copy(model), fold_bn=True).model
    assert "BatchNormalization" not in {n.op_type for n in folded.graph.node}
    _outputs_equal(model, folded, model, atol=1e-4)
