"""`onnxprune analyze IN`: the channel groups of a model, prunable or why not."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..api import analyze_model
from ..report import format_groups


@click.command("analyze", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("input_path", metavar="IN.onnx", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-v", "--verbose", is_flag=True, help="List every member parameter of each group.")
@click.option("--json", "as_json", is_flag=True, help="Print the groups as JSON.")
def analyze_cmd(input_path, verbose, as_json):
    """Print the channel groups of IN.onnx: size, sources, prunable or blocked and why."""
    analysis = analyze_model(input_path)
    if as_json:
        click.echo(json.dumps([{
            "id": g.id, "channels": g.size, "prunable": g.prunable, "reasons": g.reasons, "sources": g.sources,
            "members": [{"param": m.param, "axis": m.axis, "role": m.role, "node": m.node} for m in g.members],
        } for g in analysis.groups], indent=2))
        return
    click.echo(format_groups(analysis, verbose))
