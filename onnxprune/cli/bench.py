"""`onnxprune bench A.onnx [B.onnx ...]`: latency and throughput, the first model as the baseline.

The table goes to stdout, the progress bar to stderr (a terminal only), so `> table.txt` keeps only the results.
"""

from __future__ import annotations

import click

from ..errors import ConfigError
from ..runtime.bench import benchmark
from ..runtime.data import parse_shapes
from ..runtime.sessions import DEVICES
from .output import StderrProgress, human_echo, json_option, json_target, write_json
from .options import shape_option


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        sizes = ()
    if not sizes or any(s < 1 for s in sizes):
        raise ConfigError(f"--batch '{text}': expected positive sizes separated by commas, e.g. 1,8")
    return sizes


@click.command("bench", help="Time MODELS with onnxruntime on random inputs; speedups are against the first.")
@click.argument("models", nargs=-1, required=True, type=click.Path())
@click.option("--batch", "batch", default="1,8", show_default=True, help="Batch sizes, comma-separated.")
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True,
              help="auto: CUDA when it works, else CPU.")
@click.option("--threads", type=int, help="onnxruntime intra-op threads (default: onnxruntime's choice).")
@click.option("--runs", type=int, default=30, show_default=True, help="Timed runs per model and batch size.")
@click.option("--warmup", type=int, default=5, show_default=True, help="Untimed runs first.")
@shape_option
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random inputs.")
@json_option()
@click.option("-q", "--quiet", is_flag=True, help="No progress bar (there is none unless stderr is a terminal).")
def bench_cmd(models, batch, device, threads, runs, warmup, shapes, seed, json_path, quiet):
    json_to = json_target(json_path, inputs=models)
    sizes = _batch_sizes(batch)
    with StderrProgress(enabled=not quiet) as bar:
        result = benchmark(list(models), sizes, device=device, threads=threads, warmup=warmup, runs=runs,
                           shapes=parse_shapes(shapes), seed=seed,
                           progress=lambda done, total: bar("benchmarking", done, total))
    human_echo(json_to)(result.format_table())
    write_json(json_to, "bench", {"models": list(models), **result.to_dict()})
