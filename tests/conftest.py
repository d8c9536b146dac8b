"""Shared test fixtures."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
MODELS = REPO / "models"


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES
