"""What keeps a --finetune step cheap and what trains beside the outputs: the original's answers for
the training samples are computed once and cut per sample along each tensor's own batch axis;
torch's OpenMP threads wait passively; the layers right after pruned channels are found by name
and their feature loss goes down."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
import pytest

import onnxprune

torch = pytest.importorskip("torch")

from onnxprune.finetune.losses import feature_tensors  # noqa: E402
from onnxprune.finetune.train import (  # noqa: E402
    FinetuneSettings,
    Samples,
    TeacherCache,
    _run,
    finetune_model,
    output_batch_axes,
    read_samples,
)
from onnxprune.runtime.sessions import create_session  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


def _calib(tmp_path: Path, model: onnx.ModelProto, n: int = 32) -> str:
    rng = np.random.default_rng(0)
    feeds = {}
    for i in model.graph.input:
        dims = [d.dim_value if d.dim_value else n for d in i.type.tensor_type.shape.dim]
        feeds[i.name] = rng.standard_normal(dims).astype(np.float32)
    path = tmp_path / "calib.npz"
    np.savez(path, **feeds)
    return str(path)


def _pruned(model: onnx.ModelProto, calib: str) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    original = onnx.ModelProto()
    original.CopyFrom(model)
    result = onnxprune.prune(model, ratio=0.5, calib=calib, repair="none", criterion="l1")
    assert result.report.channels_removed
    return original, result.model


@pytest.mark.parametrize("name, axis", [("torch_resnet_tiny", 0), ("torch_crnn_tiny", 1)])
def test_cached_answers_are_the_originals_for_any_rows_in_any_order(tmp_path, name, axis):
    model = onnx.load(str(FIXTURES / f"{name}.onnx"))
    samples: Samples = read_samples(model, _calib(tmp_path, model, 20))
    names = [o.name for o in model.graph.output]
    rows = np.arange(0, 20, 2)
    with create_session(model, "cpu", None, True) as teacher:
        axes = output_batch_axes(teacher, samples, rows, names)
        assert axes == {names[0]: axis}  # the CRNN's output is [T, N, C]
        cache = TeacherCache(teacher, samples, rows, names, axes, batch=3)
        picked = np.array([14, 0, 6, 18])
        fresh = _run(teacher, samples.feeds(picked), names)
        cached = cache.take(picked)
        np.testing.assert_allclose(cached[names[0]], fresh[names[0]], rtol=1e-5, atol=1e-6)
        tail = _run(teacher, samples.feeds(np.array([2])), names)
        joined = cache.join(cached, tail)
        both = _run(teacher, samples.feeds(np.array([14, 0, 6, 18, 2])), names)
        np.testing.assert_allclose(joined[names[0]], both[names[0]], rtol=1e-5, atol=1e-6)


def test_training_uses_the_cache_and_reports_where_the_time_went(tmp_path):
    model = onnx.load(str(FIXTURES / "torch_crnn_tiny.onnx"))
    calib = _calib(tmp_path, model)
    original, pruned = _pruned(model, calib)
    settings = FinetuneSettings(steps=8, lr=2e-3, eval_every=4, metric="ctc", augment=False)
    _, info = finetune_model(original, pruned, calib, settings)
    assert info["teacher_cached"] is True  # (with every row augmented, the default, nothing is cached)
    assert set(info["timing"]) == {"augment", "teacher", "student", "held_out", "per_step"}
    assert info["held_out_loss"]["after"] < info["held_out_loss"]["before"]


def test_a_timed_run_spends_at_most_a_share_of_its_time_on_held_out_checks(tmp_path):
    model = onnx.load(str(FIXTURES / "torch_resnet_tiny.onnx"))
    calib = _calib(tmp_path, model)
    original, pruned = _pruned(model, calib)
    _, info = finetune_model(original, pruned, calib, FinetuneSettings(steps=10_000, seconds=3.0, lr=1e-3))
    timing = info["timing"]
    # checks: every 1/20 of the budget at most, and never more often than 10 times their cost
    assert len(info["held_out_loss"]["curve"]) <= 22
    assert timing["held_out"] <= 0.3 * (timing["student"] + timing["teacher"] + timing["augment"])


@pytest.mark.parametrize("preset, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_torch_threads_wait_passively_unless_the_user_says_otherwise(preset, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    code = "import os, onnxprune.finetune.interpreter; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def test_features_are_the_layers_right_after_pruned_channels(tmp_path):
    model = onnx.load(str(FIXTURES / "torch_crnn_tiny.onnx"))
    calib = _calib(tmp_path, model)
    original, pruned = _pruned(model, calib)
    found = feature_tensors(original, pruned, 100)
    assert found == ["/fc/MatMul_output_0"]  # the classifier's MatMul: its input features were pruned
    shapes = {t.name: tuple(t.dims) for t in original.graph.initializer}
    pruned_shapes = {t.name: tuple(t.dims) for t in pruned.graph.initializer}
    producer = {n.output[0]: n for n in pruned.graph.node}
    weight = producer[found[0]].input[1]
    assert pruned_shapes[weight][1] == shapes[weight][1]  # MatMul [in, out]: outputs kept
    assert pruned_shapes[weight][0] < shapes[weight][0]   # inputs pruned
    assert feature_tensors(original, pruned, 0) == []
    assert feature_tensors(original, original, 100) == []
    resnet = onnx.load(str(FIXTURES / "torch_resnet_tiny.onnx"))
    resnet_original, resnet_pruned = _pruned(resnet, _calib(tmp_path, resnet))
    assert feature_tensors(resnet_original, resnet_pruned, 100) == []  # every layer lost outputs too


def test_feature_loss_trains_and_is_reported(tmp_path):
    model = onnx.load(str(FIXTURES / "torch_crnn_tiny.onnx"))
    calib = _calib(tmp_path, model)
    original, pruned = _pruned(model, calib)
    settings = FinetuneSettings(steps=10, lr=2e-3, eval_every=5, features=4, metric="ctc")
    trained, info = finetune_model(original, pruned, calib, settings)
    assert info["features"] == ["/fc/MatMul_output_0"]
    assert info["held_out_loss"]["after"] < info["held_out_loss"]["before"]
    other, plain = finetune_model(original, pruned, calib, FinetuneSettings(steps=10, lr=2e-3, eval_every=5, metric="ctc"))
    assert plain["features"] == []
    # the feature loss changed the training (the rounded held-out curves may agree: Adam scales steps)
    assert trained.graph.initializer != other.graph.initializer


def _fake_a_perfect_finetune(monkeypatch) -> None:
    """A fine-tune that recovers the original exactly: the trained model is the original, with a
    real (one-step) run's report."""
    import onnxprune.finetune.train as train

    real = train.finetune_model

    def perfect(original, pruned, data, settings, device="cpu"):
        _, info = real(original, pruned, data, FinetuneSettings(steps=1, eval_every=1), device)
        copy = onnx.ModelProto()
        copy.CopyFrom(original)
        return copy, info

    monkeypatch.setattr(train, "finetune_model", perfect)


