"""`onnxprune bench A.onnx [B.onnx ...]`: latency and throughput, the first model as the baseline.

The table goes to stdout, the progress bar to stderr (a terminal only), so `> table.txt` keeps only the results.
"""

from __future__ import annotations

import click

from ..runtime.bench import benchmark
from ..runtime.data import parse_shapes
from . import options
from .output import StderrProgress, human_echo, json_target, write_json


@options.command("bench", help="Time MODELS with onnxruntime on random inputs; speedups are against the first.")
@click.argument("models", nargs=-1, required=True, type=click.Path())
@options.batch
@options.device
@options.threads
@options.runs
@options.warmup
@options.shape
@options.seed
@options.json_option()
@options.quiet
def bench_cmd(models, batch, device, threads, runs, warmup, shapes, seed, json_path, quiet):
    json_to = json_target(json_path, inputs=models)
    sizes = options.batch_sizes(batch)
    with StderrProgress(enabled=not quiet) as bar:
        result = benchmark(list(models), sizes, device=device, threads=threads, warmup=warmup, runs=runs,
                           shapes=parse_shapes(shapes), seed=seed,
                           progress=lambda done, total: bar("benchmarking", done, total))
    human_echo(json_to)(result.format_table())
    write_json(json_to, "bench", {"models": list(models), **result.to_dict()})
