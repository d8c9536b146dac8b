"""With --calib and no --criterion, the criterion is chosen on the user's data, not assumed from ours.

A criterion that fits one corpus collapses on another: the reconstruction score (recon) led on the
models it was tuned on, while magnitude (l1) kept more of two unseen detectors. So each candidate
criterion prunes to the same target, repaired, on the first part of the calibration data, and the
models are compared with the original on the held-out rest in each output's own metric (top-1,
box F1, CTC characters, else cosine; runtime/metrics.py). The default (recon) is written unless
another beats it clearly: by more than one and a half held-out samples' worth, or by more than
Z_PAIRED standard errors of the difference paired over the held-out samples (each sample's share of
each figure, so a detector's many boxes or a recognizer's characters count as what they are); the
report shows the race.
With a FLOPs / parameter target and the allocation left to us, recon with sensitivity allocation
runs second, its probes within an allowance of FLOPs counted from the model (the same on every
machine at any load: passes/select_lossy.py probe_allowance), and l1 last; statistics are shared
between the runs (memo.py), so the race costs two to three pipeline runs plus the probes.
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
from ..importance.output_sensitivity import ProbeBudgetExceeded
from ..memo import CalibMemo
from ..passes.pipeline import prune_once
from ..progress import report, silenced
from ..report import PruneResult
from ..runtime.metrics import LABELS

CANDIDATES = ("recon", "l1")  # the first is the default: another must beat it clearly
MARGIN_SAMPLES = 1.5  # another wins by more than this many held-out samples' worth,
Z_PAIRED = 1.5       # or by more than this many standard errors of the paired difference


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
        memo = CalibMemo()  # scores, Grams and probes gathered once, shared by the candidates
        entries = []
        plan = candidates(config)
        skipped = None
        for i, (criterion, allocation) in enumerate(plan):
            report("choosing the criterion on held-out data", i, len(plan))
            candidate = onnx.ModelProto()
            candidate.ParseFromString(original)
            trial = dataclasses.replace(config, calib=fit, preprocess=None, criterion=criterion,
                                        criterion_default=False, allocation=allocation, memo=memo,
                                        sensitivity_limited=allocation == "sensitivity" and config.allocation_default)
            t0 = time.perf_counter()
            try:
                result = prune_once(candidate, trial, timer)
            except ProbeBudgetExceeded as exc:
                skipped = str(exc)
                continue
            seconds = time.perf_counter() - t0
            with silenced():
                check = compare_models(reference, result.model, bounds=False, metric=config.metric)
            entries.append(((criterion, allocation), result, check, seconds))
        report("choosing the criterion on held-out data", len(plan), len(plan))
    scored = [_score(check) for _, _, check, _ in entries]
    paired = [None] + [paired_difference(entries[0][2], check, n_hold) for _, _, check, _ in entries[1:]]
    best = _winner(scored, n_hold, paired)
    (criterion, allocation), result, *_ = entries[best]
    figures = [{"criterion": c, "allocation": a, "figure": _figure(ch), "score": round(_score(ch)[0], 6),
                "cosine": round(_score(ch)[1], 6),
                "flops_kept": round(r.report.flops_after / max(r.report.flops_before, 1), 4),
                "seconds": round(sec, 2),
                "difference_se": None if p is None else round(p[1], 6)}
               for ((c, a), r, ch, sec), p in zip(entries, paired)]
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
    Sensitivity allocation joins, second, when the allocation was left to us too, ahead of l1: in the
    last race of each of the 48 cells of benchmarks/fidelity_defaults.json (16 models x 0.9 / 0.7 /
    0.5) l1 was kept in none and sensitivity in 9, and 8 had dropped sensitivity for time that l1's run
    had used. Its probes run within an allowance of FLOPs (passes/select_lossy.py probe_allowance):
    every group at a quarter, half and three quarters of its channels on 16 samples where that fits,
    else at half only, else at half on 8 samples (fewer shares cost less fidelity than fewer
    samples: COCO YOLO11n at 70% of the FLOPs, 70.2% box F1 at 3 shares x 16 samples, 61.5% at
    1 x 16, 51.1% at 3 x 8, against 30.8% by score allocation), and the candidate is dropped, the
    report saying why, where none fits."""
    allocation = config.allocation
    plan = [(CANDIDATES[0], allocation)]
    if config.allocation_default and (config.target_flops is not None or config.target_params is not None):
        plan.append((CANDIDATES[0], "sensitivity"))
    return plan + [(c, allocation) for c in CANDIDATES[1:]]


