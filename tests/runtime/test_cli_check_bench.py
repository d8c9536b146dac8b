"""`onnxprune check` and `onnxprune bench` through click: exit codes, one-line errors, JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from runtime_models import classifier, save

from tests.helpers.cli import assert_one_line_error, invoke


@pytest.fixture
def models(tmp_path):
    return (save(classifier(), tmp_path / "orig.onnx"), save(classifier(perturb=0.5), tmp_path / "pruned.onnx"),
            save(classifier(), tmp_path / "same.onnx"))


def test_check_passes_with_exit_0(models):
    orig, _, same = models
    result = invoke("check", orig, same)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "PASSED"
    assert "max abs err" in result.stdout


def test_check_fails_with_exit_3_names_the_output_and_hints_at_lossy_bounds(models, tmp_path):
    orig, pruned, _ = models
    out = tmp_path / "r.json"
    result = invoke("check", orig, pruned, "--json", out)
    assert result.exit_code == 3
    assert "Traceback" not in result.output
    lines = result.stdout.splitlines()
    assert lines[-1].startswith("FAILED: output 'logits': max abs error")
    assert lines[-2].startswith("hint: ") and "--min-agreement" in lines[-2] and "--min-cosine" in lines[-2]
    data = json.loads(out.read_text())
    assert data["schema_version"] == 1 and data["command"] == "check"
    assert data["passed"] is False and data["verdict"] == "FAILED" and data["outputs"][0]["name"] == "logits"
    assert data["failures"][0].startswith("output 'logits': max abs error") and data["hints"] == [lines[-2][6:]]


def test_check_with_an_explicit_bound_gives_no_hint(models):
    orig, pruned, _ = models
    result = invoke("check", orig, pruned, "--atol", "1e-6")
    assert result.exit_code == 3 and "hint:" not in result.stdout


def test_check_thresholds_from_the_command_line(models):
    orig, pruned, _ = models
    assert invoke("check", orig, pruned, "--min-cosine", "0.99").exit_code == 0
    assert invoke("check", orig, pruned, "--atol", "5").exit_code == 0


def test_check_with_calib_data_and_shape_options(models, tmp_path, images):
    orig, _, same = models
    np.savez(tmp_path / "calib.npz", input=images, labels=np.arange(10))
    result = invoke("check", orig, same, "--calib", tmp_path / "calib.npz", "--batch", "4")
    assert result.exit_code == 0, result.output
    assert "10 samples (3 batches of 4)" in result.stdout and "warning" not in result.stdout
    result = invoke("check", orig, same, "--shape", "input:2x3x8x8", "--batches", "1")
    assert result.exit_code == 0 and "2 samples (1 batches of 2)" in result.stdout


def test_check_bad_inputs_are_one_line_errors(models, tmp_path, images):
    orig, _, same = models
    assert_one_line_error(invoke("check", orig, tmp_path / "missing.onnx"), "missing.onnx: no such file")
    assert_one_line_error(invoke("check", orig, same, "--calib", tmp_path / "nope.npz"), "nope.npz: no such file")
    np.savez(tmp_path / "wrong.npz", image=images)
    assert_one_line_error(invoke("check", orig, same, "--calib", tmp_path / "wrong.npz"), "the model expects [input]")
    images[0, 0, 0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", input=images)
    assert_one_line_error(invoke("check", orig, same, "--calib", tmp_path / "nan.npz"), "contains 1 NaN")
    assert_one_line_error(invoke("check", orig, same, "--shape", "input"), "expected NAME:DIMS")
    assert_one_line_error(invoke("check", orig, same, "--json", tmp_path / "no" / "r.json"), "does not exist")
    other = save(classifier(input_name="x"), tmp_path / "x.onnx")
    assert_one_line_error(invoke("check", orig, other), "different inputs")


def test_bench_prints_a_table_and_writes_json(models, tmp_path):
    orig, pruned, _ = models
    out = tmp_path / "bench.json"
    result = invoke("bench", orig, pruned, "--batch", "1,2", "--runs", "2", "--warmup", "1", "--threads", "1",
                  "--json", out)
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines() if line.split()[:1] in (["1"], ["2"])]
    assert [(r[0], r[1]) for r in rows] == [("1", "orig.onnx"), ("1", "pruned.onnx"),
                                            ("2", "orig.onnx"), ("2", "pruned.onnx")]
    assert "benchmarking" not in result.stdout + result.stderr  # no bar: stderr is not a terminal here
    data = json.loads(out.read_text())
    assert data["batch_sizes"] == [1, 2] and data["runs"] == 2 and data["threads"] == 1
    assert [s["model"] for s in data["stats"]] == ["orig.onnx", "pruned.onnx"] * 2


def test_bench_bad_inputs_are_one_line_errors(models, tmp_path):
    orig = models[0]
    assert_one_line_error(invoke("bench", orig, "--batch", "1,x"), "--batch '1,x'")
    assert_one_line_error(invoke("bench", tmp_path / "gone.onnx"), "gone.onnx: no such file")
    assert_one_line_error(invoke("bench", orig, "--runs", "0"), "runs must be >= 1")
