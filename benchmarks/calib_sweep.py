"""Run the CLI with --calib over every model of the real-model corpus, as a new user would.

    python benchmarks/calib_sweep.py OUTDIR [--targets 0.7,0.5,0.9] [--models a,b] [--timeout 600]

For each model of ~/.cache/onnxprune-realmodels/models (manifest.json; ../shared/realmodels/README.md)
it writes OUTDIR/<model>_calib.npz, 32 samples: the first 32 of ~/.cache/onnxprune-fidelity/<model>_calib.npz
where benchmarks/realdata.py built one, realdata.build() where it knows the model, else inputs
synthesised in the model's input shape and dtype that look like what it expects (photos of
scikit-image for image inputs, rendered pages and text lines for OCR / layout, a log-mel spectrogram
of a synthesised tone + noise for the speech embedding, a synthesised EEG with spindles and its band
envelopes, integer ids in the embedding tables' range for token inputs). Then for each target K:

    nice -n 10 python -m onnxprune M.onnx OUTDIR/<model>_K.onnx --target-flops K --calib c.npz --json r.json

It records exit code, wall seconds, the error line (exit 1), any traceback, and from the JSON the
FLOPs kept, the race's pick, the validation verdict and the other-shape runs, in OUTDIR/results.jsonl
(one line per run, appended; a run already there is skipped) and prints the table.
Uses the caches; tests must not.
"""
from __future__ import annotations

import argparse
import json
import os
import string
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import realdata  # noqa: E402

MODELS_DIR = Path(os.environ.get("ONNXPRUNE_REALMODELS", Path.home() / ".cache/onnxprune-realmodels/models"))
FIDELITY_DIR = Path.home() / ".cache/onnxprune-fidelity"
N = 32


def _inputs(path: Path):
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    init = {i.name for i in m.graph.initializer}
    out = []
    for i in m.graph.input:
        if i.name in init:
            continue
        t = i.type.tensor_type
        out.append((i.name, onnx.helper.tensor_dtype_to_np_dtype(t.elem_type),
                    [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]))
    return out


def _photos(n, h, w, seed):
    return realdata.random_crops(realdata.sample_images(realdata.PHOTOS_CALIB), n, (h, w), seed)


def _mel(wave: np.ndarray, sr=16000, n_fft=512, hop=160, win=400, n_mels=32) -> np.ndarray:
    """log-mel frames [T, n_mels] of a waveform (openwakeword's melspectrogram, /10 + 2 as it feeds the embedding)."""
    frames = np.lib.stride_tricks.sliding_window_view(wave, win)[::hop] * np.hanning(win)
    spec = np.abs(np.fft.rfft(frames, n_fft)) ** 2
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    pts = 700 * (10 ** (np.linspace(mel(60), mel(3800), n_mels + 2) / 2595) - 1)
    bins = np.floor((n_fft + 1) * pts / sr).astype(int)
    fb = np.zeros((n_mels, n_fft // 2 + 1))
    for m in range(1, n_mels + 1):
        lo, c, hi = bins[m - 1], bins[m], bins[m + 1]
        fb[m - 1, lo:c] = (np.arange(lo, c) - lo) / max(1, c - lo)
        fb[m - 1, c:hi] = (hi - np.arange(c, hi)) / max(1, hi - c)
    return (10 * np.log10(np.maximum(spec @ fb.T, 1e-10))) / 10 + 2


def _speech(rng, n_samples):
    """A voiced, speech-like waveform: a gliding harmonic tone with syllable-rate amplitude, plus noise."""
    t = np.arange(n_samples) / 16000
    f0 = rng.uniform(90, 250) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t))
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    tone = sum(np.sin(k * phase) / k for k in range(1, 8))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 6) * t + rng.uniform(0, 6))
    return (0.3 * env * tone + rng.normal(0, rng.uniform(0.01, 0.1), n_samples)) * 3000


def _eeg(rng, n, length=7500, fs=250):
    """EEG-like raw signal [n, 1, L] (pink noise, alpha, a few 12-14 Hz spindle bursts, z-scored) and
    15 band envelopes of it [n, 15, L] (0.5-30 Hz, FFT band-pass + magnitude of the analytic signal)."""
    raw = np.empty((n, 1, length), np.float32)
    spec = np.empty((n, 15, length), np.float32)
    freqs = np.fft.rfftfreq(length, 1 / fs)
    edges = np.linspace(0.5, 30, 16)
    t = np.arange(length) / fs
    for i in range(n):
        white = np.fft.rfft(rng.normal(size=length))
        x = np.fft.irfft(white / np.sqrt(np.maximum(freqs, 0.5)), length)
        x += 0.5 * np.sin(2 * np.pi * rng.uniform(8, 12) * t)
        for _ in range(rng.integers(1, 5)):
            c, d = rng.uniform(1, 29), rng.uniform(0.5, 2)
            x += 2 * np.exp(-((t - c) / (d / 2)) ** 2) * np.sin(2 * np.pi * rng.uniform(12, 14) * t)
        x = (x - x.mean()) / x.std()
        raw[i, 0] = x
        X = np.fft.fft(x)
        f = np.fft.fftfreq(length, 1 / fs)
        for b in range(15):
            mask = (f >= edges[b]) & (f < edges[b + 1])  # positive frequencies only: analytic signal
            spec[i, b] = np.abs(np.fft.ifft(X * mask * 2))
    return raw, spec


