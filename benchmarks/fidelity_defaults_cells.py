"""Re-measure chosen cells of benchmarks/fidelity_defaults.py (the defaults at given targets) after
a change to the defaults, appending rows to benchmarks/fidelity_defaults.json (the render keeps the
latest row per cell):

    python benchmarks/fidelity_defaults_cells.py --keeps 0.7 --models isbn_yolo26n coco_yolo11n
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from fidelity_defaults import HOLD_OUT, HOLD_OUT_2, HOLD_OUT_3, TUNED  # noqa: E402
from fidelity_real import code_version, data_paths, measure  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", nargs="+", default=TUNED + HOLD_OUT + HOLD_OUT_2 + HOLD_OUT_3)
    ap.add_argument("--keeps", nargs="+", type=float, default=[0.7])
    ap.add_argument("--repair", default="all")
    ap.add_argument("--results", default=str(REPO / "benchmarks" / "fidelity_defaults.json"))
    ap.add_argument("--workdir", default=str(Path.home() / ".cache" / "onnxprune-fidelity"))
    ap.add_argument("--calib", type=int, default=96, help="calibration samples (a count other than 96 has its own file in --workdir)")
    ap.add_argument("--holdout", type=int, default=64, help="held-out samples")
    args = ap.parse_args()
    for keep in args.keeps:
        for model in args.models:
            try:
                row = measure(model, keep, None, args.repair, data_paths(model, Path(args.workdir), args.calib, args.holdout))
                row["calib_samples"], row["holdout_samples"] = args.calib, args.holdout
            except Exception as exc:  # noqa: BLE001 - a crash is the finding
                row = {"model": model, "keep": keep, "repair": args.repair, "crash": f"{type(exc).__name__}: {exc}",
                       "trace": traceback.format_exc()[-800:], "code": code_version()}
            row["criterion"] = "default"
            with open(args.results, "a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps({k: row.get(k) for k in ("model", "keep", "metric", "figure", "flops_kept", "seconds",
                                                       "crash")}), flush=True)


if __name__ == "__main__":
    main()
