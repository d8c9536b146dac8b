"""A Reshape that merges a dim the model leaves dynamic with the channel axis.

MobileViT (dynamo export) unfolds 2 x 2 patches into the batch axis ([4N, ...]) and its attention
merges the heads into it: [4N, 2, 64, 12] -> [-1, 64, 12]. Resolved at one input size, 4N looked
static, the heads were folded as 8 fixed positions and the written value_info held them: ONNX
Runtime's optimizer trusted that shape and the pruned model failed at batch 2 ('Input shape:{8,2,64,12},
requested shape:{4,2,64,12}'). Now a dim dynamic in the model is never folded into channel
positions; the heads become a tiled axis (position x is head x % heads at any batch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import onnxprune
from tests.helpers.cli import invoke
from tests.helpers.oracle import check_oracle, copy, run

FIX = Path(__file__).resolve().parents[1] / "fixtures"
NAME = "torch_mobilevit_tiny_dynamo"


def _dims(vi):
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in vi.type.tensor_type.shape.dim]


def test_heads_merged_into_a_dynamic_batch_are_prunable_and_exact():
    model = onnx.load(str(FIX / f"{NAME}.onnx"))
    analysis = onnxprune.analyze(copy(model))
    assert [(g.size, g.reasons) for g in analysis.groups if not g.prunable] == [(10, ["reaches graph output 'output'"])]
    heads = [g for g in analysis.groups if g.size == 2]
    assert len(heads) == 1 and heads[0].prunable
    for seed in range(3):
        check_oracle(model, seed=seed, lossy=True)


def test_written_value_info_keeps_every_dynamic_dim(tmp_path):
    """No dim the original leaves open or symbolic is written static, but a channel axis (its kept
    count); the model runs at batch 1 and 3 with ONNX Runtime's optimizations on."""
    model = onnx.load(str(FIX / f"{NAME}.onnx"))
    channel_axis = {name: tc.axis for name, tc in onnxprune.analyze(copy(model)).tensors.items()}
    result = onnxprune.prune(copy(model), ratio=0.5)
    before = {v.name: _dims(v) for v in model.graph.value_info}
    for v in result.model.graph.value_info:
        was = before.get(v.name)
        if was is None or len(was) != len(_dims(v)):
            continue
        for axis, (old, new) in enumerate(zip(was, _dims(v))):
            if not isinstance(old, int) and isinstance(new, int):
                assert channel_axis.get(v.name) == axis, (v.name, was, _dims(v))
    for batch in (1, 3):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 32, 32)).astype(np.float32)
        (y,) = run(result.model, {"input": x})
        assert y.shape == (batch, 10)


def test_prune_with_calibration_data_runs_at_another_batch(tmp_path):
    data = tmp_path / "calib.npz"
    np.savez(data, input=np.random.default_rng(0).standard_normal((48, 3, 32, 32)).astype(np.float32))
    r = invoke(FIX / f"{NAME}.onnx", tmp_path / "out.onnx", "--target-flops", "0.6", "--calib", str(data))
    assert r.exit_code == 0, r.output
    assert "batch 2 (input:2x3x32x32) passed" in r.output


def test_positions_regrouped_into_the_channel_axis_without_a_batch_axis():
    """[L, C] -> [L/q, q*C], rank 2 (a model without a batch axis): the same regrouping."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((6, 4)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((16, 3)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.array([2, 16], np.int64), "target")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"]), helper.make_node("Relu", ["h0"], ["h"]),
             helper.make_node("Reshape", ["h", "target"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "regroup2", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    assert [g.size for g in onnxprune.analyze(copy(model)).prunable_groups()] == [4]
    for seed in range(3):
        x = {"x": np.random.default_rng(seed).standard_normal((8, 6)).astype(np.float32)}
        assert check_oracle(model, seed=seed, inputs=x)["removed"] > 0


@pytest.mark.parametrize("computed", [False, True])
def test_positions_regrouped_into_the_channel_axis(computed):
    """[N, L, C] -> [N, L/q, q*C] (Magika's first Dense, [N, 2048, 64] -> [N, 512, 256]): position
    i*C + j of the new last axis is channel j; the target (a constant, or jax2tf's Concat of the batch
    read from Shape and constants) gets q times the kept count."""
    from onnx import TensorProto, helper, numpy_helper

    from onnxprune import PruneConfig
    from onnxprune.api import resolve_input_shapes

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((6, 4)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((16, 3)).astype(np.float32), "w2")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"]), helper.make_node("Relu", ["h0"], ["h"])]
    if computed:
        inits += [numpy_helper.from_array(np.array([2, 16], np.int64), "rest"),
                  numpy_helper.from_array(np.array([0], np.int64), "z"), numpy_helper.from_array(np.array([1], np.int64), "o")]
        nodes += [helper.make_node("Shape", ["h"], ["shp"]), helper.make_node("Slice", ["shp", "z", "o"], ["n"]),
                  helper.make_node("Concat", ["n", "rest"], ["target"], axis=0)]
    else:
        inits.append(numpy_helper.from_array(np.array([-1, 2, 16], np.int64), "target"))
    nodes += [helper.make_node("Reshape", ["h", "target"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "regroup", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    analysis = onnxprune.analyze(copy(model))
    assert [g.size for g in analysis.prunable_groups()] == [4]
    shapes = resolve_input_shapes(model, PruneConfig())
    for seed in range(3):
        x = {"x": np.random.default_rng(seed).standard_normal((2, 8, 6)).astype(np.float32)}
        assert check_oracle(model, seed=seed, shapes=shapes, inputs=x)["removed"] > 0
    result = onnxprune.prune(copy(model), ratio=0.5)
    (y,) = run(result.model, {"x": np.random.default_rng(1).standard_normal((3, 8, 6)).astype(np.float32)})
    assert y.shape == (3, 2, 3)
