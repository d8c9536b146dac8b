"""Progress: the library reports steps to a callback and never prints; the CLI draws bars on stderr
only when it is a terminal and -q is not given."""

from pathlib import Path

import onnx
import pytest

import onnxprune.cli.output as output
from onnxprune import prune
from onnxprune.strategies.guard import STEPS
from tests.helpers.cli import invoke

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "models" / "digits_cnn.onnx"
CALIB = REPO / "models" / "digits_calib.npz"


def test_prune_reports_each_pass_data_pass_and_repaired_layer(capsys):
    seen = []
    prune(onnx.load(DIGITS), ratio=0.5, calib=str(CALIB), repair="bias",
          progress=lambda step, done, total: seen.append((step, done, total)))
    steps = [s for s, _, _ in seen]
    assert {"analyze", "select", "repair-consumers", "prune-channels", "cleanup"} <= set(steps)
    data = [(d, t) for s, d, t in seen if s == "calibration data"]
    assert data and all(t == 512 and 0 < d <= t for d, t in data)
    layers = [(d, t) for s, d, t in seen if s == "repair: refitting layers"]
    assert layers[0][0] == 0 and layers[-1][0] == layers[-1][1] > 0
    assert capsys.readouterr() == ("", "")  # the library never prints


def test_the_guard_reports_trials_not_the_steps_inside_them():
    seen = []
    # Activation scores, no repair: each trial still runs passes and a calibration pass, all of which
    # report progress when not silenced, at a fraction of the defaults' cost (recon and lsq fits).
    prune(onnx.load(DIGITS), calib=str(CALIB), min_cosine=0.5, criterion="activation", repair="none",
          progress=lambda step, done, total: seen.append((step, done, total)))
    trials = [(d, t) for s, d, t in seen if s == "fidelity guard: trials"]
    assert [d for d, _ in trials] == list(range(1, len(trials) + 1)) and len(trials) >= 2
    assert {t for _, t in trials} == {STEPS + 1}
    assert {s for s, _, _ in seen} == {"fidelity guard: trials"}  # each trial's passes are silent


@pytest.mark.parametrize("args", [
    lambda tmp: [DIGITS, tmp / "o.onnx", "--fold-bn"],
    lambda tmp: ["bench", DIGITS, "--runs", "2", "--warmup", "0", "--batch", "1"],
])
def test_no_bars_when_stderr_is_not_a_terminal_or_with_q(args, tmp_path, monkeypatch):
    result = invoke(*args(tmp_path))
    assert result.exit_code == 0 and result.stderr == "", result.stderr
    monkeypatch.setattr(output, "_stderr_is_tty", lambda: True)
    for p in tmp_path.glob("o.onnx"):
        p.unlink()
    result = invoke(*args(tmp_path), "-q")
    assert result.exit_code == 0 and result.stderr == "", result.stderr


def test_bars_on_a_terminal_name_each_step(tmp_path, monkeypatch):
    monkeypatch.setattr(output, "_stderr_is_tty", lambda: True)
    result = invoke(DIGITS, tmp_path / "o.onnx", "--fold-bn")
    assert result.exit_code == 0, result.output
    for step in ("loading", "fold-bn", "analyze", "writing", "validating"):
        assert step in result.stderr, result.stderr
    assert "loading" not in result.stdout  # the summary stays clean
    result = invoke("bench", DIGITS, "--runs", "2", "--warmup", "0", "--batch", "1")
    assert "benchmarking" in result.stderr and "benchmarking" not in result.stdout
