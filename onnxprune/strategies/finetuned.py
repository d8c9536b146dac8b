"""--finetune after whatever strategy pruned: the pruned model distilled from the original on the
calibration data (onnxprune/finetune/), or, where it cannot be trained, kept as it is with one note
saying why.

With a fidelity guard (guarded_finetune): prune further, then recover. The guard searches
training-free as always and its pick is fine-tuned; then FURTHER bisection steps between the guard's
floor and that pick each prune a candidate, fine-tune it (the same --finetune steps and time each)
and judge it on the guard's held-out samples, a --min-agreement cleared by one held-out sample more
than asked (further_bound): the fewest FLOPs that pass after fine-tuning are kept.
Every fine-tune trains on the guard's fit part only, so the held-out samples (which the final check
reads too) stay unseen."""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from pathlib import Path

import onnx

from ..config import PruneConfig
from ..progress import report
from ..report import PruneResult
from ..runtime.metrics import LABELS

FURTHER = 3  # bisection steps below the guard's training-free pick, each pruned and then fine-tuned
FURTHER_MARGIN_SAMPLES = 1  # a cut past the pick must clear --min-agreement by this many held-out samples


def further_bound(min_agreement: float | None, n_hold: int) -> float | None:
    """The --min-agreement a cut past the guard's pick is held to: one held-out sample more than
    the bound. Several such cuts are judged and the deepest that passes is kept, so a bare pass is
    picked by luck: textline_ori_lcnet with --min-agreement 0.95 kept a fine-tuned cut at 18.9% of
    the FLOPs that passed on 23 of its 24 held-out samples and agreed on 84.4% of 64 eval images."""
    if min_agreement is None:
        return None
    return min(1.0, min_agreement + FURTHER_MARGIN_SAMPLES / max(n_hold, 1))


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
    lost = task_loss(info["held_out"], info["samples"]["held_out"])
    info["written"] = "untrained" if lost else "trained"
    result.report.finetune = info
    if lost:  # the best loss is not the best answers: the training-free model stays
        result.report.notes.append(f"--finetune: the trained model agrees less with the original on the "
                                   f"{info['samples']['held_out']} held-out samples ({lost}); the pruned model is "
                                   "written untrained")
        return result
    return PruneResult(trained, result.report, result.shapes, result.float_model, result.source)


def task_loss(figures: dict, n_held: int) -> str | None:
    """What the trained model lost on the held-out samples, in the outputs' own metrics, where it
    lost more than one sample's worth (the mean over outputs of each one's figure, cosine where it
    has none); None where it did not. The keep-best check reads the training loss, which can fall
    while the answers get worse (a YOLOX-style head at half the FLOPs: held-out loss 0.090 -> 0.028
    while its box F1 on other photos fell 19.7% -> 0.0%, docs/DETECTORS.md); the user's held-out
    samples are what can tell, as far as they resemble what the model will see."""
    from .race import figure_mean

    before, after = (figure_mean((f.get(key), f.get(f"cosine_{key}")) for f in figures.values())
                     for key in ("before", "after"))
    if before is None or after is None or after >= before - 1.0 / max(n_held, 1):
        return None
    return "; ".join(f"{LABELS.get(f['metric'], f['metric'])} {f['before']:.1%} -> {f['after']:.1%}"
                     if f.get("before") is not None and f.get("after") is not None else
                     f"{name}: cosine {f['cosine_before']:.4f} -> {f['cosine_after']:.4f}"
                     for name, f in figures.items())


