"""Pass pipeline: small passes run in order over one typed state (onnx-ir / onnxscript-rewriter
style). A pass names the state fields it needs set before it runs and those it ensures are set
after; the manager checks both, so a pipeline built in the wrong order fails at once, by name."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..progress import report


@dataclass
class PassResult:
    modified: bool
    details: dict = field(default_factory=dict)


class Pass:
    """A step of the pipeline. `run` edits `state` (passes/state.PruneState) and says whether the
    model changed. `needs` / `ensures`: names of state fields that must be set (not None) before /
    after it runs."""

    name = "pass"
    needs: tuple[str, ...] = ()
    ensures: tuple[str, ...] = ()

    def run(self, state) -> PassResult:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class PassRecord:
    name: str
    result: PassResult
    seconds: float


class PassOrderError(RuntimeError):
    """A pass ran without what it needs, or left unset what it promised: a pipeline built wrongly."""


class PassManager:
    def __init__(self, passes: list[Pass]):
        self.passes = passes

    def run(self, state) -> list[PassRecord]:
        records = []
        for p in self.passes:
            missing = [f for f in p.needs if getattr(state, f) is None]
            if missing:
                raise PassOrderError(f"pass '{p.name}' needs {', '.join(missing)}, which no earlier pass set")
            report(p.name)
            t0 = time.perf_counter()
            result = p.run(state)
            records.append(PassRecord(p.name, result, time.perf_counter() - t0))
            unset = [f for f in p.ensures if getattr(state, f) is None]
            if unset:
                raise PassOrderError(f"pass '{p.name}' left {', '.join(unset)} unset")
        return records
