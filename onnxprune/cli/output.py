"""What every subcommand shares for its output: `--json FILE` (`-` for stdout) and its envelope.

One option name and one shape for prune, check, bench, sensitivity and analyze, described in
docs/JSON.md: {"schema_version", "command", "versions", ...the command's own fields}.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from pathlib import Path

import click

from ..errors import ModelSaveError

SCHEMA_VERSION = 1
STDOUT = "-"


def json_target(path: str | os.PathLike | None, inputs=()) -> str | Path | None:
    """Check the JSON destination before the (possibly long) run, so a typo fails at once and an
    input is never overwritten."""
    if path is None or str(path) == STDOUT:
        return None if path is None else STDOUT
    out = Path(path)
    if out.is_dir():
        raise ModelSaveError(f"{out}: is a folder; give a file name for the JSON")
    if not out.parent.is_dir():
        raise ModelSaveError(f"{out}: the folder '{out.parent}' does not exist")
    for source in inputs:
        if Path(source).exists() and out.exists() and out.resolve() == Path(source).resolve():
            raise ModelSaveError(f"{out}: is an input; the JSON would overwrite it")
    if not os.access(out.parent, os.W_OK):
        raise ModelSaveError(f"{out}: the folder '{out.parent}' is not writable")
    return out


def human_echo(json_to: str | Path | None):
    """Where the human-readable report goes: stdout, or stderr when stdout carries the JSON."""
    err = json_to == STDOUT
    return lambda text="": click.echo(text, err=err)


def envelope(command: str, body: dict) -> dict:
    from ..report import versions

    return {"schema_version": SCHEMA_VERSION, "command": command, **body, "versions": versions()}


def write_json(target: str | Path | None, command: str, body: dict) -> None:
    """The envelope around `body`, to stdout or atomically to a file (a temp file renamed into place)."""
    if target is None:
        return
    text = json.dumps(_finite(envelope(command, body)), indent=2, default=str, allow_nan=False) + "\n"
    if target == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    target = Path(target)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except OSError as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise ModelSaveError(f"{target}: cannot write the JSON ({exc.strerror or exc})") from None


def _finite(value):
    """NaN and Inf become null: strict JSON has neither."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _stderr_is_tty() -> bool:
    return sys.stderr.isatty()


class StderrProgress:
    """Progress bars on stderr while a person watches it (a terminal, no -q), one per step; nothing
    otherwise, so logs and pipes get only results. Call it as the library's progress(step, done, total)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and _stderr_is_tty()
        self._bar = None
        self._step = None

    def __call__(self, step: str, done: int = 0, total: int | None = None) -> None:
        if not self.enabled:
            return
        if step != self._step:
            self.close()
            self._step = step
            self._bar = click.progressbar(length=max(total or 1, 1), label=f"{step:<26}", file=sys.stderr,
                                          show_eta=total is not None, show_percent=total is not None,
                                          show_pos=total is not None)
            self._bar.__enter__()
            self._known = total is not None
        if total is not None:
            if total != self._bar.length:
                self._bar.length = max(total, 1)
            self._bar.update(max(0, min(done, total) - self._bar.pos))

    def close(self) -> None:
        """Finish the current bar (a step without a known length shows as done)."""
        if self._bar is not None:
            if not self._known:
                self._bar.update(self._bar.length - self._bar.pos)
            self._bar.__exit__(None, None, None)
            self._bar = None
            self._step = None

    def __enter__(self) -> StderrProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
