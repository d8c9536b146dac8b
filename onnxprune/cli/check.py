"""`onnxprune check ORIGINAL PRUNED`: run both models on the same inputs and compare outputs.

Prints a table ending in PASSED or FAILED: <output>: <figure>; FAILED exits with code 3 (an error
that stopped the check exits 1), so scripts and CI can tell a worse model from a broken run.
"""

from __future__ import annotations

import click

from ..errors import ValidationFailedError
from ..runtime.compare import compare_models
from ..runtime.data import parse_shapes
from . import options
from .output import human_echo, json_target, write_json


@options.command("check", help="Compare PRUNED against ORIGINAL with ONNX Runtime; exit 3 when it FAILS, 1 on an "
                                "error.\n\nWithout --calib the inputs are random, which only shows the graphs run and "
                                "agree.")
@click.argument("original", type=click.Path())
@click.argument("pruned", type=click.Path())
@options.calib
@options.preprocess
@options.device
@options.shape
@options.batch
@options.n_batches
@options.atol
@options.rtol
@options.min_cosine
@options.min_agreement
@options.metric
@options.seed
@options.threads
@options.json_option()
def check_cmd(original, pruned, calib, preprocess, device, shapes, batch, n_batches, atol, rtol, min_cosine,
              min_agreement, metric, seed, threads, json_path):
    json_to = json_target(json_path, inputs=(original, pruned))
    data = options.calib_data(calib, preprocess)
    result = compare_models(original, pruned, data=data, device=device, atol=atol, rtol=rtol, min_cosine=min_cosine,
                            min_agreement=min_agreement, shapes=parse_shapes(shapes), batch=options.one_batch(batch, None), seed=seed,
                            n_batches=n_batches, threads=threads, metric=metric)
    human_echo(json_to)(result.format_table())
    write_json(json_to, "check", {"original": str(original), "pruned": str(pruned), **result.to_dict()})
    if not result:
        raise ValidationFailedError(f"{pruned} does not meet the bounds against {original} ({result.verdict()})")
