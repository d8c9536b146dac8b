"""--finetune after whatever strategy pruned: the pruned model distilled from the original on the
calibration data (onnxprune/finetune/), or, where it cannot be trained, kept as it is with one note
saying why.

With a fidelity guard the guard searches training-free as always and the fine-tune trains on the
guard's fit part only, so the guard's held-out samples (which the final check reads) stay unseen;
the fine-tune then raises the held-out figure above what the guard accepted. It does not prune past
the guard's pick."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import onnx

from ..config import PruneConfig
from ..progress import report
from ..report import PruneResult


def finetune_result(original: onnx.ModelProto, result: PruneResult, config: PruneConfig) -> PruneResult:
    """`result` with its model's weights trained towards `original` (the report's `finetune` says how)."""
    from ..finetune.train import FinetuneError, FinetuneSettings, finetune_model, held_out_figures

    if not result.report.channels_removed:
        result.report.finetune = {"status": "skipped", "reason": "nothing was pruned"}
        result.report.notes.append("--finetune: nothing was pruned, so nothing was trained")
        return result
    settings = FinetuneSettings(steps=config.finetune, seconds=config.finetune_time, metric=config.metric,
                                threads=config.threads)
    with contextlib.ExitStack() as stack:
        data = config.calib_data
        if config.guarded:
            from .guard import split_calibration

            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="onnxprune-finetune-"))
            data, _, _ = split_calibration(original, config.calib_data, config.holdout, Path(tmp))
        report("finetune")
        try:
            trained, info = finetune_model(original, result.model, data, settings, config.device)
        except FinetuneError as exc:
            result.report.finetune = {"status": "skipped", "reason": str(exc)}
            result.report.notes.append(f"{exc}; the pruned model is written untrained")
            return result
        report("finetune: held-out figures")
        info["held_out"] = held_out_figures(original, result.model, trained, data, settings, config.device)
    result.report.finetune = info
    return PruneResult(trained, result.report, result.shapes, result.float_model, result.source)