def synth(model: str, inputs, rng) -> dict[str, np.ndarray]:
    """Inputs for a corpus model realdata.py does not know."""
    nchw, mean, std = realdata.nchw, realdata.IMAGENET_MEAN, realdata.IMAGENET_STD
    if model == "layout_cdla_picodet":  # [1, 3, 800, 608] document pages, ImageNet mean/std
        from PIL import Image
        pages = [np.asarray(Image.fromarray(realdata.render_document(rng, 800, realdata.sample_images(realdata.PHOTOS_CALIB)))
                            .resize((608, 800))) for _ in range(N)]
        return {"image": nchw(np.stack(pages), mean, std)}
    if model == "table_slanet_en":  # [N, 3, H, W] a table crop, 488 x 488, ImageNet mean/std
        pages = [realdata.render_document(rng, 488, realdata.sample_images(realdata.PHOTOS_CALIB)) for _ in range(N)]
        return {"x": nchw(np.stack(pages), mean, std)}
    if model == "mtcnn_pnet":  # [N, H, W, 3] photos with faces, (x - 127.5) / 128
        return {"input_1": (_photos(N, 240, 320, 1).astype(np.float32) - 127.5) * 0.0078125}
    if model in ("open_nsfw_tf2onnx", "open_nsfw_torch"):  # [N, 224, 224, 3] BGR, 0..255 minus the Caffe mean
        a = _photos(N, 224, 224, 1)[..., ::-1].astype(np.float32) - np.array([104, 117, 123], np.float32)
        return {inputs[0][0]: np.ascontiguousarray(a)}
    if model == "oww_speech_embedding":  # [N, 76, 32, 1] log-mel frames
        frames = [_mel(_speech(rng, 160 * 75 + 400))[:76] for _ in range(N)]
        return {"input_1": np.stack(frames)[..., None].astype(np.float32)}
    if model == "eeg_spindle_detector":
        raw, spec = _eeg(rng, N)
        return {"raw_signal": raw, "spectrogram": spec}
    if model == "thai_deepcut":  # [N, 21] character ids (table of 178) and character types (table of 12), as floats
        return {"input_1": rng.integers(1, 178, (N, 21)).astype(np.float32),
                "input_2": rng.integers(1, 12, (N, 21)).astype(np.float32)}
    if model == "trueocr_det":  # [1, 1, H, W] gray pages 512 x 512, 0..1
        pages = [realdata.render_page(rng, 512).mean(-1) / 255 for _ in range(N)]
        return {"x": np.stack(pages)[:, None].astype(np.float32)}
    if model == "trueocr_rec":  # [B, 1, 96, W] gray text lines 96 x 512, 0..1, and their widths
        lines = [realdata.render_line(realdata.text_line(rng), 96, 512, rng).mean(-1) / 255 for _ in range(N)]
        return {"x": np.stack(lines)[:, None].astype(np.float32), "widths": np.full(N, 512, np.int64)}
    if model == "vcb_captcha_keras":  # [N, 50, 155, 3] five-digit captchas, 0..1
        lines = [realdata.render_line(realdata.text_line(rng, string.digits, (5, 6)), 50, 155, rng, noise=12.0)
                 for _ in range(N)]
        return {"input": np.stack(lines).astype(np.float32) / 255}
    raise KeyError(model)


def calibration(model: str, path: Path) -> tuple[dict[str, np.ndarray], str]:
    cached = FIDELITY_DIR / f"{model}_calib.npz"
    if cached.exists():
        with np.load(cached) as d:
            return {k: d[k][:N] for k in d.files}, "realdata (cached)"
    if model in realdata.MODELS:
        return realdata.build(model, N, 1, calib=True), "realdata"
    data = synth(model, _inputs(path), np.random.default_rng(1))
    for name, dtype, _ in _inputs(path):
        data[name] = data[name].astype(dtype)
    return data, "synthesised"


