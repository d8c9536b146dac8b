"""Fidelity guard: the most pruning that still meets a bound (--max-error, --min-cosine,
--min-agreement) on held-out calibration samples, found by bisection on the FLOPs target."""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import onnx

from ..config import PruneConfig
from ..errors import ConfigError, DataError, TargetUnreachableError
from ..memo import CalibMemo
from ..passes.pipeline import prune_once
from ..progress import report, silenced
from ..runtime.metrics import LABELS

STEPS = 7


def split_calibration(model: onnx.ModelProto, path, holdout: float, folder: Path) -> tuple[str, str, int]:
    """Write the calibration data as two .npz files: fit (scoring, repair) and held-out (the bound)."""
    from ..runtime.data import LABELS, input_specs, load_data

    specs = input_specs(model)
    dataset = load_data(path, specs)
    # Samples lie along each input's batch axis; a model without one gets whole feeds stacked
    # along a new axis 0 (the form Dataset reads back as whole feeds).
    axes = {s.name: s.batch_axis if s.batched else None for s in specs}
    stacked = not dataset.batched
    parts: dict[str, list[np.ndarray]] = {}
    for item in dataset.batches(64):
        for k, v in item.feeds.items():
            if axes[k] is None and not stacked:
                parts[k] = [v]  # fed whole with every batch (a scalar sample rate)
            else:
                parts.setdefault(k, []).append(v[None] if stacked else v)
        if item.labels is not None:
            parts.setdefault(LABELS, []).append(item.labels)
    along = {k: (0 if stacked or k == LABELS else axes.get(k)) for k in parts}
    arrays = {k: (np.concatenate(v, axis=along[k]) if along[k] is not None else v[0]) for k, v in parts.items()}
    n = next(arrays[k].shape[a] for k, a in along.items() if a is not None)
    n_hold = int(round(n * holdout))
    if n_hold < 1 or n - n_hold < 1:
        raise DataError(f"{path}: {n} calibration samples cannot be split into fit and held-out parts; "
                        f"give at least a few dozen")

    def cut(k, v, start, stop):
        if along[k] is None:
            return v
        index = [slice(None)] * v.ndim
        index[along[k]] = slice(start, stop)
        return v[tuple(index)]

    fit, hold = folder / "fit.npz", folder / "holdout.npz"
    np.savez(fit, **{k: cut(k, v, 0, n - n_hold) for k, v in arrays.items()})
    np.savez(hold, **{k: cut(k, v, n - n_hold, n) for k, v in arrays.items()})
    return str(fit), str(hold), n_hold


def _figure(check, config: PruneConfig) -> str:
    """The bounded figure of a check, worst output first: what the search compared with the bound."""
    outs = check.outputs
    parts = []
    if config.min_agreement is not None:
        bounded = [o for o in outs if o.agreement is not None and (o.metric != "cosine" or config.metric == "cosine")]
        if bounded:
            worst = min(bounded, key=lambda o: o.agreement)
            parts.append(f"{LABELS[worst.metric]} {worst.agreement:.2%}")
    if config.min_cosine is not None:
        parts.append(f"cosine {min(o.cosine for o in outs):.4f}")
    if config.max_error is not None:
        parts.append(f"max abs error {max(o.max_abs_error for o in outs):.3g}")
    return ", ".join(parts)


def guarded_prune(model: onnx.ModelProto, config: PruneConfig):
    """Bisection on the kept FLOPs share between the most pruning allowed and none, each share one
    pipeline run. Every share tried is reported with its figure; the final check
    (onnxprune/validation.py) runs on the same held-out samples, so what the search picks passes it."""
    from ..runtime.compare import Reference, compare_models

    if not config.calib:
        raise ConfigError("a fidelity bound (max_error, min_cosine, min_agreement) needs calib data: its held-out part judges the bound")
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="onnxprune-guard-"))
        fit, hold, n_hold = split_calibration(model, config.calib_data, config.holdout, Path(tmp))
        base = dataclasses.replace(config, calib=fit, preprocess=None, max_error=None, min_cosine=None, min_agreement=None,
                                   ratio=None, target_params=None, target_flops=None, validate=False,
                                   memo=CalibMemo())  # scores, Grams and probes shared by the trials
        floor = config.target_flops if config.target_flops is not None else 0.05
        original = model.SerializeToString()
        tries = []
        reference = stack.enter_context(Reference(model, data=hold, device=config.device))  # computed once

        trials = [0]

        def attempt(share: float):
            trials[0] += 1
            report("fidelity guard: trials", trials[0], STEPS + 1)
            candidate = onnx.ModelProto()
            candidate.ParseFromString(original)
            try:
                with silenced():
                    result = prune_once(candidate, dataclasses.replace(base, target_flops=share))
            except TargetUnreachableError:
                tries.append({"target_flops": share, "flops_kept": None, "figure": "unreachable", "passed": False})
                return None, None
            with silenced():
                check = compare_models(reference, result.model, atol=config.max_error, min_cosine=config.min_cosine,
                                       min_agreement=config.min_agreement, metric=config.metric)
            kept = result.report.flops_after / max(result.report.flops_before, 1)
            tries.append({"target_flops": share, "flops_kept": kept, "figure": _figure(check, config),
                          "passed": bool(check)})
            return result, check

        lo, hi = floor, 1.0
        best, best_check = None, None
        result, check = attempt(lo)
        if result is not None and check:
            best, best_check, hi = result, check, lo
        else:
            for _ in range(STEPS):
                mid = (lo + hi) / 2
                result, check = attempt(mid)
                if result is not None and check:
                    best, best_check, hi = result, check, mid
                else:
                    lo = mid
        if best is None:
            best, best_check = attempt(1.0)
            share = 1.0
        else:
            share = hi
        tried = "; ".join(f"{t['target_flops']:.3f} -> {t['figure']} ({'pass' if t['passed'] else 'fail'})"
                          for t in tries)
        best.report.notes.append(f"fidelity guard tried --target-flops {tried}")
        best.report.notes.append(
            f"fidelity guard chose --target-flops {share:.3f} ({best.report.flops_after / max(best.report.flops_before, 1):.1%}"
            f" of the FLOPs kept): {best_check.verdict()} on {n_hold} held-out samples")
        best.report.guard = {"target_flops": share, "held_out_samples": n_hold, "tries": tries,
                             "check": best_check.to_dict()}
        return best