def _winner(scored: list[tuple[float, float]], n_hold: int, paired: list | None = None) -> int:
    """The first candidate (the default, recon) unless another beats its held-out figure clearly: on
    a few dozen held-out rows one sample is noise (on orinet_orientation at 70% l1 won 24/24 against
    recon's 23/24 there and lost 85.9% to 95.3% on the disjoint evaluation set). Clearly: by more
    than MARGIN_SAMPLES samples' worth, or, where `paired` gives the challenger's (difference,
    standard error) over the held-out samples, by more than Z_PAIRED standard errors. Samples' worth
    alone held back a detector's or a recognizer's real gains (ddddocr's character detector at 90% of
    the FLOPs: 99.1% box F1 on ~600 held-out boxes against 96.5%, under 1.5 / 24 = 6.25 points) and
    every cosine figure (a 0.06 gain in the mean cosine). The paired test alone kept back large gains
    read on a few boxes (NudeNet's detector at 70%: 63.6% against 37.5% on ~11 held-out boxes, 1.1
    standard errors; 55.6% against 69.3% on the evaluation images), so either suffices."""
    margin = MARGIN_SAMPLES / max(n_hold, 1)
    best = 0
    for i in range(1, len(scored)):
        p = paired[i] if paired is not None else None
        clear = scored[i][0] > scored[0][0] + margin or (p is not None and p[0] > 0 and p[0] > Z_PAIRED * p[1])
        if clear and scored[i] > scored[best]:
            best = i
    return best


def paired_difference(default, challenger, n_hold: int) -> tuple[float, float] | None:
    """(challenger's figure - the default's, its standard error), both the mean over outputs of each
    output's ratio figure, paired over the held-out samples: each sample's (numerator, denominator)
    share (OutputComparison.per_sample) linearised, z_k = (num_k - R den_k) / sum den, and the
    difference's variance n / (n - 1) sum_k (mean over outputs of z_k's difference)^2. None where some
    output's figure is not split into one share per held-out sample (an output whose first axis is
    not the samples')."""
    zs = []
    diff = 0.0
    for a, b in zip(default.outputs, challenger.outputs):
        za, ra = _influence(getattr(a, "per_sample", None), n_hold)
        zb, rb = _influence(getattr(b, "per_sample", None), n_hold)
        if za is None or zb is None:
            return None
        zs.append(zb - za)
        diff += rb - ra
    if not zs or n_hold < 2:
        return None
    e = np.mean(zs, axis=0)
    return diff / len(zs), float(np.sqrt(n_hold / (n_hold - 1) * np.sum(e * e)))


def _influence(parts, n_hold: int):
    if parts is None or len(parts) != n_hold:
        return None, None
    a = np.asarray(parts, dtype=np.float64)
    total = a[:, 1].sum()
    if total <= 0:
        return None, None
    ratio = a[:, 0].sum() / total
    return (a[:, 0] - ratio * a[:, 1]) / total, ratio


def figure_mean(pairs) -> float | None:
    """The mean over outputs of each output's own metric, its cosine where it has none, from
    (agreement, cosine) pairs; None where no output has a finite figure."""
    values = [a if a is not None else c for a, c in pairs]
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else None


def _score(check) -> tuple[float, float]:
    """The mean over outputs of each output's own metric (cosine where it has none), then the mean
    cosine (between challengers that both clear the margin)."""
    def mean(pairs):
        value = figure_mean(pairs)
        return -np.inf if value is None else value

    return (mean((o.agreement, o.cosine) for o in check.outputs), mean((o.cosine, None) for o in check.outputs))


def _figure(check) -> str:
    parts = []
    for o in check.outputs:
        if o.agreement is not None and o.metric not in (None, "cosine"):
            parts.append(f"{LABELS[o.metric]} {o.agreement:.2%}")
        else:
            parts.append(f"cosine {o.cosine:.4f}")
    return ", ".join(dict.fromkeys(parts)) if len(parts) <= 3 else f"mean {_score(check)[0]:.4f} over {len(parts)} outputs"
