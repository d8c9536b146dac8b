"""memo.CalibMemo: statistics shared by a strategy's pipeline runs, never across models or data."""

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from onnxprune import prune
from onnxprune.api import analyze_model
from onnxprune.config import PruneConfig
from onnxprune.memo import CalibMemo
from onnxprune.passes.select_lossy import channel_scores
from onnxprune.repair.features import consumers
from onnxprune.repair.reconstruct import repair_consumers

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "models" / "digits_cnn.onnx"
CALIB = REPO / "models" / "digits_calib.npz"


def _changed_copy() -> onnx.ModelProto:
    model = onnx.load(DIGITS)
    init = next(i for i in model.graph.initializer if i.name == "stem.0.weight")
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 2.0, init.name))
    return model


def test_scores_are_shared_by_copies_and_not_by_other_models():
    memo = CalibMemo()
    cfg = PruneConfig(target_flops=0.6, calib=str(CALIB), criterion="recon", memo=memo)
    first = channel_scores(analyze_model(onnx.load(DIGITS)), cfg)
    again = channel_scores(analyze_model(onnx.load(DIGITS)), cfg)
    assert again is first and memo.hits == 1
    other = channel_scores(analyze_model(_changed_copy()), cfg)
    assert memo.misses == 2 and other != first
    fresh = channel_scores(analyze_model(_changed_copy()), PruneConfig(target_flops=0.6, calib=str(CALIB),
                                                                       criterion="recon"))
    assert fresh == other


def test_repair_reads_grams_of_its_own_model():
    # The same removal repaired with a memo that already holds the original's Grams: a changed
    # model must not be refitted from them.
    memo = CalibMemo()
    results = []
    for model in (onnx.load(DIGITS), _changed_copy()):
        analysis = analyze_model(model)
        group = analysis.prunable_groups()[1]
        removed = set(group.channels[: group.size // 2])
        repair_consumers(analysis, removed, str(CALIB), ("bias", "lsq"), memo=memo)
        layer = consumers(analysis, removed)[0]
        results.append(layer.weight_matrix(analysis.graph))
    plain = _changed_copy()
    analysis = analyze_model(plain)
    group = analysis.prunable_groups()[1]
    removed = set(group.channels[: group.size // 2])
    repair_consumers(analysis, removed, str(CALIB), ("bias", "lsq"))
    expected = consumers(analysis, removed)[0].weight_matrix(analysis.graph)
    np.testing.assert_allclose(results[1], expected, rtol=1e-5, atol=1e-6)


def test_guard_trials_share_statistics(monkeypatch):
    import onnxprune.repair.reconstruct as reconstruct

    layers = []
    real = reconstruct.gram_matrices

    def counting(analysis, ls, *a, **k):
        layers.extend(layer.member.node for layer in ls)
        return real(analysis, ls, *a, **k)

    monkeypatch.setattr(reconstruct, "gram_matrices", counting)
    result = prune(onnx.load(DIGITS), calib=str(CALIB), min_agreement=0.97, criterion="recon")
    assert len(result.report.guard["tries"]) > 2
    assert len(layers) == len(set(layers)) > 0
