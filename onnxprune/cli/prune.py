"""`onnxprune IN OUT`: prune, write atomically, validate with ONNX Runtime, print a summary."""

from __future__ import annotations

from pathlib import Path

import click

from ..api import prune
from ..config import PruneConfig
from ..io import load_model, resolve_output, save_model
from ..report import format_summary
from ..validation import validate_result
from ..progress import reporting
from .output import STDOUT, StderrProgress, human_echo, json_option, json_target, write_json
from .options import as_flags, preprocess_option, shape_option


@click.command("prune", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("input_path", metavar="IN.onnx", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("output_path", metavar="OUT.onnx", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--ratio", type=float, help="Remove this share of every prunable group (lossy), e.g. 0.3.")
@click.option("--target-flops", type=float, help="Keep this share of the FLOPs, ranking channels globally (lossy).")
@click.option("--target-params", type=float, help="Keep this share of the parameters (lossy).")
@click.option("--target-latency", type=float,
              help="Keep this share of the latency measured with ONNX Runtime on --device at --batch (lossy), e.g. 0.5.")
@click.option("--batch", type=int, default=1, show_default=True, help="Batch size --target-latency measures at.")
@click.option("--threads", type=int, help="ONNX Runtime intra-op threads for --target-latency (default: its own choice).")
@click.option("--latency-cache", metavar="DIR",
              help="Folder of latency tables (default ~/.cache/onnxprune/latency; 'off' to measure afresh).")
@click.option("--criterion", default=None,
              help="Channel importance: l1, l2, bn-gamma, lamp, activation, recon (the last two need --calib) "
                   "[default: recon with --calib, else l1].")
@click.option("--allocation", type=click.Choice(["score", "sensitivity"]), default="score", show_default=True,
              help="How --target-flops/--target-params spread the cut over layers: by channel scores, or by each "
                   "layer's measured effect on the outputs (needs --calib; slower: a few model runs per layer).")
@click.option("--round-to", type=int, help="Round kept channel counts to a multiple of this (default: suits the device; "
              "with --target-latency, chosen from the measured latency table).")
@click.option("--keep", multiple=True, metavar="PATTERN", help="Never prune groups with a node matching this glob.")
@click.option("--max-group-ratio", type=float, default=0.9, show_default=True,
              help="Never remove more than this share of one group.")
@click.option("--repair", default=None, metavar="METHODS",
              help="Repair after lossy pruning, from --calib data: bias, lsq, bn (comma-separated), all or none "
                   "[default: all when --calib is given]; each kept per layer only where it helps on held-out data.")
@click.option("--max-error", type=float, help="Fidelity guard: most pruning whose max abs output error stays below this.")
@click.option("--min-cosine", type=float, help="Fidelity guard: most pruning whose output cosine similarity stays above this.")
@click.option("--min-agreement", type=float, help="Fidelity guard: most pruning whose agreement (--metric) stays above this.")
@click.option("--metric", type=click.Choice(["auto", "top1", "boxes", "ctc", "cosine"]), default="auto", show_default=True,
              help="Fidelity metric: top-1 for [N, K] scores, box F1 for detection heads, CTC character accuracy "
                   "for [N, T, C] / [T, N, C] outputs, cosine otherwise; auto picks per output.")
@click.option("--fold-bn", is_flag=True, help="Fold BatchNormalization into the preceding Conv or ConvTranspose.")
@click.option("--quantize", type=click.Choice(["int8", "int8-symmetric", "dynamic"]),
              help="After pruning and repair, quantize with onnxruntime.quantization: int8 = static QDQ, "
                   "per-channel int8 weights, uint8 activations calibrated on --calib; int8-symmetric = int8 "
                   "activations, zero points 0 (TensorRT); dynamic = int8 weights of MatMul/LSTM/Attention, "
                   "no calibration. Fidelity is reported per step.")
@click.option("--calib", type=click.Path(path_type=Path), help="Calibration data: .npz keyed by input name, or a .py data loader.")
@preprocess_option
@shape_option
@click.option("--validate/--no-validate", default=True, show_default=True,
              help="Run both models in ONNX Runtime and compare before writing.")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="cpu", show_default=True)
@click.option("--atol", type=float, help="Validation tolerance (exact mode: 1e-4 absolute plus 1e-3 relative).")
@json_option("--report")
@click.option("--overwrite", is_flag=True, help="Allow OUT to be the input file.")
@click.option("-q", "--quiet", is_flag=True, help="Print only errors.")
def prune_cmd(input_path, output_path, ratio, target_flops, target_params, target_latency, batch, threads,
              latency_cache, criterion, allocation, round_to, keep, max_group_ratio, repair, max_error, min_cosine, min_agreement,
              metric, fold_bn, quantize, calib, preprocess, shapes, validate, device, atol, json_path, overwrite, quiet):
    """Prune channels of IN.onnx and write OUT.onnx. Exact by default: only channels that cannot
    change any output are removed."""
    with as_flags():
        config = PruneConfig(fold_bn=fold_bn, ratio=ratio, target_flops=target_flops, target_params=target_params,
                             criterion=criterion, allocation=allocation, round_to=round_to, keep=tuple(keep), max_group_ratio=max_group_ratio,
                             calib=str(calib) if calib else None, preprocess=preprocess, validate=validate, device=device,
                             shapes=tuple(shapes),
                             repair=repair, max_error=max_error, min_cosine=min_cosine, min_agreement=min_agreement,
                             metric=metric, target_latency=target_latency, batch=batch, threads=threads,
                             latency_cache=latency_cache, quantize=quantize)
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
            if validate:
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
