"""--finetune (onnxprune/finetune/): the torch interpreter computes what ONNX Runtime computes, the
trained weights go back without changing anything else, each output kind's loss goes down, and a
model the interpreter cannot run keeps its training-free result with one note."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from onnxprune.errors import ConfigError
from tests.helpers.cli import assert_one_line_error, invoke

torch = pytest.importorskip("torch")

from onnxprune.finetune.interpreter import ConversionError, OnnxModule, stored_constants  # noqa: E402
from onnxprune.finetune.train import FinetuneSettings, finetune_model  # noqa: E402
from onnxprune.runtime.sessions import create_session  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = sorted((ROOT / "tests" / "fixtures").glob("*.onnx")) + [ROOT / "models" / "digits_cnn.onnx"]


def _feeds(model: onnx.ModelProto, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for i in model.graph.input:
        dims = [d.dim_value if d.dim_value else n for d in i.type.tensor_type.shape.dim]
        out[i.name] = rng.standard_normal(dims).astype(np.float32)
    return out


def _calib(tmp_path: Path, model: onnx.ModelProto, n: int = 32) -> str:
    path = tmp_path / "calib.npz"
    np.savez(path, **_feeds(model, n))
    return str(path)


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_interpreter_matches_onnxruntime(path):
    model = onnx.load(str(path))
    feeds = _feeds(model, 2)
    with create_session(model, "cpu", None, True) as session:
        reference = session.run(feeds)
    module = OnnxModule(model)
    assert module.param_names, "weights of Conv/Gemm/MatMul/norm layers are parameters"
    with torch.no_grad():
        got = module({k: torch.from_numpy(v) for k, v in feeds.items()})
    for name, out in zip(module.output_names, got):
        ref = reference[name]
        assert out.shape == ref.shape
        assert np.abs(out.numpy() - ref).max() <= 1e-4 + 1e-4 * np.abs(ref).max(), name


@pytest.mark.parametrize("direction, before_reset, initial", [("forward", 1, False), ("bidirectional", 1, True),
                                                               ("reverse", 0, True), ("bidirectional", 0, False)])
def test_interpreter_gru_matches_onnxruntime(direction, before_reset, initial):
    """GRU: PyTorch writes linear_before_reset=1, Paddle and Keras 0; both directions, an initial
    state or none. Its W, R, B are trainable parameters."""
    rng = np.random.default_rng(7)
    dirs, hidden, feat, steps = 2 if direction == "bidirectional" else 1, 5, 4, 6
    w = {"W": rng.standard_normal((dirs, 3 * hidden, feat)), "R": rng.standard_normal((dirs, 3 * hidden, hidden)) * 0.5,
         "B": rng.standard_normal((dirs, 6 * hidden)) * 0.3}
    inputs = ["x", "W", "R", "B", "", "h0" if initial else ""]
    node = helper.make_node("GRU", inputs, ["y", "y_h"], hidden_size=hidden, direction=direction,
                            linear_before_reset=before_reset)
    vi = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [steps, "N", feat])]
    if initial:
        vi.append(helper.make_tensor_value_info("h0", TensorProto.FLOAT, [dirs, "N", hidden]))
    graph = helper.make_graph([node], "gru", vi,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [steps, dirs, "N", hidden]),
                               helper.make_tensor_value_info("y_h", TensorProto.FLOAT, [dirs, "N", hidden])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    feeds = {"x": rng.standard_normal((steps, 3, feat)).astype(np.float32)}
    if initial:
        feeds["h0"] = rng.standard_normal((dirs, 3, hidden)).astype(np.float32)
    with create_session(model, "cpu", None, True) as session:
        reference = session.run(feeds)
    module = OnnxModule(model)
    assert set(module.param_names) >= {"W", "R", "B"}
    with torch.no_grad():
        got = module({k: torch.from_numpy(v) for k, v in feeds.items()})
    for name, out in zip(module.output_names, got):
        np.testing.assert_allclose(out.numpy(), reference[name], atol=1e-5, rtol=1e-4, err_msg=name)


def _head(op_type: str) -> onnx.ModelProto:
    """x -> Conv(16) -> Relu -> Conv(8) -> GlobalAveragePool -> Flatten -> Gemm(10) -> `op_type`."""
    rng = np.random.default_rng(1)
    weights = {"w1": rng.standard_normal((16, 3, 3, 3)), "b1": rng.standard_normal(16),
               "w2": rng.standard_normal((8, 16, 3, 3)) * 0.3, "b2": rng.standard_normal(8),
               "w3": rng.standard_normal((10, 8)), "b3": rng.standard_normal(10)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
             helper.make_node("GlobalAveragePool", ["c2"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["logits"], transB=1, name="fc"),
             helper.make_node(op_type, ["logits"], ["y"], name="head")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _boxes_model(end2end: bool, objectness: bool = False) -> onnx.ModelProto:
    """A YOLO-style head: raw [N, 4+2, 64] (coordinates in pixels, sigmoid scores), or end-to-end
    [N, 10, 6] picked by TopK/GatherElements from it, or (objectness) YOLOv5/YOLOX [N, 64, 4+1+3]."""
    rng = np.random.default_rng(2)
    c = 5 if end2end else 8 if objectness else 6
    weights = {"w1": rng.standard_normal((16, 3, 3, 3)), "b1": rng.standard_normal(16),
               "w2": rng.standard_normal((c, 16, 1, 1)) * 0.3, "b2": rng.standard_normal(c),
               "shape": np.array([0, c, 64]), "scale": np.array(50.0)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2"),
             helper.make_node("Reshape", ["c2", "shape"], ["flat"], name="reshape")]
    if not end2end:
        weights["split"] = np.array([4, c - 4])
        nodes += [helper.make_node("Split", ["flat", "split"], ["xy", "cls"], axis=1, name="split"),
                  helper.make_node("Mul", ["xy", "scale"], ["boxes"], name="scale_boxes"),
                  helper.make_node("Sigmoid", ["cls"], ["scores"], name="sigmoid"),
                  helper.make_node("Concat", ["boxes", "scores"], ["y" if not objectness else "rows"], axis=1,
                                   name="concat")]
        out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6, 64])
        if objectness:
            nodes.append(helper.make_node("Transpose", ["rows"], ["y"], perm=[0, 2, 1], name="transpose"))
            out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 64, c])
    else:
        weights.update({"split": np.array([4, 1]), "k": np.array([10]), "reps": np.array([1, 1, 4]),
                        "zero": np.array(0.0)})
        nodes += [helper.make_node("Transpose", ["flat"], ["t"], perm=[0, 2, 1], name="transpose"),
                  helper.make_node("Split", ["t", "split"], ["xy", "cls"], axis=2, name="split"),
                  helper.make_node("Mul", ["xy", "scale"], ["boxes"], name="scale_boxes"),
                  helper.make_node("Sigmoid", ["cls"], ["scores"], name="sigmoid"),
                  helper.make_node("ReduceMax", ["scores"], ["best"], axes=[2], keepdims=0, name="best"),
                  helper.make_node("TopK", ["best", "k"], ["top", "idx"], axis=-1, name="topk"),
                  helper.make_node("Unsqueeze", ["idx", "two"], ["idx3"], name="unsqueeze_idx"),
                  helper.make_node("Tile", ["idx3", "reps"], ["idx4"], name="tile"),
                  helper.make_node("GatherElements", ["boxes", "idx4"], ["picked"], axis=1, name="pick"),
                  helper.make_node("Unsqueeze", ["top", "two"], ["score"], name="unsqueeze_score"),
                  helper.make_node("Mul", ["score", "zero"], ["cls_id"], name="class_zero"),
                  helper.make_node("Concat", ["picked", "score", "cls_id"], ["y"], axis=2, name="concat")]
        weights["two"] = np.array([2])
        out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10, 6])
    inits = [numpy_helper.from_array(v.astype(np.int64 if v.dtype.kind == "i" else np.float32), k)
             for k, v in weights.items()]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [out], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_an_op_it_does_not_know_is_named():
    with pytest.raises(ConversionError, match=r"op Hardmax \(node head\) is not supported"):
        OnnxModule(_head("Hardmax"))


def _pruned(model, calib, **options):
    original = onnx.ModelProto()
    original.CopyFrom(model)
    result = onnxprune.prune(model, ratio=0.5, calib=calib, repair="none", criterion="l1", **options)
    assert result.report.channels_removed
    return original, result.model


def _without(model: onnx.ModelProto, names) -> bytes:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    stored = stored_constants(copy.graph)
    for name in names:
        stored[name].ClearField("raw_data")
        stored[name].ClearField("float_data")
    return copy.SerializeToString()


def test_trained_weights_leave_the_graph_otherwise_byte_identical(tmp_path):
    model = onnx.load(str(ROOT / "tests" / "fixtures" / "torch_resnet_tiny.onnx"))
    calib = _calib(tmp_path, model)
    original, pruned = _pruned(model, calib)
    trained, info = finetune_model(original, pruned, calib, FinetuneSettings(steps=6, lr=1e-3, eval_every=3))
    assert info["best_step"] > 0
    names = OnnxModule(pruned).param_names
    changed = [n for n in names if stored_constants(trained.graph)[n].SerializeToString()
               != stored_constants(pruned.graph)[n].SerializeToString()]
    assert changed
    assert _without(trained, names) == _without(pruned, names)
    assert trained.ir_version == pruned.ir_version and trained.opset_import == pruned.opset_import


@pytest.mark.parametrize("build, metric, kind", [
    ("resnet", "auto", "classes"), ("unet", "auto", "mse"), ("crnn", "ctc", "ctc"),
    ("raw boxes", "auto", "boxes"), ("end2end boxes", "auto", "selection"),
    ("objectness boxes", "auto", "mse"),  # YOLOv5/YOLOX: the raw head's loss lost on it (docs/DETECTORS.md)
])
def test_the_loss_of_each_output_kind_goes_down(tmp_path, build, metric, kind):
    if build in ("resnet", "unet", "crnn"):
        model = onnx.load(str(ROOT / "tests" / "fixtures" / f"torch_{build}_tiny.onnx"))
    else:
        model = _boxes_model(end2end=build.startswith("end2end"), objectness=build.startswith("objectness"))
    calib = _calib(tmp_path, model)
    original, pruned = _pruned(model, calib)
    _, info = finetune_model(original, pruned, calib, FinetuneSettings(steps=12, lr=2e-3, eval_every=4, metric=metric))
    assert list(info["targets"].values())[0].startswith(kind)
    assert info["held_out_loss"]["after"] < info["held_out_loss"]["before"]


def test_a_model_it_cannot_convert_gets_one_line_and_the_untrained_result(tmp_path):
    model_path = tmp_path / "hardmax.onnx"
    onnx.save(_head("Hardmax"), str(model_path))
    calib = _calib(tmp_path, onnx.load(str(model_path)))
    plain, tuned = tmp_path / "plain.onnx", tmp_path / "tuned.onnx"
    common = ("--target-flops", "0.5", "--calib", calib, "--repair", "none", "--criterion", "l1")
    assert invoke(model_path, plain, *common).exit_code == 0
    result = invoke(model_path, tuned, *common, "--finetune", "5")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "--finetune" in line]
    assert len(lines) == 1 and "cannot convert: op Hardmax (node head) is not supported" in lines[0]
    assert plain.read_bytes() == tuned.read_bytes()


def test_prune_with_finetune_reports_before_and_after(tmp_path):
    model = onnx.load(str(ROOT / "tests" / "fixtures" / "torch_resnet_tiny.onnx"))
    calib = _calib(tmp_path, model)
    result = onnxprune.prune(model, ratio=0.5, calib=calib, repair="none", criterion="l1", finetune=4)
    ft = result.report.to_dict()["finetune"]
    assert ft["status"] == "trained" and ft["steps_run"] == 4
    assert set(ft["held_out"]["output"]) >= {"metric", "before", "after"}
    assert ft["held_out_loss"]["after"] <= ft["held_out_loss"]["before"]


def test_finetune_options_are_checked(tmp_path):
    model = ROOT / "tests" / "fixtures" / "torch_resnet_tiny.onnx"
    assert_one_line_error(invoke(model, tmp_path / "o.onnx", "--target-flops", "0.5", "--finetune", "5"),
                          "--finetune", "--calib")
    calib = _calib(tmp_path, onnx.load(str(model)))
    assert_one_line_error(invoke(model, tmp_path / "o.onnx", "--calib", calib, "--finetune", "5"), "--finetune",
                          "target")
    assert_one_line_error(invoke(model, tmp_path / "o.onnx", "--target-flops", "0.5", "--calib", calib,
                                 "--finetune", "0"), "--finetune")


def test_without_torch_the_error_says_how_to_install(monkeypatch):
    import importlib.util

    from onnxprune.finetune import check_available

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(ConfigError, match=r"onnxprune\[finetune\]"):
        check_available()


def test_class_and_ctc_losses_are_the_kl_divergence_from_the_original():
    from onnxprune.finetune.losses import Target, target_loss

    rng = np.random.default_rng(3)
    teacher, student = rng.standard_normal((4, 7, 5)), rng.standard_normal((4, 7, 5))

    def softmax(x):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    p, q = softmax(teacher), softmax(student)
    kl = (p * (np.log(p) - np.log(q))).sum(-1).mean()
    got = target_loss(Target("y", "ctc"), torch.tensor(student), torch.tensor(teacher))
    assert float(got) == pytest.approx(kl, rel=1e-5)
    probs = target_loss(Target("y", "ctc", -1, True), torch.tensor(q), torch.tensor(p))
    assert float(probs) == pytest.approx(kl, rel=1e-4)
    flat_p, flat_q = softmax(teacher[:, 0]), softmax(student[:, 0])
    got = target_loss(Target("y", "classes"), torch.tensor(student[:, 0]), torch.tensor(teacher[:, 0]))
    assert float(got) == pytest.approx((flat_p * (np.log(flat_p) - np.log(flat_q))).sum(-1).mean(), rel=1e-5)
    assert float(target_loss(Target("y", "classes"), torch.tensor(teacher[:, 0]), torch.tensor(teacher[:, 0]))) \
        == pytest.approx(0.0, abs=1e-7)


def test_the_best_weights_on_held_out_rows_are_kept(tmp_path):
    """A learning rate that wrecks the model: the untrained weights stay the best and are written."""
    model = onnx.load(str(ROOT / "tests" / "fixtures" / "torch_resnet_tiny.onnx"))
    calib = _calib(tmp_path, model)
    original, pruned = _pruned(model, calib)
    trained, info = finetune_model(original, pruned, calib, FinetuneSettings(steps=6, lr=50.0, eval_every=3))
    assert info["held_out_loss"]["curve"][-1][1] > info["held_out_loss"]["before"]
    assert info["best_step"] == 0 and info["held_out_loss"]["after"] == info["held_out_loss"]["before"]
    assert trained.SerializeToString() == pruned.SerializeToString()


def test_finetune_runs_before_quantize_and_on_the_guards_fit_part_only(tmp_path):
    model = onnx.load(str(ROOT / "tests" / "fixtures" / "torch_resnet_tiny.onnx"))
    calib = _calib(tmp_path, model)
    quantized = onnxprune.prune(onnx.load(str(ROOT / "tests" / "fixtures" / "torch_resnet_tiny.onnx")), ratio=0.5,
                                calib=calib, repair="none", criterion="l1", finetune=3, quantize="int8")
    assert quantized.report.finetune["status"] == "trained" and quantized.report.quantize
    assert any(n.op_type == "DequantizeLinear" for n in quantized.model.graph.node)
    assert not any(n.op_type == "DequantizeLinear" for n in quantized.float_model.graph.node)
    guarded = onnxprune.prune(model, min_agreement=0.1, calib=calib, repair="none", criterion="l1", finetune=3)
    samples = guarded.report.finetune["samples"]
    assert samples["train"] + samples["held_out"] == 24  # 32 less the guard's 8 held-out samples


def test_a_pick_of_a_pick_trains_on_the_first_picks_inputs():
    """YOLO26 picks the top anchors, then the top classes among them: the second pick's input is
    reordered by the first one's ties, so the first one's inputs are the targets."""
    from onnxprune.finetune.losses import selection_inputs

    k = numpy_helper.from_array(np.array([3], np.int64), "k")
    nodes = [helper.make_node("Relu", ["x"], ["scores"]),
             helper.make_node("TopK", ["scores", "k"], ["top", "idx"], axis=-1),
             helper.make_node("Neg", ["top"], ["again"]),
             helper.make_node("TopK", ["again", "k"], ["y", "idx2"], axis=-1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], [k])
    assert selection_inputs(helper.make_model(graph), "y") == [("scores", "TopK", -1)]


def test_per_position_confidences_are_no_class_scores():
    """An output [B, T] whose last axis the model declares dynamic (a recognizer's per-position
    confidences) is trained by mse, not as T classes; a fixed last axis is classes."""
    from onnxprune.finetune.losses import choose_targets

    vi = helper.make_tensor_value_info
    for dims, kind in ((["B", "T"], "mse"), (["B", 20], "classes")):
        model = helper.make_model(helper.make_graph([helper.make_node("Sigmoid", ["x"], ["conf"])], "g",
                                                    [vi("x", TensorProto.FLOAT, dims)], [vi("conf", TensorProto.FLOAT, dims)]))
        conf = np.random.default_rng(0).random((4, 20)).astype(np.float32)
        _, kinds = choose_targets(model, {"conf": conf}, 4)
        assert kinds == {"conf": kind}


def _batch_fixed_at_one(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same model exported with batch 1 baked into its input and output (ddddocr's OCR, fall_yolov8s)."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in list(fixed.graph.input) + list(fixed.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_value = 1
    return fixed


def test_a_model_with_its_batch_fixed_trains_on_pieces_of_it(tmp_path):
    """ORT refuses 16 rows at once where the batch is fixed at 1: the original and the student run a row
    at a time and the step's gradient is their mean, the same step as one batch of 16 (no statistics
    are trained), so the trained weights match the free-batch model's."""
    free = onnx.load(str(ROOT / "tests" / "fixtures" / "torch_resnet_tiny.onnx"))
    calib = _calib(tmp_path, free)
    original, pruned = _pruned(free, calib)
    settings = FinetuneSettings(steps=3, lr=1e-3, eval_every=3, augment=False)
    want, info_free = finetune_model(original, pruned, calib, settings)
    got, info = finetune_model(_batch_fixed_at_one(original), _batch_fixed_at_one(pruned), calib, settings)
    assert info["steps_run"] == 3 and not info["teacher_cached"]
    assert info["best_step"] == info_free["best_step"] == 3
    names = OnnxModule(pruned).param_names
    trained = [n for n in names if not np.array_equal(numpy_helper.to_array(stored_constants(got.graph)[n]),
                                                      numpy_helper.to_array(stored_constants(pruned.graph)[n]))]
    assert trained
    for n in names:
        a = numpy_helper.to_array(stored_constants(got.graph)[n])
        b = numpy_helper.to_array(stored_constants(want.graph)[n])
        assert np.allclose(a, b, rtol=1e-3, atol=1e-5), n


