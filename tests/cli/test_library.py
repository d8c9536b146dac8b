"""The library as the README shows it: prune, save, validate; its errors name its own parameters,
and the CLI shows the same errors with its flags."""

from pathlib import Path

import onnx
import pytest

import onnxprune
from onnxprune import PruneConfig
from onnxprune.errors import ConfigError
from tests.helpers.cli import invoke

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "models" / "digits_cnn.onnx"
CALIB = REPO / "models" / "digits_calib.npz"

BAD = [
    ({"ratio": 1.5}, "ratio must be in [0, 1)", "--ratio must be in [0, 1)"),
    ({"target_flops": 0}, "target_flops must be in (0, 1]", "--target-flops must be in (0, 1]"),
    ({"ratio": 0.3, "target_params": 0.5}, "give only one of ratio, target_flops, target_params",
     "give only one of --ratio, --target-flops, --target-params"),
    ({"max_group_ratio": 1}, "max_group_ratio must be in (0, 1)", "--max-group-ratio must be in (0, 1)"),
    ({"max_error": -1}, "max_error must be positive", "--max-error must be positive"),
    ({"min_cosine": 2}, "min_cosine must be in [-1, 1]", "--min-cosine must be in [-1, 1]"),
    ({"round_to": 0}, "round_to must be a positive integer", "--round-to must be a positive integer"),
    ({"repair": "lsq"}, "repair needs calibration data: give calib", "--repair needs calibration data: give --calib"),
    ({"criterion": "activation"}, "needs calibration data: give calib", "needs calibration data: give --calib"),
    ({"min_agreement": 0.9}, "(max_error, min_cosine, min_agreement) needs calib data",
     "(--max-error, --min-cosine, --min-agreement) needs --calib data"),
]


@pytest.mark.parametrize("kwargs, library, cli", BAD)
def test_library_errors_name_parameters_and_the_cli_names_flags(kwargs, library, cli, tmp_path):
    with pytest.raises(ConfigError) as err:
        PruneConfig(**kwargs)
    assert library in str(err.value) and "--" not in str(err.value)
    args = []
    for k, v in kwargs.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    result = invoke(str(DIGITS), str(tmp_path / "o.onnx"), *args)
    assert result.exit_code == 1 and cli in result.stderr, result.stderr


def test_prune_save_and_validate_as_the_readme_shows(tmp_path):
    result = onnxprune.prune(str(DIGITS), ratio=0.3)
    out = result.save(tmp_path / "pruned.onnx")
    assert out == tmp_path / "pruned.onnx" and onnx.load(out).graph.node
    with pytest.raises(onnxprune.OnnxPruneError, match="is the input model"):
        result.save(DIGITS)  # never over the input
    check = onnxprune.validate(str(DIGITS), str(out), data=str(CALIB), min_agreement=0.05)
    assert check.passed is True and check.samples == 256 and "PASSED" in str(check)
    strict = onnxprune.validate(str(DIGITS), str(out))  # default atol: a lossy model fails it
    assert strict.passed is False and not strict and "--min-agreement" in strict.hints[0]
