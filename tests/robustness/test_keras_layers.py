"""Keras 3 layers through tf2onnx with H and W dynamic (tests/fixtures/exporters/tf_keras_unet_crnn.onnx,
tools/make_fixtures.py): before these rules five of its nine groups were blocked.

- UpSampling2D is Unsqueeze -> Tile (repeats 1 on the channel axis) -> Reshape per spatial axis:
  `op Tile has no channel rule`.
- Conv2DTranspose's output is cropped and padded by pads computed from the shapes (Concat of
  Max(-(Sub of Slices of Shape)), Split into eight, Concat reordered): `pads are computed at run
  time`, though the channel axis's entries are constant zeros.
- A Dense on a [B, T, C] sequence is tf2onnx's Tensordot: Reshape to [ReduceProd(B, T),
  ReduceProd(C)], MatMul, Reshape back: `Reshape target computed at run time` (ONNX's inference
  gives the Reshape no shape; the C entry reads the channel count itself)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from onnxprune.api import resolve_input_shapes
from onnxprune.config import PruneConfig
from tests.helpers.oracle import check_oracle, copy, run

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "exporters"


def _model():
    return onnx.load(str(FIX / "tf_keras_unet_crnn.onnx"))


def _x(shape=(2, 32, 48, 3), seed=0):
    return {"input": np.random.default_rng(seed).random(shape).astype(np.float32)}


def test_every_keras_layer_group_is_prunable():
    analysis = onnxprune.analyze(_model())
    blocked = [(g.size, g.reasons) for g in analysis.groups if not g.prunable]
    assert blocked == [(7, ["reaches graph output 'Identity:0'"])]
    assert sorted(g.size for g in analysis.prunable_groups()) == [8, 8, 8, 10, 12, 12, 12, 16, 16]


@pytest.mark.parametrize("seed", range(3))
def test_keras_layers_oracle(seed):
    """At the shapes a run resolves (here 32 x 48), run on those inputs."""
    model = _model()
    shapes = resolve_input_shapes(model, PruneConfig(shapes={"input": (1, 32, 48, 3)}))
    info = check_oracle(model, seed=seed, shapes=shapes, inputs=_x(seed=seed))
    assert info["removed"] > 20 and info["prunable"] == 9


@pytest.mark.parametrize("shape", [(1, 32, 48, 3), (2, 36, 44, 3), (3, 64, 16, 3)])
def test_pruned_keras_model_runs_where_the_original_runs(shape):
    model = _model()
    result = onnxprune.prune(copy(model), ratio=0.5)
    assert result.report.channels_removed >= 40
    onnx.checker.check_model(result.model, full_check=True)
    (want,) = run(model, _x(shape))
    (got,) = run(result.model, _x(shape))
    assert got.shape == want.shape


def _tile(repeats) -> onnx.ModelProto:
    """conv -> Tile(repeats) -> conv."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(np.array(repeats, np.int64), "repeats"),
             numpy_helper.from_array(rng.standard_normal((2, 4 * repeats[1], 1, 1)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Tile", ["a", "repeats"], ["t"]),
             helper.make_node("Conv", ["t", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "tile", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, None, None])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_tile_keeps_channels_only_where_it_repeats_other_axes():
    spatial = onnxprune.analyze(_tile([1, 1, 2, 2]))
    assert any(g.size == 4 and g.prunable for g in spatial.groups)
    assert check_oracle(_tile([1, 1, 2, 2]))["removed"] > 0
    channels = onnxprune.analyze(_tile([1, 2, 1, 1]))
    group = next(g for g in channels.groups if g.size == 4)
    assert not group.prunable and "Tile repeats the channel axis" in group.reasons[0]


def test_keras_layernorm_is_one_lossy_group_with_its_residual():
    """Keras 3's LayerNormalization as tf2onnx 1.17 writes it: gamma folded into rsqrt(var + eps), a
    product read by two Muls (x and -mean) whose results are added with beta. It was `input '.../mul:0'
    has 32 entries on the channel axis and carries no channels`: the stream and its residual blocked."""
    model = onnx.load(str(FIX / "tf_keras_layernorm.onnx"))
    analysis = onnxprune.analyze(copy(model))
    groups = sorted((g.size, g.prunable, g.exact) for g in analysis.groups)
    assert groups == [(10, False, False), (32, True, False), (48, True, True)]
    x = {"input": np.random.default_rng(1).standard_normal((2, 16, 12)).astype(np.float32)}
    shapes = resolve_input_shapes(model, PruneConfig(shapes={"input": (1, 16, 12)}))
    for seed in range(3):
        assert check_oracle(model, seed=seed, inputs=x, shapes=shapes, lossy=True)["removed"] > 10


def test_a_factor_read_by_products_that_never_meet_blocks():
    """rsqrt * gamma read by h * factor (h carries channels) and by factor * c (no channels), whose
    products go to separate MatMuls: slicing gamma would shrink the second path. Blocked."""
    rng = np.random.default_rng(0)
    c = 8
    inits = [numpy_helper.from_array(rng.standard_normal((6, c)).astype(np.float32), "w1"),
             numpy_helper.from_array(np.array([-1], np.int64), "axes"),
             numpy_helper.from_array(rng.uniform(0.5, 1.5, c).astype(np.float32), "gamma"),
             numpy_helper.from_array(rng.standard_normal(c).astype(np.float32), "other"),
             numpy_helper.from_array(rng.standard_normal((c, 3)).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.standard_normal((c, 3)).astype(np.float32), "w3")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]),
             helper.make_node("ReduceMean", ["h", "axes"], ["m"], keepdims=1),
             helper.make_node("Mul", ["m", "gamma"], ["factor"]),
             helper.make_node("Mul", ["h", "factor"], ["a"]),
             helper.make_node("Mul", ["factor", "other"], ["b"]),
             helper.make_node("MatMul", ["a", "w2"], ["y1"]),
             helper.make_node("MatMul", ["b", "w3"], ["y2"])]
    graph = helper.make_graph(nodes, "apart", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5, 6])],
                              [helper.make_tensor_value_info("y1", TensorProto.FLOAT, ["N", 5, 3]),
                               helper.make_tensor_value_info("y2", TensorProto.FLOAT, ["N", 5, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    group = next(g for g in onnxprune.analyze(copy(model)).groups if g.size == c)
    assert not group.prunable and "carries no channels" in group.reasons[0]