def test_prune_with_finetune_on_a_model_with_its_batch_fixed(tmp_path):
    free = onnx.load(str(ROOT / "tests" / "fixtures" / "torch_resnet_tiny.onnx"))
    path, out = tmp_path / "fixed.onnx", tmp_path / "out.onnx"
    onnx.save(_batch_fixed_at_one(free), str(path))
    result = invoke(path, out, "--ratio", "0.5", "--calib", _calib(tmp_path, free, 16), "--repair", "none",
                    "--criterion", "l1", "--finetune", "2")
    assert result.exit_code == 0, result.output
    assert "finetuned" in result.output
    assert [d.dim_value for d in onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim][0] == 1


def test_channels_last_gives_the_same_outputs_and_gradients():
    """use_channels_last changes memory strides only (a speed-up of oneDNN's convolutions on CPU):
    the same outputs and gradients as the NCHW module."""
    model = onnx.load(str(Path(__file__).resolve().parents[1] / "fixtures" / "torch_resnet_tiny.onnx"))
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32))
    results = []
    for last in (False, True):
        module = OnnxModule(model)
        if last:
            module.use_channels_last()
            assert all(p.is_contiguous(memory_format=torch.channels_last) for p in module.parameters() if p.dim() == 4)
        (y,) = module({"input": x})
        y.pow(2).mean().backward()
        results.append((y.detach(), [p.grad.clone() for p in module.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-5, rtol=1e-4)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
