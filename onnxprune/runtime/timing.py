"""Latency of models on ONNX Runtime, for the latency model of --target-latency.

A *timer* answers one question: how long does one run of each of these models take, measured side
by side (interleaved) so that machine noise hits them alike. `OrtTimer` asks ONNX Runtime; tests
inject a fake timer with the same `time()` so that the allocation and the correction loop can be
checked deterministically, without timing anything.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from ..errors import DataError
from .data import input_specs
from .sessions import create_session

CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}


class OrtTimer:
    """Interleaved timing on ONNX Runtime (`device` cpu or cuda, `threads` intra-op threads).

    Layers timed alone are short: their minimum over a few runs is what they cost when no other
    process takes the core. Whole models are compared by `compare`.

    Clock: with one thread on CPU, ORT runs the whole graph on the calling thread, so the thread's CPU
    time (`time.thread_time`) is the run's latency on an idle core, and stays so on a machine other
    processes load: there the wall clock counts their time slices too (measured on a 2-core machine
    shared by 8 jobs: MobileNetV2 took 140-210 ms wall-clock per run, 12-15 ms of CPU time). Any
    other case (threads > 1, CUDA) uses the wall clock (`clock="wall"` forces it)."""

    def __init__(self, device: str = "cpu", threads: int | None = None, runs: int = 5, warmup: int = 1,
                 min_seconds: float = 0.05, seed: int = 0, clock: str = "auto"):
        self.device = device
        self.threads = threads
        if clock == "auto":
            clock = "thread" if device == "cpu" and threads == 1 else "wall"
        if clock not in CLOCKS:
            raise ValueError(f"clock must be auto, wall or thread, got {clock}")
        self.clock = clock
        self.name = f"ort-{clock}"
        self.runs = runs
        self.warmup = warmup
        self.min_seconds = min_seconds
        self.seed = seed
        self.provider: str | None = None

    def samples(self, models: Sequence[onnx.ModelProto], shapes: Mapping[str, tuple[int, ...]] | None = None,
                runs: int | None = None) -> list[list[float]]:
        """Seconds of each timed run of each model, interleaved (a, b, a, b, ...) after a warm-up;
        small models run until `min_seconds` have passed (at most 10x `runs`)."""
        sessions = [create_session(m, self.device, self.threads) for m in models]
        try:
            self.provider = sessions[0].provider
            feeds = [_random_feeds(m, shapes, self.seed) for m in models]
            for s, f in zip(sessions, feeds):
                for _ in range(self.warmup):
                    s.inference.run(None, f)
            times: list[list[float]] = [[] for _ in sessions]
            _clock = CLOCKS[self.clock]
            want = runs or self.runs
            spent = 0.0
            while len(times[0]) < want or (spent < self.min_seconds and len(times[0]) < 10 * want):
                for k, (s, f) in enumerate(zip(sessions, feeds)):
                    start = _clock()
                    s.inference.run(None, f)
                    elapsed = _clock() - start
                    times[k].append(elapsed)
                    spent += elapsed
            return times
        finally:
            for s in sessions:
                s.close()

    def time(self, models: Sequence[onnx.ModelProto], shapes: Mapping[str, tuple[int, ...]] | None = None,
             runs: int | None = None, quantile: float = 0.0) -> list[float]:
        """Seconds per run of each model: the `quantile` of its interleaved runs (0: the minimum)."""
        return [float(np.quantile(t, quantile)) for t in self.samples(models, shapes, runs)]

    def compare(self, base: onnx.ModelProto, other: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]] | None = None,
                runs: int = 10, max_runs: int = 40, precision: float = 0.01) -> tuple[float, float, float]:
        """(base seconds, other seconds, other/base): medians, the share as the median of the ratios of
        adjacent runs, so that load that comes and goes on a shared machine cancels out. Runs come in
        chunks of `runs` until the share's standard error is below `precision` (or `max_runs`)."""
        sessions = [create_session(m, self.device, self.threads) for m in (base, other)]
        try:
            self.provider = sessions[0].provider
            feeds = [_random_feeds(m, shapes, self.seed) for m in (base, other)]
            for s, f in zip(sessions, feeds):
                for _ in range(self.warmup):
                    s.inference.run(None, f)
            a, b = [], []
            _clock = CLOCKS[self.clock]
            while True:
                for _ in range(runs):
                    for times, s, f in ((a, sessions[0], feeds[0]), (b, sessions[1], feeds[1])):
                        start = _clock()
                        s.inference.run(None, f)
                        times.append(_clock() - start)
                ratios = np.asarray(b) / np.asarray(a)
                if median_error(ratios) <= precision or len(ratios) >= max_runs:
                    return float(np.median(a)), float(np.median(b)), float(np.median(ratios))
        finally:
            for s in sessions:
                s.close()


def median_error(ratios) -> float:
    """Relative standard error of the median of per-round ratios, from their interquartile range
    (robust to the bursts of load a shared machine adds)."""
    q25, q75 = np.percentile(ratios, [25, 75])
    return float(1.2533 * (q75 - q25) / 1.349 / np.sqrt(len(ratios)) / np.median(ratios))


def _random_feeds(model: onnx.ModelProto, shapes, seed: int) -> dict[str, np.ndarray]:
    """Seeded inputs: dims from `shapes` (concrete, batch included), else the model's fixed dims."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in input_specs(model):
        shape = (shapes or {}).get(spec.name, spec.shape)
        if shape is None or any(not isinstance(d, int) or d < 1 for d in shape):
            raise DataError(f"input '{spec.name}' {spec.describe()} needs concrete dims to be timed")
        if spec.dtype.kind == "f":
            feeds[spec.name] = rng.standard_normal(tuple(shape)).astype(spec.dtype)
        else:
            feeds[spec.name] = np.zeros(tuple(shape), dtype=spec.dtype)
    return feeds
