"""SliceGPT's rotation of the residual stream (passes/rotate.py): an identity transform before any
slicing (centred writers, LayerNorms folded into their readers as RMS norms, writers x Q, readers
x Q^T), the lossy oracle on the rotated model, the least-variance directions dropped first, and
post-norm (BERT) refused.

LayerNorm scales and shifts and every bias are given random values first: the fixtures' Hugging
Face initialisation (scale 1, shift 0, zero biases) would hide a folding bug."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import onnxprune
from onnxprune.api import resolve_input_shapes
from onnxprune.config import PruneConfig
from onnxprune.passes.rotate import NotRotatable, rotated_copy
from onnxprune.passes.untie import untie_shared
from tests.analysis.test_transformers import BERT, GPT2, VIT, feeds, stream
from tests.helpers.oracle import check_oracle, copy, run


def randomized(path, seed=0) -> onnx.ModelProto:
    model = onnx.load(str(path))
    untie_shared(model)
    rng = np.random.default_rng(seed)
    for t in model.graph.initializer:
        if any(k in t.name for k in ("ln", "LayerNorm", "bias", "class_token", "pos_embedding")):
            a = numpy_helper.to_array(t)
            t.CopyFrom(numpy_helper.from_array((a + rng.normal(0, 0.3, a.shape)).astype(a.dtype), t.name))
    return model


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("calib")


def calib(model, folder, batch=16, seed=0) -> str:
    path = folder / f"{model.graph.name}_{batch}_{seed}.npz"
    np.savez(path, **feeds(model, batch, 12, seed))
    return str(path)


def cosine(a, b) -> float:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return float(np.mean((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


@pytest.mark.parametrize("path", [GPT2, VIT], ids=lambda p: p.stem)
def test_rotation_unsliced_is_an_identity(path, calib_dir):
    model = randomized(path)
    data = calib(model, calib_dir)
    rot = rotated_copy(model, resolve_input_shapes(model, PruneConfig(calib=data)).per_sample(), data)
    ops = [n.op_type for n in rot.model.graph.node]
    assert "LayerNormalization" not in ops and ops.count("ReduceSumSquare") == len(rot.plan.norms) == 5
    assert rot.model.ir_version == model.ir_version and rot.model.opset_import == model.opset_import
    onnx.checker.check_model(rot.model, full_check=True)
    before = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    moved = [t.name for t in rot.model.graph.initializer
             if t.name in before and before[t.name].shape == numpy_helper.to_array(t).shape
             and not np.allclose(before[t.name], numpy_helper.to_array(t))]
    assert len(moved) >= len(rot.plan.writers)  # the weights really changed
    for batch, seq, seed in ((2, 9, 5), (3, 16, 6)):  # held-out inputs, other shapes
        f = feeds(model, batch, seq, seed)
        for a, b in zip(run(model, f), run(rot.model, f)):
            np.testing.assert_allclose(b, a, atol=1e-4, rtol=1e-3)
    assert np.all(np.diff(rot.eigenvalues) <= 1e-9) and rot.eigenvalues[-1] >= -1e-6


def test_rotation_is_validated_before_it_is_used(calib_dir):
    """A Q that is not orthogonal breaks the invariance: the check refuses it."""
    model = randomized(GPT2)
    data = calib(model, calib_dir)
    shapes = resolve_input_shapes(model, PruneConfig(calib=data)).per_sample()
    q = np.linalg.qr(np.random.default_rng(0).standard_normal((64, 64)))[0] * 1.01
    with pytest.raises(NotRotatable, match="exact-mode tolerance"):
        rotated_copy(model, shapes, data, q=q)


def test_post_norm_bert_is_refused(calib_dir):
    model = randomized(BERT)
    data = calib(model, calib_dir)
    with pytest.raises(NotRotatable, match="post-norm"):
        rotated_copy(model, resolve_input_shapes(model, PruneConfig(calib=data)).per_sample(), data)
    result = onnxprune.prune(copy(model), ratio=0.25, calib=data, repair="none")
    assert any("residual stream not rotated" in n and "post-norm" in n for n in result.report.notes)
    assert any(n.op_type == "LayerNormalization" for n in result.model.graph.node)


@pytest.mark.parametrize("path", [GPT2, VIT], ids=lambda p: p.stem)
def test_lossy_oracle_on_the_rotated_model(path, calib_dir):
    """The RMS norm (ReduceSumSquare over the stream) is a lossy statistic the rewrite and the lossy
    oracle take over the kept channels."""
    model = randomized(path)
    data = calib(model, calib_dir)
    shapes = resolve_input_shapes(model, PruneConfig(calib=data))
    rot = rotated_copy(model, shapes.per_sample(), data)
    for seed in (0, 1):
        info = check_oracle(rot.model, seed=seed, shapes=shapes, inputs=feeds(model, 3, 11, seed), lossy=True)
        g = stream(info["analysis"])
        assert g.prunable and any("ReduceSumSquare" in r for r in g.inexact)
        assert info["removed"] >= g.size // 10


@pytest.mark.parametrize("path", [GPT2, VIT], ids=lambda p: p.stem)
def test_calib_ratio_rotates_then_drops_the_least_used_directions(path, calib_dir):
    model = randomized(path)
    data = calib(model, calib_dir, batch=32)
    held_out = feeds(model, 16, 12, 9)
    reference = run(model, held_out)[0]
    figures = {}
    for rotate in (True, False):
        result = onnxprune.prune(copy(model), ratio=0.25, calib=data, repair="none", rotate=rotate,
                                  round_to=1)
        pruned = result.model
        onnx.checker.check_model(pruned, full_check=True)
        rotated = any("rotated to its principal axes" in n for n in result.report.notes)
        assert rotated == rotate
        assert any(n.op_type == "LayerNormalization" for n in pruned.graph.node) != rotate
        g = next(x for x in result.report.groups if x.lossy_only and x.size == stream_width(path))
        assert g.kept == g.size - g.size // 4
        figures[rotate] = cosine(reference, run(pruned, held_out)[0])
    assert figures[True] > figures[False], figures


def stream_width(path) -> int:
    return 32 if path == VIT else 64


def test_without_calib_the_stream_is_ranked_by_magnitude():
    model = onnx.load(str(GPT2))
    result = onnxprune.prune(copy(model), ratio=0.25)
    assert not any("rotated" in n for n in result.report.notes)
    assert sum(n.op_type == "LayerNormalization" for n in result.model.graph.node) == 5


# ---------------------------------------------------------------- LayerNorm written out, conv in and out
EXPORTERS = BERT.parents[1] / "exporters"


def exporter_calib(name, folder, batch=32, seed=0, tokens=16):
    from tests.robustness.test_exporter_fixtures import inputs_for

    model = onnx.load(str(EXPORTERS / f"{name}.onnx"))
    path = folder / f"{name}_{batch}_{seed}.npz"
    np.savez(path, **inputs_for(model, batch, tokens, seed))
    return model, str(path)


@pytest.mark.parametrize("name, entries", [("svtr_neck", ["neck_transpose"]), ("keras_gap_layernorm_prenorm", [])])
def test_written_out_norms_rotate_as_an_identity(name, entries, calib_dir):
    """PP-OCRv4's SVTR neck as paddle2onnx writes it (LayerNorm as ReduceMean / Sub / Pow / ... / Div /
    Mul / Add; the stream begins at Swish(BN(Conv)) flattened and transposed, and ends in a Conv) and
    tf2onnx's Keras LayerNorm from GlobalAveragePool (Reciprocal, Mul): every norm becomes an RMS
    norm, the SVTR stream gets an identity MatMul as its first writer, and the rotated, unsliced
    model computes what the original does on held-out inputs."""
    from tests.robustness.test_exporter_fixtures import inputs_for

    model, data = exporter_calib(name, calib_dir)
    rot = rotated_copy(model, resolve_input_shapes(model, PruneConfig(calib=data)).per_sample(), data)
    assert rot.plan.entries == entries and len(rot.plan.norms) == 5
    ops = [n.op_type for n in rot.model.graph.node]
    assert ops.count("ReduceSumSquare") == 5 and "Sub" not in ops and "Sqrt" in ops
    assert "ReduceMean" not in ops if name == "svtr_neck" else ops.count("GlobalAveragePool") == 0
    assert rot.model.ir_version == model.ir_version and rot.model.opset_import == model.opset_import
    onnx.checker.check_model(rot.model, full_check=True)
    if name == "svtr_neck":
        conv = next(n for n in rot.model.graph.node if n.name == "conv2d_1")
        assert len(conv.input) == 3  # LayerNorm's shift folded into a new bias of the 2x2 reader conv
    for batch, seed in ((2, 5), (3, 6)):
        f = inputs_for(model, batch, 11, seed)
        for a, b in zip(run(model, f), run(rot.model, f)):
            np.testing.assert_allclose(b, a, atol=1e-4, rtol=1e-3)


def test_post_norm_gap_layernorm_is_refused(calib_dir):
    model, data = exporter_calib("keras_gap_layernorm", calib_dir)
    with pytest.raises(NotRotatable, match="post-norm"):
        rotated_copy(model, resolve_input_shapes(model, PruneConfig(calib=data)).per_sample(), data)


@pytest.mark.parametrize("name", ["svtr_neck", "keras_gap_layernorm_prenorm"])
def test_lossy_oracle_on_rotated_written_out_norms(name, calib_dir):
    from tests.robustness.test_exporter_fixtures import inputs_for

    model, data = exporter_calib(name, calib_dir)
    shapes = resolve_input_shapes(model, PruneConfig(calib=data))
    rot = rotated_copy(model, shapes.per_sample(), data)
    for seed in (0, 1):
        info = check_oracle(rot.model, seed=seed, shapes=shapes, inputs=inputs_for(model, 3, 16, seed), lossy=True)
        assert info["removed"] >= 1


@pytest.mark.parametrize("name", ["svtr_neck", "keras_gap_layernorm_prenorm"])
def test_written_out_norms_calib_ratio_rotated_beats_magnitude(name, calib_dir):
    from tests.robustness.test_exporter_fixtures import inputs_for

    model, data = exporter_calib(name, calib_dir, batch=48)
    held_out = inputs_for(model, 16, 16, 9)
    reference = run(model, held_out)[0]
    figures = {}
    for rotate in (True, False):
        result = onnxprune.prune(copy(model), ratio=0.25, calib=data, repair="none", rotate=rotate, round_to=1,
                                 criterion="l1")
        assert any("rotated to its principal axes" in n for n in result.report.notes) == rotate
        g = next(x for x in result.report.groups if x.lossy_only)
        assert g.kept == g.size - g.size // 4
        figures[rotate] = cosine(reference, run(result.model, held_out)[0])
    assert figures[True] > figures[False], figures


def test_cli_rotate_switch(calib_dir, tmp_path):
    """--rotate/--no-rotate (Target options): rotate by default with --calib, not with --no-rotate;
    --rotate without --calib is one error line, exit 1, nothing written."""
    from tests.helpers.cli import assert_one_line_error, invoke

    src = EXPORTERS / "svtr_neck.onnx"
    _, data = exporter_calib("svtr_neck", calib_dir, batch=16)
    help_text = invoke("prune", "--help").stdout
    assert help_text.index("Target options:") < help_text.index("--rotate / --no-rotate") < help_text.index("Data options:")
    for flags, rotated in (((), True), (("--rotate",), True), (("--no-rotate",), False)):
        out = tmp_path / f"out{len(flags)}{rotated}.onnx"
        r = invoke("prune", src, out, "--ratio", "0.25", "--calib", data, "--repair", "none", *flags)
        assert r.exit_code == 0, r.output
        assert ("rotated to its principal axes" in r.output) == rotated
        ops = [n.op_type for n in onnx.load(str(out)).graph.node]
        assert ("ReduceSumSquare" in ops) == rotated
    out = tmp_path / "none.onnx"
    assert_one_line_error(invoke("prune", src, out, "--ratio", "0.25", "--rotate"), "--rotate", "--calib")
    assert not out.exists()


def test_the_race_rotates_once(calib_dir, monkeypatch):
    """The race's candidates rotate the same model on the same data: the rotation (its calibration
    pass and identity check) is made once and shared through the strategy's memo."""
    import onnxprune.passes.rotate as rotate_module

    calls = []
    real = rotate_module.rotated_copy

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(rotate_module, "rotated_copy", counting)
    model = randomized(GPT2)
    result = onnxprune.prune(copy(model), target_flops=0.7, calib=calib(model, calib_dir, batch=32), validate=False)
    assert len(result.report.race["candidates"]) >= 2
    assert any("rotated to its principal axes" in n for n in result.report.notes)
    assert len(calls) == 1


def test_a_rotation_that_fails_unexpectedly_leaves_the_model_as_given(calib_dir, monkeypatch):
    """The rotation is an option on top of the proven path: a form its planner misreads (here any
    internal error) gives a note and the unrotated run, not a crash; a user's error still stops it."""
    import onnxprune.passes.rotate as rotate_module
    from onnxprune.errors import DataError

    def broken(*a, **k):
        raise IndexError("index 7 is out of bounds")

    monkeypatch.setattr(rotate_module, "rotated_copy", broken)
    model = randomized(GPT2)
    data = calib(model, calib_dir, batch=32)
    result = onnxprune.prune(copy(model), ratio=0.25, calib=data, repair="none", round_to=1)
    assert any("residual stream not rotated (a form the rotation does not handle: IndexError" in n
               for n in result.report.notes)
    assert any(n.op_type == "LayerNormalization" for n in result.model.graph.node)

    def bad_data(*a, **k):
        raise DataError("calibration data: input 'x' has 3 dims, the model wants 2")

    monkeypatch.setattr(rotate_module, "rotated_copy", bad_data)
    with pytest.raises(DataError):
        onnxprune.prune(copy(model), ratio=0.25, calib=data, repair="none", round_to=1)
