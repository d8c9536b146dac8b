"""Written models run wherever the original ran, and calibration activations are not assumed
batch-first (issue 23, items 1 and 2).

- paddle_reshape_cnn: Paddle 2.0's classifier head, the Reshape target computed from
  Shape -> Cast -> Slice -> Cast -> Concat with the channel constant, and the batch declared as
  dim_value -1 (how paddle2onnx wrote dynamic dims): the written model once held [1, C'].
- yolo_reshape_cnn: an Ultralytics-style head, Reshape(x, Concat(Shape(x)[0], [6, -1])), dynamic
  N, H, W.
- torch_crnn_tiny: a CNN + sequence-first nn.LSTM ([T, N, 2H], viewed as [T * N, 2H] rows into a
  Linear) whose repair crashed on the held-out split.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

import onnxprune
from onnxprune.config import PruneConfig
from onnxprune.errors import ValidationFailedError
from onnxprune.graph import ModelGraph
from onnxprune.runtime.activations import SampleLayout, _layout, with_outputs
from onnxprune.runtime.shape_check import check_other_shapes, variants
from onnxprune.shapes import InputShape, ResolvedShapes
from onnxprune.validation import validate_result
from tests.helpers.oracle import check_oracle, copy, run
from tests.helpers.cli import invoke

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXPORTERS = FIXTURES / "exporters"
CRNN = FIXTURES / "torch_crnn_tiny.onnx"


def load(path: Path) -> onnx.ModelProto:
    return onnx.load(str(path))


def random_input(model: onnx.ModelProto, batch: int, hw: int, seed: int = 0) -> dict[str, np.ndarray]:
    vi = model.graph.input[0]
    dims = [d.dim_value if d.dim_value > 0 else (batch if k == 0 else hw)
            for k, d in enumerate(vi.type.tensor_type.shape.dim)]
    return {vi.name: np.random.default_rng(seed).standard_normal(dims).astype(np.float32)}


# ------------------------------------------------------------------------------ run-time shapes
@pytest.mark.parametrize("name,sizes", [("paddle_reshape_cnn", (16,)), ("yolo_reshape_cnn", (16, 32))])
def test_written_model_runs_at_other_batches_and_sizes(name, sizes, tmp_path):
    src = EXPORTERS / f"{name}.onnx"
    r = invoke(str(src), str(tmp_path / "out.onnx"), "--ratio", "0.5", "--report", "-", "-q")
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["channels_removed"] > 0
    assert [run["passed"] for run in report["validation"]["other_shapes"]] == [True] * len(sizes)
    original, pruned = load(src), load(tmp_path / "out.onnx")
    for batch in (1, 2, 8):
        for hw in sizes:
            feeds = random_input(original, batch, hw)
            for a, b in zip(run(original, feeds), run(pruned, feeds)):
                assert a.shape == b.shape


@pytest.mark.parametrize("name", ["paddle_reshape_cnn", "yolo_reshape_cnn"])
@pytest.mark.parametrize("seed", [0, 1])
def test_oracle_on_run_time_reshape_targets(name, seed):
    info = check_oracle(load(EXPORTERS / f"{name}.onnx"), seed=seed)
    assert info["removed"] >= 1


def test_negative_dim_value_is_a_dynamic_dim():
    """paddle2onnx's dim_value -1 is no size: the Shape of a tensor that carries it is not static, so
    nothing computed from it is frozen into the written model."""
    model = load(EXPORTERS / "paddle_reshape_cnn.onnx")
    graph = ModelGraph(model)
    reshape = next(n for n in model.graph.node if n.op_type == "Reshape")
    assert graph.shape(reshape.input[0])[0] is None
    assert graph.model_value(reshape.input[1]) is None
    assert graph.partial_value(reshape.input[1])[1] == 24


def _frozen_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """The pruned model with its Reshape target replaced by the constant it has at batch 1."""
    out = copy(model)
    reshape = next(n for n in out.graph.node if n.op_type == "Reshape")
    matmul = next(n for n in out.graph.node if n.op_type == "MatMul")
    channels = ModelGraph(out).const_shape(matmul.input[1])[0]
    out.graph.initializer.append(onnx.numpy_helper.from_array(np.array([1, channels], np.int64), "frozen_target"))
    reshape.input[1] = "frozen_target"
    return out


def test_validation_fails_on_a_target_frozen_at_the_resolved_batch(tmp_path):
    src = EXPORTERS / "paddle_reshape_cnn.onnx"
    result = onnxprune.prune(load(src), ratio=0.5)
    good, bad = tmp_path / "good.onnx", tmp_path / "bad.onnx"
    onnx.save(result.model, str(good))
    onnx.save(_frozen_batch(result.model), str(bad))
    config = PruneConfig(ratio=0.5)
    assert validate_result(src, good, config, result.shapes).comparison.passed is None  # figures only
    with pytest.raises(ValidationFailedError, match=r"at batch 2 \(x:2x3x16x16\): the original runs, the written"):
        validate_result(src, bad, config, result.shapes)


def test_cli_writes_nothing_when_the_written_model_fails_at_batch_2(tmp_path, monkeypatch):
    """Plant the bug the check exists for: the rewrite freezes the Reshape target at the resolved
    batch. The run fails (exit 3), says where, and writes nothing."""
    import onnxprune.api as api

    original_prune = api.prune

    def freezing_prune(*args, **kwargs):
        result = original_prune(*args, **kwargs)
        result.model = _frozen_batch(result.model)
        return result

    monkeypatch.setattr("onnxprune.cli.prune.prune", freezing_prune)
    out = tmp_path / "out.onnx"
    r = invoke(str(EXPORTERS / "paddle_reshape_cnn.onnx"), str(out), "--ratio", "0.5")
    assert r.exit_code == 3, r.output
    assert "at batch 2" in r.output and "nothing was written" in r.output
    assert not out.exists()


def test_exact_mode_compares_values_at_the_other_shapes(tmp_path):
    """In exact mode a written model that runs at batch 2 but computes other values fails too."""
    src = EXPORTERS / "yolo_reshape_cnn.onnx"
    model = load(src)
    changed = copy(model)
    bias = next(t for t in changed.graph.initializer if t.name.endswith(".bias"))
    values = onnx.numpy_helper.to_array(bias).copy()
    values += 1.0
    bias.CopyFrom(onnx.numpy_helper.from_array(values, bias.name))
    path = tmp_path / "changed.onnx"
    onnx.save(changed, str(path))
    shapes = onnxprune.prune(copy(model)).shapes
    runs = check_other_shapes(src, path, shapes, exact=True)
    assert [r.what for r in runs] == ["batch 2", "size 256"]
    assert all(r.passed is False and "values differ" in r.detail for r in runs)
    assert all(r.passed for r in check_other_shapes(src, src, shapes, exact=True))


def test_variants_move_shared_symbols_together_and_skip_fixed_dims():
    shapes = ResolvedShapes((InputShape("a", ("N", 3, "H", "W"), (1, 3, 64, 48), 0),
                             InputShape("b", ("N", "H"), (1, 64), 0),
                             InputShape("c", (4, 7), (4, 7), None)))
    (batch, size) = variants(shapes)
    assert batch[0] == "batch 2" and batch[1].as_dict() == {"a": (2, 3, 64, 48), "b": (2, 64), "c": (4, 7)}
    assert size[1].as_dict() == {"a": (1, 3, 96, 80), "b": (1, 96), "c": (4, 7)}
    fixed = ResolvedShapes((InputShape("x", (1, 3, 32, 32), (1, 3, 32, 32), 0),))
    assert variants(fixed) == []


# ------------------------------------------------------------------------------ activations
def test_sample_layouts_of_sequence_first_tensors():
    t, n, h = 5, 3, 4
    rng = np.random.default_rng(0)
    per_sample = rng.standard_normal((n, t, h))
    seq_first = per_sample.transpose(1, 0, 2)            # [T, N, H]: samples on axis 1
    rows = seq_first.reshape(t * n, h)                   # [T * N, H]: sample s every N rows
    blocks = per_sample.reshape(n * t, h)                # [N * T, H]: sample-major
    assert _layout(seq_first[:, :1], seq_first[:, :2]) == SampleLayout(1)
    assert _layout(per_sample[:1].transpose(1, 0, 2).reshape(t, h),
                   per_sample[:2].transpose(1, 0, 2).reshape(2 * t, h)) == SampleLayout(0, t, interleaved=True)
    assert _layout(blocks[:t], blocks[:2 * t]) == SampleLayout(0, t, interleaved=False)
    held = np.array([False, True, False])
    picked = SampleLayout(0, t, interleaved=True).select(rows, held)
    np.testing.assert_array_equal(picked, per_sample[1])
    picked = SampleLayout(0, t, interleaved=False).select(blocks, held)
    np.testing.assert_array_equal(picked, per_sample[1])
    assert SampleLayout(None).select(rows, held) is None


@pytest.fixture(scope="module")
def crnn_calib(tmp_path_factory) -> Path:
    """Text-like rows: dark strokes on a light background, 48 samples."""
    rng = np.random.default_rng(0)
    x = np.full((48, 1, 16, 32), 0.9, np.float32)
    for i in range(48):
        for c in rng.choice(30, size=6, replace=False):
            x[i, 0, 3:13, c:c + 2] = rng.uniform(0.0, 0.3)
    x += rng.normal(0, 0.05, x.shape).astype(np.float32)
    path = tmp_path_factory.mktemp("crnn") / "calib.npz"
    np.savez(path, input=x)
    return path


@pytest.mark.parametrize("flags", [["--ratio", "0.5"], ["--target-flops", "0.7"],
                                   ["--min-cosine", "0.5", "--target-flops", "0.6"]])
def test_crnn_with_sequence_first_lstm_prunes_with_the_defaults(flags, crnn_calib, tmp_path):
    out = tmp_path / "out.onnx"
    r = invoke(str(CRNN), str(out), *flags, "--calib", str(crnn_calib), "--report", "-", "-q")
    assert r.exit_code == 0, r.output
    model, pruned = load(CRNN), load(out)
    feeds = {"input": np.load(crnn_calib)["input"][:3]}
    (a,), (b,) = run(model, feeds), run(pruned, feeds)
    assert a.shape == b.shape == (16, 3, 12)


def test_repair_holds_out_whole_samples_of_sequence_first_rows(crnn_calib):
    """The Gemm reading [T * N, 2H] rows gets held-out rows, and only from held-out samples: its
    held-out Gram equals the one computed from those samples' rows alone."""
    from onnxprune.repair.features import consumers
    from onnxprune.repair.gram import HOLDOUT_EVERY, gram_matrices

    analysis = onnxprune.analyze(load(CRNN), calib=str(crnn_calib))
    removed = {c for g in analysis.prunable_groups() for c in g.channels[:2]}
    layers = [c for c in consumers(analysis, removed) if c.kind == "gemm"]
    assert layers, "the Gemm after the first LSTM reads pruned channels"
    (grams,), seen = gram_matrices(analysis, layers[:1], str(crnn_calib))
    assert seen == 48 and grams.rows_fit > 0 and grams.rows_held_out > 0
    tensor = layers[0].member.tensor
    probe = with_outputs(analysis.graph.model, [tensor])
    x = np.load(crnn_calib)["input"]
    held = [i for i in range(48) if i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1]
    rows = np.concatenate([run(probe, {"input": x[i:i + 1]})[-1] for i in held])
    aug = np.concatenate([rows, np.ones((len(rows), 1))], axis=1)
    assert grams.rows_held_out == len(rows)
    np.testing.assert_allclose(grams.held_out, aug.T @ aug / len(rows), rtol=1e-4, atol=1e-5)


