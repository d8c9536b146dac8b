"""Options that several subcommands share, declared once so they read the same everywhere."""

from __future__ import annotations

import contextlib
import re

import click

from ..errors import ConfigError

SHAPE_HELP = ("Input shape to use where the model's dims are dynamic: NAME:1x3x224x224, NAME:[1,3,224,224] or "
              "NAME:1,3,224,224 (repeat for several inputs). Default: the --calib data's shapes, else a stated "
              "guess (batch 1, images 224x224 or 640x640).")
# Spelled out here because --help must not point at docs that are not installed.
PREPROCESS_HELP = ("How a folder of images given as --calib becomes inputs: comma-separated key=value among "
                   "resize=S|HxW, crop=S|HxW, mean=M|R/G/B, std=S|R/G/B, scale=255, layout=nchw|nhwc, "
                   "color=rgb|bgr|gray, interp=bilinear|nearest|bicubic|lanczos; e.g. "
                   "'resize=256,crop=224,mean=0.485/0.456/0.406,std=0.229/0.224/0.225' "
                   "(default: the folder's preprocess.txt).")


def shape_option(fn):
    """--shape, with Polygraphy's --input-shapes as an alias."""
    return click.option("--shape", "--input-shapes", "shapes", multiple=True, metavar="NAME:DIMS", help=SHAPE_HELP)(fn)


def preprocess_option(fn):
    return click.option("--preprocess", metavar="SPEC", help=PREPROCESS_HELP)(fn)


# Library fields that the CLI spells as flags; a library error names the field, the CLI the flag.
_FLAGS = ("ratio", "target_flops", "target_params", "target_latency", "max_group_ratio", "max_error", "min_cosine",
          "min_agreement", "round_to", "repair", "calib", "metric", "device", "criterion", "allocation", "batch", "threads")
_FIELD = re.compile(r"(?<![\w-])(" + "|".join(_FLAGS) + r")(?![\w-])")


@contextlib.contextmanager
def as_flags():
    """Library errors raised in the block name CLI flags: `ratio must be...` -> `--ratio must be...`."""
    try:
        yield
    except ConfigError as exc:
        raise ConfigError(_FIELD.sub(lambda m: "--" + m.group(1).replace("_", "-"), str(exc))) from None
