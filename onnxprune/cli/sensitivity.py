"""`onnxprune sensitivity IN --calib data.npz`: output change when each group alone is pruned."""

from __future__ import annotations

from pathlib import Path

import click

from ..io import load_model
from ..sensitivity import sensitivity
from . import options
from .output import StderrProgress, human_echo, json_target, write_json
from ..shapes import parse_shapes


@options.command("sensitivity")
@click.argument("input_path", metavar="IN.onnx", type=click.Path(dir_okay=False, path_type=Path))
@options.calib
@options.ratios
@options.preprocess
@options.shape
@options.criterion
@options.device
@options.max_samples
@options.json_option()
@options.quiet
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
        data = options.calib_data(calib, preprocess)
        result = sensitivity(model, data, tuple(ratio_list), criterion or "l1", device, max_samples,
                             lambda done, total: bar("pruning each group alone", done, total),
                             shapes=parse_shapes(shapes))
    human_echo(json_to)(result.format_table())
    write_json(json_to, "sensitivity", {"input": str(input_path), **result.to_dict()})
