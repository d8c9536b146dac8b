"""One JSON option and shape for every subcommand (docs/JSON.md): `--json FILE` or `-` for stdout,
an envelope with schema_version, command and versions; verdicts that say NOT CHECKED without a bound."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.cli import invoke

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "models" / "digits_cnn.onnx"
CALIB = REPO / "models" / "digits_calib.npz"


def envelope(data, command):
    assert data["schema_version"] == 1 and data["command"] == command
    assert set(data["versions"]) >= {"onnxprune", "onnx", "onnxruntime", "numpy", "python"}
    return data


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    out = tmp_path_factory.mktemp("pruned") / "half.onnx"
    assert invoke(DIGITS, out, "--ratio", "0.5", "-q").exit_code == 0
    return out


def commands(tmp, pruned):
    return {
        "prune": [DIGITS, tmp / "out.onnx"],
        "check": ["check", DIGITS, DIGITS, "--batches", "1"],
        "bench": ["bench", DIGITS, "--runs", "1", "--warmup", "0", "--batch", "1"],
        "sensitivity": ["sensitivity", DIGITS, "--calib", CALIB, "--ratios", "0.5", "--max-samples", "16"],
        "analyze": ["analyze", DIGITS],
    }


@pytest.mark.parametrize("command", ["prune", "check", "bench", "sensitivity", "analyze"])
def test_json_file_and_stdout_have_one_envelope(command, tmp_path, pruned):
    args = commands(tmp_path, pruned)[command]
    result = invoke(*args, "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    to_file = envelope(json.loads((tmp_path / "r.json").read_text()), command)
    assert result.stdout.strip()  # the table still goes to stdout
    for p in tmp_path.glob("out.onnx"):
        p.unlink()
    result = invoke(*args, "--json", "-")
    assert result.exit_code == 0, result.output
    to_stdout = envelope(json.loads(result.stdout), command)  # nothing but the JSON on stdout
    assert result.stderr.strip()  # the table moved to stderr
    assert set(to_stdout) == set(to_file)


def test_prune_keeps_report_as_an_alias(tmp_path):
    result = invoke(DIGITS, tmp_path / "out.onnx", "--report", tmp_path / "r.json", "-q")
    assert result.exit_code == 0, result.output
    data = envelope(json.loads((tmp_path / "r.json").read_text()), "prune")
    assert data["mode"] == "exact" and data["validation"]["verdict"] == "PASSED" and data["validation"]["passed"] is True


def test_a_lossy_prune_without_a_bound_says_not_checked_in_json_and_on_the_console(tmp_path):
    result = invoke(DIGITS, tmp_path / "out.onnx", "--ratio", "0.5", "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    validation = json.loads((tmp_path / "r.json").read_text())["validation"]
    assert validation["passed"] is None and validation["verdict"] == "NOT CHECKED" and validation["failures"] == []
    assert all(v is None for v in validation["thresholds"].values())
    last = result.stdout.strip().splitlines()
    assert last[-1].startswith("NOT CHECKED") and "PASSED" not in result.stdout
    assert "--min-agreement" in last[-2]


def test_a_lossy_prune_with_a_bound_gets_a_verdict(tmp_path):
    result = invoke(DIGITS, tmp_path / "out.onnx", "--ratio", "0.5", "--atol", "100", "--json", "-")
    assert result.exit_code == 0, result.output
    validation = json.loads(result.stdout)["validation"]
    assert validation["passed"] is True and validation["verdict"] == "PASSED"
    assert validation["thresholds"]["atol"] == 100


def test_check_json_failed_and_analyze_groups(tmp_path, pruned):
    result = invoke("check", DIGITS, pruned, "--calib", CALIB, "--json", "-")
    assert result.exit_code == 3
    data = envelope(json.loads(result.stdout), "check")
    assert data["passed"] is False and data["verdict"] == "FAILED" and data["pruned"] == str(pruned)
    result = invoke("check", DIGITS, pruned, "--calib", CALIB, "--min-agreement", "0.05", "--json", "-")
    assert result.exit_code == 0 and json.loads(result.stdout)["verdict"] == "PASSED"
    groups = json.loads(invoke("analyze", DIGITS, "--json", "-").stdout)["groups"]
    assert groups and {"id", "channels", "prunable", "reasons", "sources", "members"} <= set(groups[0])


def test_json_never_overwrites_an_input_nor_lands_in_a_missing_folder(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(DIGITS.read_bytes())
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    for args in (["analyze", model], ["check", model, model], [model, tmp_path / "o.onnx"]):
        result = invoke(*args, "--json", model)
        assert result.exit_code == 1 and "is an input" in result.stderr, result.output
    assert hashlib.sha256(model.read_bytes()).hexdigest() == digest
    result = invoke("analyze", model, "--json", tmp_path / "no" / "r.json")
    assert result.exit_code == 1 and "does not exist" in result.stderr
    result = invoke("analyze", model, "--json", tmp_path)
    assert result.exit_code == 1 and "is a folder" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_non_finite_figures_are_null_in_strict_json(tmp_path):
    from onnxprune.cli.output import write_json

    write_json(tmp_path / "r.json", "check", {"x": float("inf"), "y": [float("nan"), 1.0]})
    text = (tmp_path / "r.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text)["y"] == [None, 1.0]
    assert not list(tmp_path.glob(".*"))  # no temp file left beside it
    np.testing.assert_equal(json.loads(text)["x"], None)