def test_the_guard_with_finetune_prunes_further_while_the_fine_tuned_model_holds(tmp_path, monkeypatch):
    """A fine-tune that recovers the original exactly (faked: the trained model is the original,
    with a real run's report): every cut past the guard's training-free pick then passes once
    fine-tuned, so the search goes below that pick; judged untrained, those cuts would fail."""
    _fake_a_perfect_finetune(monkeypatch)
    model = onnx.load(str(FIXTURES / "torch_resnet_tiny.onnx"))
    calib = _calib(tmp_path, model, 48)
    result = onnxprune.prune(model, min_cosine=0.99, calib=calib, repair="none", criterion="l1", finetune=2)
    guard = result.report.guard
    first, *further = guard["finetuned"]
    assert first["target_flops"] == guard["target_flops"] < 1.0 and first["passed"]
    passed = [t for t in further if t["passed"]]
    assert passed and guard["target_flops_finetuned"] == min(t["target_flops"] for t in passed) < guard["target_flops"]
    kept = result.report.flops_after / result.report.flops_before
    assert kept == pytest.approx(min(t["flops_kept"] for t in passed)) and kept < first["flops_kept"]
    assert any("judged after fine-tuning" in n for n in result.report.notes)


def test_cuts_past_the_guards_pick_clear_the_bound_by_one_held_out_sample(tmp_path, monkeypatch):
    """The deepest of several cuts that pass is kept, so a bare pass is luck: the cuts past the
    guard's pick are held to --min-agreement plus one held-out sample; the pick to the bound."""
    from onnxprune.strategies.finetuned import further_bound

    assert further_bound(0.95, 24) == pytest.approx(0.95 + 1 / 24) and 23 / 24 < further_bound(0.95, 24)
    assert further_bound(0.99, 24) == 1.0 and further_bound(None, 24) is None
    _fake_a_perfect_finetune(monkeypatch)
    model = onnx.load(str(FIXTURES / "torch_resnet_tiny.onnx"))
    calib = _calib(tmp_path, model, 48)
    # the cosine bound stops the training-free guard early, so there is room for cuts past its pick
    result = onnxprune.prune(model, min_agreement=0.5, min_cosine=0.99, calib=calib, repair="none", criterion="l1",
                             finetune=2)
    guard = result.report.guard
    first, *further = guard["finetuned"]
    n_hold = guard["held_out_samples"]
    assert first["min_agreement"] == 0.5 and [t for t in further if t["finetune"] == "trained"]
    assert all(t["min_agreement"] == pytest.approx(0.5 + 1 / n_hold) for t in further)
    assert any("one held-out sample more than asked" in n for n in result.report.notes)


