"""Repair without training on full-size zoo models: fidelity to the original, time and peak memory.

For each model from tools/zoo.py (224x224, bn=True, seeded random weights) and each FLOPs target
(`--targets 0.7,0.5,0.3` = 30%, 50%, 70% fewer FLOPs), the model is pruned with criterion l1 and
each repair method (`--repairs none,bias,lsq,bn,all`; none = magnitude only):

    onnxprune.prune(model, target_flops=F, criterion="l1", calib=CALIB, repair=R, validate=False)

and compared with the original on a held-out evaluation set:

    onnxprune.runtime.compare_models(original, pruned, data=EVAL, atol=inf)
        -> top-1 agreement, cosine (mean over samples of the per-sample cosine of the logits)

Random weights make the original predict nearly the same class for every input (its logits share
a large input-independent part), so raw top-1 agreement and cosine flatter any model that keeps
that shared part. Two extra figures look at the input-dependent part only, from the logits A
(original) and B (pruned) on the evaluation set, each centred with its own mean over the set:

    centred top-1  = share of samples where argmax(A_i - mean(A)) == argmax(B_i - mean(B))
    centred cosine = mean over samples of cos(A_i - mean(A), B_i - mean(B))

and the reference table gives the top-1 agreement that a constant prediction of the original's
most frequent class would reach.

Inputs that look like natural images rather than white noise (see `smooth_images`): per sample,
in [0, 1] pixel space, 0.5-centred per-channel levels U(0.3, 0.7), plus 0.22 x a 7x7 and 0.10 x a
14x14 standard-normal grid upsampled bilinearly to 224x224 (each grid = 0.8 x one grid shared by
the three channels + 0.6 x a per-channel grid, so colours are correlated), plus 0.02 x per-pixel
N(0, 1) noise, clipped to [0, 1], then normalised with the ImageNet mean (0.485, 0.456, 0.406) and
std (0.229, 0.224, 0.225). Calibration set: --calib-samples (128) with seed 1; evaluation set:
--eval-samples (128) with seed 2.

`--models resnet18:bnfit` uses, as the original, the zoo model with every BatchNormalization's
running mean/var replaced by the statistics estimated on the calibration set (the adaptive-BN step
that repair="bn" runs, `onnxprune.repair.batchnorm.recalibrate_bn`, applied to the unpruned model):
a stand-in for a trained model, whose BN statistics match its data. The zoo's own statistics are
analytic estimates that these inputs do not match, so on the plain zoo model re-estimating BN
statistics changes the function even where nothing was pruned. The control row ("bn, nothing
pruned", once per model; --no-control skips it) measures exactly that: recalibrate_bn on the
unpruned original, compared with the original.

Every configuration runs in a fresh child process (`--worker`), one after the other (never two at
once), in the order model, target, repair. The child times `onnxprune.prune` by wall clock and
reads the repair passes' seconds (`repair-consumers` = bias/lsq, `repair-bn`) from report.passes;
the prune's CPU time (time.process_time: all threads of the child, ONNX Runtime's included) is
less sensitive than wall time to other load on a shared machine. Memory: the child's resident set
after imports and onnx.load of the model (VmRSS), then its peak during prune (VmHWM, reset by
writing 5 to /proc/self/clear_refs just before prune; where that is not allowed, ru_maxrss, which
then also holds the load peak), and ru_maxrss at the end (prune + comparison).
The parent imports only the standard library and does the preparation (data, models, reference
logits) in a child too, because Linux carries a parent's peak RSS into a forked child's ru_maxrss.

    python benchmarks/repair.py              # resnet18, all targets and repairs (~8-15 min on 2 cores)
    python benchmarks/repair.py --models resnet50 --targets 0.5 --json r50.json
    python benchmarks/repair.py --models resnet18:bnfit           # BN statistics fitted to the data first
    python benchmarks/repair.py [--models M,..] [--targets F,..] [--repairs R,..] [--calib-samples N]
                                [--eval-samples N] [--workdir DIR] [--json out.json] [--profile]

--profile runs each configuration's prune under cProfile in the child and prints the top entries
(slower; timings from such a run are not comparable).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PY = sys.executable
REPAIRS = ["none", "bias", "lsq", "bn", "all"]
CONTROL = "bn, nothing pruned"
TARGETS = [0.7, 0.5, 0.3]
CALIB_SEED, EVAL_SEED = 1, 2
RESOLUTION = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EVAL_BATCH = 8  # compare_models' default batch; the centred figures use the same


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def csv(kind):
    return lambda s: [kind(x) for x in s.split(",") if x]


# ---------------------------------------------------------------------------------------- data

def _bilinear(n: int, size: int):
    """(size, n) matrix: bilinear upsampling of n samples to size (half-pixel centres, edges clamped)."""
    import numpy as np

    pos = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    frac = pos - lo
    m = np.zeros((size, n))
    m[np.arange(size), lo] += 1 - frac
    m[np.arange(size), hi] += frac
    return m


def smooth_images(n: int, seed: int, size: int = RESOLUTION):
    """n smooth random RGB images, ImageNet-normalised, float32 [n, 3, size, size] (see module doc)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    mean = np.array(IMAGENET_MEAN)[:, None, None]
    std = np.array(IMAGENET_STD)[:, None, None]
    ups = {g: _bilinear(g, size) for g in (7, 14)}
    out = np.empty((n, 3, size, size), np.float32)
    for i in range(n):
        img = np.zeros((3, size, size))
        for g, amp in ((7, 0.22), (14, 0.10)):
            shared = rng.standard_normal((g, g))
            own = rng.standard_normal((3, g, g))
            z = 0.8 * shared + 0.6 * own
            m = ups[g]
            img += amp * np.einsum("ij,cjk,lk->cil", m, z, m)
        img += rng.uniform(0.3, 0.7, size=(3, 1, 1))
        img += 0.02 * rng.standard_normal((3, size, size))
        out[i] = (np.clip(img, 0.0, 1.0) - mean) / std
    return out


