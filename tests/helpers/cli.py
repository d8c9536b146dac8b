"""Running the CLI in-process, and what every bad input must give: one line on stderr, exit 1."""

from __future__ import annotations

from click.testing import CliRunner

from onnxprune.cli import main


def invoke(*args):
    """`onnxprune ARGS...` in-process (click's runner); arguments may be paths."""
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, *needles, code: int = 1, stderr: str | None = None, output: str | None = None):
    """One `onnxprune: error:` line on stderr naming `needles`, no traceback, no internal error, and
    exit code `code`; returns the line. `result` is a click result, or an exit code with `stderr` and `output` given
    (a subprocess)."""
    if isinstance(result, int):
        exit_code, err, out = result, stderr, output
    else:
        exit_code, err, out = result.exit_code, result.stderr, result.output
    assert exit_code == code, out
    err = err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("onnxprune: error:"), err
    assert "Traceback" not in out and "Traceback" not in err and "Usage:" not in out
    assert "internal error" not in err, err  # a Python exception of ours, not a message about the input
    for n in needles:
        assert n in err, err
    return err
