"""Latency and throughput of one or more models, measured fairly against each other.

Runs are interleaved (a, b, c, a, b, c, ...) after a warm-up, so a burst of machine noise hits every
model alike; the median and the p10-p90 spread are reported, not the mean alone, because latency
distributions have long tails. The library never prints: pass `progress` to follow along.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from .shapes import resolve_input_shapes
from .data import random_data, resolve_batch
from .diagnose import explain
from .sessions import create_session, explain_ort_error

_clock = time.perf_counter


@dataclass
class BenchStat:
    """One model at one batch size; speedup is the first model's median over this one's."""

    model: str
    batch: int
    runs: int
    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    throughput: float
    speedup: float


@dataclass
class BenchResult:
    models: list[str]
    batch_sizes: list[int]
    stats: list[BenchStat]
    provider: str
    threads: int | None
    warmup: int
    runs: int
    warnings: list[str] = field(default_factory=list)

    def get(self, model: str, batch: int) -> BenchStat:
        for s in self.stats:
            if s.model == model and s.batch == batch:
                return s
        raise KeyError((model, batch))

    def format_table(self) -> str:
        head = (f"{self.provider}, threads: {self.threads or 'onnxruntime default'}, "
                f"{self.warmup} warm-up + {self.runs} timed runs per model, interleaved")
        cols = ["batch", "model", "median ms", "p10 ms", "p90 ms", "mean ms", "samples/s", "speedup"]
        rows = [[str(s.batch), s.model, f"{s.median_ms:.3f}", f"{s.p10_ms:.3f}", f"{s.p90_ms:.3f}",
                 f"{s.mean_ms:.3f}", f"{s.throughput:.1f}", f"{s.speedup:.2f}x"] for s in self.stats]
        widths = [max(len(r[i]) for r in [cols, *rows]) for i in range(len(cols))]
        align = [str.rjust, str.ljust] + [str.rjust] * (len(cols) - 2)
        lines = [head, ""] + ["  ".join(f(c, w) for f, c, w in zip(align, r, widths)).rstrip() for r in [cols, *rows]]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format_table()

    def to_dict(self) -> dict:
        data = asdict(self)
        data["stats"] = [{k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in s.items()}
                         for s in data["stats"]]
        return data


def benchmark(models: Sequence, batch_sizes: Sequence[int] = (1, 8), device: str = "cpu", threads: int | None = None,
              warmup: int = 5, runs: int = 30, shapes: dict[str, tuple[int, ...]] | None = None, seed: int = 0,
              names: Sequence[str] | None = None,
              progress: Callable[[int, int], None] | None = None) -> BenchResult:
    """Time `models` (protos or paths) at each batch size on seeded random inputs; `progress(done,
    total)` is called after every run."""
    if not models:
        raise ConfigError("give at least one model to benchmark")
    if not batch_sizes or any(b < 1 for b in batch_sizes):
        raise ConfigError(f"batch sizes must be positive, got {list(batch_sizes)}")
    if runs < 1 or warmup < 0:
        raise ConfigError(f"runs must be >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    labels = list(names) if names is not None else _labels(models)
    if len(labels) != len(models):
        raise ConfigError(f"{len(models)} models but {len(labels)} names")
    sessions = []
    try:
        for model in models:
            sessions.append(create_session(model, device, threads))
        resolved = [resolve_input_shapes(m, given=shapes, specs=s.inputs, calib=False) for m, s in zip(models, sessions)]
        notes = []
        if not any(s.batched for s in sessions[0].inputs):
            notes.append(f"the model has no batch axis: timed whole feeds ({resolved[0].describe()}), "
                         "not per batch size")
            batch_sizes = list(batch_sizes)[:1]
        total = len(batch_sizes) * (warmup + runs) * len(sessions)
        done = 0
        stats = []
        for batch in batch_sizes:
            feeds, sizes = [], []
            for sess, res in zip(sessions, resolved):
                specs = sess.inputs
                size = resolve_batch(specs, batch, shapes)
                sizes.append(size)
                feeds.append(next(random_data(specs, res, size, seed, 1).batches(size)).feeds)
            times = [[] for _ in sessions]
            for i in range(warmup + runs):
                for k, (sess, feed) in enumerate(zip(sessions, feeds)):
                    start = _clock()
                    try:
                        sess.run(feed)
                    except Exception as exc:  # ORT's own exception classes: one line naming the fix
                        raise _failed(labels[k], models[k], sess, resolved[k], feed, sizes[k], seed, exc) from None
                    if i >= warmup:
                        times[k].append(_clock() - start)
                    done += 1
                    if progress is not None:
                        progress(done, total)
            stats += _stats(labels, batch, times)
    finally:
        for sess in sessions:
            sess.close()
    warnings = ([sessions[0].fallback] if sessions[0].fallback else []) + notes
    return BenchResult(labels, list(batch_sizes), stats, sessions[0].provider, threads, warmup, runs, warnings)


def _failed(label, model, session, resolved, feeds, size, seed, exc) -> DataError:
    """A model that does not run on the random inputs: why, and the --shape / --calib line."""
    found = explain(model, session, resolved, feeds, size, seed, calib=False)
    if found:
        return DataError(f"{label}: onnxruntime failed to run it {found}")
    return DataError(f"{label}: onnxruntime failed to run it at {resolved.with_batch(size).describe() if size else resolved.describe()}: "
                     f"{explain_ort_error(str(exc))}")


def _stats(labels: list[str], batch: int, times: list[list[float]]) -> list[BenchStat]:
    out = []
    base = None
    for label, t in zip(labels, times):
        ms = np.asarray(t) * 1000.0
        p10, median, p90 = (float(v) for v in np.percentile(ms, [10, 50, 90]))
        base = median if base is None else base
        out.append(BenchStat(label, batch, len(ms), median, p10, p90, float(ms.mean()),
                             batch / (median / 1000.0) if median > 0 else math.inf,
                             base / median if median > 0 else math.inf))
    return out


def _labels(models: Sequence) -> list[str]:
    """File names for paths (whole paths if two names clash), model0, model1, ... for protos."""
    labels = []
    for i, model in enumerate(models):
        labels.append(Path(model).name if isinstance(model, (str, os.PathLike)) else f"model{i}")
    if len(set(labels)) < len(labels):
        labels = [str(m) if isinstance(m, (str, os.PathLike)) else f"model{i}" for i, m in enumerate(models)]
    if len(set(labels)) < len(labels):
        labels = [f"{label} #{i}" for i, label in enumerate(labels)]
    return labels