def run(model: str, target: float, outdir: Path, calib: Path, timeout: int) -> dict:
    out = outdir / f"{model}_{target}.onnx"
    rep = outdir / f"{model}_{target}.json"
    cmd = ["nice", "-n", "10", sys.executable, "-m", "onnxprune", str(MODELS_DIR / f"{model}.onnx"), str(out),
           "--target-flops", str(target), "--calib", str(calib), "--json", str(rep)]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=outdir)  # not the repo: -m reads cwd first
        rc, err = p.returncode, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, err = "timeout", (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
    row = {"model": model, "target": target, "exit": rc, "seconds": round(time.perf_counter() - t0, 1)}
    lines = [ln for ln in err.splitlines() if ln.strip()]
    row["traceback"] = "Traceback" in err
    row["error"] = next((ln for ln in lines if "error:" in ln or "internal error" in ln), lines[-1] if lines and rc not in (0,) else "")
    if rc not in (0, 1, 3):
        row["stderr_tail"] = "\n".join(lines[-15:])
    if rep.exists() and rc != "timeout":
        try:
            j = json.loads(rep.read_text())
            fl = j.get("flops") or {}
            row["flops_kept"] = round(fl["after"] / fl["before"], 3) if fl.get("before") else None
            v = j.get("validation") or {}
            row["verdict"] = v.get("verdict")
            row["other_shapes"] = [(o.get("what"), o.get("passed")) for o in v.get("other_shapes") or []]
            row["cosine"] = min((o.get("cosine") for o in v.get("outputs") or [] if o.get("cosine") is not None), default=None)
            race = j.get("race") or {}
            row["race"] = race.get("kept") or race.get("winner") or race.get("choice")
            row["warnings"] = j.get("warnings")
        except (ValueError, KeyError, TypeError) as e:
            row["json_error"] = repr(e)
    if out.exists():
        out.unlink()  # keep disk use small; the JSON stays
    return row


def table(results: Path) -> str:
    """The markdown table of results.jsonl: one row per model, a column per target (cell: exit code,
    seconds, FLOPs kept, lowest output cosine, the criterion the race kept; other-shape runs), and a count."""
    rows = [json.loads(ln) for ln in results.read_text().splitlines() if ln.strip()]
    targets = sorted({r["target"] for r in rows}, reverse=True)
    by = {(r["model"], r["target"]): r for r in rows}
    models = list(dict.fromkeys(r["model"] for r in rows))
    inputs = {r["model"]: r.get("input", "") for r in rows}

    def cell(r):
        if r is None:
            return "not run"
        if r["exit"] == "timeout":
            return f"timeout ({r['seconds']:.0f} s)"
        if r["exit"] != 0:
            return f"**exit {r['exit']}**, {r['seconds']:.0f} s: {r.get('error', '').removeprefix('onnxprune: error: ')[:130]}"
        other = ", ".join(f"{w} {'ok' if p else 'FAILED' if p is False else 'n/a'}" for w, p in r.get("other_shapes") or [])
        race = r.get("race") or "not raced"
        return (f"0, {r['seconds']:.0f} s, {100 * r['flops_kept']:.1f}%, {r['cosine']:.3f}, {race}"
                + (f"; {other}" if other else ""))

    head = "| model | calibration input | " + " | ".join(f"--target-flops {t}" for t in targets) + " |"
    lines = [head, "|---|---|" + "---|" * len(targets)]
    for m in models:
        lines.append(f"| {m} | {inputs[m]} | " + " | ".join(cell(by.get((m, t))) for t in targets) + " |")
    runs = [r for r in rows]
    count = {k: sum(1 for r in runs if (r["exit"] if r["exit"] in (0, 1, 3, "timeout") else "other") == k)
             for k in (0, 1, 3, "timeout", "other")}
    tracebacks = sum(1 for r in runs if r.get("traceback"))
    failed_elsewhere = sum(1 for r in runs for _, p in r.get("other_shapes") or [] if p is False)
    lines.append("")
    lines.append(f"{len(runs)} runs: exit 0 {count[0]}, exit 1 {count[1]}, exit 3 {count[3]}, timeout {count['timeout']}, "
                 f"other exit codes {count['other']}, tracebacks {tracebacks}, written models failing at another "
                 f"batch / size {failed_elsewhere}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--targets", default="0.7,0.5,0.9")
    ap.add_argument("--models", default="")
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--table", action="store_true", help="print the markdown table of OUTDIR/results.jsonl and stop")
    args = ap.parse_args()
    if args.table:
        print(table(args.outdir / "results.jsonl"))
        return
    args.outdir.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((MODELS_DIR / "manifest.json").read_text())["models"]
    models = args.models.split(",") if args.models else [m["name"] for m in manifest]
    results = args.outdir / "results.jsonl"
    done = set()
    if results.exists():
        done = {(r["model"], r["target"]) for r in map(json.loads, results.read_text().splitlines())}
    for target in map(float, args.targets.split(",")):
        for model in models:
            if (model, target) in done:
                continue
            calib = args.outdir / f"{model}_calib.npz"
            if not calib.exists():
                data, source = calibration(model, MODELS_DIR / f"{model}.onnx")
                np.savez(calib, **data)
                (args.outdir / f"{model}_calib.source").write_text(source)
            row = run(model, target, args.outdir, calib, args.timeout)
            row["input"] = (args.outdir / f"{model}_calib.source").read_text()
            with results.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
