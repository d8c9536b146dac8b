"""One pruning run's figure on a trained model depends on which calibration samples come first (the
sensitivity probes and the race's held-out split take them in order). This runs the same
configuration on several orders of the same calibration samples and prints each held-out figure
and their mean, the way docs/DETECTORS.md compares allocation rules:

    python benchmarks/calib_orders.py --models coco_yolo11n --keeps 0.7 --allocation sensitivity
    python benchmarks/calib_orders.py --models coco_yolo11n --keeps 0.7 --cost-exponent 0   # the rule before 20c6dd9
    python benchmarks/calib_orders.py --models coco_yolo11n --keeps 0.7 --defaults           # the race

Order 0 is the calibration file as benchmarks/realdata.py builds it; order s > 0 is its samples
permuted by numpy.random.default_rng(s). Data and models as for benchmarks/fidelity_real.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from fidelity_real import data_paths  # noqa: E402


def ordered(calib: Path, seed: int) -> Path:
    if seed == 0:
        return calib
    out = calib.with_name(f"{calib.stem}_order{seed}.npz")
    if not out.exists():
        d = np.load(calib)
        p = np.random.default_rng(seed).permutation(len(d[d.files[0]]))
        np.savez(out, **{k: d[k][p] for k in d.files})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--keeps", nargs="+", type=float, default=[0.7])
    ap.add_argument("--orders", type=int, default=4, help="orders 0 .. N-1")
    ap.add_argument("--criterion", default="recon")
    ap.add_argument("--allocation", default="sensitivity")
    ap.add_argument("--defaults", action="store_true", help="the defaults with --calib (the race) instead")
    ap.add_argument("--cost-exponent", type=float, default=None,
                    help="passes/select_lossy.py COST_EXPONENT for this run (0: equal damage, the rule before)")
    ap.add_argument("--workdir", default=str(Path.home() / ".cache" / "onnxprune-fidelity"))
    ap.add_argument("--calib", type=int, default=96)
    ap.add_argument("--holdout", type=int, default=64)
    args = ap.parse_args()

    import onnx

    import onnxprune.passes.select_lossy as sl
    from onnxprune import prune
    from onnxprune.runtime import compare_models

    if args.cost_exponent is not None:
        sl.COST_EXPONENT = args.cost_exponent
    what = "defaults" if args.defaults else f"{args.criterion}, {args.allocation}"
    for model in args.models:
        path, calib, held_out = data_paths(model, Path(args.workdir), args.calib, args.holdout)
        for keep in args.keeps:
            figures = []
            for seed in range(args.orders):
                kw = {} if args.defaults else {"criterion": args.criterion, "allocation": args.allocation}
                t0 = time.perf_counter()
                result = prune(onnx.load(path), target_flops=keep, calib=str(ordered(calib, seed)), repair="all",
                               validate=False, **kw)
                seconds = time.perf_counter() - t0
                check = compare_models(str(path), result.model, data=str(held_out), bounds=False)
                out = next((o for o in check.outputs if o.metric != "cosine"), check.outputs[0])
                figure = out.agreement if out.metric != "cosine" else out.cosine
                figures.append(figure)
                race = result.report.race
                kept = f" kept {race['kept']} + {race['allocation']}" if race else ""
                print(f"{model} {keep} [{what}, exponent {sl.COST_EXPONENT}] order {seed}: {out.metric} "
                      f"{figure:.4f} ({seconds:.0f} s){kept}", flush=True)
            print(f"{model} {keep} [{what}, exponent {sl.COST_EXPONENT}] mean over {args.orders} orders: "
                  f"{np.mean(figures):.4f} (min {min(figures):.4f}, max {max(figures):.4f})", flush=True)


if __name__ == "__main__":
    main()