def run_model(model, x, batch: int = EVAL_BATCH):
    """Logits of an ONNX model (proto or path) on x, batch by batch, with ONNX Runtime CPU."""
    import numpy as np
    import onnxruntime as ort

    src = model if isinstance(model, (str, os.PathLike)) else model.SerializeToString()
    sess = ort.InferenceSession(str(src) if isinstance(src, os.PathLike) else src,
                                providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {"input": x[i:i + batch]})[0] for i in range(0, len(x), batch)])


def prepare(workdir: Path, models: list[str], n_calib: int, n_eval: int) -> dict:
    """Data sets, models and reference logits in workdir (reused when present); reference figures."""
    import numpy as np
    import onnx

    from tools.zoo import build

    workdir.mkdir(parents=True, exist_ok=True)
    info = {"data": {}, "models": {}}
    for kind, n, seed in (("calib", n_calib, CALIB_SEED), ("eval", n_eval, EVAL_SEED)):
        path = workdir / f"{kind}_{n}_s{seed}.npz"
        if not path.exists():
            t0 = time.perf_counter()
            x = smooth_images(n, seed)
            np.savez(path, input=x)
            log(f"{kind}: {n} smooth images (seed {seed}) in {time.perf_counter() - t0:.1f} s -> {path}")
        x = np.load(path)["input"]
        info["data"][kind] = {"path": str(path), "samples": n, "seed": seed, "mean": float(x.mean()),
                              "std": float(x.std()), "min": float(x.min()), "max": float(x.max())}
    x_eval = np.load(info["data"]["eval"]["path"])["input"]
    for name in models:
        base, _, variant = name.partition(":")
        if variant not in ("", "bnfit"):
            raise SystemExit(f"unknown model variant {name!r}: use NAME or NAME:bnfit")
        path = workdir / f"{base}.onnx"
        if not path.exists():
            log(f"building {base} -> {path}")
            onnx.save(build(base), path)
        if variant == "bnfit":
            fitted = workdir / f"{base}_bnfit_{n_calib}.onnx"
            if not fitted.exists():
                from onnxprune.repair.batchnorm import recalibrate_bn

                model = onnx.load(path)
                n = recalibrate_bn(model, info["data"]["calib"]["path"])
                log(f"{base}: running statistics of {n} BatchNormalizations fitted to the calibration set -> {fitted}")
                onnx.save(model, fitted)
            path = fitted
        ref = workdir / f"{path.stem}_eval_{n_eval}_logits.npy"
        if not ref.exists():
            np.save(ref, run_model(path, x_eval))
        a = np.load(ref).astype(np.float64)
        top = a.argmax(1)
        ctop = (a - a.mean(0)).argmax(1)
        info["models"][name] = {
            "path": str(path), "reference_logits": str(ref),
            "distinct_top1": len(set(top.tolist())),
            "majority_share": float(np.bincount(top).max() / len(top)),
            "distinct_centred_top1": len(set(ctop.tolist())),
            "centred_majority_share": float(np.bincount(ctop).max() / len(ctop)),
            "logit_std_within_sample": float(a.std(1).mean()),
            "logit_std_across_samples": float(a.std(0).mean()),
            "median_top1_margin": float(np.median(np.diff(np.sort(a, 1)[:, -2:], axis=1))),
        }
    return info


