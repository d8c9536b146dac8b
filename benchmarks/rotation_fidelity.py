"""Fidelity of SliceGPT's rotation of the residual stream (passes/rotate.py) against the unrotated
slice at the same --ratio: held-out output cosine on the transformer fixtures (GPT-2, ViT; random
weights with random LayerNorm scales, shifts and biases), calibration and held-out inputs drawn
apart (random tokens, random images). Prints one row per model and ratio: the cosine of the outputs,
and of the outputs less the reference's mean over the held-out samples (the part every input
shares, which a random model's constant shifts make large).

    python benchmarks/rotation_fidelity.py [--ratios 0.25 0.5] [--calib-samples 64]"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import onnxprune  # noqa: E402
from tests.analysis.test_transformers import GPT2, VIT, feeds  # noqa: E402
from tests.helpers.oracle import copy, run  # noqa: E402
from tests.passes.test_rotate import cosine, randomized  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.25, 0.5])
    ap.add_argument("--calib-samples", type=int, default=64)
    ap.add_argument("--eval-samples", type=int, default=64)
    args = ap.parse_args()
    print(f"{'model':<16} {'ratio':>5} {'stream kept':>11} {'cos rotated':>12} {'cos magnitude':>14} "
          f"{'centred rotated':>16} {'centred magnitude':>18}")
    with tempfile.TemporaryDirectory() as tmp:
        for path in (GPT2, VIT):
            model = randomized(path)
            data = str(Path(tmp) / f"{path.stem}.npz")
            np.savez(data, **feeds(model, args.calib_samples, 12, 0))
            held_out = feeds(model, args.eval_samples, 12, 1)
            reference = run(model, held_out)[0]
            for ratio in args.ratios:
                row = {}
                for rotate in (True, False):
                    r = onnxprune.prune(copy(model), ratio=ratio, calib=data, repair="none", rotate=rotate, round_to=1)
                    g = next(x for x in r.report.groups if x.lossy_only)
                    out = run(r.model, held_out)[0]
                    mean = reference.mean(axis=0, keepdims=True)  # the part every input shares
                    row[rotate] = (cosine(reference, out), cosine(reference - mean, out - mean), f"{g.kept}/{g.size}")
                print(f"{path.stem:<16} {ratio:>5} {row[True][2]:>11} {row[True][0]:>12.4f} {row[False][0]:>14.4f} "
                      f"{row[True][1]:>16.4f} {row[False][1]:>18.4f}")


if __name__ == "__main__":
    main()
