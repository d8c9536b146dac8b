"""benchmark: interleaving, statistics and structure, with a fake clock so nothing rests on wall time."""

from __future__ import annotations

import json

import numpy as np
import pytest
from runtime_models import classifier, save

from onnxprune.errors import ConfigError, DataError
from onnxprune.runtime import BenchResult, benchmark, bench
from onnxprune.runtime.data import InputSpec


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class FakeSession:
    """Records each run in a shared log and advances the fake clock by its own cost per sample."""

    provider, fallback = "FakeExecutionProvider", None

    def __init__(self, name, log, clock, ms_per_sample):
        self.name, self.log, self.clock, self.ms = name, log, clock, ms_per_sample
        self.inputs = [InputSpec("input", np.dtype(np.float32), ("N", 3, 8, 8))]
        self.closed = False

    def run(self, feeds):
        self.log.append((self.name, feeds["input"].shape[0]))
        self.clock.now += self.ms * feeds["input"].shape[0] / 1000.0
        return {}

    def close(self):
        self.closed = True


@pytest.fixture
def fakes(monkeypatch):
    """Models are given as ("name", ms_per_sample) pairs; returns the shared call log and the sessions."""
    log, clock, made = [], FakeClock(), []
    monkeypatch.setattr(bench, "_clock", clock)

    def create(model, device, threads):
        made.append(FakeSession(model[0], log, clock, model[1]))
        return made[-1]

    monkeypatch.setattr(bench, "create_session", create)
    return log, made


def test_runs_are_interleaved_after_warmup(fakes):
    log, made = fakes
    seen = []
    benchmark([("a", 2.0), ("b", 1.0), ("c", 4.0)], batch_sizes=(1, 4), warmup=2, runs=3, names=["a", "b", "c"],
              progress=lambda done, total: seen.append((done, total)))
    per_batch = 3 * (2 + 3)
    assert log[:per_batch] == [(m, 1) for m in "abc"] * 5
    assert log[per_batch:] == [(m, 4) for m in "abc"] * 5
    assert seen[-1] == (2 * per_batch, 2 * per_batch) and len(seen) == 2 * per_batch
    assert all(s.closed for s in made)


def test_medians_throughput_and_speedups(fakes):
    result = benchmark([("a", 2.0), ("b", 1.0), ("c", 4.0)], batch_sizes=(1, 4), warmup=1, runs=5,
                       names=["a", "b", "c"])
    assert isinstance(result, BenchResult)
    assert [(s.batch, s.model) for s in result.stats] == [(1, "a"), (1, "b"), (1, "c"), (4, "a"), (4, "b"), (4, "c")]
    a4, b4, c4 = (result.get(m, 4) for m in "abc")
    assert a4.median_ms == pytest.approx(8.0) and a4.p10_ms == pytest.approx(8.0) and a4.runs == 5
    assert a4.throughput == pytest.approx(4 / 0.008)
    assert (a4.speedup, b4.speedup, c4.speedup) == pytest.approx((1.0, 2.0, 0.5))
    assert result.get("b", 1).speedup == pytest.approx(2.0)
    with pytest.raises(KeyError):
        result.get("a", 2)


def test_table_and_dict_structure(fakes):
    result = benchmark([("a", 2.0), ("b", 1.0)], batch_sizes=(2,), warmup=0, runs=2, names=["a", "b"])
    lines = result.format_table().splitlines()
    assert lines[0].startswith("FakeExecutionProvider, threads: onnxruntime default, 0 warm-up + 2 timed runs")
    assert lines[2].split() == ["batch", "model", "median", "ms", "p10", "ms", "p90", "ms", "mean", "ms",
                                "samples/s", "speedup"]
    assert lines[4].split()[:2] == ["2", "b"] and lines[4].endswith("2.00x")
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["models"] == ["a", "b"] and data["batch_sizes"] == [2] and len(data["stats"]) == 2
    assert set(data["stats"][0]) == {"model", "batch", "runs", "median_ms", "p10_ms", "p90_ms", "mean_ms",
                                     "throughput", "speedup"}


def test_real_models_produce_finite_results(tmp_path):
    a = save(classifier(), tmp_path / "a.onnx")
    b = save(classifier(channels=2), tmp_path / "b.onnx")
    result = benchmark([a, b], batch_sizes=(1, 2), warmup=1, runs=3, threads=1)
    assert result.models == ["a.onnx", "b.onnx"] and result.provider == "CPUExecutionProvider"
    assert len(result.stats) == 4
    assert all(np.isfinite([s.median_ms, s.p10_ms, s.p90_ms, s.mean_ms, s.throughput, s.speedup]).all()
               for s in result.stats)
    assert all(s.p10_ms <= s.median_ms <= s.p90_ms for s in result.stats)


def test_names_for_clashing_paths_and_protos(tmp_path):
    (tmp_path / "x").mkdir()
    a, b = save(classifier(), tmp_path / "m.onnx"), save(classifier(), tmp_path / "x" / "m.onnx")
    assert bench._labels([a, b]) == [a, b]
    assert bench._labels([classifier(), classifier()]) == ["model0", "model1"]


def test_fixed_batch_models_reject_other_batch_sizes():
    with pytest.raises(DataError, match="fixed batch of 1"):
        benchmark([classifier(batch=1)], batch_sizes=(1, 8), warmup=0, runs=1)


@pytest.mark.parametrize("kw, message", [
    ({"models": []}, "at least one model"), ({"batch_sizes": (0,)}, "positive"), ({"runs": 0}, "runs must be >= 1"),
])
def test_bad_arguments(kw, message):
    args = {"models": [classifier()], **kw}
    with pytest.raises(ConfigError, match=message):
        benchmark(**args)
