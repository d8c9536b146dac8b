"""`onnxprune check ORIGINAL PRUNED`: run both models on the same inputs and compare outputs.

Prints a table ending in PASSED or FAILED: <output>: <figure>; FAILED exits with code 3 (an error
that stopped the check exits 1), so scripts and CI can tell a worse model from a broken run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import EXIT_FAILED, ConfigError
from ..runtime.compare import compare_models
from ..runtime.data import parse_shapes
from ..runtime.sessions import DEVICES
from .output import human_echo, json_option, json_target, write_json
from .options import preprocess_option, shape_option


@click.command("check", help="Compare PRUNED against ORIGINAL with ONNX Runtime; exit 3 when it FAILS, 1 on an error.\n\n"
                             "Without --calib the inputs are random, which only shows the graphs run and agree.")
@click.argument("original", type=click.Path())
@click.argument("pruned", type=click.Path())
@click.option("--calib", type=click.Path(), help="Real inputs: an .npz keyed by input name (optional 'labels'), "
                                                 "a .py file defining load_data(), or a folder of images.")
@preprocess_option
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True,
              help="auto: CUDA when it works, else CPU.")
@shape_option
@click.option("--batch", type=int, help="Samples per run along the model's batch axis (default: the model's fixed "
                                        "batch, else 8). Models without a batch axis run whole feeds.")
@click.option("--batches", "n_batches", type=int, default=4, show_default=True, help="Random batches to compare.")
@click.option("--atol", type=float, help="Max abs error allowed per value (default 1e-4 unless another threshold is given).")
@click.option("--rtol", type=float, default=0.0, show_default=True, help="Adds rtol*|original| to atol per value.")
@click.option("--min-cosine", type=float, help="Lowest mean cosine similarity per output, e.g. 0.999.")
@click.option("--min-agreement", type=float, help="Lowest agreement (--metric) of classifier, detection or CTC "
                                                  "outputs, e.g. 0.99.")
@click.option("--metric", type=click.Choice(["auto", "top1", "boxes", "ctc", "cosine"]), default="auto", show_default=True,
              help="Agreement metric: top-1 for [N, K] scores, box F1 (same class, IoU 0.5) for detection heads, "
                   "CTC character accuracy for [N, T, C] / [T, N, C] outputs; auto picks per output.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random inputs.")
@click.option("--threads", type=int, help="onnxruntime intra-op threads.")
@json_option()
def check_cmd(original, pruned, calib, preprocess, device, shapes, batch, n_batches, atol, rtol, min_cosine,
              min_agreement, metric, seed, threads, json_path):
    json_to = json_target(json_path, inputs=(original, pruned))
    data = calib_data(calib, preprocess)
    result = compare_models(original, pruned, data=data, device=device, atol=atol, rtol=rtol, min_cosine=min_cosine,
                            min_agreement=min_agreement, shapes=parse_shapes(shapes), batch=batch, seed=seed,
                            n_batches=n_batches, threads=threads, metric=metric)
    human_echo(json_to)(result.format_table())
    write_json(json_to, "check", {"original": str(original), "pruned": str(pruned), **result.to_dict()})
    if not result:
        sys.exit(EXIT_FAILED)


def calib_data(calib: str | None, preprocess: str | None):
    """--calib as compare_models takes it; with --preprocess, an ImageFolder carrying the spec,
    parsed here so that a typo fails before any model is loaded."""
    if preprocess is None:
        return calib
    from ..runtime.images import ImageFolder, Preprocess

    if calib is None:
        raise ConfigError("--preprocess says how to read a folder of images; give the folder with --calib")
    if Path(calib).exists() and not Path(calib).is_dir():
        raise ConfigError(f"--preprocess applies to a folder of images; --calib {calib} is a file")
    return ImageFolder(calib, Preprocess.parse(preprocess))

