"""Prune -> repair -> quantize in one command, against the float original and against quantize-only.

For each model, with real calibration images (scikit-image's sample images, `pip install
"onnxprune[bench]"`; the shipped digits model uses models/digits_calib.npz):

    onnxprune IN q_only.onnx   --calib calib.npz --quantize int8                                 (quantize only)
    onnxprune IN pruned.onnx   --calib calib.npz --target-flops 0.7 --repair all                 (float step)
    onnxprune IN pruned_q.onnx --calib calib.npz --target-flops 0.7 --repair all --quantize int8 (the one command)
    onnxprune q_only.onnx q_only_r03.onnx --ratio 0.3 --repair none         (a QDQ export pruned as it is)
    onnxprune q_only.onnx q_only_r03_rep.onnx --ratio 0.3 --calib calib.npz --repair all  (... and repaired)
    quantize_static(IN, ort_qdq_bn.onnx, QDQ, per_channel=True)   (BatchNormalization NOT folded first)
    onnxprune ort_qdq_bn.onnx ort_qdq_bn_r03.onnx --ratio 0.3 --calib calib.npz --repair all

then: file sizes; ONNX Runtime CPU latency at batch 1 and 8 of all eight in ONE interleaved run
(runtime/bench protocol, spinning off); fidelity of each against the float original on HELD-OUT
data (other images than the calibration ones; digits: models/digits_eval.npz, with labels); and,
on the QDQ model with 25% of its channels masked to zero (integers at their zero point), exact mode
must remove exactly those channels and the exactness oracle must hold.

    python benchmarks/deploy.py [--models digits,resnet50,orinet_orientation,malviz_resnet18]
                                [--calib-n 64] [--eval-n 64] [--runs 20] [--threads 1] [--json out.json]
                                [--reuse]   # keep the onnxprune outputs of an earlier run, measure again

`--suite auto` (issue 26) compares, on trained models with real inputs (the real-model corpus with
~/.cache/onnxprune-fidelity/<model>_calib.npz / _eval.npz from benchmarks/realdata.py; digits with
models/digits_*.npz), the original, the pruned float model (--target-flops 0.7 --calib), `--quantize
int8` and `--quantize auto` (run once per measured batch: auto decides at --batch): sizes, held-out
fidelity, and latency at batch 1 and 8 with 1 thread, all variants interleaved in one run (ONNX
Runtime, thread CPU time: OrtTimer's clock for one thread, which other processes' load does not
inflate); then whether each auto model is no slower than the pruned float model at its batch (the
median of per-round time ratios, OrtTimer.compare) and smaller where it quantized anything.

    python benchmarks/deploy.py --suite auto [--models textline_ori_lcnet,orinet_orientation,mtcnn_rnet,digits]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np
import onnx
import onnxruntime

from benchmarks._ortbench import bench, csv, git_state, log
from onnxprune.runtime import compare_models

REAL = Path.home() / ".cache" / "onnxprune-realmodels" / "models"
MODELS = ["digits", "orinet_orientation", "malviz_resnet18"]  # resnet50 (tools/zoo.py, random weights) on request
# Inputs from the model's own domain (benchmarks/realdata.py): rendered, rotated text pages for the
# page-orientation model, byte plots of this machine's binaries for the malware-image model.
REALDATA = {"orinet_orientation", "malviz_resnet18"}
IMAGENET = (np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225]))
CALIB_IMAGES = ["astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "camera",
                "coins", "page", "cell"]
EVAL_IMAGES = ["stereo_motorcycle", "colorwheel", "retina", "text", "moon", "brick", "grass", "gravel", "clock"]


def _image(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    if isinstance(img, tuple):
        img = img[0]
    img = np.asarray(img, dtype=np.float64)
    if img.max() > 1.5:
        img = img / 255.0
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return img[..., :3]


def crops(names: list[str], n: int, size: int, seed: int) -> np.ndarray:
    """n random square crops (25-100% of the shorter side) of the named images, resized, ImageNet-normalised, NCHW."""
    from skimage.transform import resize

    rng = np.random.default_rng(seed)
    images = [_image(k) for k in names]
    out = np.empty((n, 3, size, size), dtype=np.float32)
    for i in range(n):
        img = images[i % len(images)]
        h, w = img.shape[:2]
        side = int(min(h, w) * rng.uniform(0.25, 1.0))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        patch = resize(img[y:y + side, x:x + side], (size, size), anti_aliasing=True)
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        out[i] = ((patch - IMAGENET[0]) / IMAGENET[1]).transpose(2, 0, 1)
    return out


def prepare(name: str, work: Path, calib_n: int, eval_n: int) -> tuple[Path, Path, Path]:
    """The original model file and its calibration / held-out data."""
    work.mkdir(parents=True, exist_ok=True)
    if name == "digits":
        return ROOT / "models" / "digits_cnn.onnx", ROOT / "models" / "digits_calib.npz", ROOT / "models" / "digits_eval.npz"
    if name == "resnet50":
        from tools.zoo import build

        original = work / "resnet50.onnx"
        if not original.exists():
            onnx.save(build("resnet50"), original)
        size, input_name = 224, "input"
    else:
        original = REAL / f"{name}.onnx"
        size, input_name = (320, "x") if name == "orinet_orientation" else (224, "input")
    m = onnx.load(str(original), load_external_data=False)
    input_name = m.graph.input[0].name
    calib, held = work / "calib.npz", work / "eval.npz"
    if not calib.exists():
        if name in REALDATA:  # the model's own domain (benchmarks/realdata.py)
            from benchmarks.realdata import build as real_inputs

            np.savez(calib, **real_inputs(name, calib_n, 1, calib=True))
            np.savez(held, **real_inputs(name, eval_n, 2, calib=False))
        else:
            np.savez(calib, **{input_name: crops(CALIB_IMAGES, calib_n, size, seed=0)})
            np.savez(held, **{input_name: crops(EVAL_IMAGES, eval_n, size, seed=1)})
    return original, calib, held


def cli(*args) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "onnxprune", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode != 0:
        raise SystemExit(f"onnxprune {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
    return time.perf_counter() - t0, proc.stdout


def size(path: Path) -> int:
    """The model file plus the external data files its tensors name."""
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    model = onnx.load(str(path), load_external_data=False)
    files = {ExternalDataInfo(t).location for t in model.graph.initializer if uses_external_data(t)}
    return path.stat().st_size + sum((path.parent / f).stat().st_size for f in files)


def fidelity(original: Path, candidate: Path, held: Path) -> dict:
    c = compare_models(str(original), str(candidate), data=str(held), bounds=False, threads=2)
    o = c.outputs[0]
    return {"top1_agreement": o.top1_agreement, "cosine": o.cosine, "accuracy": o.accuracy_b,
            "accuracy_original": o.accuracy_a, "samples": c.samples}


def qdq_exact(q_only: Path, work: Path) -> dict:
    """Mask 25% of the prunable channels of the QDQ model; exact mode must remove them and the oracle hold."""
    from onnxprune.analysis import analyze
    from onnxprune.passes.untie import untie_shared
    from tests.helpers.mask import mask_channels, pick_channels
    from tests.helpers.oracle import check_oracle

    model = onnx.load(str(q_only))
    untie_shared(model)
    analysis = analyze(model)
    chosen = pick_channels(analysis, np.random.default_rng(0), 0.25)
    mask_channels(analysis, chosen)
    masked = work / "q_only_masked.onnx"
    onnx.save(analysis.graph.model, masked)
    out = work / "q_only_masked_exact.onnx"
    seconds, text = cli(masked, out, "--json", work / "exact.json", "-q")  # validated: atol 1e-4 + rtol 1e-3
    report = json.loads((work / "exact.json").read_text())
    data = np.load(work / "calib.npz") if (work / "calib.npz").exists() else np.load(ROOT / "models" / "digits_calib.npz")
    inputs = {k: data[k][:8] for k in data.files if k != "labels"}
    try:  # QDQ outputs within one quantization step on a minority of values, the float view strictly
        stats = check_oracle(onnx.load(str(masked)), inputs=inputs,
                             choose=lambda a: {c for g in a.prunable_groups() for c in g.channels if c in chosen})
        oracle = True
    except AssertionError as exc:
        stats, oracle = {"removed": None}, " ".join(str(exc).split())[:300]
    same_ops = Counter(n.op_type for n in onnx.load(str(out)).graph.node) == \
        Counter(n.op_type for n in onnx.load(str(masked)).graph.node)
    flips = one_step_flips(masked, out, {k: data[k] for k in inputs})
    return {"masked_channels": len(chosen), "removed_by_exact_mode": report["channels_removed"],
            "one_step_flips_unoptimized": flips,
            "oracle_removed": stats["removed"], "oracle_holds": oracle, "validation": report["validation"]["verdict"],
            "still_qdq": same_ops, "params": report["params"]}


def page_accuracy(files: dict, held: Path, eval_n: int) -> dict:
    """orinet_orientation: accuracy of each variant on the held-out text pages, whose orientation is
    known (benchmarks/realdata.py orientation_labels; the photo crops have none)."""
    from benchmarks.realdata import orientation_labels

    x = np.load(held)["x"]
    labels = orientation_labels(eval_n, 2)
    pages = labels >= 0
    out = {}
    for key, path in files.items():
        sess = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        pred = np.concatenate([sess.run(None, {"x": x[i:i + 16]})[0] for i in range(0, len(x), 16)]).argmax(1)
        out[key] = {"accuracy": float((pred[pages] == labels[pages]).mean()), "pages": int(pages.sum())}
    return out


def one_step_flips(masked: Path, exact: Path, inputs: dict) -> dict:
    """Output values of the masked QDQ model and its exact-mode result that differ, run with ONNX
    Runtime's graph optimizations off (Q/DQ around float ops, as the oracle runs them), in steps of the
    output's quantization scale."""
    from onnxprune.runtime.quantstep import output_quant_steps

    opts = onnxruntime.SessionOptions()
    opts.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    a, b = (onnxruntime.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) for p in (masked, exact))
    steps = output_quant_steps(onnx.load(str(masked), load_external_data=False))
    name = a.get_outputs()[0].name
    n = len(next(iter(inputs.values())))
    diff = np.concatenate([np.abs(a.run([name], {k: v[i:i + 8] for k, v in inputs.items()})[0]
                                  - b.run([name], {k: v[i:i + 8] for k, v in inputs.items()})[0]).reshape(-1)
                           for i in range(0, n, 8)])
    step = steps.get(name)
    return {"values": int(diff.size), "differ": int((diff > 0).sum()), "step": step,
            "max_steps": float(diff.max() / step) if step else None}


