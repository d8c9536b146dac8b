"""Pass pipeline: small passes run in order over one shared state (onnxscript-rewriter style)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..progress import report


@dataclass
class PassResult:
    modified: bool
    details: dict = field(default_factory=dict)


class Pass:
    """A step of the pipeline. `run` edits `state` and says whether the model changed."""

    name = "pass"

    def run(self, state) -> PassResult:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class PassRecord:
    name: str
    result: PassResult
    seconds: float


class PassManager:
    def __init__(self, passes: list[Pass]):
        self.passes = passes

    def run(self, state) -> list[PassRecord]:
        records = []
        for p in self.passes:
            report(p.name)
            t0 = time.perf_counter()
            result = p.run(state)
            records.append(PassRecord(p.name, result, time.perf_counter() - t0))
        return records
