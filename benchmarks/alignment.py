"""Which --round-to suits ONNX Runtime on this CPU?

Prunes full-size zoo models (224x224, bn=True, BN folded so that every variant has the same layers)
at --ratio 0.3 and 0.5 with round_to in {1, 4, 8, 16, 32}, and times all variants of one model --
plus the unpruned (BN-folded) model -- interleaved in ONE onnxprune.runtime.benchmark run per
model (a, b, c, ..., a, b, c, ... after a warm-up) at batch 1 and 8; medians are reported.

For each variant: FLOPs (onnxprune's count: Conv/Gemm/MatMul, 2 per multiply-add, per sample),
median latency, speedup over the dense model, and latency per GFLOP relative to round_to=1 at the
same ratio (< 1.00 means the aligned channel counts run more efficiently than unaligned ones).
Variants whose pruned graphs are byte-identical are marked (they show the noise floor).

    python benchmarks/alignment.py [--models resnet50,mobilenet_v2] [--ratios 0.3,0.5]
                                   [--round-to 1,4,8,16,32] [--runs 30] [--warmup 5] [--threads N]
                                   [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import onnx
import onnxruntime

from onnxprune.passes.select_lossy import DEFAULT_ROUND_TO
from benchmarks._ortbench import csv, git_state, log, prune_copy, timed, timing_args
from tools.zoo import build












def kept_channels(report) -> dict:
    """Kept channel counts of the prunable groups, for the record: {size: sorted set of kept}."""
    out: dict[int, set] = {}
    for g in report.groups:
        if g.prunable:
            out.setdefault(g.size, set()).add(g.kept)
    return {str(k): sorted(v) for k, v in sorted(out.items())}


def run_model(name: str, ratios, round_tos, batches, runs, warmup, threads=None, runner="nospin") -> dict:
    log(f"[{name}] building and pruning")
    original = build(name, bn=True)
    dense = prune_copy(original, fold_bn=True)
    variants = [{"label": "dense", "ratio": 0.0, "round_to": None, "result": dense}]
    for ratio in ratios:
        for rt in round_tos:
            t0 = time.perf_counter()
            res = prune_copy(original, fold_bn=True, ratio=ratio, round_to=rt)
            variants.append({"label": f"r{ratio} rt{rt}", "ratio": ratio, "round_to": rt, "result": res})
            log(f"[{name}]   ratio {ratio} round_to {rt}: {res.report.flops_after / 1e9:.3f} GFLOPs "
                f"({time.perf_counter() - t0:.1f} s)")
    del original
    digests = {}
    for v in variants:
        h = hashlib.sha1(v["result"].model.SerializeToString()).hexdigest()
        v["same_as"] = digests.get(h)
        digests.setdefault(h, v["label"])
    models = [v["result"].model for v in variants]
    labels = [v["label"] for v in variants]
    total = len(batches) * (warmup + runs) * len(models)
    t0 = time.perf_counter()
    step = max(1, total // 10)

    def progress(done, total):
        if done % step == 0 or done == total:
            log(f"[{name}]   bench {done}/{total} runs ({time.perf_counter() - t0:.0f} s)")

    bench = timed(runner, models, labels, batches, threads, warmup, runs, progress)
    rows = []
    for v in variants:
        rep = v["result"].report
        row = {"label": v["label"], "ratio": v["ratio"], "round_to": v["round_to"], "same_as": v["same_as"],
               "flops": rep.flops_after, "gflops": rep.flops_after / 1e9, "params": rep.params_after,
               "kept_channels": kept_channels(rep), "latency": {}}
        for b in batches:
            s = bench.get(v["label"], b)
            row["latency"][str(b)] = {"median_ms": s.median_ms, "p10_ms": s.p10_ms, "p90_ms": s.p90_ms,
                                      "speedup_vs_dense": s.speedup}
        rows.append(row)
    # latency per GFLOP relative to round_to=1 at the same ratio
    for row in rows:
        ref = next((r for r in rows if r["ratio"] == row["ratio"] and r["round_to"] == 1), None)
        for b in batches:
            lat = row["latency"][str(b)]
            if ref is None:
                lat["per_gflop_vs_rt1"] = None
                continue
            rl = ref["latency"][str(b)]
            lat["per_gflop_vs_rt1"] = (lat["median_ms"] / row["gflops"]) / (rl["median_ms"] / ref["gflops"])
            lat["latency_vs_rt1"] = lat["median_ms"] / rl["median_ms"]
    return {"model": name, "flops_dense": dense.report.flops_after, "rows": rows, "bench": bench.to_dict()}


def format_model(res: dict, batches) -> str:
    cols = ["ratio", "round_to", "GFLOPs"]
    for b in batches:
        cols += [f"b{b} ms", f"b{b} p10-p90", f"b{b} speedup", f"b{b} ms/GF vs rt1"]
    cols += ["note"]
    lines = []
    for r in res["rows"]:
        line = [f"{r['ratio']:.1f}" if r["ratio"] else "dense", str(r["round_to"] or "-"), f"{r['gflops']:.3f}"]
        for b in batches:
            lat = r["latency"][str(b)]
            rel = lat.get("per_gflop_vs_rt1")
            line += [f"{lat['median_ms']:.2f}", f"{lat['p10_ms']:.1f}-{lat['p90_ms']:.1f}",
                     f"{lat['speedup_vs_dense']:.2f}x", "-" if rel is None else f"{rel:.3f}"]
        line.append(f"same graph as {r['same_as']}" if r["same_as"] else "")
        lines.append(line)
    widths = [max(len(x[i]) for x in [cols, *lines]) for i in range(len(cols))]
    fmt = lambda row: "  ".join(c.rjust(w) if i < len(cols) - 1 else c for i, (c, w) in enumerate(zip(row, widths))).rstrip()
    return "\n".join([f"{res['model']} (dense {res['flops_dense'] / 1e9:.3f} GFLOPs)", fmt(cols),
                      fmt(["-" * w for w in widths]), *[fmt(x) for x in lines]])


def best_round_to(res: dict, batches) -> list[str]:
    """Per ratio and batch: the round_to with the lowest median latency, and its margin over rt=1."""
    out = []
    for ratio in sorted({r["ratio"] for r in res["rows"] if r["ratio"]}):
        rows = [r for r in res["rows"] if r["ratio"] == ratio]
        for b in batches:
            best = min(rows, key=lambda r: r["latency"][str(b)]["median_ms"])
            eff = min(rows, key=lambda r: r["latency"][str(b)]["per_gflop_vs_rt1"])
            rt1 = next(r for r in rows if r["round_to"] == 1)
            cur = {r["round_to"]: r["latency"][str(b)]["median_ms"] for r in rows}
            out.append(f"{res['model']} ratio {ratio} batch {b}: fastest round_to={best['round_to']} "
                       f"({best['latency'][str(b)]['median_ms']:.2f} ms, {best['latency'][str(b)]['latency_vs_rt1']:.3f}x "
                       f"of round_to=1's {rt1['latency'][str(b)]['median_ms']:.2f} ms); most efficient per GFLOP: "
                       f"round_to={eff['round_to']} ({eff['latency'][str(b)]['per_gflop_vs_rt1']:.3f}); "
                       + ", ".join(f"rt{k}: {v:.2f}" for k, v in cur.items()))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=csv(str), default=["resnet50", "mobilenet_v2"])
    ap.add_argument("--ratios", type=csv(float), default=[0.3, 0.5])
    ap.add_argument("--round-to", type=csv(int), default=[1, 4, 8, 16, 32])
    timing_args(ap, runs=30)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if 1 not in args.round_to:
        ap.error("--round-to must include 1 (the reference)")
    payload = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "cpus": os.cpu_count(),
               "machine": platform.machine(), "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
               "threads": args.threads or "onnxruntime default", "runner": args.runner, "runs": args.runs, "warmup": args.warmup,
               "default_round_to": DEFAULT_ROUND_TO, "git": git_state(), "models": []}
    print(f"ONNX Runtime {onnxruntime.__version__} CPU, threads: {payload['threads']}, runner: {args.runner}, "
          f"{os.cpu_count()} CPUs, onnxprune at {payload['git']['commit']}; {args.warmup} warm-up + {args.runs} "
          f"interleaved runs per variant; BN folded in every variant\n")
    t0 = time.perf_counter()
    for name in args.models:
        res = run_model(name, args.ratios, args.round_to, args.batches, args.runs, args.warmup, args.threads, args.runner)
        payload["models"].append(res)
        print(format_model(res, args.batches))
        for line in best_round_to(res, args.batches):
            print("  " + line)
        print(flush=True)
        if args.json:
            args.json.write_text(json.dumps(payload, indent=2))
    log(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
