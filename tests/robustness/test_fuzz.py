"""A seeded slice of the fuzz harness (tools/fuzz.py; the whole run is benchmarks/fuzz.py):
no internal error and no changed output on node tests, derived models, random CNNs, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from tools import fuzz


@pytest.fixture(scope="module")
def report():
    return fuzz.run(node_modules=["relu", "conv", "squeeze", "cast", "concat", "batch_normalization"],
                    random_seeds=range(12), bad=True, bad_limit=6)


def test_no_internal_error_and_no_mismatch(report):
    assert not report.failures(), "\n".join(f"{o.kind}: [{o.cls}] {o.name}: {o.detail}" for o in report.failures())


def test_every_class_ran_and_some_models_were_pruned(report):
    for cls in ("a node", "b derived", "c random", "d bad"):
        assert sum(report.counts(cls).values()) > 0, cls
    assert report.counts("a node")[fuzz.PRUNED] == 0  # node tests: every tensor is an input or output
    assert report.counts("b derived")[fuzz.PRUNED] > 0
    assert report.counts("c random")[fuzz.PRUNED] > 0
    assert report.counts("d bad")[fuzz.CLEAN] > 0
    assert "| b derived |" in report.table()


@pytest.mark.parametrize("a, b, same", [
    ([np.nan, 1.0], [np.nan, 1.0], True),
    ([np.nan, 1.0], [0.0, 1.0], False),
    ([np.inf, 1.0], [-np.inf, 1.0], False),
    ([np.inf, 1.0], [3e38, 1.0], False),
    ([1.0, 2.0], [1.00001, 2.0], True),
    ([1.0, 2.0], [1.1, 2.0], False),
])
def test_comparison_is_nan_aware(a, b, same):
    assert (fuzz.same_values(np.array(a, np.float32), np.array(b, np.float32)) is None) is same
