"""Interleaved ORT CPU timing for the benchmark scripts, with intra-op spinning off.

onnxprune.runtime.benchmark() interleaves sessions (a, b, c, a, b, c, ...), each with its own
intra-op thread pool and ORT's default `session.intra_op.allow_spinning=1`: after a run, the
worker threads of that session keep spinning on the cores while the next session runs. On this
2-core machine two interleaved copies of the same ResNet-50 then take ~56 ms at batch 1 instead of
~28 ms alone, i.e. the second thread buys nothing and the figures depend on what ran just before.
This runner is the same protocol (seeded N(0,1) inputs, warm-up, interleaved runs, median / p10 /
p90) with spinning off, so interleaving does not change what is measured; `spin=True` gives ORT's
default. With threads=1 there are no worker threads and both runners agree.

The result is an onnxprune.runtime.BenchResult, so scripts use either runner alike.
"""

from __future__ import annotations

import time

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
          runs: int = 30, seed: int = 0, progress=None) -> BenchResult:
    sessions = [session(m, threads, spin) for m in models]
    total = len(batch_sizes) * (warmup + runs) * len(sessions)
    done = 0
    stats = []
    for batch in batch_sizes:
        feeds = [_feed(s, batch, seed) for s in sessions]
        times = [[] for _ in sessions]
        for i in range(warmup + runs):
            for k, (s, feed) in enumerate(zip(sessions, feeds)):
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
