"""Outputs that cannot be written, and signals during the write: one clean error line and exit 1,
or death by the signal, and in every case nothing left behind (issue 12, classes 5 and 6)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.cli import assert_one_line_error, invoke

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "models" / "digits_cnn.onnx"


@pytest.fixture
def work(tmp_path):
    shutil.copy(DIGITS, tmp_path / "in.onnx")
    return tmp_path


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc")
def test_output_in_a_special_folder(work):
    assert_one_line_error(invoke(work / "in.onnx", "/proc/out.onnx"), "/proc/out.onnx")


def test_output_under_a_file(work):
    assert_one_line_error(invoke(work / "in.onnx", work / "in.onnx" / "out.onnx"), "not a folder")
    assert sorted(p.name for p in work.iterdir()) == ["in.onnx"]


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc")
def test_unwritable_report_leaves_no_output(work):
    r = invoke(work / "in.onnx", work / "out.onnx", "--report", "/proc/report.json")
    assert_one_line_error(r, "/proc/report.json")
    assert sorted(p.name for p in work.iterdir()) == ["in.onnx"]


def test_report_under_a_file_leaves_no_output(work):
    r = invoke(work / "in.onnx", work / "out.onnx", "--report", work / "in.onnx" / "r.json")
    assert_one_line_error(r, "r.json")
    assert sorted(p.name for p in work.iterdir()) == ["in.onnx"]


def test_report_is_written_with_the_output(work):
    r = invoke(work / "in.onnx", work / "out.onnx", "--report", work / "r.json", "-q")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in work.iterdir()) == ["in.onnx", "out.onnx", "r.json"]


def test_newline_in_a_file_name_is_one_line(work):
    assert_one_line_error(invoke(work / "in\nx.onnx", work / "out.onnx"), "in\\nx.onnx")
    shutil.copy(work / "in.onnx", work / "in\nx.onnx")
    assert_one_line_error(invoke(work / "in\nx.onnx", work / "no\ndir" / "out.onnx"), "no\\ndir")


_HOLD = """
import sys, time, onnx
from onnxprune.io import save_model
from tests.helpers.cli import invoke, assert_one_line_error
def hold(tmp):
    open(sys.argv[3], "w").write(str(tmp))
    time.sleep(120)
save_model(onnx.load(sys.argv[1]), sys.argv[2], before_commit=hold)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_the_write_leaves_nothing(work, sig):
    """The temp folder beside the output is removed; SIGTERM still ends the process as SIGTERM."""
    marker = work / "writing"
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(work / "in.onnx"), str(work / "out.onnx"), str(marker)],
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a terminal's Ctrl-C
    try:
        for _ in range(600):
            if marker.exists() and marker.read_text():
                break
            assert proc.poll() is None, "the writer exited early"
            time.sleep(0.05)
        tmp = Path(marker.read_text())
        assert tmp.exists() and tmp.parent.parent == work
        proc.send_signal(sig)
        rc = proc.wait(timeout=60)
    finally:
        proc.kill() if proc.poll() is None else None
    if sig == signal.SIGTERM:
        assert rc == -signal.SIGTERM
    assert rc != 0
    assert sorted(p.name for p in work.iterdir()) == ["in.onnx", "writing"]
