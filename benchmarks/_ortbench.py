"""Shared pieces of the benchmark scripts: interleaved ORT CPU timing and small helpers.

The timing loop is onnxprune.runtime.benchmark's protocol (seeded N(0,1) inputs, warm-up,
interleaved runs, median / p10 / p90) with ORT's intra-op spinning as a switch: with ORT's default
`session.intra_op.allow_spinning=1`, the idle worker threads of one session keep spinning while
the next session runs, and on 2 cores two interleaved copies of ResNet-50 took ~56 ms at batch 1
instead of ~28 ms alone. onnxprune's own sessions now turn spinning off as well (runtime/sessions.py);
`spin=True` here reproduces the old behaviour. The result is an onnxprune.runtime.BenchResult.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from onnxprune.runtime import BenchResult, BenchStat

CPU = "CPUExecutionProvider"


def session(model, threads: int | None, spin: bool) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(model.SerializeToString(), so, providers=[CPU])


def _feed(sess: ort.InferenceSession, batch: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    feed = {}
    for arg in sess.get_inputs():
        shape = [batch if i == 0 and not isinstance(d, int) else (d if isinstance(d, int) and d > 0 else 1)
                 for i, d in enumerate(arg.shape)]
        feed[arg.name] = rng.standard_normal(shape).astype(np.float32)
    return feed


def bench(models, names, batch_sizes=(1, 8), threads: int | None = None, spin: bool = False, warmup: int = 5,
          runs: int = 30, seed: int = 0, progress=None, feeds=None) -> BenchResult:
    """`feeds(session, batch, seed)`: the inputs (default: N(0,1) floats, batch on dim 0)."""
    sessions = [session(m, threads, spin) for m in models]
    total = len(batch_sizes) * (warmup + runs) * len(sessions)
    done = 0
    stats = []
    for batch in batch_sizes:
        inputs = [(feeds or _feed)(s, batch, seed) for s in sessions]
        times = [[] for _ in sessions]
        for i in range(warmup + runs):
            for k, (s, feed) in enumerate(zip(sessions, inputs)):
                t0 = time.perf_counter()
                s.run(None, feed)
                if i >= warmup:
                    times[k].append(time.perf_counter() - t0)
                done += 1
                if progress is not None:
                    progress(done, total)
        base = None
        for name, t in zip(names, times):
            ms = np.asarray(t) * 1000.0
            p10, med, p90 = (float(v) for v in np.percentile(ms, [10, 50, 90]))
            base = med if base is None else base
            stats.append(BenchStat(name, batch, len(ms), med, p10, p90, float(ms.mean()), batch / (med / 1000.0),
                                   base / med))
    return BenchResult(list(names), list(batch_sizes), stats, CPU + (" (spinning on)" if spin else " (spinning off)"),
                       threads, warmup, runs)


ROOT = Path(__file__).resolve().parent.parent


def timed(runner: str, models, labels, batches, threads, warmup, runs, progress):
    """Interleaved timing: "nospin" (this module's loop) or "onnxprune" (onnxprune.runtime.benchmark)."""
    if runner == "onnxprune":
        from onnxprune.runtime import benchmark

        return benchmark(models, batch_sizes=batches, device="cpu", threads=threads, warmup=warmup, runs=runs,
                         names=labels, progress=progress)
    return bench(models, labels, batches, threads=threads, warmup=warmup, runs=runs, progress=progress)


def timing_args(ap, runs: int) -> None:
    """The timing options the benchmark scripts share: --batches, --runs, --warmup, --threads, --runner."""
    ap.add_argument("--batches", type=csv(int), default=[1, 8])
    ap.add_argument("--runs", type=int, default=runs, help=f"timed runs per model and batch size (default {runs})")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, help="ORT intra-op threads (default: onnxruntime's choice)")
    ap.add_argument("--runner", choices=["nospin", "onnxprune"], default="nospin",
                    help="nospin: own interleaved loop with ORT intra-op spinning off (default); onnxprune: "
                         "onnxprune.runtime.benchmark with ORT defaults (spinning on; distorted when interleaving "
                         "on few cores, see benchmarks/_ortbench.py)")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def csv(kind):
    return lambda s: [kind(x) for x in s.split(",") if x]


def prune_copy(model, **options):
    """onnxprune.prune on a copy, leaving `model` as it is for the next variant."""
    import onnx

    import onnxprune

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return onnxprune.prune(copy, **options)


def git_state() -> dict:
    """The onnxprune code measured: HEAD and whether onnxprune/ had uncommitted edits."""

    def git(*a):
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=30,
                                  check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    return {"commit": git("rev-parse", "--short", "HEAD"), "onnxprune_dirty": bool(git("status", "--porcelain", "onnxprune"))}
