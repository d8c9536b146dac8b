"""--finetune's augmentation ("consistent teaching"): image-like inputs get a new view (mixed with
another training image, zoomed, moved, mirrored where asked, brightness and contrast jittered) with
their shape and dtype, the same view for the same seed, other inputs as they are; and the original is
run on the very view the pruned model trains on, with partners drawn from the training rows only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import onnxprune

torch = pytest.importorskip("torch")

from onnxprune.finetune import train  # noqa: E402
from onnxprune.finetune.interpreter import OnnxModule  # noqa: E402
from onnxprune.finetune.train import FinetuneSettings, augment, finetune_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


def _images(layout: str, n: int = 6, dtype=np.float32, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, 3, 16, 24)).astype(dtype)
    return x if layout == "nchw" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))


@pytest.fixture
def only(monkeypatch):
    """Switch every part of a view off, then on one by one (returns the setter)."""
    def set_(**parts):
        values = {"MIX_PROB": 0.0, "ZOOM": (1.0, 1.0), "SHIFT": 0.0, "JITTER": 0.0, "NOISE": 0.0} | parts
        for k, v in values.items():
            monkeypatch.setattr(train, k, v)
    return set_


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_views_keep_shape_and_dtype_and_follow_the_seed(layout, dtype):
    x = _images(layout, dtype=dtype)
    partners = {"x": _images(layout, dtype=dtype, seed=1)}
    a = augment(np.random.default_rng(3), {"x": x}, partners=partners, flip=True)["x"]
    b = augment(np.random.default_rng(3), {"x": x}, partners=partners, flip=True)["x"]
    c = augment(np.random.default_rng(4), {"x": x}, partners=partners, flip=True)["x"]
    assert a.shape == x.shape and a.dtype == x.dtype
    assert np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, x)


def test_with_every_part_off_a_view_is_the_image(only):
    only()
    x = _images("nchw")
    np.testing.assert_allclose(augment(np.random.default_rng(0), {"x": x})["x"], x, rtol=0, atol=1e-5)


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_mixup_is_a_weighted_sum_of_two_images(only, layout):
    only(MIX_PROB=1.0)
    x, y = _images(layout), _images(layout, seed=1)
    out = augment(np.random.default_rng(0), {"x": x}, partners={"x": y})["x"]
    weights = []
    for i in range(len(x)):
        w = ((out[i] - y[i]) * (x[i] - y[i])).sum() / ((x[i] - y[i]) ** 2).sum()  # least squares
        np.testing.assert_allclose(out[i], w * x[i] + (1 - w) * y[i], rtol=1e-5, atol=1e-5)
        weights.append(w)
    assert all(0 <= w <= 1 for w in weights) and np.ptp(weights) > 0.1  # a weight of its own per sample


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_flips_mirror_left_right(only, layout):
    only()
    x = _images(layout, n=16)
    width = 3 if layout == "nchw" else 2
    out = augment(np.random.default_rng(0), {"x": x}, flip=True)["x"]
    mirrored = 0
    for i in range(len(x)):
        if np.allclose(out[i], x[i], rtol=0, atol=1e-5):
            continue
        np.testing.assert_allclose(out[i], np.flip(x[i], axis=width - 1), rtol=0, atol=1e-5)
        mirrored += 1
    assert 0 < mirrored < len(x)
    np.testing.assert_allclose(augment(np.random.default_rng(0), {"x": x}, flip=False)["x"], x, rtol=0, atol=1e-5)


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_zooming_out_pads_with_the_mean_and_zooming_in_crops(only, layout):
    only(ZOOM=(0.5, 0.5))
    x = _images(layout)
    out = augment(np.random.default_rng(0), {"x": x})["x"]
    chw = out if layout == "nchw" else out.transpose(0, 3, 1, 2)
    src = x if layout == "nchw" else x.transpose(0, 3, 1, 2)
    padding = np.isclose(chw, src.mean(axis=(2, 3), keepdims=True), rtol=0, atol=1e-6).mean(axis=(1, 2, 3))
    assert (padding >= 0.6).all() and (padding < 0.9).all()  # the image at half the size fills a quarter
    only(ZOOM=(2.0, 2.0))
    out = augment(np.random.default_rng(0), {"x": x})["x"]
    chw = out if layout == "nchw" else out.transpose(0, 3, 1, 2)
    assert np.ptp(chw[:, :, 0, :], axis=-1).min() > 0  # no padding: a crop of the image, upsampled


def test_other_inputs_are_left_as_they_are():
    rng = np.random.default_rng(0)
    batch = {"ids": np.arange(6 * 3 * 16 * 16).reshape(6, 3, 16, 16),               # not float
             "seq": rng.standard_normal((6, 10, 32)).astype(np.float32),             # not 4-D
             "feat": rng.standard_normal((6, 7, 16, 16)).astype(np.float32),         # 7 channels
             "small": rng.standard_normal((6, 3, 4, 4)).astype(np.float32)}          # under 8 pixels
    out = augment(np.random.default_rng(0), batch, partners=batch, flip=True)
    for k, v in batch.items():
        assert out[k] is v


def _marked_run(monkeypatch, calls):
    """Record what the original is run on."""
    real = train._run

    def run(session, feeds, names):
        calls.append({k: v.copy() for k, v in feeds.items()})
        return real(session, feeds, names)
    monkeypatch.setattr(train, "_run", run)


def test_the_original_is_run_on_the_view_the_pruned_model_trains_on(tmp_path, monkeypatch):
    model = onnx.load(str(FIXTURES / "torch_resnet_tiny.onnx"))
    x = np.random.default_rng(0).standard_normal((24, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", input=x)
    calib = str(tmp_path / "calib.npz")
    original = onnx.ModelProto()
    original.CopyFrom(model)
    pruned = onnxprune.prune(model, ratio=0.5, calib=calib, repair="none", criterion="l1").model
    monkeypatch.setattr(train, "AUGMENTED", 1.0)
    monkeypatch.setattr(train, "MILD_SHARE", 1.0)
    monkeypatch.setattr(train, "augment", lambda rng, batch, **kw: {k: v + 100.0 for k, v in batch.items()})
    student = []
    forward = OnnxModule.forward

    def spy(self, feeds, *args, **kwargs):
        student.append({k: v.detach().numpy().copy() for k, v in feeds.items()})
        return forward(self, feeds, *args, **kwargs)
    monkeypatch.setattr(OnnxModule, "forward", spy)
    teacher = []
    _marked_run(monkeypatch, teacher)
    finetune_model(original, pruned, calib, FinetuneSettings(steps=3, batch=8, eval_every=100))
    trained_on = [f["input"] for f in student if f["input"].min() > 50]   # the augmented batches
    taught_on = [f["input"] for f in teacher if f["input"].min() > 50]
    assert len(trained_on) == 3
    for got in trained_on:
        assert any(t.shape == got.shape and np.array_equal(t, got) for t in taught_on)


def test_mixup_partners_are_training_rows_never_held_out_ones(tmp_path, monkeypatch):
    from tests.finetune.test_finetune import _boxes_model
    model = _boxes_model(end2end=False)  # a detector's head: strong views
    x = np.random.default_rng(0).uniform(-1, 1, (24, 3, 8, 8)).astype(np.float32)
    x[train.HOLDOUT_EVERY - 1::train.HOLDOUT_EVERY] = 50.0  # the held-out rows
    np.savez(tmp_path / "calib.npz", x=x)
    calib = str(tmp_path / "calib.npz")
    original, pruned = model, model
    monkeypatch.setattr(train, "MIX_PROB", 1.0)
    teacher = []
    _marked_run(monkeypatch, teacher)
    settings = FinetuneSettings(steps=6, batch=8, eval_every=100, metric="boxes")
    _, info = finetune_model(original, pruned, calib, settings)
    assert info["views"] == "strong"
    for feeds in teacher:
        peak = np.abs(feeds["x"]).reshape(len(feeds["x"]), -1).max(axis=1)
        assert ((peak < 5) | (peak == 50.0)).all()  # a training row's view, or a held-out row as it is


def test_without_image_inputs_the_originals_answers_are_computed_once(tmp_path, monkeypatch):
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((16, 32)).astype(np.float32), "w1"),
               numpy_helper.from_array(rng.standard_normal((32, 10)).astype(np.float32), "w2")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    np.savez(tmp_path / "calib.npz", x=rng.standard_normal((24, 16)).astype(np.float32))
    views = []
    monkeypatch.setattr(train, "augment", lambda rng, batch, **kw: views.append(batch) or batch)
    _, info = finetune_model(model, model, str(tmp_path / "calib.npz"), FinetuneSettings(steps=3, batch=8))
    assert info["teacher_cached"] is True and views == []


def test_strong_views_for_detectors_mild_ones_elsewhere(tmp_path, monkeypatch):
    assert train.strong_views({"y": "boxes"}) and train.strong_views({"a": "classes", "b": "selection: s"})
    assert not train.strong_views({"y": "classes"}) and not train.strong_views({"y": "ctc", "z": "mse"})
    strong = []
    real = train.augment

    def spy(rng, batch, **kw):
        strong.append(kw["strong"])
        return real(rng, batch, **kw)
    monkeypatch.setattr(train, "augment", spy)
    model = onnx.load(str(FIXTURES / "torch_resnet_tiny.onnx"))  # a classifier
    np.savez(tmp_path / "calib.npz", input=np.random.default_rng(0).standard_normal((24, 3, 32, 32)).astype(np.float32))
    _, info = finetune_model(model, model, str(tmp_path / "calib.npz"), FinetuneSettings(steps=4, batch=8))
    assert info["views"] == "mild" and info["teacher_cached"] is True and strong and not any(strong)
    x = _images("nchw")
    only = augment(np.random.default_rng(0), {"x": x}, partners={"x": x[::-1]}, strong=False)["x"]
    assert np.abs(only - x).mean() < np.abs(augment(np.random.default_rng(0), {"x": x}, partners={"x": x[::-1]})["x"] - x).mean()