def test_a_fine_tune_that_loses_answers_is_not_written(tmp_path, monkeypatch):
    """The keep-best check reads the training loss; the task metric on the held-out samples has the
    last word: a trained model that agrees less with the original there than the untrained one (by
    more than one sample) is not written, and the report says so. Faked: the 'trained' model has
    its last layer's weights and bias negated (its answers turned around), with a real run's report."""
    import onnxprune.finetune.train as train
    from onnxprune.finetune.interpreter import stored_constants

    real = train.finetune_model

    handed = []

    def ruinous(original, pruned, data, settings, device="cpu"):
        _, info = real(original, pruned, data, FinetuneSettings(steps=1, eval_every=1), device)
        handed.append(pruned.SerializeToString())
        broken = onnx.ModelProto()
        broken.CopyFrom(pruned)
        stored = stored_constants(broken.graph)
        last = [n for n in broken.graph.node if n.op_type in ("Gemm", "MatMul", "Conv") and n.input[1] in stored][-1]
        for name in last.input[1:]:
            if name in stored:
                t = stored[name]
                t.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(t), t.name))
        return broken, info

    monkeypatch.setattr(train, "finetune_model", ruinous)
    model = onnx.load(str(FIXTURES / "torch_resnet_tiny.onnx"))
    calib = _calib(tmp_path, model, 48)
    result = onnxprune.prune(model, target_flops=0.6, calib=calib, repair="none", criterion="l1", finetune=2)
    ft = result.report.finetune
    figures = next(iter(ft["held_out"].values()))
    assert figures["after"] < figures["before"] - 1 / ft["samples"]["held_out"]
    assert ft["written"] == "untrained"
    assert any("written untrained" in n and "agrees less" in n for n in result.report.notes)
    assert result.model.SerializeToString() == handed[0]  # the model handed to the fine-tune, untrained


def test_a_fine_tune_that_keeps_the_answers_is_written(tmp_path, monkeypatch):
    _fake_a_perfect_finetune(monkeypatch)
    model = onnx.load(str(FIXTURES / "torch_resnet_tiny.onnx"))
    calib = _calib(tmp_path, model, 48)
    result = onnxprune.prune(model, target_flops=0.6, calib=calib, repair="none", criterion="l1", finetune=2)
    assert result.report.finetune["written"] == "trained"
    kept = {t.name: tuple(t.dims) for t in result.model.graph.initializer}
    original = onnx.load(str(FIXTURES / "torch_resnet_tiny.onnx"))  # `model` itself was pruned in place
    assert kept == {t.name: tuple(t.dims) for t in original.graph.initializer}  # the fake's "trained" model
