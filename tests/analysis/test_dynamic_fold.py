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
