"""Fidelity of SliceGPT's rotation of the residual stream (passes/rotate.py) against the unrotated
slice at the same --ratio: held-out output cosine on the transformer fixtures (GPT-2, ViT; random
weights with random LayerNorm scales, shifts and biases), calibration and held-out inputs drawn
apart (random tokens, random images). Prints one row per model and ratio: the cosine of the outputs,
and of the outputs less the reference's mean over the held-out samples (the part every input
shares, which a random model's constant shifts make large).

    python benchmarks/rotation_fidelity.py [--ratios 0.25 0.5] [--calib-samples 64]

With --real MODEL (trained models of the corpus, ~/.cache/onnxprune-realmodels/models, real inputs
from benchmarks/realdata.py in ~/.cache/onnxprune-fidelity/MODEL_calib.npz / _eval.npz): only the
residual stream is cut (--ratio of its width, the other groups untouched; criterion l1, round_to
1), rotated and unrotated, with repair off and with the default repair (all); held-out output
cosine and the output's own metric (CTC character accuracy for the text recognizers), both
against the original:

    python benchmarks/rotation_fidelity.py --real en_ppocrv4_rec ppocrv6_tiny_rec --ratios 0.25"""

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


class StreamOnly:
    """After the select pass: keep only the residual stream's removals (the group some statistic
    normalizes), so the rotated and the unrotated slice differ in the stream alone."""

    name = "stream-only"
    needs = ("analysis",)
    ensures: tuple = ()

    def run(self, state):
        from onnxprune.passes.base import PassResult
        from onnxprune.passes.rotate import _stream

        g, _ = _stream(state.analysis)
        state.removed = state.removed & set(g.channels)
        return PassResult(False, {"stream_removed": len(state.removed)})


def real(models, ratios) -> None:
    import onnx

    from onnxprune.passes import pipeline
    from onnxprune.runtime import compare_models

    build = pipeline.build_pipeline

    def stream_only(config, timer=None):
        passes = build(config, timer)
        at = next(k for k, p in enumerate(passes) if p.name.startswith("select"))
        return passes[:at + 1] + [StreamOnly()] + passes[at + 1:]

    pipeline.build_pipeline = stream_only
    corpus = Path.home() / ".cache/onnxprune-realmodels/models"
    data = Path.home() / ".cache/onnxprune-fidelity"
    print(f"{'model':<18} {'ratio':>5} {'repair':>6} {'stream kept':>11} {'cos rotated':>12} {'cos magnitude':>14} "
          f"{'metric':>6} {'rotated':>8} {'magnitude':>10}")
    for name in models:
        path, calib, held_out = corpus / f"{name}.onnx", data / f"{name}_calib.npz", data / f"{name}_eval.npz"
        for ratio in ratios:
            for repair in ("none", "all"):
                row = {}
                for rotate in (True, False):
                    r = onnxprune.prune(onnx.load(path), ratio=ratio, calib=str(calib), criterion="l1", repair=repair,
                                        rotate=rotate, round_to=1, validate=False)
                    assert any("rotated to its principal axes" in n for n in r.report.notes) == rotate, r.report.notes
                    g = next(x for x in r.report.groups if x.lossy_only)
                    check = compare_models(str(path), r.model, data=str(held_out), bounds=False)
                    out = next((o for o in check.outputs if o.metric != "cosine"), check.outputs[0])
                    row[rotate] = (out.cosine, out.metric, out.agreement, f"{g.kept}/{g.size}")
                print(f"{name:<18} {ratio:>5} {repair:>6} {row[True][3]:>11} {row[True][0]:>12.4f} {row[False][0]:>14.4f} "
                      f"{row[True][1]:>6} {row[True][2]:>8.4f} {row[False][2]:>10.4f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.25, 0.5])
    ap.add_argument("--calib-samples", type=int, default=64)
    ap.add_argument("--eval-samples", type=int, default=64)
    ap.add_argument("--real", nargs="+", metavar="MODEL", help="trained models of the corpus, real inputs")
    args = ap.parse_args()
    if args.real:
        real(args.real, args.ratios)
        return
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
