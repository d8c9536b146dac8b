"""Progress of long steps, reported to whoever asked: `progress(step, done, total)`.

The library never prints. `api.prune(progress=...)` (or `reporting(progress)`) installs a callback
for the current thread of work; deep code (a pass, repair per layer, a data pass, a guard trial)
calls `report(step, done, total)` without every signature in between carrying it. `total` is None
when the step's length is not known. Reporting costs nothing when nobody listens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

Progress = Callable[[str, int, "int | None"], object]

_listener: ContextVar[Progress | None] = ContextVar("onnxprune_progress", default=None)


@contextlib.contextmanager
def reporting(progress: Progress | None) -> Iterator[None]:
    """Send report() calls made inside the block to `progress` (None: keep the current listener)."""
    if progress is None:
        yield
        return
    token = _listener.set(progress)
    try:
        yield
    finally:
        _listener.reset(token)


def report(step: str, done: int = 0, total: int | None = None) -> None:
    listener = _listener.get()
    if listener is not None:
        listener(step, done, total)


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """No reports from inside the block (the steps of one guard trial: the trial count says enough)."""
    token = _listener.set(None)
    try:
        yield
    finally:
        _listener.reset(token)
