"""Resize whose sizes are read at run time: F.interpolate(x, size=y.shape[-2:]) exports
sizes = Concat(Shape(x)[0:2], Shape(y)[2:4]). Its channel entry is x's own channel count, read at
run time, so it holds the kept count by itself: nothing to freeze, and H and W stay dynamic. Before,
the Resize tried to freeze the sizes and blocked its group ('computed at run time from dynamic input
dims'): DeepLab's image-pool branch, and every segmentation head that resizes to the input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

import onnxprune
from tests.helpers.oracle import check_oracle, copy, run

FIX = Path(__file__).resolve().parents[1] / "fixtures"


def test_resize_to_a_run_time_size_keeps_its_group_prunable():
    model = onnx.load(str(FIX / "torch_aspp_tiny.onnx"))
    analysis = onnxprune.analyze(copy(model))
    assert [(g.size, g.reasons) for g in analysis.groups if not g.prunable] == [(5, ["reaches graph output 'output'"])]
    pool = next(g for g in analysis.groups if any("pool" in s for s in g.sources))
    assert pool.prunable and pool.size == 16
    for seed in range(3):
        assert check_oracle(model, seed=seed)["removed"] > 0


def test_pruned_model_runs_at_other_sizes():
    model = onnx.load(str(FIX / "torch_aspp_tiny.onnx"))
    result = onnxprune.prune(copy(model), ratio=0.5)
    for shape in [(1, 3, 32, 32), (2, 3, 48, 40)]:
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        (want,) = run(model, {"input": x})
        (got,) = run(result.model, {"input": x})
        assert got.shape == want.shape
