"""Does latency fall as fast as FLOPs? ONNX Runtime CPU speedup of pruned zoo models.

For each full-size model (224x224, bn=True) the baseline is the BN-folded original,
`prune(model, fold_bn=True)` in exact mode, so that the speedup measures pruning only (no BN is
left in any timed graph). The pruned variants are `prune(model, fold_bn=True, ratio=R)` with the
default CPU alignment (round_to=%(rt)d) and without it (round_to=1). The unfolded original (with BN)
is timed in the same run for reference. All variants of one model run interleaved in ONE
onnxprune.runtime.benchmark call (warm-up, then a, b, c, ..., a, b, c, ...) at batch 1 and 8, and
the medians are compared:

    flops_ratio   = FLOPs(baseline) / FLOPs(pruned)       (Conv/Gemm/MatMul, 2 per multiply-add)
    latency_ratio = median latency(baseline) / median latency(pruned)
    check         = latency_ratio >= 0.9 * flops_ratio    ("latency falls at least 0.9x as fast as FLOPs")

Targets at --ratio 0.5, batch 8 (default alignment): resnet50 >= 3.7x, mobilenet_v2 >= 2.0x,
densenet121 >= 3.2x faster than the baseline.

    python benchmarks/speedup.py [--models resnet18,resnet50,...] [--ratios 0.3,0.5] [--runs 40]
                                 [--warmup 5] [--batches 1,8] [--threads N] [--json out.json]
                                 [--op-profile BATCH]

--op-profile B adds ORT's per-op kernel times (SessionOptions.enable_profiling) of the baseline and
the pruned variants at the largest ratio, at batch B: which ops keep their time when channels go.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import onnx
import onnxruntime

from onnxprune.passes.select_lossy import DEFAULT_ROUND_TO
from onnxprune.runtime import compare_models
from benchmarks._ortbench import csv, git_state, log, prune_copy, timed, timing_args
from tools.zoo import build

__doc__ = __doc__ % {"rt": DEFAULT_ROUND_TO["cpu"]}

MODELS = ["resnet18", "resnet50", "mobilenet_v2", "densenet121", "inception"]
TARGETS = {("resnet50", 0.5, 8): 3.7, ("mobilenet_v2", 0.5, 8): 2.0, ("densenet121", 0.5, 8): 3.2}
CHECK_FACTOR = 0.9










def group_summary(report) -> dict:
    """Where the FLOPs that cannot go are: blocked groups and their reasons, kept/size of the rest."""
    blocked = [g for g in report.groups if not g.prunable]
    reasons = Counter(r.split(":")[0][:120] for g in blocked for r in g.reasons[:1])
    changed = [g for g in report.groups if g.kept < g.size]
    untouched = [g for g in report.groups if g.prunable and g.kept == g.size]
    return {
        "groups": len(report.groups),
        "prunable": len(report.groups) - len(blocked),
        "blocked": len(blocked),
        "blocked_channels": sum(g.size for g in blocked),
        "blocked_reasons": dict(reasons.most_common(8)),
        "blocked_examples": [{"sources": g.sources[:3], "size": g.size, "reason": (g.reasons or [""])[0][:200]}
                             for g in blocked[:6]],
        "pruned_groups": len(changed),
        "prunable_but_unpruned": len(untouched),
        "unpruned_examples": [{"sources": g.sources[:2], "size": g.size} for g in untouched[:6]],
        "channels_removed": report.channels_removed,
        "prunable_flops_share": report.prunable_flops_share,
    }




def op_profile(name: str, models: dict, batch: int, runs: int, threads) -> dict:
    """ORT's own per-node kernel times (enable_profiling), summed per op type and per node, for each
    model; the models run interleaved. Shows which ops keep their time when channels go."""
    import tempfile

    import numpy as np

    ort = onnxruntime
    sessions = {}
    tmp = tempfile.mkdtemp(prefix="onnxprune-opprof-")
    for label, model in models.items():
        so = ort.SessionOptions()
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, label.replace(" ", "_").replace("=", ""))
        so.log_severity_level = 3
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # see benchmarks/_ortbench.py
        if threads:
            so.intra_op_num_threads = threads
        sessions[label] = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feed = {"input": np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)}
    for _ in range(3):
        for sess in sessions.values():
            sess.run(None, feed)
    # the warm-up runs are in the profile too: drop them by run count below
    for _ in range(runs):
        for sess in sessions.values():
            sess.run(None, feed)
    out = {}
    for label, sess in sessions.items():
        events = json.loads(Path(sess.end_profiling()).read_text())
        per_node, per_op = {}, {}
        for e in events:
            if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
                node = e["name"][: -len("_kernel_time")]
                op = e.get("args", {}).get("op_name", "?")
                per_node.setdefault(node, [op, []])[1].append(e["dur"])
        for node, (op, durs) in per_node.items():
            durs = durs[3:]  # skip the warm-up runs
            ms = float(np.median(durs)) / 1000.0 if durs else 0.0
            per_node[node] = (op, ms)
            per_op[op] = per_op.get(op, 0.0) + ms
        out[label] = {"per_op_ms": per_op, "per_node_ms": {k: v[1] for k, v in per_node.items()},
                      "node_op": {k: v[0] for k, v in per_node.items()},
                      "total_ms": sum(per_op.values())}
    return out


def format_op_profile(name: str, prof: dict, batch: int, top: int = 12) -> str:
    labels = list(prof)
    base = prof[labels[0]]
    ops = sorted(set().union(*(p["per_op_ms"] for p in prof.values())), key=lambda o: -base["per_op_ms"].get(o, 0.0))
    head = f"{name}, batch {batch}: ORT per-op kernel time (median per run, ms) and ratio to {labels[0]}"
    cols = ["op"] + [f"{lab} ms" for lab in labels] + [f"x {lab}" for lab in labels[1:]]
    rows = []
    for op in ops + ["(all nodes)"]:
        vals = [p["total_ms"] if op == "(all nodes)" else p["per_op_ms"].get(op, 0.0) for p in prof.values()]
        rows.append([op] + [f"{v:.2f}" for v in vals] + [f"{vals[0] / v:.2f}x" if v else "-" for v in vals[1:]])
    nodes = sorted(base["per_node_ms"], key=lambda k: -base["per_node_ms"][k])[:top]
    for node in nodes:
        vals = [p["per_node_ms"].get(node) for p in prof.values()]
        rows.append([f"  {node} ({base['node_op'][node]})"] + ["-" if v is None else f"{v:.2f}" for v in vals]
                    + [f"{vals[0] / v:.2f}x" if v else "-" for v in vals[1:]])
    widths = [max(len(r[i]) for r in [cols, *rows]) for i in range(len(cols))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([head, fmt(cols), *[fmt(r) for r in rows]])


def run_model(name: str, ratios, batches, runs, warmup, threads, default_rt, op_profile_batch=None,
              runner="nospin") -> dict:
    t0 = time.perf_counter()
    log(f"[{name}] building")
    original = build(name, bn=True, resolution=224)
    base = prune_copy(original, fold_bn=True)
    # Folding is exact up to float rounding: check it before timing it.
    cmp = compare_models(original, base.model, batch=1, n_batches=1, atol=1e-3, rtol=1e-3)
    log(f"[{name}] baseline (BN folded, exact) vs original: {cmp.verdict()}")
    variants = [("original (BN)", None, None, None), ("baseline", 0.0, None, base)]
    for ratio in ratios:
        for label, rt in (("aligned", default_rt), ("round_to=1", 1)):
            res = prune_copy(original, fold_bn=True, ratio=ratio, round_to=rt)
            log(f"[{name}]   ratio {ratio} {label}: FLOPs {base.report.flops_after / 1e9:.3f} -> "
                f"{res.report.flops_after / 1e9:.3f} G ({base.report.flops_after / res.report.flops_after:.2f}x)")
            variants.append((f"r{ratio} {label}", ratio, rt, res))
    labels = [v[0] for v in variants]
    models = [original] + [v[3].model for v in variants[1:]]
    log(f"[{name}] prepared in {time.perf_counter() - t0:.0f} s; benchmarking {len(models)} models interleaved, "
        f"batches {batches}, {warmup} warm-up + {runs} runs")
    t1 = time.perf_counter()
    step = max(1, (len(batches) * (warmup + runs) * len(models)) // 8)

    def progress(done, total):
        if done % step == 0 or done == total:
            log(f"[{name}]   {done}/{total} runs ({time.perf_counter() - t1:.0f} s)")

    bench = timed(runner, models, labels, batches, threads, warmup, runs, progress)
    base_flops = base.report.flops_after
    rows = []
    for label, ratio, rt, res in variants:
        row = {"model": name, "variant": label, "ratio": ratio, "round_to": rt,
               "flops": base.report.flops_before if res is None else res.report.flops_after,
               "params": base.report.params_before if res is None else res.report.params_after, "batches": {}}
        row["flops_ratio"] = base_flops / row["flops"]
        for b in batches:
            s, sb = bench.get(label, b), bench.get("baseline", b)
            lr = sb.median_ms / s.median_ms
            entry = {"median_ms": s.median_ms, "p10_ms": s.p10_ms, "p90_ms": s.p90_ms, "mean_ms": s.mean_ms,
                     "baseline_median_ms": sb.median_ms, "latency_ratio": lr,
                     "latency_ratio_p10": sb.p10_ms / s.p10_ms}
            if ratio:
                entry["check_0.9"] = lr >= CHECK_FACTOR * row["flops_ratio"]
                entry["latency_vs_flops"] = lr / row["flops_ratio"]
                target = TARGETS.get((name, ratio, b)) if rt == default_rt else None
                if target is not None:
                    entry["target"] = target
                    entry["target_met"] = lr >= target
            row["batches"][str(b)] = entry
        if res is not None and ratio:
            row["groups"] = group_summary(res.report)
        rows.append(row)
    prof = None
    if op_profile_batch:
        chosen = {"baseline": base.model}
        for label, ratio, rt, res in variants:
            if ratio == max(ratios) and res is not None:
                chosen[label] = res.model
        log(f"[{name}] ORT op profile at batch {op_profile_batch}: {list(chosen)}")
        prof = op_profile(name, chosen, op_profile_batch, max(5, runs // 4), threads)
    log(f"[{name}] done in {time.perf_counter() - t0:.0f} s")
    return {"model": name, "op_profile": prof, "op_profile_batch": op_profile_batch, "baseline_flops": base_flops, "baseline_vs_original": cmp.verdict(),
            "baseline_groups": group_summary(base.report), "rows": rows, "bench": bench.to_dict(),
            "seconds": time.perf_counter() - t0}


def format_table(results, batches) -> str:
    cols = ["model", "variant", "GFLOPs", "FLOPs x"]
    for b in batches:
        cols += [f"b{b} ms", f"b{b} p10-p90", f"b{b} lat x", f"b{b} lat/FLOPs", f"b{b} >=0.9"]
    cols += ["target (b8)"]
    lines = []
    for res in results:
        for r in res["rows"]:
            line = [r["model"], r["variant"], f"{r['flops'] / 1e9:.3f}", f"{r['flops_ratio']:.2f}x"]
            for b in batches:
                e = r["batches"][str(b)]
                ok = e.get("check_0.9")
                line += [f"{e['median_ms']:.2f}", f"{e['p10_ms']:.1f}-{e['p90_ms']:.1f}", f"{e['latency_ratio']:.2f}x",
                         f"{e['latency_vs_flops']:.2f}" if "latency_vs_flops" in e else "-",
                         "-" if ok is None else ("yes" if ok else "NO")]
            tgt = next((e for e in r["batches"].values() if "target" in e), None)
            line.append("" if tgt is None else f">= {tgt['target']}x: {'met' if tgt['target_met'] else 'MISSED'}")
            lines.append(line)
    widths = [max(len(x[i]) for x in [cols, *lines]) for i in range(len(cols))]
    fmt = lambda row: "  ".join(c.ljust(w) if i < 2 or i == len(cols) - 1 else c.rjust(w)
                                for i, (c, w) in enumerate(zip(row, widths))).rstrip()
    return "\n".join([fmt(cols), fmt(["-" * w for w in widths]), *[fmt(x) for x in lines]])


def format_groups(results) -> str:
    out = []
    for res in results:
        g = res["baseline_groups"]
        out.append(f"{res['model']}: {g['groups']} channel groups, {g['prunable']} prunable, {g['blocked']} blocked "
                   f"({g['blocked_channels']} channels); {g['prunable_flops_share'] * 100:.0f}% of FLOPs in prunable "
                   f"layers; baseline vs original: {res['baseline_vs_original']}")
        if g["blocked_reasons"]:
            out.append("    blocked: " + "; ".join(f"{n} x {r}" for r, n in g["blocked_reasons"].items()))
        for r in res["rows"]:
            if "groups" in r:
                rg = r["groups"]
                examples = ", ".join(f"{e['sources'][0]}[{e['size']}]" for e in rg["unpruned_examples"][:4])
                out.append(f"    {r['variant']}: {rg['channels_removed']} channels removed in {rg['pruned_groups']} "
                           f"groups; {rg['prunable_but_unpruned']} prunable groups left whole"
                           + (f" (e.g. {examples})" if rg["prunable_but_unpruned"] else ""))
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=csv(str), default=MODELS)
    ap.add_argument("--ratios", type=csv(float), default=[0.3, 0.5])
    timing_args(ap, runs=40)
    ap.add_argument("--json", type=Path, help="write every figure here")
    ap.add_argument("--op-profile", type=int, metavar="BATCH",
                    help="also profile ORT per-op time of baseline vs the largest ratio at this batch size")
    args = ap.parse_args()
    default_rt = DEFAULT_ROUND_TO["cpu"]
    payload = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "cpus": os.cpu_count(),
               "machine": platform.machine(), "python": platform.python_version(), "onnx": onnx.__version__,
               "onnxruntime": onnxruntime.__version__, "threads": args.threads or "onnxruntime default", "runner": args.runner,
               "runs": args.runs, "warmup": args.warmup, "default_round_to_cpu": default_rt,
               "git": git_state(), "check_factor": CHECK_FACTOR, "targets": {f"{m} ratio {r} batch {b}": t for (m, r, b), t in TARGETS.items()},
               "results": []}
    t0 = time.perf_counter()
    for name in args.models:
        payload["results"].append(run_model(name, args.ratios, args.batches, args.runs, args.warmup, args.threads,
                                            default_rt, args.op_profile, args.runner))
        if args.json:
            args.json.write_text(json.dumps(payload, indent=2))
    payload["seconds"] = time.perf_counter() - t0
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2))
    print(f"ONNX Runtime {onnxruntime.__version__} CPU, threads: {payload['threads']}, runner: {args.runner}, "
          f"{os.cpu_count()} CPUs, onnxprune at {payload['git']['commit']}; "
          f"{args.warmup} warm-up + {args.runs} interleaved runs per model; baseline = BN-folded original (exact); "
          f"aligned = round_to {default_rt}")
    print(format_table(payload["results"], args.batches))
    print()
    print(format_groups(payload["results"]))
    for res in payload["results"]:
        if res["op_profile"]:
            print()
            print(format_op_profile(res["model"], res["op_profile"], res["op_profile_batch"]))
    log(f"total {payload['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
