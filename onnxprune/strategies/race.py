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
import time
from pathlib import Path

import numpy as np
import onnx

from ..config import PruneConfig
from ..errors import DataError
from ..memo import CalibMemo
from ..passes.pipeline import prune_once
from ..progress import report, silenced
from ..report import PruneResult
from ..runtime.metrics import LABELS

CANDIDATES = ("recon", "l1")  # the first is the default: another must beat it clearly
MARGIN_SAMPLES = 1.5
SENSITIVITY_BUDGET = 1.0  # the sensitivity candidate's probes, in pipeline runs of the first candidate


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
        t0 = time.perf_counter()
        reference = stack.enter_context(Reference(model, data=hold, device=config.device))
        sample_seconds = (time.perf_counter() - t0) / max(n_hold, 1)  # session start included: errs high
        memo = CalibMemo()  # scores, Grams and probes gathered once, shared by the candidates
        entries = []
        plan = candidates(config)
        skipped = None
        for i, (criterion, allocation) in enumerate(plan):
            report("choosing the criterion on held-out data", i, len(plan))
            shares = None
            if allocation == "sensitivity" and config.allocation_default:
                shares, skipped = _sensitivity_shares(entries[0][3], *_probe_cost(model, config), sample_seconds)
                if shares is None:
                    continue
            candidate = onnx.ModelProto()
            candidate.ParseFromString(original)
            trial = dataclasses.replace(config, calib=fit, preprocess=None, criterion=criterion,
                                        criterion_default=False, allocation=allocation, memo=memo,
                                        sensitivity_shares=shares)
            t0 = time.perf_counter()
            result = prune_once(candidate, trial, timer)
            seconds = time.perf_counter() - t0
            with silenced():
                check = compare_models(reference, result.model, bounds=False, metric=config.metric)
            entries.append(((criterion, allocation), result, check, seconds))
        report("choosing the criterion on held-out data", len(plan), len(plan))
    scored = [_score(check) for _, _, check, _ in entries]
    best = _winner(scored, n_hold)
    (criterion, allocation), result, _, _ = entries[best]
    figures = [{"criterion": c, "allocation": a, "figure": _figure(ch), "score": round(_score(ch)[0], 6),
                "cosine": round(_score(ch)[1], 6),
                "flops_kept": round(r.report.flops_after / max(r.report.flops_before, 1), 4),
                "seconds": round(sec, 2)}
               for (c, a), r, ch, sec in entries]
    result.report.race = {"by": "held-out calibration samples", "held_out_samples": n_hold, "kept": criterion,
                          "allocation": allocation, "candidates": figures, "skipped": skipped}
    result.report.notes = [n for n in result.report.notes if not n.startswith("channels chosen by")]
    names = ", ".join(c if a == "score" else f"{c} with {a} allocation" for (c, a), *_ in entries)
    result.report.notes.insert(0, f"criterion chosen on {n_hold} held-out calibration samples ({names}, each pruned "
                                  f"and repaired on the other samples); --criterion fixes it")
    if skipped:
        result.report.notes.insert(1, f"sensitivity allocation not raced: {skipped}; --allocation sensitivity asks for it")
    return result


def candidates(config: PruneConfig) -> list[tuple[str, str]]:
    """(criterion, allocation) pairs in race order; the first is the default that others must beat.
    Sensitivity allocation joins when the allocation was left to us too (and is dropped at run time
    where its probes would cost more than SENSITIVITY_BUDGET pipeline runs)."""
    allocation = config.allocation
    plan = [(c, allocation) for c in CANDIDATES]
    if config.allocation_default and (config.target_flops is not None or config.target_params is not None):
        plan.append((CANDIDATES[0], "sensitivity"))
    return plan


def _probe_cost(model: onnx.ModelProto, config: PruneConfig) -> tuple[int, float]:
    """The sensitivity probes' cost on this model (importance/output_sensitivity.probe_cost)."""
    from ..analysis import analyze
    from ..graph import ModelGraph
    from ..importance.output_sensitivity import probe_cost
    from ..runtime.shapes import resolve_input_shapes

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    with silenced():
        shapes = resolve_input_shapes(copy, config)
    return probe_cost(analyze(ModelGraph(copy, shapes=shapes.per_sample())))


SHARE_PLANS = ((0.25, 0.5, 0.75), (0.5,))  # the sensitivity candidate's probe shares, the fullest that fits


def _sensitivity_shares(first_seconds: float, groups: int, runs: float, sample_seconds: float
                        ) -> tuple[tuple[float, ...] | None, str | None]:
    """The probe shares the sensitivity candidate runs with (the fullest plan of SHARE_PLANS that
    fits), or None and why it is not raced. One share of its probes costs about `runs` whole-model
    runs per sample (importance/output_sensitivity.probe_cost: each trial runs the part of the model
    it changes) on PROBE_SAMPLES samples; at the seconds per sample the held-out reference took,
    the probes must stay within SENSITIVITY_BUDGET times the first candidate's whole pipeline run,
    so that the race stays near twice a single run. Fewer samples instead of fewer shares cost more
    fidelity: COCO YOLO11n at 70% of the FLOPs, box F1 70.2% with 3 shares x 16 samples, 61.5% with
    1 x 16, 51.1% with 3 x 8, against 30.8% by score allocation."""
    from ..importance.output_sensitivity import PROBE_SAMPLES

    for shares in SHARE_PLANS:
        estimate = len(shares) * runs * PROBE_SAMPLES * sample_seconds
        if estimate <= SENSITIVITY_BUDGET * first_seconds:
            return shares, None
    return None, (f"its probes ({groups} groups, {PROBE_SAMPLES} samples, {runs:.0f} model runs' worth a sample "
                  f"and share) would take about {estimate:.0f} s even at one share, more than "
                  f"{SENSITIVITY_BUDGET:g}x the {first_seconds:.0f} s of one pipeline run")


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
