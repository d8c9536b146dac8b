"""With --calib and no --criterion, the criterion is chosen on the user's data, not assumed from ours.

A criterion that fits one corpus collapses on another: the reconstruction score (recon) led on the
models it was tuned on, while magnitude (l1) kept more of two unseen detectors. So each candidate
criterion prunes to the same target, repaired, on the first part of the calibration data, and the
models are compared with the original on the held-out rest in each output's own metric (top-1,
box F1, CTC characters, else cosine; runtime/metrics.py). The default (recon) is written unless the
other beats it by more than one and a half held-out samples' worth; the report shows the race. Two
pipeline runs: at most twice the cost of one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import onnx

from ..config import PruneConfig
from ..errors import DataError
from ..passes.pipeline import prune_once
from ..progress import report, silenced
from ..report import PruneResult
from ..runtime.metrics import LABELS

CANDIDATES = ("recon", "l1")  # the first is the default: another must beat it clearly
MARGIN_SAMPLES = 1.5


def races(config: PruneConfig) -> bool:
    """Whether a run races criteria: lossy to a fixed target, with data, the criterion left to us."""
    return (config.lossy and config.calib is not None and config.criterion_default and not config.guarded
            and config.target_latency is None)


def race_criteria(model: onnx.ModelProto, config: PruneConfig, timer=None) -> PruneResult:
    from ..runtime.compare import Reference, compare_models
    from .guard import split_calibration

    original = model.SerializeToString()
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="onnxprune-race-"))
        try:
            fit, hold, n_hold = split_calibration(model, config.calib_data, config.holdout, Path(tmp))
        except DataError:  # too few samples to hold any out: the first candidate, on all of them
            result = prune_once(model, config, timer)
            result.report.notes.append("too few calibration samples to hold some out: criterion "
                                       f"{config.criterion} not raced against the others")
            return result
        reference = stack.enter_context(Reference(model, data=hold, device=config.device))
        entries = []
        for i, criterion in enumerate(CANDIDATES):
            report("choosing the criterion on held-out data", i, len(CANDIDATES))
            candidate = onnx.ModelProto()
            candidate.ParseFromString(original)
            trial = dataclasses.replace(config, calib=fit, preprocess=None, criterion=criterion,
                                        criterion_default=False)
            result = prune_once(candidate, trial, timer)
            with silenced():
                check = compare_models(reference, result.model, bounds=False, metric=config.metric)
            entries.append((criterion, result, check))
        report("choosing the criterion on held-out data", len(CANDIDATES), len(CANDIDATES))
    scored = [_score(check) for _, _, check in entries]
    best = _winner(scored, n_hold)
    criterion, result, _ = entries[best]
    figures = [{"criterion": c, "figure": _figure(ch), "score": round(_score(ch)[0], 6),
                "cosine": round(_score(ch)[1], 6),
                "flops_kept": round(r.report.flops_after / max(r.report.flops_before, 1), 4)}
               for c, r, ch in entries]
    result.report.race = {"by": "held-out calibration samples", "held_out_samples": n_hold, "kept": criterion,
                          "candidates": figures}
    result.report.notes = [n for n in result.report.notes if not n.startswith("channels chosen by")]
    result.report.notes.insert(0, f"criterion chosen on {n_hold} held-out calibration samples ({', '.join(CANDIDATES)}, "
                                  f"each pruned and repaired on the other samples); --criterion fixes it")
    return result


def _winner(scored: list[tuple[float, float]], n_hold: int) -> int:
    """The first candidate (the default, recon) unless another beats its held-out figure by more
    than MARGIN_SAMPLES samples' worth: on a few dozen held-out rows one sample is noise (on
    orinet_orientation at 70% l1 won 24/24 against recon's 23/24 there and lost 85.9% to 95.3% on the
    disjoint evaluation set)."""
    margin = MARGIN_SAMPLES / max(n_hold, 1)
    best = 0
    for i in range(1, len(scored)):
        if scored[i][0] > scored[0][0] + margin and scored[i] > scored[best]:
            best = i
    return best


def _score(check) -> tuple[float, float]:
    """The mean over outputs of each output's own metric (cosine where it has none), then the mean
    cosine (between challengers that both clear the margin)."""
    def mean(values):
        values = [v for v in values if v is not None and np.isfinite(v)]
        return float(np.mean(values)) if values else -np.inf

    return (mean([o.agreement if o.agreement is not None else o.cosine for o in check.outputs]),
            mean([o.cosine for o in check.outputs]))


def _figure(check) -> str:
    parts = []
    for o in check.outputs:
        if o.agreement is not None and o.metric not in (None, "cosine"):
            parts.append(f"{LABELS[o.metric]} {o.agreement:.2%}")
        else:
            parts.append(f"cosine {o.cosine:.4f}")
    return ", ".join(dict.fromkeys(parts)) if len(parts) <= 3 else f"mean {_score(check)[0]:.4f} over {len(parts)} outputs"
