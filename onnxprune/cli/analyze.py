"""`onnxprune analyze IN`: the channel groups of a model, prunable or why not."""

from __future__ import annotations

from pathlib import Path

import click

from ..analysis.sparsity import format_sparsity, weight_sparsity
from ..api import analyze_model
from ..passes.analyze import fused_ops_note
from ..passes.weight_inputs import weight_inputs_note
from ..report import format_groups
from . import options
from .output import human_echo, json_target, write_json


@options.command("analyze")
@click.argument("input_path", metavar="IN.onnx", type=click.Path(dir_okay=False, path_type=Path))
@options.verbose
@options.json_option()
@options.calib
@options.preprocess
@options.shape
@options.latency
@options.batch
@options.device
@options.threads
@options.fold_bn
@options.latency_cache
def analyze_cmd(input_path, verbose, json_path, calib, preprocess, shapes, latency, batch, device, threads, fold_bn,
                latency_cache):
    """Print the channel groups of IN.onnx (size, sources, prunable or blocked and why) and the
    weight sparsity of each layer (exact zeros, near-zero weights, all-zero output channels)."""
    json_to = json_target(json_path, inputs=(input_path,))
    if latency:
        from ..api import latency_table
        from ..config import PruneConfig

        config = PruneConfig(device=device, batch=options.one_batch(batch, 1), threads=threads, shapes=tuple(shapes),
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
    if analysis.graph.weight_inputs:
        echo(f"note: {weight_inputs_note(analysis.graph.weight_inputs, analysis.graph.model.ir_version, 'keep')}")
    fused = fused_ops_note(analysis.graph.model)
    if fused:
        echo(f"note: {fused}")
    sparsity = weight_sparsity(analysis.graph)
    echo("")
    echo(format_sparsity(sparsity))
    write_json(json_to, "analyze", {"input": str(input_path), "sparsity": [x.to_dict() for x in sparsity], "input_shapes": {
        "shapes": analysis.shapes.describe(), "source": analysis.shapes.source}, "groups": [{
        "id": g.id, "channels": g.size, "prunable": g.prunable, "reasons": g.reasons, "lossy_only": g.inexact, "sources": g.sources,
        "members": [{"param": m.param, "axis": m.axis, "role": m.role, "node": m.node} for m in g.members],
    } for g in analysis.groups]})