def quantize_unfolded(original: Path, calib: Path, out: Path, n: int = 32) -> None:
    """The original quantized as a user of onnxruntime.quantization would, without folding
    BatchNormalization first: static QDQ, per-channel int8 weights, BN scale/bias behind DequantizeLinear."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    data = np.load(calib)
    feeds = [{k: data[k][i:i + 1] for k in data.files if k != "labels"} for i in range(min(n, len(data[data.files[0]])))]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(feeds)

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(original), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True)


def run_model(name: str, args, work: Path) -> dict:
    original, calib, held = prepare(name, work, args.calib_n, args.eval_n)
    files = {"original": original, "q_only": work / "q_only.onnx", "pruned": work / "pruned.onnx",
             "pruned_q": work / "pruned_q.onnx", "q_only_r03": work / "q_only_r03.onnx",
             "q_only_r03_rep": work / "q_only_r03_rep.onnx", "ort_qdq_bn": work / "ort_qdq_bn.onnx",
             "ort_qdq_bn_r03": work / "ort_qdq_bn_r03.onnx"}
    if not (args.reuse and files["ort_qdq_bn"].exists()):
        log(f"{name}: quantize_static (QDQ, per-channel), BatchNormalization not folded")
        quantize_unfolded(original, calib, files["ort_qdq_bn"])
    prune = ["--target-flops", args.target_flops, "--repair", "all"]
    commands = {
        "q_only": [original, files["q_only"], "--calib", calib, "--quantize", "int8"],
        "pruned": [original, files["pruned"], "--calib", calib, *prune],
        "pruned_q": [original, files["pruned_q"], "--calib", calib, *prune, "--quantize", "int8"],
        "q_only_r03": [files["q_only"], files["q_only_r03"], "--ratio", "0.3", "--repair", "none"],
        "q_only_r03_rep": [files["q_only"], files["q_only_r03_rep"], "--ratio", "0.3", "--calib", calib, "--repair", "all"],
        "ort_qdq_bn_r03": [files["ort_qdq_bn"], files["ort_qdq_bn_r03"], "--ratio", "0.3", "--calib", calib,
                           "--repair", "all"],
    }
    row = {"model": name, "commands": {}, "seconds": {}, "reports": {}}
    for key, cmd in commands.items():
        row["commands"][key] = "onnxprune " + " ".join(str(c) for c in cmd)
        if args.reuse and files[key].exists() and (work / f"{key}.json").exists():
            log(f"{name}: reusing {files[key]}")
            row["seconds"][key] = None
        else:
            log(f"{name}: onnxprune {' '.join(str(c) for c in cmd)}")
            seconds, _ = cli(*cmd, "--json", work / f"{key}.json", "-q")
            row["seconds"][key] = round(seconds, 1)
        rep = json.loads((work / f"{key}.json").read_text())
        row["reports"][key] = {"flops": rep["flops"], "params": rep["params"], "quantize": rep.get("quantize"),
                               "notes": rep.get("notes")}
    row["size"] = {k: size(p) for k, p in files.items()}
    ops = {k: Counter(n.op_type for n in onnx.load(str(p), load_external_data=False).graph.node) for k, p in files.items()}
    row["r03_stays_qdq"] = {"QuantizeLinear": [ops["q_only"]["QuantizeLinear"], ops["q_only_r03"]["QuantizeLinear"]],
                            "DequantizeLinear": [ops["q_only"]["DequantizeLinear"], ops["q_only_r03"]["DequantizeLinear"]],
                            "same_ops": ops["q_only"] == ops["q_only_r03"],
                            "same_ops_repaired": ops["q_only"] == ops["q_only_r03_rep"]}
    log(f"{name}: held-out fidelity")
    row["fidelity"] = {k: fidelity(original, files[k], held) for k in ("pruned", "pruned_q", "q_only")}
    row["fidelity"]["q_only_r03"] = fidelity(original, files["q_only_r03"], held)
    row["fidelity"]["q_only_r03_rep"] = fidelity(original, files["q_only_r03_rep"], held)
    for key in ("ort_qdq_bn", "ort_qdq_bn_r03"):
        row["fidelity"][key] = fidelity(original, files[key], held)
    row["ort_qdq_bn_stays_qdq"] = ops["ort_qdq_bn"] == ops["ort_qdq_bn_r03"]
    if name == "orinet_orientation":
        row["page_accuracy"] = page_accuracy(files, held, args.eval_n)
    log(f"{name}: latency (interleaved, threads={args.threads})")
    models = [onnx.load(str(p)) for p in files.values()]
    result = bench(models, list(files), args.batches, threads=args.threads, warmup=args.warmup, runs=args.runs)
    row["latency_ms"] = {f"{s.model}@b{s.batch}": round(s.median_ms, 3) for s in result.stats}
    row["latency_p10_p90_ms"] = {f"{s.model}@b{s.batch}": [round(s.p10_ms, 3), round(s.p90_ms, 3)] for s in result.stats}
    log(f"{name}: exact mode on the QDQ model with masked channels")
    row["qdq_exact"] = qdq_exact(files["q_only"], work)
    return row


def table(rows: list[dict], batches) -> str:
    lines = []
    for r in rows:
        lat = r["latency_ms"]
        lines.append(f"\n{r['model']}")
        lines.append(f"  {'variant':<14} {'size':>9} {'FLOPs':>8}  " + "  ".join(f"{'b' + str(b) + ' ms':>9}" for b in batches)
                     + "  " + "  ".join(f"{'vs orig b' + str(b):>11}" for b in batches) + "  top-1 agr   cosine")
        for key in ("original", "q_only", "pruned", "pruned_q", "q_only_r03", "q_only_r03_rep", "ort_qdq_bn",
                    "ort_qdq_bn_r03"):
            fid = r["fidelity"].get(key, {"top1_agreement": 1.0, "cosine": 1.0})
            rep = r["reports"].get(key)
            flops = rep["flops"]["after"] / rep["flops"]["before"] if rep else 1.0
            if key.startswith("q_only_r03"):
                base = r["reports"]["q_only"]["flops"]["before"]
                flops = rep["flops"]["after"] / base
            lines.append(f"  {key:<14} {r['size'][key] / 1e6:>8.2f}M {flops:>7.0%}  "
                         + "  ".join(f"{lat[f'{key}@b{b}']:>9.2f}" for b in batches) + "  "
                         + "  ".join(f"{lat[f'original@b{b}'] / lat[f'{key}@b{b}']:>10.2f}x" for b in batches)
                         + f"  {fid['top1_agreement'] if fid['top1_agreement'] is not None else float('nan'):>8.1%}"
                         + f"  {fid['cosine']:.4f}")
        if "page_accuracy" in r:
            lines.append("  accuracy on held-out text pages: " + ", ".join(
                f"{k} {v['accuracy']:.1%}" for k, v in r["page_accuracy"].items()))
        lines.append("  " + ", ".join(f"pruned_q vs q_only b{b}: {lat[f'q_only@b{b}'] / lat[f'pruned_q@b{b}']:.2f}x"
                                      for b in batches)
                     + "; " + ", ".join(f"q_only_r03 vs q_only b{b}: {lat[f'q_only@b{b}'] / lat[f'q_only_r03@b{b}']:.2f}x"
                                        for b in batches))
        e = r["qdq_exact"]
        f = e["one_step_flips_unoptimized"]
        lines.append(f"  QDQ exact mode: {e['masked_channels']} masked, {e['removed_by_exact_mode']} removed, "
                     f"validation {e['validation']}, oracle holds: {e['oracle_holds']}, still QDQ: {e['still_qdq']}; "
                     f"unoptimized ORT: {f['differ']} of {f['values']} output values differ, at most "
                     f"{f['max_steps']} steps of {f['step']}")
    return "\n".join(lines)


# --- --suite auto: measured quantization and --quantize auto on trained models with real inputs ----------

FIDELITY = Path.home() / ".cache" / "onnxprune-fidelity"
AUTO_MODELS = ["textline_ori_lcnet", "orinet_orientation", "mtcnn_rnet", "digits"]


def real_data(name: str) -> tuple[Path, Path, Path]:
    """The trained model and its real calibration / held-out inputs."""
    if name == "digits":
        return ROOT / "models" / "digits_cnn.onnx", ROOT / "models" / "digits_calib.npz", ROOT / "models" / "digits_eval.npz"
    calib, held = FIDELITY / f"{name}_calib.npz", FIDELITY / f"{name}_eval.npz"
    if not calib.exists() or not held.exists():
        raise SystemExit(f"{name}: no real inputs in {FIDELITY} (python benchmarks/realdata.py {name})")
    return REAL / f"{name}.onnx", calib, held


def thread_times(files: dict, held: Path, batches, runs: int, warmup: int) -> dict:
    """Median ms per run of every file at each batch, one thread, all interleaved (thread CPU time)."""
    from onnxprune.runtime.timing import OrtTimer

    data = np.load(held)
    out = {}
    for b in batches:
        shapes = {k: (b, *data[k].shape[1:]) for k in data.files if k != "labels"}
        timer = OrtTimer("cpu", threads=1, runs=runs, warmup=warmup)
        samples = timer.samples([onnx.load(str(p)) for p in files.values()], shapes=shapes)
        for key, t in zip(files, samples):
            out[f"{key}@b{b}"] = round(float(np.median(t)) * 1000.0, 4)
    return out


def auto_vs_pruned(pruned: Path, auto: Path, held: Path, batch: int) -> dict:
    """The auto model's time over the pruned float model's at `batch` (median of per-round ratios)."""
    from onnxprune.runtime.timing import OrtTimer

    if pruned.read_bytes() == auto.read_bytes():
        return {"same_file": True, "time_ratio": 1.0}
    data = np.load(held)
    shapes = {k: (batch, *data[k].shape[1:]) for k in data.files if k != "labels"}
    a, b, ratio = OrtTimer("cpu", threads=1).compare(onnx.load(str(pruned)), onnx.load(str(auto)), shapes=shapes,
                                                     runs=10, max_runs=60)
    return {"same_file": False, "pruned_ms": round(a * 1000, 4), "auto_ms": round(b * 1000, 4), "time_ratio": round(ratio, 4)}


def run_auto_model(name: str, args, work: Path) -> dict:
    original, calib, held = real_data(name)
    work.mkdir(parents=True, exist_ok=True)
    prune = ["--target-flops", args.target_flops, "--calib", calib, "--threads", "1"]
    commands = {"pruned": [*prune], "int8": [*prune, "--quantize", "int8"]}
    commands.update({f"auto_b{b}": [*prune, "--quantize", "auto", "--batch", b] for b in args.batches})
    files = {"original": original, **{k: work / f"{k}.onnx" for k in commands}}
    row = {"model": name, "commands": {}, "seconds": {}, "reports": {}}
    for key, extra in commands.items():
        cmd = [original, files[key], *extra]
        row["commands"][key] = "onnxprune " + " ".join(str(c) for c in cmd)
        if args.reuse and files[key].exists() and (work / f"{key}.json").exists():
            row["seconds"][key] = None
        else:
            log(f"{name}: {row['commands'][key]}")
            seconds, _ = cli(*cmd, "--json", work / f"{key}.json", "-q", "--overwrite")
            row["seconds"][key] = round(seconds, 1)
        rep = json.loads((work / f"{key}.json").read_text())
        row["reports"][key] = {"flops": rep["flops"], "quantize": rep.get("quantize")}
    row["size"] = {k: size(p) for k, p in files.items()}
    log(f"{name}: held-out fidelity")
    row["fidelity"] = {k: fidelity(original, files[k], held) for k in commands}
    log(f"{name}: latency (interleaved, 1 thread, thread CPU time)")
    row["latency_ms"] = thread_times(files, held, args.batches, args.runs, args.warmup)
    row["auto_vs_pruned"] = {b: auto_vs_pruned(files["pruned"], files[f"auto_b{b}"], held, b) for b in args.batches}
    return row


def auto_table(rows: list[dict], batches) -> str:
    lines = []
    for r in rows:
        lat = r["latency_ms"]
        lines.append(f"\n{r['model']}")
        lines.append(f"  {'variant':<10} {'size':>9} {'FLOPs':>6}  " + "  ".join(f"{'b' + str(b) + ' ms':>9}" for b in batches)
                     + "  " + "  ".join(f"{'vs pruned b' + str(b):>13}" for b in batches) + "  top-1 agr   cosine  written")
        for key in ["original", "pruned", "int8"] + [f"auto_b{b}" for b in batches]:
            fid = r["fidelity"].get(key, {"top1_agreement": 1.0, "cosine": 1.0})
            rep = r["reports"].get(key)
            flops = rep["flops"]["after"] / rep["flops"]["before"] if rep else 1.0
            q = (rep or {}).get("quantize") or {}
            written = q.get("written", "float" if key != "original" else "")
            if q.get("auto"):
                written += f" ({q['auto']['chosen'] or 'fallback'})"
            agr = fid["top1_agreement"] if fid["top1_agreement"] is not None else float("nan")
            lines.append(f"  {key:<10} {r['size'][key] / 1e6:>8.3f}M {flops:>6.0%}  "
                         + "  ".join(f"{lat[f'{key}@b{b}']:>9.3f}" for b in batches) + "  "
                         + "  ".join(f"{lat[f'{key}@b{b}'] / lat[f'pruned@b{b}']:>12.2f}x" for b in batches)
                         + f"  {agr:>8.1%}  {fid['cosine']:.4f}  {written}")
        for b, v in r["auto_vs_pruned"].items():
            smaller = r["size"][f"auto_b{b}"] < r["size"]["pruned"]
            what = "the pruned float file itself" if v["same_file"] else (
                f"{v['time_ratio']:.3f}x the pruned float model's time (compare, median of per-round ratios), "
                f"{'smaller' if smaller else 'NOT smaller'}")
            lines.append(f"  auto at b{b}: {what}")
        for key in ["int8"] + [f"auto_b{b}" for b in batches]:
            q = r["reports"][key].get("quantize") or {}
            speed = q.get("speed")
            if speed and "time_ratio" in speed:
                fell_back = q.get("written") == "float"
                lines.append(f"  {key}: onnxprune measured {speed['time_ratio']:.2f}x the pruned float model's time at "
                             f"batch {speed['batch']}" + (" for its fastest candidate and wrote the float model"
                                                          if fell_back else " (warned: slower)" if speed["slower"] else ""))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", choices=["deploy", "auto"], default="deploy",
                    help="deploy: the six variants above; auto: original, pruned, --quantize int8 and auto on trained "
                         "models with real inputs (issue 26)")
    ap.add_argument("--models", type=csv(str), default=None)
    ap.add_argument("--target-flops", default="0.7")
    ap.add_argument("--calib-n", type=int, default=64)
    ap.add_argument("--eval-n", type=int, default=64)
    ap.add_argument("--batches", type=csv(int), default=[1, 8])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("/tmp/onnxprune-deploy"))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--reuse", action="store_true", help="keep onnxprune outputs (and their reports) of an earlier "
                                                          "run in --work; time and check them again")
    args = ap.parse_args(argv)
    if args.suite == "auto":
        args.models = args.models or AUTO_MODELS
        rows = [run_auto_model(name, args, args.work / "auto" / name) for name in args.models]
        print(auto_table(rows, args.batches))
    else:
        args.models = args.models or MODELS
        rows = [run_model(name, args, args.work / name) for name in args.models]
        print(table(rows, args.batches))
    if args.json:
        args.json.write_text(json.dumps({
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "versions": {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__},
            "code": git_state(), "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