def guarded_finetune(model: onnx.ModelProto, config: PruneConfig) -> PruneResult:
    """The fidelity guard's pick, fine-tuned, and then up to FURTHER cuts past it, each fine-tuned
    and judged on the guard's held-out samples; the smallest FLOPs share that passes is returned
    (the guard's pick untrained where its fine-tune fell below the bound). `report.guard["finetuned"]`
    lists each judged share."""
    from ..errors import TargetUnreachableError
    from ..memo import CalibMemo
    from ..passes.pipeline import prune_once
    from ..progress import silenced
    from ..runtime.compare import Reference, compare_models
    from .guard import _figure, guarded_prune, split_calibration

    serialized = model.SerializeToString()

    def fresh() -> onnx.ModelProto:
        copy = onnx.ModelProto()
        copy.ParseFromString(serialized)
        return copy

    untrained_config = dataclasses.replace(config, finetune=None, finetune_time=None)
    picked = guarded_prune(fresh(), untrained_config)
    share = picked.report.guard["target_flops"]
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="onnxprune-guard-finetune-"))
        fit, hold, n_hold = split_calibration(fresh(), config.calib_data, config.holdout, Path(tmp))
        past = further_bound(config.min_agreement, n_hold)  # the bound for cuts past the guard's pick
        reference = stack.enter_context(Reference(fresh(), data=hold, device=config.device))

        def judged(result: PruneResult, target: float, min_agreement: float | None) -> tuple[PruneResult, bool, dict]:
            trained = finetune_result(fresh(), result, config)
            with silenced():
                check = compare_models(reference, trained.model, atol=config.max_error, min_cosine=config.min_cosine,
                                       min_agreement=min_agreement, metric=config.metric)
            kept = result.report.flops_after / max(result.report.flops_before, 1)
            status = (trained.report.finetune or {}).get("status")
            return trained, bool(check), {"target_flops": target, "flops_kept": kept, "finetune": status,
                                          "min_agreement": min_agreement, "figure": _figure(check, config),
                                          "passed": bool(check)}

        best, passed, first = judged(picked, share, config.min_agreement)
        tries = [first]
        if not passed:
            best = picked  # the fine-tune fell below the bound: the guard's untrained pick stands
        trained_ok = first["finetune"] == "trained"
        base = dataclasses.replace(untrained_config, calib=fit, preprocess=None, max_error=None, min_cosine=None,
                                   min_agreement=None, ratio=None, target_params=None, target_flops=None,
                                   validate=False, memo=CalibMemo())
        lo = config.target_flops if config.target_flops is not None else 0.05
        hi = share
        for _ in range(FURTHER if trained_ok else 0):
            if hi - lo < 0.01:
                break
            mid = (lo + hi) / 2
            report("fidelity guard: prune further, then fine-tune", len(tries), FURTHER + 1)
            try:
                with silenced():
                    candidate = prune_once(fresh(), dataclasses.replace(base, target_flops=mid))
            except TargetUnreachableError:
                tries.append({"target_flops": mid, "flops_kept": None, "finetune": None,
                              "min_agreement": past, "figure": "unreachable",
                              "passed": False})
                lo = mid
                continue
            trained, passed, row = judged(candidate, mid, past)
            tries.append(row)
            if passed:
                best, hi = trained, mid
            else:
                lo = mid
    if best.report is not picked.report:  # a cut past the guard's pick (the pick's fine-tune shares its report)
        best.report.guard = dict(picked.report.guard)
        best.report.notes.extend([n for n in picked.report.notes if n.startswith("fidelity guard")])
    best.report.guard = dict(best.report.guard or {}, finetuned=tries, target_flops_finetuned=hi)
    tried = "; ".join(f"{t['target_flops']:.3f} -> {t['figure']} ({'pass' if t['passed'] else 'fail'})" for t in tries)
    stricter = ("" if len(tries) < 2 or past is None else
                f" (cuts past the guard's pick held to agreement >= {past:.2%}, one held-out "
                "sample more than asked: the deepest of several bare passes is kept by luck)")
    best.report.notes.append(f"fidelity guard with --finetune judged after fine-tuning --target-flops {tried}{stricter}; "
                             f"kept {best.report.flops_after / max(best.report.flops_before, 1):.1%} of the FLOPs")
    return best