def _single_channel_to_channels_last() -> onnx.ModelProto:
    """NHWC in -> Transpose -> Conv -> Relu -> Conv(-> 1 channel) -> Reshape [-1, 32, 32, 1], the
    batch dynamic (tf2onnx's segmentation U-Nets end so: fastmrz, basic-pitch)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((16, 3, 3, 3)).astype(np.float32), "W1"),
             numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "B1"),
             numpy_helper.from_array(rng.standard_normal((1, 16, 3, 3)).astype(np.float32), "W2"),
             numpy_helper.from_array(rng.standard_normal(1).astype(np.float32), "B2"),
             numpy_helper.from_array(np.array([-1, 32, 32, 1], np.int64), "S")]
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["t", "W1", "B1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "W2", "B2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Reshape", ["c2", "S"], ["y"])]
    graph = helper.make_graph(nodes, "nhwc_mask", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 32, 32, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 32, 32, 1])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7)


def test_a_single_channel_merged_with_the_batch_keeps_the_dynamic_batch():
    """[N, 1, H, W] -> [-1, H, W, 1] at batch 1 looks like the channel landing on axis 0 (the batch's):
    a lossy run wrote the output declared [1, 32, 32, 1] (README: dynamic dims are kept)."""
    model = _single_channel_to_channels_last()
    result = onnxprune.prune(copy(model), ratio=0.5)
    assert result.report.channels_removed == 8
    dims = result.model.graph.output[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [32, 32, 1]
    x = np.random.default_rng(0).standard_normal((3, 32, 32, 3)).astype(np.float32)
    assert run(result.model, {"x": x})[0].shape == (3, 32, 32, 1)
