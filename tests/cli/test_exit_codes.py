"""Exit codes are a public interface (README, docs/JSON.md): 0 done, 1 error (one line on stderr,
click's usage errors included), 3 FAILED (the model does not meet its bound), 130 interrupted."""

import hashlib
from pathlib import Path

import onnx
import pytest

from onnxprune.errors import EXIT_ERROR, EXIT_FAILED, EXIT_OK, ValidationFailedError
from tests.helpers.cli import assert_one_line_error, invoke

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "models" / "digits_cnn.onnx"


def test_codes_are_distinct_and_2_is_unused():
    assert (EXIT_OK, EXIT_ERROR, EXIT_FAILED) == (0, 1, 3)
    assert ValidationFailedError.exit_code == EXIT_FAILED


@pytest.mark.parametrize("args, needle", [
    (["--bogus", "a.onnx", "b.onnx"], "No such option '--bogus' (see 'onnxprune prune --help')"),
    (["prune"], "Missing argument 'IN.onnx'"),
    (["check", "a.onnx"], "Missing argument 'PRUNED'"),
    (["analyze", "a.onnx", "--json"], "Option '--json' requires an argument"),
    ([DIGITS, "out.onnx", "--ratio", "abc"], "'abc' is not a valid float"),
    ([DIGITS, "out.onnx", "--device", "tpu"], "'tpu' is not one of"),
    (["bench", DIGITS, "--runs", "x"], "'x' is not a valid integer"),
])
def test_usage_errors_are_one_line_and_exit_1(args, needle):
    assert_one_line_error(invoke(*args), needle)


def test_a_folder_as_input_or_output_is_one_line_and_exit_1(tmp_path):
    assert_one_line_error(invoke(tmp_path, tmp_path / "out.onnx"), "is a directory")
    (tmp_path / "taken").mkdir()
    assert_one_line_error(invoke(DIGITS, tmp_path / "taken"), "is a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_a_newline_in_a_file_name_stays_on_one_line(tmp_path):
    err = assert_one_line_error(invoke(tmp_path / "a\nb.onnx", tmp_path / "out.onnx"), "no such file")
    assert "a\\nb.onnx" in err


def test_no_arguments_prints_the_help_and_exits_1():
    result = invoke()
    assert result.exit_code == EXIT_ERROR and "Usage: onnxprune" in result.stderr and result.stdout == ""


def test_help_and_version_exit_0():
    assert invoke("--help").exit_code == EXIT_OK
    assert invoke("check", "--help").exit_code == EXIT_OK
    assert invoke("--version").exit_code == EXIT_OK


def test_bad_option_value_exits_1(tmp_path):
    assert_one_line_error(invoke(DIGITS, tmp_path / "out.onnx", "--ratio", "1.5"), "ratio must be in [0, 1)")


def test_prune_whose_validation_fails_exits_3_and_writes_nothing(tmp_path):
    before = hashlib.sha256(DIGITS.read_bytes()).hexdigest()
    result = invoke(DIGITS, tmp_path / "out.onnx", "--ratio", "0.5", "--atol", "1e-9")
    assert result.exit_code == EXIT_FAILED, result.output
    assert result.stderr.count("\n") == 1 and "does not match the original" in result.stderr
    assert list(tmp_path.iterdir()) == []
    assert hashlib.sha256(DIGITS.read_bytes()).hexdigest() == before


def test_prune_that_passes_exits_0(tmp_path):
    assert invoke(DIGITS, tmp_path / "out.onnx", "-q").exit_code == EXIT_OK


def test_a_model_without_channel_groups_says_so_on_a_lossy_run(tmp_path):
    """A model with no layer whose channels can be followed (skl2onnx's LogisticRegression is one
    LinearClassifier op): the warning says there are no groups, not 'all 0 channel groups are blocked'."""
    from onnx import TensorProto, helper
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    src = tmp_path / "m.onnx"
    onnx.save(model, src)
    r = invoke(str(src), str(tmp_path / "o.onnx"), "--ratio", "0.5")
    assert r.exit_code == 0, r.output
    assert "the model has no channel groups" in r.output and "all 0 channel groups" not in r.output
