"""Options that several subcommands share, declared once so they read the same everywhere."""

from __future__ import annotations

import click

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
