"""`onnxprune IN OUT`: prune, write atomically, validate with ONNX Runtime, print a summary."""

from __future__ import annotations

from pathlib import Path

import click

from ..api import prune
from ..config import ConfigError, PruneConfig
from ..io import load_model, resolve_output, save_model
from ..report import format_summary
from ..validation import validate_result
from ..progress import reporting
from . import options
from .options import as_flags
from .output import STDOUT, StderrProgress, human_echo, json_target, write_json


@options.command("prune")
@click.argument("input_path", metavar="IN.onnx", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("output_path", metavar="OUT.onnx", type=click.Path(dir_okay=False, path_type=Path))
@options.ratio
@options.target_flops
@options.target_params
@options.target_latency
@options.criterion
@options.allocation
@options.round_to
@options.keep
@options.max_group_ratio
@options.rotate
@options.calib
@options.preprocess
@options.shape
@options.repair
@options.max_error
@options.min_cosine
@options.min_agreement
@options.metric
@options.finetune
@options.finetune_time
@options.atol
@options.validate
@options.device
@options.batch
@options.threads
@options.latency_cache
@options.fold_bn
@options.quantize
@options.weight_inputs
@options.json_option("--report")
@options.overwrite
@options.quiet
def prune_cmd(input_path, output_path, ratio, target_flops, target_params, target_latency, batch, threads,
              latency_cache, criterion, allocation, round_to, keep, max_group_ratio, rotate, repair, max_error, min_cosine, min_agreement,
              metric, finetune, finetune_time, fold_bn, quantize, weight_inputs, calib, preprocess, shapes, validate, device,
              atol, json_path, overwrite, quiet):
    """Prune channels of IN.onnx and write OUT.onnx. Exact by default: only channels that cannot
    change any output are removed."""
    if rotate and calib is None:
        raise ConfigError("--rotate rotates the residual stream to the principal axes of --calib data; give --calib")
    with as_flags():
        config = PruneConfig(fold_bn=fold_bn, rotate=rotate is not False, ratio=ratio, target_flops=target_flops, target_params=target_params,
                             criterion=criterion, allocation=allocation, round_to=round_to, keep=tuple(keep), max_group_ratio=max_group_ratio,
                             calib=str(calib) if calib else None, preprocess=preprocess, validate=validate, device=device,
                             shapes=tuple(shapes),
                             repair=repair, max_error=max_error, min_cosine=min_cosine, min_agreement=min_agreement,
                             metric=metric, target_latency=target_latency, batch=options.one_batch(batch, 1), threads=threads,
                             latency_cache=latency_cache, quantize=quantize,
                             weight_inputs=weight_inputs, finetune=finetune, finetune_time=finetune_time)
    resolve_output(input_path, output_path, overwrite)
    json_to = json_target(json_path, inputs=(input_path, output_path))
    echo = human_echo(json_to)
    comparison = pruned_comparison = None
    json_written = False

    def body() -> dict:
        out = {"input": str(input_path), "output": str(output_path), **result.report.to_dict(),
               "validation": comparison.to_dict() if comparison is not None else None}
        if config.quantize:
            out["validation_pruned_float"] = pruned_comparison.to_dict() if pruned_comparison is not None else None
        return out

    with StderrProgress(enabled=not quiet) as progress:
        progress("loading")
        model = load_model(input_path)
        result = prune(model, config, progress=progress)

        def check(tmp_path):
            nonlocal comparison, pruned_comparison, json_written
            if config.validate:
                progress("validating")
                with reporting(progress):
                    checked = validate_result(input_path, tmp_path, config, result.shapes, atol, result.float_model)
                comparison, pruned_comparison = checked.comparison, checked.pruned_float
            if json_to not in (None, STDOUT):
                # Written before the model is moved into place: a JSON file that cannot be written
                # stops the run with nothing written.
                write_json(json_to, "prune", body())
                json_written = True

        progress("writing")
        try:
            save_model(result.model, output_path, input_path, overwrite, before_commit=check)
        except BaseException:
            if json_written:
                Path(json_to).unlink(missing_ok=True)
            raise
    if not quiet:
        echo(format_summary(result.report, input_path, output_path))
        if pruned_comparison is not None:
            echo("")
            echo("step 1: pruned (float) against the original")
            echo(pruned_comparison.format_table())
            echo("")
            echo(f"step 2: quantized ({config.quantize}, written) against the float original")
        elif comparison is not None:
            echo("")
        if comparison is not None:
            echo(comparison.format_table())
    if json_to == STDOUT:
        write_json(json_to, "prune", body())
