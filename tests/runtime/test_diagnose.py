"""A model that does not run on the random inputs onnxprune makes up: the error names the input at
fault and the one option that fixes it (--shape at the batch it runs, --calib for an integer
setting), checked on the model before it is said."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnxprune.runtime.diagnose import compared_values, settings
from onnxprune.runtime.sessions import create_session
from tests.helpers.cli import assert_one_line_error, invoke
from tests.helpers.models import fixed_batch_model, sample_rate_model

SETTING = ("input 'sr' (int64 scalar) was fed 1; the model compares it with 16000, 8000 and runs with 16000: "
           "an integer setting random data cannot guess")
CALIB_LINE = "pass real inputs with --calib data.npz (np.savez('data.npz', x=..., sr=np.array(16000, np.int64)))"


@pytest.fixture
def models(tmp_path):
    paths = {}
    for name, model in (("eeg", fixed_batch_model()), ("vad", sample_rate_model()),
                        ("vad_t", sample_rate_model("T"))):
        onnx.checker.check_model(model, full_check=True)
        paths[name] = tmp_path / f"{name}.onnx"
        onnx.save(model, paths[name])
    return paths


def _unchanged(path, tmp_path, before: bytes) -> None:
    assert path.read_bytes() == before
    assert not (tmp_path / "out.onnx").exists()


def test_batch_folded_into_features_names_the_batch_that_runs(models, tmp_path):
    before = models["eeg"].read_bytes()
    res = invoke("prune", models["eeg"], tmp_path / "out.onnx")
    err = assert_one_line_error(res)
    assert err == ("onnxprune: error: original: onnxruntime failed to run it on random inputs at batch 1 (x:1x8x32); "
                   "it runs at batch 4: pass --shape x:4x8x32")
    _unchanged(models["eeg"], tmp_path, before)
    err = assert_one_line_error(invoke("check", models["eeg"], models["eeg"]))
    assert err == ("onnxprune: error: original: onnxruntime failed to run it on random inputs at batch 8 (x:8x8x32); "
                   "it runs at batch 4: pass --shape x:4x8x32")
    err = assert_one_line_error(invoke("bench", models["eeg"]))
    assert err == ("onnxprune: error: eeg.onnx: onnxruntime failed to run it on random inputs at batch 1 (x:1x8x32); "
                   "it runs at batch 4: pass --batch 4")


def test_the_named_fix_works(models, tmp_path):
    assert invoke("check", models["eeg"], models["eeg"], "--shape", "x:4x8x32").exit_code == 0
    assert invoke("bench", models["eeg"], "--batch", "4", "--runs", "2", "--warmup", "0").exit_code == 0
    calib = tmp_path / "data.npz"
    np.savez(calib, x=np.random.default_rng(0).standard_normal((16, 64)).astype(np.float32),
             sr=np.array(16000, np.int64))
    res = invoke("prune", models["vad"], tmp_path / "out.onnx", "--calib", calib)
    assert res.exit_code == 0, res.output


def test_integer_setting_names_calib(models, tmp_path):
    before = models["vad"].read_bytes()
    err = assert_one_line_error(invoke("prune", models["vad"], tmp_path / "out.onnx"))
    assert err == f"onnxprune: error: original: onnxruntime failed to run it on random inputs: {SETTING}; {CALIB_LINE}"
    _unchanged(models["vad"], tmp_path, before)
    err = assert_one_line_error(invoke("check", models["vad"], models["vad"]))
    assert err == f"onnxprune: error: original: onnxruntime failed to run it on random inputs: {SETTING}; {CALIB_LINE}"
    err = assert_one_line_error(invoke("bench", models["vad"]))
    assert err == (f"onnxprune: error: vad.onnx: onnxruntime failed to run it on random inputs: {SETTING}, "
                   "and bench times random inputs only")


def test_integer_setting_when_guessed_shapes_do_not_run(models, tmp_path):
    """x [N, T]: the guesses for T are tried first, and none runs; the setting, not T, is at fault."""
    err = assert_one_line_error(invoke("prune", models["vad_t"], tmp_path / "out.onnx"))
    assert err == ("onnxprune: error: the model does not run on random inputs at the guessed shapes (x:1x128, sr:[]): "
                   f"{SETTING}; {CALIB_LINE}")
    err = assert_one_line_error(invoke("analyze", models["vad_t"]))
    assert err == ("onnxprune: error: the model does not run on random inputs at the guessed shapes (x:1x128, sr:[]): "
                   f"{SETTING}; {CALIB_LINE}")


def test_settings_and_their_values():
    model = sample_rate_model()
    session = create_session(model, "cpu")
    try:
        assert [s.name for s in settings(session.inputs)] == ["sr"]  # x is batched float: not a setting
    finally:
        session.close()
    assert compared_values(model, "sr") == [16000, 8000]  # found inside the If branches too
    assert compared_values(model, "x") == []
