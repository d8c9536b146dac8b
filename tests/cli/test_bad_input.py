"""Bad input: one clear line on stderr, exit code 1, no traceback, nothing written or changed."""

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from tests.helpers.cli import invoke, assert_one_line_error

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "models" / "digits_cnn.onnx"


def digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def folder_listing(d: Path):
    return sorted(p.name for p in d.iterdir())


@pytest.fixture
def work(tmp_path):
    shutil.copy(DIGITS, tmp_path / "in.onnx")
    return tmp_path


def test_missing_file(work):
    r = invoke(work / "nope.onnx", work / "out.onnx")
    assert_one_line_error(r, "no such file")
    assert not (work / "out.onnx").exists()


def test_non_onnx_bytes(work):
    (work / "bad.onnx").write_bytes(b"this is not a model\x00\xff" * 50)
    r = invoke(work / "bad.onnx", work / "out.onnx")
    assert_one_line_error(r, "bad.onnx")
    assert folder_listing(work) == ["bad.onnx", "in.onnx"]


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_truncated_file(work, keep):
    data = DIGITS.read_bytes()
    (work / "cut.onnx").write_bytes(data[: int(len(data) * keep)])
    r = invoke(work / "cut.onnx", work / "out.onnx")
    assert_one_line_error(r, "cut.onnx")
    assert not (work / "out.onnx").exists()


def test_empty_file(work):
    (work / "empty.onnx").write_bytes(b"")
    assert_one_line_error(invoke(work / "empty.onnx", work / "out.onnx"), "empty")


def test_missing_external_data(work):
    model = onnx.load(DIGITS)
    onnx.save_model(model, str(work / "ext.onnx"), save_as_external_data=True, location="ext.data",
                    size_threshold=1024)
    (work / "ext.data").unlink()
    r = invoke(work / "ext.onnx", work / "out.onnx")
    assert_one_line_error(r, "external data", "ext.data")
    assert not (work / "out.onnx").exists()


def test_truncated_external_data(work):
    model = onnx.load(DIGITS)
    onnx.save_model(model, str(work / "ext.onnx"), save_as_external_data=True, location="ext.data",
                    size_threshold=1024)
    data = (work / "ext.data").read_bytes()
    (work / "ext.data").write_bytes(data[: len(data) // 2])
    assert_one_line_error(invoke(work / "ext.onnx", work / "out.onnx"), "ext.data")


def test_output_in_missing_folder(work):
    r = invoke(work / "in.onnx", work / "no" / "such" / "out.onnx")
    assert_one_line_error(r, "does not exist")
    assert not (work / "no").exists()


def test_output_equal_to_input(work):
    before = digest(work / "in.onnx")
    r = invoke(work / "in.onnx", work / "in.onnx")
    assert_one_line_error(r, "input")
    assert digest(work / "in.onnx") == before
    assert folder_listing(work) == ["in.onnx"]


def test_output_equal_to_input_through_another_path(work):
    before = digest(work / "in.onnx")
    r = invoke(work / "in.onnx", work / "." / ".." / work.name / "in.onnx")
    assert_one_line_error(r, "input")
    assert digest(work / "in.onnx") == before


def test_model_failing_the_checker(work):
    model = onnx.load(DIGITS)
    model.graph.node[0].input[0] = "does_not_exist"
    (work / "broken.onnx").write_bytes(model.SerializeToString())
    assert_one_line_error(invoke(work / "broken.onnx", work / "out.onnx"), "checker")
    assert not (work / "out.onnx").exists()


def test_bad_ratio(work):
    r = invoke(work / "in.onnx", work / "out.onnx", "--ratio", "1.5")
    assert_one_line_error(r, "--ratio")
    assert not (work / "out.onnx").exists()


def test_no_traceback_from_the_real_entry_point(work):
    p = subprocess.run([sys.executable, "-m", "onnxprune", str(work / "missing.onnx"), str(work / "o.onnx")],
                       capture_output=True, text=True)
    assert p.returncode == 1
    assert "Traceback" not in p.stderr
    assert p.stderr.strip().count("\n") == 0


def test_good_run_writes_and_validates(work):
    r = invoke(work / "in.onnx", work / "out.onnx", "--report", work / "r.json")
    assert r.exit_code == 0, r.output
    assert "PASSED" in r.stdout
    assert (work / "out.onnx").exists() and (work / "r.json").exists()
    assert folder_listing(work) == ["in.onnx", "out.onnx", "r.json"]