# -------------------------------------------------------------------------------------- worker

def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _maxrss_kib() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def worker(args) -> dict:
    import onnx

    import onnxprune

    model = onnx.load(args.model_path)
    rss_before = _status_kib("VmRSS")
    reset = _reset_peak()
    if args.repair == CONTROL:
        return control(args, model, rss_before, reset)
    repair = "" if args.repair == "none" else args.repair
    profile = None
    if args.profile:
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
    t0, c0 = time.perf_counter(), time.process_time()
    result = onnxprune.prune(model, target_flops=args.target, criterion="l1", calib=args.calib, repair=repair,
                             validate=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if profile is not None:
        import io
        import pstats

        profile.disable()
        buf = io.StringIO()
        pstats.Stats(profile, stream=buf).sort_stats("tottime").print_stats(15)
        log(buf.getvalue())
    peak_prune = _status_kib("VmHWM") if reset else _maxrss_kib()
    report = result.report
    passes = {r.name: round(r.seconds, 3) for r in report.passes}
    details = {r.name: r.result.details for r in report.passes}

    return {
        "model": args.model, "target_flops": args.target, "repair": args.repair,
        "flops_kept": report.flops_after / report.flops_before,
        "params_kept": report.params_after / report.params_before,
        **_fidelity(args, result.model),
        "prune_s": wall, "prune_cpu_s": cpu,
        "repair_s": sum(passes.get(n, 0.0) for n in ("repair-consumers", "repair-bn")),
        "passes_s": passes,
        "repair_layers": details.get("repair-consumers", {}).get("layers"),
        "repair_batchnorms": details.get("repair-bn", {}).get("batchnorms"),
        "notes": list(report.notes),
        "rss_before_prune_mb": rss_before / 1024 if rss_before else None,
        "peak_rss_prune_mb": peak_prune / 1024 if peak_prune else None,
        "peak_is_prune_only": reset,
        "maxrss_process_mb": _maxrss_kib() / 1024,
    }


def _fidelity(args, pruned) -> dict:
    import numpy as np

    from onnxprune.runtime import compare_models

    cmp = compare_models(args.model_path, pruned, data=args.eval, atol=float("inf"))
    out = cmp.outputs[0]
    a = np.load(args.reference).astype(np.float64)
    b = run_model(pruned, np.load(args.eval)["input"]).astype(np.float64)
    ca, cb = a - a.mean(0), b - b.mean(0)
    ccos = np.einsum("ij,ij->i", ca, cb) / (np.linalg.norm(ca, axis=1) * np.linalg.norm(cb, axis=1))
    return {"top1_agreement": out.top1_agreement, "cosine": out.cosine, "worst_cosine": out.worst_cosine,
            "mean_rel_error": out.mean_rel_error, "samples": cmp.samples,
            "centred_top1": float((ca.argmax(1) == cb.argmax(1)).mean()),
            "centred_cosine": float(np.nan_to_num(ccos).mean()),
            "top1_check": float((a.argmax(1) == b.argmax(1)).mean())}  # = top1_agreement, own run


def control(args, model, rss_before, reset) -> dict:
    """Adaptive BN on the unpruned original: how far re-estimating the BN statistics on the
    calibration data alone moves the outputs (the zoo's running statistics are analytic estimates,
    not statistics of these inputs)."""
    from onnxprune.repair.batchnorm import recalibrate_bn

    t0, c0 = time.perf_counter(), time.process_time()
    n = recalibrate_bn(model, args.calib)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _status_kib("VmHWM") if reset else _maxrss_kib()
    return {"model": args.model, "target_flops": 1.0, "repair": CONTROL, "flops_kept": 1.0, "params_kept": 1.0,
            **_fidelity(args, model), "prune_s": wall, "prune_cpu_s": cpu, "repair_s": wall, "passes_s": {"repair-bn": round(wall, 3)},
            "repair_layers": None, "repair_batchnorms": n, "notes": [],
            "rss_before_prune_mb": rss_before / 1024 if rss_before else None,
            "peak_rss_prune_mb": peak / 1024 if peak else None, "peak_is_prune_only": reset,
            "maxrss_process_mb": _maxrss_kib() / 1024}


# -------------------------------------------------------------------------------------- parent

def child(argv: list[str]) -> tuple[dict | None, str, int, float]:
    t0 = time.perf_counter()
    p = subprocess.run([PY, str(Path(__file__).resolve()), *argv], cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if p.stderr:
        sys.stderr.write(p.stderr)
    last = p.stdout.strip().splitlines()[-1:] if p.stdout.strip() else []
    try:
        data = json.loads(last[0]) if p.returncode == 0 and last else None
    except json.JSONDecodeError:
        data = None
    return data, p.stderr[-4000:], p.returncode, wall


def _repair_cell(r: dict) -> str:
    parts = [r["passes_s"][n] for n in ("repair-consumers", "repair-bn") if n in r["passes_s"]]
    return " + ".join(f"{x:.1f}" for x in parts) if parts else "0"


def fmt_table(rows: list[dict]) -> str:
    head = ["FLOPs kept (target)", "repair", "top-1 agr", "cosine", "centred top-1", "centred cos",
            "repair s (consumers + bn)", "prune s", "prune CPU s", "peak RSS prune MB", "max RSS MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['target_flops']} | {r['repair']} | FAILED (exit {r['returncode']}) |"
                         + " |" * (len(head) - 3))
            continue
        lines.append("| " + " | ".join([
            f"{r['flops_kept']:.1%}" + ("" if r["repair"] == CONTROL else f" ({r['target_flops']:g})"), r["repair"],
            f"{r['top1_agreement']:.1%}", f"{r['cosine']:.4f}",
            f"{r['centred_top1']:.1%}", f"{r['centred_cosine']:.4f}",
            _repair_cell(r), f"{r['prune_s']:.1f}", f"{r['prune_cpu_s']:.0f}",
            f"{r['peak_rss_prune_mb']:.0f}", f"{r['maxrss_process_mb']:.0f}",
        ]) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", type=csv(str), default=["resnet18"])
    ap.add_argument("--targets", type=csv(float), default=TARGETS)
    ap.add_argument("--repairs", type=csv(str), default=REPAIRS)
    ap.add_argument("--calib-samples", type=int, default=128)
    ap.add_argument("--eval-samples", type=int, default=128)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "onnxprune_repair_bench")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--no-control", action="store_true",
                    help="skip the control: adaptive BN on the unpruned original (once per model)")
    # internal: one configuration / the preparation, in a child process
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    for name in ("model", "model-path", "calib", "eval", "reference", "repair"):
        ap.add_argument(f"--{name}", help=argparse.SUPPRESS)
    ap.add_argument("--target", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.prepare:
        print(json.dumps(prepare(args.workdir, args.models, args.calib_samples, args.eval_samples)))
        return 0
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    bad = [r for r in args.repairs if r not in REPAIRS]
    if bad:
        ap.error(f"unknown repair {bad}; known: {','.join(REPAIRS)}")
    started = time.perf_counter()
    load_start = os.getloadavg()
    common = ["--workdir", str(args.workdir), "--calib-samples", str(args.calib_samples),
              "--eval-samples", str(args.eval_samples)]
    info, err, rc, _ = child(["--prepare", "--models", ",".join(args.models), *common])
    if info is None:
        log(f"preparation failed (exit {rc}):\n{err}")
        return 1
    rows = []
    for name in args.models:
        m = info["models"][name]
        log(f"{name}: original on eval set: {m['distinct_top1']} distinct top-1 classes, most frequent "
            f"{m['majority_share']:.1%}; centred: {m['distinct_centred_top1']} classes, most frequent "
            f"{m['centred_majority_share']:.1%}")
        configs = [] if args.no_control else [(1.0, CONTROL)]
        configs += [(target, repair) for target in args.targets for repair in args.repairs]
        for target, repair in configs:
            cmd = ["--worker", "--model", name, "--model-path", m["path"], "--calib", info["data"]["calib"]["path"],
                   "--eval", info["data"]["eval"]["path"], "--reference", m["reference_logits"],
                   "--target", str(target), "--repair", repair] + (["--profile"] if args.profile else [])
            row, err, rc, wall = child(cmd)
            if row is None:
                row = {"model": name, "target_flops": target, "repair": repair, "error": err,
                       "returncode": rc, "command": " ".join([PY, str(Path(__file__).resolve()), *cmd])}
                log(f"FAILED {name} {target} {repair} (exit {rc}):\n{err}")
            else:
                row["child_wall_s"] = wall
                log(f"{name} target {target:g} {repair:>4}: top-1 {row['top1_agreement']:.1%} cos "
                    f"{row['cosine']:.4f} centred top-1 {row['centred_top1']:.1%} cos {row['centred_cosine']:.4f} "
                    f"repair {row['repair_s']:.1f} s prune {row['prune_s']:.1f} s peak "
                    f"{row['peak_rss_prune_mb']:.0f} MB (child {wall:.0f} s)")
            rows.append(row)
    total = time.perf_counter() - started

    import onnx  # versions for the record (the children are done)
    import onnxruntime

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_gb = next((int(line.split()[1]) / 2**20 for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), None)
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "cpu": cpu, "cpus": os.cpu_count(),
            "memory_gb": round(mem_gb, 1) if mem_gb else None, "python": platform.python_version(),
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "total_s": round(total, 1),
            "criterion": "l1", "profiled": args.profile,
            "loadavg_start": load_start, "loadavg_end": os.getloadavg()}
    print(f"# Repair without training ({meta['date']}; {cpu}, {meta['cpus']} CPUs, {meta['memory_gb']} GB; "
          f"onnx {meta['onnx']}, onnxruntime {meta['onnxruntime']}; total {total / 60:.1f} min; load average "
          f"{load_start[0]:.1f} at start, {meta['loadavg_end'][0]:.1f} at end)\n")
    d = info["data"]
    print(f"calibration: {d['calib']['samples']} smooth images (seed {d['calib']['seed']}); evaluation: "
          f"{d['eval']['samples']} smooth images (seed {d['eval']['seed']})\n")
    for name in args.models:
        m = info["models"][name]
        print(f"## {name}\n")
        print(f"original on the evaluation set: {m['distinct_top1']} distinct top-1 classes, the most frequent "
              f"{m['majority_share']:.1%} (a constant prediction would reach that top-1 agreement); centred "
              f"logits: {m['distinct_centred_top1']} distinct top-1 classes, the most frequent "
              f"{m['centred_majority_share']:.1%}; logit std within a sample {m['logit_std_within_sample']:.3g}, "
              f"across samples {m['logit_std_across_samples']:.3g}\n")
        print(fmt_table([r for r in rows if r["model"] == name]) + "\n")
        notes = {}
        for r in rows:
            if r["model"] == name and "error" not in r:
                for note in r["notes"]:
                    notes.setdefault(note, []).append(f"{r['target_flops']:g}/{r['repair']}")
        for note, where in notes.items():
            print(f"- onnxprune note ({', '.join(where)}): {note}")
        if notes:
            print()
    failed = [r for r in rows if "error" in r]
    for r in failed:
        print(f"FAILED: {r['command']}\n{r['error']}\n")
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "prepare": info, "rows": rows}, indent=1))
        log(f"wrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
