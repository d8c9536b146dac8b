"""`onnxprune sensitivity IN --calib data.npz`: output change when each group alone is pruned."""

from __future__ import annotations

from pathlib import Path

import click

from ..io import load_model
from ..sensitivity import sensitivity
from .output import StderrProgress, human_echo, json_option, json_target, write_json
from ..shapes import parse_shapes
from .check import calib_data
from .options import preprocess_option, shape_option


@click.command("sensitivity", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("input_path", metavar="IN.onnx", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--calib", type=click.Path(path_type=Path), help="Data (.npz keyed by input name, optional labels, or a .py loader).")
@click.option("--ratios", default="0.25,0.5,0.75", show_default=True, help="Comma-separated shares of each group to remove.")
@preprocess_option
@shape_option
@click.option("--criterion", default="l1", show_default=True, help="Which channels go first.")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="cpu", show_default=True)
@click.option("--max-samples", type=int, default=256, show_default=True)
@json_option()
@click.option("-q", "--quiet", is_flag=True, help="No progress bar (there is none unless stderr is a terminal).")
def sensitivity_cmd(input_path, calib, preprocess, shapes, ratios, criterion, device, max_samples, json_path, quiet):
    """For each prunable group: cosine similarity of the outputs (and accuracy with labels, else top-1
    agreement) when that group alone is pruned at each ratio. Low figures: do not cut there."""
    from ..errors import ConfigError

    try:
        ratio_list = [float(r) for r in ratios.split(",") if r.strip()]
    except ValueError:
        raise ConfigError(f"--ratios must be numbers separated by commas, got '{ratios}'") from None
    if not ratio_list or any(not 0 < r < 1 for r in ratio_list):
        raise ConfigError(f"--ratios must be in (0, 1), got '{ratios}'")
    json_to = json_target(json_path, inputs=(input_path,))
    model = load_model(input_path)
    with StderrProgress(enabled=not quiet) as bar:
        data = calib_data(str(calib) if calib else None, preprocess)
        result = sensitivity(model, data, tuple(ratio_list), criterion, device, max_samples,
                             lambda done, total: bar("pruning each group alone", done, total),
                             shapes=parse_shapes(shapes))
    human_echo(json_to)(result.format_table())
    write_json(json_to, "sensitivity", {"input": str(input_path), **result.to_dict()})
