"""What a written model is held to: one policy for the CLI and the library.

- Exact mode: every output within 1e-4 absolute plus 1e-3 relative of the original's (float
  summation order), a QDQ output also one quantization step on a minority of its values (a
  rounding flip, runtime/quantstep.py); `atol` replaces both.
- A guarded run (--max-error, --min-cosine, --min-agreement): the bounds on the held-out part of
  the calibration data the guard searched with, so its pick passes it.
- Any other lossy run: figures only (NOT CHECKED), unless `atol` is given.
- With --quantize: the pruned float model under these rules, then the quantized one (what is
  written) against the bounds only.
- Every run where the model has dynamic dims: both models once more at batch 2 and at another
  input size (runtime/shape_check.py); the written model must run wherever the original ran, with
  outputs of the same shapes (and values, in exact mode).

Random validation inputs are one batch of one sample: validation checks the rewrite and must cost
less than the pruning (docs/BENCHMARKS.md); `check` measures at length. Without data the sessions
skip ORT's graph optimizations, which cost more than one small batch saves.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import onnx

from .config import PruneConfig
from .errors import ValidationFailedError
from .runtime.compare import ComparisonResult

# Random validation inputs: one batch of one sample (the model's own batch where it is fixed).
VALIDATION_BATCH = 1
VALIDATION_BATCHES = 1
LOSSY_HINT = ("a lossy run without a bound reports fidelity only; for a verdict give --atol, or a fidelity guard: "
              "--min-agreement, --min-cosine or --max-error")


@dataclass
class Validation:
    """The comparison of what is written against the original and, with --quantize, of the pruned
    float model before it."""

    comparison: ComparisonResult
    pruned_float: ComparisonResult | None = None


def validate_result(original, written, config: PruneConfig, shapes=None, atol: float | None = None,
                    float_model=None) -> Validation:
    """Check `written` (a path or proto) against `original` under the policy above; raises
    ValidationFailedError (nothing is to be written) when it fails. `float_model` is the pruned model
    before --quantize."""
    if config.quantize and float_model is not None:
        pruned = _compare(original, float_model, config, atol, shapes)
        if not pruned:
            raise ValidationFailedError(f"the pruned float model does not match the original "
                                        f"({pruned.verdict()}); nothing was written")
        quantized = _compare_quantized(original, written, config, shapes)
        if not quantized:
            raise ValidationFailedError(f"the quantized model does not meet the bounds "
                                        f"({quantized.verdict()}); nothing was written")
        if not quantized.checked:
            quantized.hints.append("figures only; for a verdict on the quantized model give a fidelity "
                                   "bound: --min-agreement, --min-cosine or --max-error")
        return Validation(quantized, pruned)
    comparison = _compare(original, written, config, atol, shapes)
    if not comparison:
        raise ValidationFailedError(
            f"the pruned model does not match the original ({comparison.verdict()}); nothing was written")
    if not comparison.checked:
        comparison.hints.append(LOSSY_HINT)
    return Validation(comparison)


def _compare(original, pruned, config: PruneConfig, atol, shapes=None, names=("original", "pruned")) -> ComparisonResult:
    from .runtime import compare_models
    from .runtime.data import DEFAULT_BATCH

    compare = partial(compare_models, original, pruned, device=config.device, shapes=shapes,
                      metric=config.metric, n_batches=VALIDATION_BATCHES, optimize=config.calib is not None,
                      default_batch=VALIDATION_BATCH if config.calib is None else DEFAULT_BATCH, names=names)
    exact = not config.lossy and atol is None
    if config.guarded:
        from .strategies.guard import split_calibration
        from .io import load_model

        with tempfile.TemporaryDirectory(prefix="onnxprune-check-") as tmp:
            _, held_out, _ = split_calibration(load_model(original), config.calib_data, config.holdout, Path(tmp))
            result = compare(data=held_out, atol=config.max_error, min_cosine=config.min_cosine,
                             min_agreement=config.min_agreement)
    elif config.lossy and atol is None:
        result = compare(data=config.calib_data, bounds=False)
    else:
        result = compare(data=config.calib_data, atol=1e-4 if atol is None else atol,
                         rtol=1e-3 if atol is None else 0.0, quant_step=atol is None)
    if result and shapes is not None:
        _other_shapes(result, original, pruned, config, shapes, exact, atol)
    return result


def _other_shapes(result: ComparisonResult, original, pruned, config: PruneConfig, shapes, exact: bool, atol) -> None:
    """Both models at batch 2 and another size (runtime/shape_check.py), recorded in `result`."""
    from .runtime.compare import identical_files
    from .runtime.data import input_specs, load_data
    from .runtime.shape_check import check_other_shapes

    if all(isinstance(m, (str, Path)) for m in (original, pruned)) and identical_files(original, pruned):
        return
    data = None
    if config.calib:
        proto = original if isinstance(original, onnx.ModelProto) else onnx.load(str(original), load_external_data=False)
        data = load_data(config.calib_data, input_specs(proto))
    result.shape_runs = check_other_shapes(original, pruned, shapes, device=config.device, exact=exact, data=data,
                                           atol=1e-4 if atol is None else atol, rtol=1e-3 if atol is None else 0.0)


def _compare_quantized(original, quantized, config: PruneConfig, shapes=None) -> ComparisonResult:
    """The written quantized model against the float original: the guard's bounds if any, else figures."""
    from .runtime import compare_models

    names = ("original", "quantized")
    if config.guarded:
        return _compare(original, quantized, config, None, shapes, names=names)
    result = compare_models(original, quantized, data=config.calib_data, device=config.device, bounds=False,
                            shapes=shapes, metric=config.metric, names=names, n_batches=VALIDATION_BATCHES,
                            default_batch=VALIDATION_BATCH, optimize=config.calib is not None)
    if result and shapes is not None:
        _other_shapes(result, original, quantized, config, shapes, False, None)
    return result
