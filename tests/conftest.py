"""Shared test fixtures."""

import os
from pathlib import Path

# numpy's BLAS on one thread (set before numpy loads it; a value already set wins). The tests'
# matrices are small (repair Grams of at most a few hundred features), where a second BLAS thread
# only waits for the first and takes a core from ONNX Runtime: on the 2-core machine a fidelity
# guard run of the digits model took 43 s of wall time with two threads and 10 s with one.
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
MODELS = REPO / "models"


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES
