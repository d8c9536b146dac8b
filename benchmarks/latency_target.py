"""--target-latency on ONNX Runtime CPU: does the pruned model hit the asked share of the measured
latency, and does it keep more FLOPs (and at least the fidelity) than a FLOPs target at the same
measured latency?

Speed part, for each model and batch size (1 ORT intra-op thread by default):
  1. `prune(model, target_latency=R, batch=B, threads=T)` for each R, with a fresh latency table
     (its build time is reported: the first R measures it, the others read it);
  2. FLOPs-targeted models (`prune(model, target_flops=F)`, same alignment) at F = the latency
     model's FLOPs share and a few below it;
  3. each pruned model timed interleaved with the original (onnxprune.runtime.timing: runs a, b,
     a, b, ...; its share is the median over rounds of its time over the original's time in the
     same round, so load that comes and goes cancels), one pair at a time as the tool's own check,
     with more rounds (up to 4x --runs) while the share's standard error is above 1%;
  4. achieved share vs asked (target: within +-5%); the FLOPs the FLOPs target keeps at the latency
     target's measured share (interpolated between its two models that bracket it); the latency
     speedup over the FLOPs ratio (1/share) / (FLOPs before / FLOPs after).
Fidelity part (--fidelity): the digits model with its labelled eval data, and trained real models
(~/.cache/onnxprune-realmodels/models: real inputs from benchmarks/realdata.py where it knows the
model, 96 calibration and 64 disjoint held-out samples; else seeded random inputs of their
smoke_feed shapes): the
latency-targeted model, the FLOPs-targeted model at the same measured latency (F interpolated from
timed FLOPs targets), top-1 agreement and cosine of both against the original.

    python benchmarks/latency_target.py [--models resnet50,mobilenet_v2,densenet121,efficientnet_b0]
        [--batches 1,8] [--shares 0.7,0.5] [--threads 1] [--device cpu|cuda] [--runs 15] [--fidelity digits,malviz_resnet18]
        [--json out.json]

efficientnet_b0 is torchvision's, exported by tools/torchvision_sweep.py (needs torch and
torchvision); the others are tools/zoo.py's. The machine may be shared: every figure is a ratio
from one interleaved run, and the script prints the spread (p10-p90 of the per-round ratios).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np
import onnx

import onnxprune
from benchmarks._ortbench import csv, git_state, log
from onnxprune.runtime.timing import OrtTimer, median_error

from benchmarks import realdata

REALMODELS = Path.home() / ".cache" / "onnxprune-realmodels" / "models"
FLOPS_STEPS = (1.1, 1.0, 0.9, 0.8, 0.7)  # FLOPs targets tried, as multiples of the latency model's FLOPs share
MORE_FLOPS_STEPS = (1.25, 1.4, 1.6)  # tried when every FLOPs target above ran faster than the latency target
PRECISION = 0.01  # each share is timed in more rounds while its standard error is above 1% ...
MAX_ROUNDS = 4  # ... up to 4x --runs


def copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


EXPORTS = Path.home() / ".cache" / "onnxprune" / "bench-models"


def load(name: str) -> onnx.ModelProto:
    """tools/zoo.py's model, or torchvision's exported once (needs torch) and kept in EXPORTS."""
    if name == "efficientnet_b0":
        path = EXPORTS / f"{name}.onnx"
        if not path.exists():
            from tools.torchvision_sweep import export_onnx, torchvision_model

            EXPORTS.mkdir(parents=True, exist_ok=True)
            export_onnx(torchvision_model(name, realistic_bn=True), path)
        return onnx.load(str(path))
    from tools.zoo import build

    return build(name)


def flops_share(result) -> float:
    return result.report.flops_after / result.report.flops_before


def shares(timer: OrtTimer, models: list, shapes, batch: int, runs: int) -> list[dict]:
    """Per model: median (and p10, p90) over rounds of its time / the first model's time.

    Each model is timed in a pair with the first (a, b, a, b, ...), as --target-latency's own check
    does, not in one carousel of all of them: a carousel runs every model with the others' weights in
    the caches, which a deployed model never sees, and it biases small models (measured on a 16-core
    Xeon, MobileNetV2 b1 at R=0.5: 0.46-0.47 in a 13-model carousel, 0.49 paired)."""
    from onnxprune.shapes import resolve_shapes

    concrete = resolve_shapes(models[0], dict(shapes or {})).with_batch(batch).as_dict()
    base, out = [], [None]
    for m in models[1:]:
        times = np.asarray(timer.samples([models[0], m], concrete, runs))
        while True:  # more rounds while the median share's standard error is above 1% (at most 4x runs)
            r = times[1] / times[0]
            if median_error(r) <= PRECISION or times.shape[1] >= MAX_ROUNDS * runs:
                break
            times = np.concatenate([times, np.asarray(timer.samples([models[0], m], concrete, runs))], axis=1)
        base.extend(times[0])
        out.append({"share": float(np.median(r)), "p10": float(np.percentile(r, 10)),
                    "p90": float(np.percentile(r, 90)), "median_ms": float(np.median(times[1]) * 1000),
                    "rounds": int(len(r)), "share_error": median_error(r)})
    out[0] = {"share": 1.0, "p10": 1.0, "p90": 1.0, "median_ms": float(np.median(base) * 1000)}
    return out


def at_latency(points: list[tuple[float, float]], latency: float) -> float | None:
    """FLOPs share at a measured latency share, interpolated between (latency, FLOPs) points."""
    points = sorted(points)
    for (l0, f0), (l1, f1) in zip(points, points[1:]):
        if l0 <= latency <= l1:
            return f0 + (f1 - f0) * (latency - l0) / (l1 - l0) if l1 > l0 else f0
    return None


def speed(name: str, model: onnx.ModelProto, batch: int, targets, threads: int, runs: int, shapes=None,
          device: str = "cpu") -> dict:
    timer = OrtTimer(device, threads)
    out = {"model": name, "batch": batch, "threads": threads, "device": device, "targets": []}
    with tempfile.TemporaryDirectory(prefix="onnxprune-lat-") as cache:
        variants, labels = [model], ["original"]
        lat_results = []
        for share in targets:
            t0 = time.perf_counter()
            r = onnxprune.prune(copy(model), target_latency=share, batch=batch, threads=threads, latency_cache=cache, device=device,
                                shapes=tuple((shapes or {}).items()))
            lat = r.report.latency
            log(f"{name} b{batch} R={share}: {time.perf_counter() - t0:.0f} s, table {lat['table']['seconds']:.0f} s "
                f"({lat['table'].get('cpu_seconds', 0):.0f} s CPU) "
                f"(cached: {lat['table']['cached']}), rounds {[(x['budget_share'], x['measured_share']) for x in lat['rounds']]}, "
                f"FLOPs kept {flops_share(r):.3f}, round_to {lat['round_to']}")
            lat_results.append(r)
            variants.append(r.model)
            labels.append(f"latency {share}")
        flops_variants = {}
        for share, r in zip(targets, lat_results):
            for k in FLOPS_STEPS:
                f = round(flops_share(r) * k, 4)
                fr = onnxprune.prune(copy(model), target_flops=f, round_to=r.report.latency["round_to"])
                flops_variants[(share, k)] = fr
                variants.append(fr.model)
                labels.append(f"flops {f}")
        log(f"{name} b{batch}: timing {len(variants) - 1} models, each interleaved with the original, {runs} rounds")
        measured = shares(timer, variants, shapes, batch, runs)
    out["original_ms"] = measured[0]["median_ms"]
    for i, (share, r) in enumerate(zip(targets, lat_results)):
        m = measured[1 + i]
        points = []
        for j, k in enumerate(FLOPS_STEPS):
            idx = 1 + len(targets) + i * len(FLOPS_STEPS) + j
            points.append((measured[idx]["share"], flops_share(flops_variants[(share, k)])))
        lat = r.report.latency
        f_lat = flops_share(r)
        f_flops = at_latency(points, m["share"])
        out["targets"].append({
            "asked": share, "measured_share": m["share"], "p10": m["p10"], "p90": m["p90"],
            "within_5pct": abs(m["share"] / share - 1) <= 0.05,
            "loop_measured_share": lat["measured_share"], "predicted_share": lat["predicted_share"],
            "rounds": lat["rounds"], "allocation": lat.get("allocation"), "choice": lat.get("choice"),
            "table_seconds": lat["table"]["seconds"],
            "table_cpu_seconds": lat["table"].get("cpu_seconds"), "table_cached": lat["table"]["cached"],
            "round_to": lat["round_to"], "flops_kept": f_lat,
            "flops_target_points": [{"latency_share": a, "flops_kept": b} for a, b in points],
            "flops_target_flops_at_equal_latency": f_flops,
            "speedup_over_flops_ratio": f_lat / m["share"],
        })
    return out


def fidelity(name: str, model: onnx.ModelProto, data, batch: int, share: float, threads: int, runs: int,
             shapes=None, repair: dict | None = None, device: str = "cpu") -> dict:
    """Latency target vs FLOPs target at the same measured latency: agreement and cosine (both
    repaired alike when `repair` gives calib and repair options)."""
    from onnxprune.runtime import compare_models

    repair = repair or {}
    timer = OrtTimer(device, threads)
    with tempfile.TemporaryDirectory(prefix="onnxprune-lat-") as cache:
        lat = onnxprune.prune(copy(model), target_latency=share, batch=batch, threads=threads, latency_cache=cache, device=device,
                              shapes=tuple((shapes or {}).items()), **repair)
    f0 = flops_share(lat)
    cands = [onnxprune.prune(copy(model), target_flops=round(f0 * k, 4), round_to=lat.report.latency["round_to"],
                             **repair) for k in FLOPS_STEPS]
    measured = shares(timer, [model, lat.model] + [c.model for c in cands], shapes, batch, runs)
    f_equal = at_latency([(m["share"], flops_share(c)) for m, c in zip(measured[2:], cands)], measured[1]["share"])
    if f_equal is None and all(m["share"] < measured[1]["share"] for m in measured[2:]):
        # every FLOPs target ran faster than the latency target: try larger ones
        cands += [onnxprune.prune(copy(model), target_flops=min(1.0, round(f0 * k, 4)), round_to=lat.report.latency["round_to"],
                                  **repair) for k in MORE_FLOPS_STEPS]
        measured = measured[:2 + len(FLOPS_STEPS)] + shares(timer, [model] + [c.model for c in cands[len(FLOPS_STEPS):]],
                                                            shapes, batch, runs)[1:]
        f_equal = at_latency([(m["share"], flops_share(c)) for m, c in zip(measured[2:], cands)],
                             measured[1]["share"])
    info = lat.report.latency
    out = {"model": name, "asked": share, "batch": batch, "repair": bool(repair), "latency_share": measured[1]["share"],
           "loop_measured_share": info["measured_share"], "predicted_share": info["predicted_share"],
           "allocation": info.get("allocation"), "choice": info.get("choice"), "rounds": info["rounds"], "flops_kept": f0,
           "flops_target_flops_at_equal_latency": f_equal,
           "flops_target_points": [{"flops_kept": flops_share(c), "latency_share": m["share"]}
                                   for m, c in zip(measured[2:], cands)]}
    if f_equal is None:
        out["note"] = "no FLOPs target bracketed the latency target's measured share"
        return out
    ft = onnxprune.prune(copy(model), target_flops=round(f_equal, 4), round_to=lat.report.latency["round_to"], **repair)
    check = shares(timer, [model, lat.model, ft.model], shapes, batch, runs)
    out["recheck"] = {"latency_target_share": check[1]["share"], "flops_target_share": check[2]["share"]}
    kw = {"data": data, "shapes": shapes} if data is not None else {"shapes": shapes}
    for label, r in (("latency_target", lat), ("flops_target", ft)):
        c = compare_models(model, r.model, atol=float("inf"), bounds=False, **kw)
        out[label] = {"flops_kept": flops_share(r), **_fidelity_figures(c)}
    return out


def _fidelity_figures(comparison) -> dict:
    d = comparison.to_dict()
    outs = d.get("outputs", [])
    figs = {}
    cos = [o.get("cosine") for o in outs if o.get("cosine") is not None]
    agree = [o.get("top1_agreement") for o in outs if o.get("top1_agreement") is not None]
    if cos:
        figs["cosine"] = float(np.mean(cos))
    if agree:
        figs["top1_agreement"] = float(np.mean(agree))
    metric = [(o.get("metric"), o.get("agreement")) for o in outs if o.get("metric") not in (None, "cosine")]
    if metric and metric[0][1] is not None:
        figs[metric[0][0]] = float(metric[0][1])
    acc = [o.get("accuracy_b") for o in outs if o.get("accuracy_b") is not None]
    if acc:
        figs["accuracy"] = float(np.mean(acc))
    return figs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=csv(str), default=["resnet50", "mobilenet_v2", "densenet121", "efficientnet_b0"])
    ap.add_argument("--batches", type=csv(int), default=[1, 8])
    ap.add_argument("--shares", type=csv(float), default=[0.7, 0.5])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="ONNX Runtime device the latency is measured on (cuda needs onnxruntime-gpu)")
    ap.add_argument("--runs", type=int, default=15, help="interleaved timing rounds per model (default 15; up to 4x more while a share's standard "
                         "error is above 1%)")
    ap.add_argument("--fidelity", type=csv(str), default=[],
                    help="digits and/or real model names from ~/.cache/onnxprune-realmodels/models")
    ap.add_argument("--repair", action="store_true",
                    help="repair both pruned models (--repair all) from calibration data: models/digits_calib.npz for "
                         "digits, benchmarks/realdata.py's real inputs for the corpus models it knows")
    ap.add_argument("--efficiency-power", type=float,
                    help="onnxprune.passes.select_latency.EFFICIENCY_POWER (how strongly latency per FLOP weighs)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.efficiency_power is not None:
        import onnxprune.passes.select_latency as select_latency

        select_latency.EFFICIENCY_POWER = args.efficiency_power
    import onnxprune.passes.select_latency as select_latency

    results = {"git": git_state(), "ort_threads": args.threads, "device": args.device, "efficiency_power": select_latency.EFFICIENCY_POWER,
               "speed": [], "fidelity": []}
    for name in args.models:
        model = load(name)
        for batch in args.batches:
            results["speed"].append(speed(name, model, batch, args.shares, args.threads, args.runs,
                                           device=args.device))
            _print_speed(results["speed"][-1])
            if args.json:
                args.json.write_text(json.dumps(results, indent=2))
    for name in args.fidelity:
        repair = None
        if name == "digits":
            model, data, shapes, batch = onnx.load(str(ROOT / "models" / "digits_cnn.onnx")), \
                str(ROOT / "models" / "digits_eval.npz"), None, 64
            if args.repair:
                repair = {"calib": str(ROOT / "models" / "digits_calib.npz"), "repair": "all"}
        else:
            manifest = json.loads((REALMODELS / "manifest.json").read_text())
            entries = manifest["models"] if isinstance(manifest, dict) and "models" in manifest else manifest
            entry = next(m for m in entries if m["name"] == name)
            model = onnx.load(str(REALMODELS / entry["file"]))
            shapes = {k: tuple(v) for k, v in entry["smoke_feed"].items() if isinstance(v, list)}
            data, batch = None, next(iter(shapes.values()))[0]
            if name in realdata.MODELS:  # real inputs: disjoint calibration (repair) and held-out (figures) sets
                tmp = Path(tempfile.mkdtemp(prefix="onnxprune-latfid-"))
                np.savez(tmp / "calib.npz", **realdata.build(name, 96, 1, calib=True))
                np.savez(tmp / "eval.npz", **realdata.build(name, 64, 2, calib=False))
                data = str(tmp / "eval.npz")
                if args.repair:
                    repair = {"calib": str(tmp / "calib.npz"), "repair": "all"}
        for share in args.shares:
            try:
                f = fidelity(name, model, data, batch, share, args.threads, args.runs, shapes, repair, args.device)
            except onnxprune.errors.OnnxPruneError as exc:
                f = {"model": name, "asked": share, "error": str(exc)}
            results["fidelity"].append(f)
            print(json.dumps(f))
            if args.json:
                args.json.write_text(json.dumps(results, indent=2))
    return 0


def _print_speed(r: dict) -> None:
    for t in r["targets"]:
        f_eq = t["flops_target_flops_at_equal_latency"]
        print(f"| {r['model']} | {r['batch']} | {t['asked']} | {t['measured_share']:.3f} ({t['p10']:.3f}-{t['p90']:.3f}) | "
              f"{'yes' if t['within_5pct'] else 'NO'} | {t['predicted_share']:.3f} / {t['loop_measured_share']:.3f} "
              f"({len(t['rounds'])}) | {t['flops_kept']:.3f} | {'-' if f_eq is None else f'{f_eq:.3f}'} | "
              f"{t['speedup_over_flops_ratio']:.2f} | {t['round_to']} | {t['table_seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
