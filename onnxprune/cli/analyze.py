"""`onnxprune analyze IN`: the channel groups of a model, prunable or why not."""

from __future__ import annotations

from pathlib import Path

import click

from ..analysis.sparsity import format_sparsity, weight_sparsity
from ..api import analyze_model
from ..report import format_groups
from .output import human_echo, json_option, json_target, write_json
from .options import preprocess_option, shape_option
from ..runtime.sessions import DEVICES


@click.command("analyze", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("input_path", metavar="IN.onnx", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-v", "--verbose", is_flag=True, help="List every member parameter of each group.")
@json_option()
@click.option("--calib", type=click.Path(path_type=Path), help="Data whose first sample gives the input shapes.")
@preprocess_option
@shape_option
@click.option("--latency", is_flag=True,
              help="Print the per-layer latency table that --target-latency uses instead of the groups (measured "
                   "with ONNX Runtime, or read from the cache).")
@click.option("--batch", type=int, default=1, show_default=True, help="Batch size of the latency table.")
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True, help="Device of the latency table.")
@click.option("--threads", type=int, help="ONNX Runtime intra-op threads of the latency table.")
@click.option("--fold-bn", is_flag=True, help="Time the model as `--fold-bn` prunes it.")
@click.option("--latency-cache", metavar="DIR", help="Folder of latency tables (default ~/.cache/onnxprune/latency; 'off').")
def analyze_cmd(input_path, verbose, json_path, calib, preprocess, shapes, latency, batch, device, threads, fold_bn,
                latency_cache):
    """Print the channel groups of IN.onnx (size, sources, prunable or blocked and why) and the
    weight sparsity of each layer (exact zeros, near-zero weights, all-zero output channels)."""
    json_to = json_target(json_path, inputs=(input_path,))
    if latency:
        from ..api import latency_table
        from ..config import PruneConfig

        config = PruneConfig(device=device, batch=batch, threads=threads, shapes=tuple(shapes),
                             calib=str(calib) if calib else None, preprocess=preprocess, fold_bn=fold_bn,
                             latency_cache=latency_cache)
        table = latency_table(input_path, config)
        human_echo(json_to)(table.format())
        write_json(json_to, "analyze", {"input": str(input_path), "latency_table": table.to_dict()})
        return
    analysis = analyze_model(input_path, shapes=tuple(shapes), calib=str(calib) if calib else None,
                             preprocess=preprocess)
    echo = human_echo(json_to)
    echo(format_groups(analysis, verbose))
    echo(f"input shapes: {analysis.shapes.describe()} ({analysis.shapes.source})")
    for note in analysis.shapes.notes:
        echo(f"note: {note}")
    sparsity = weight_sparsity(analysis.graph)
    echo("")
    echo(format_sparsity(sparsity))
    write_json(json_to, "analyze", {"input": str(input_path), "sparsity": [x.to_dict() for x in sparsity], "input_shapes": {
        "shapes": analysis.shapes.describe(), "source": analysis.shapes.source}, "groups": [{
        "id": g.id, "channels": g.size, "prunable": g.prunable, "reasons": g.reasons, "lossy_only": g.inexact, "sources": g.sources,
        "members": [{"param": m.param, "axis": m.axis, "role": m.role, "node": m.node} for m in g.members],
    } for g in analysis.groups]})
