"""Fixtures for the runtime tests; the model builders live in runtime_models.py."""

import numpy as np
import pytest


@pytest.fixture
def images():
    """Ten seeded samples for the classifier's input."""
    return np.random.default_rng(1).standard_normal((10, 3, 8, 8)).astype(np.float32)
