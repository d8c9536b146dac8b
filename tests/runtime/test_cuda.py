"""CUDA: the marked tests run only where CUDAExecutionProvider really works; the rest only where it does not."""

from __future__ import annotations

import numpy as np
import pytest
from runtime_models import classifier, save

from onnxprune.errors import RuntimeUnavailableError
from onnxprune.runtime import benchmark, compare_models, create_session
from onnxprune.runtime.sessions import CPU, CUDA
from tests.helpers.cli import invoke


def _cuda_problem() -> str | None:
    try:
        create_session(classifier(), device="cuda").close()
    except RuntimeUnavailableError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="module")
def cuda_problem():
    return _cuda_problem()


@pytest.fixture
def cuda(cuda_problem):
    if cuda_problem is not None:
        pytest.skip(f"no working CUDAExecutionProvider here: {cuda_problem}")


@pytest.mark.cuda
def test_cuda_session_matches_cpu(cuda, images):
    model = classifier(channels=16)
    gpu = create_session(model, device="cuda")
    assert gpu.provider == CUDA and gpu.fallback is None
    on_gpu = gpu.run({"input": images})["logits"]
    on_cpu = create_session(model).run({"input": images})["logits"]
    # TF32 convolutions (onnxruntime enables them on Ampere and later) round inputs to 10 mantissa bits:
    # errors scale with the output's magnitude, so a near-zero logit can differ by 10% of itself. On
    # an H200 (onnxruntime-gpu 1.31.1) the largest difference was 7e-3 at logits of magnitude 14.
    scale = float(np.abs(on_cpu).max())
    np.testing.assert_allclose(on_gpu, on_cpu, atol=2e-3 * scale, rtol=0)
    assert (on_gpu.argmax(axis=1) == on_cpu.argmax(axis=1)).all()


@pytest.mark.cuda
def test_auto_picks_cuda_when_it_works(cuda):
    session = create_session(classifier(), device="auto")
    assert session.provider == CUDA and session.fallback is None


@pytest.mark.cuda
def test_compare_and_bench_on_cuda(cuda):
    result = compare_models(classifier(), classifier(), device="cuda")
    assert result and result.provider == CUDA
    timing = benchmark([classifier(), classifier(channels=2)], batch_sizes=(1, 4), device="cuda", warmup=2, runs=5)
    assert timing.provider == CUDA and len(timing.stats) == 4
    assert all(np.isfinite(s.median_ms) and s.median_ms > 0 for s in timing.stats)


def test_without_cuda_cuda_is_refused_and_auto_falls_back(cuda_problem):
    if cuda_problem is None:
        pytest.skip("CUDA works here")
    assert cuda_problem.startswith("device cuda asked for, but ") and "\n" not in cuda_problem
    session = create_session(classifier(), device="auto")
    assert session.provider == CPU and session.fallback.startswith("CUDA unavailable")
    result = compare_models(classifier(), classifier(), device="auto")
    assert result and any(w.startswith("CUDA unavailable") for w in result.warnings)


def test_without_cuda_the_cli_says_so_in_one_line(cuda_problem, tmp_path):
    if cuda_problem is None:
        pytest.skip("CUDA works here")
    model = save(classifier(), tmp_path / "m.onnx")
    result = invoke("check", model, model, "--device", "cuda")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr == f"onnxprune: error: {cuda_problem}\n"
    result = invoke("bench", model, "--device", "auto", "--runs", "1", "--warmup", "0")
    assert result.exit_code == 0 and "warning: CUDA unavailable" in result.stdout
