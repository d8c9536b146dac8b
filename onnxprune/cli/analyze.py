"""`onnxprune analyze IN`: the channel groups of a model, prunable or why not."""

from __future__ import annotations

from pathlib import Path

import click

from ..api import analyze_model
from ..report import format_groups
from .output import human_echo, json_option, json_target, write_json
from .options import preprocess_option, shape_option


@click.command("analyze", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("input_path", metavar="IN.onnx", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-v", "--verbose", is_flag=True, help="List every member parameter of each group.")
@json_option()
@click.option("--calib", type=click.Path(path_type=Path), help="Data whose first sample gives the input shapes.")
@preprocess_option
@shape_option
def analyze_cmd(input_path, verbose, json_path, calib, preprocess, shapes):
    """Print the channel groups of IN.onnx: size, sources, prunable or blocked and why."""
    json_to = json_target(json_path, inputs=(input_path,))
    analysis = analyze_model(input_path, shapes=tuple(shapes), calib=str(calib) if calib else None,
                             preprocess=preprocess)
    echo = human_echo(json_to)
    echo(format_groups(analysis, verbose))
    echo(f"input shapes: {analysis.shapes.describe()} ({analysis.shapes.source})")
    for note in analysis.shapes.notes:
        echo(f"note: {note}")
    write_json(json_to, "analyze", {"input": str(input_path), "input_shapes": {
        "shapes": analysis.shapes.describe(), "source": analysis.shapes.source}, "groups": [{
        "id": g.id, "channels": g.size, "prunable": g.prunable, "reasons": g.reasons, "lossy_only": g.inexact, "sources": g.sources,
        "members": [{"param": m.param, "axis": m.axis, "role": m.role, "node": m.node} for m in g.members],
    } for g in analysis.groups]})
