"""The exactness oracle on every tools/ architecture (small versions) and on random graphs."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.oracle import check_oracle
from tools.randgraph import random_model
from tools.zoo import ZOO

SMALL = {"resolution": 32, "width": 0.125, "num_classes": 10}
SIZES = {"inception": {"resolution": 64}, "vgg16_bn": {"resolution": 32}, "convtranspose_decoder": {"resolution": 32},
         "mlp": {"resolution": 8}}


def small(name, **kw):
    return ZOO[name](**{**SMALL, **SIZES.get(name, {}), **kw})


@pytest.mark.parametrize("name", sorted(ZOO))
@pytest.mark.parametrize("bn", [True, False])
def test_oracle_on_zoo(name, bn):
    info = check_oracle(small(name, bn=bn), seed=int(bn))
    assert info["prunable"] >= 1 and info["removed"] >= 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), fraction=st.floats(0.05, 0.95))
def test_oracle_on_random_graphs(seed, fraction):
    check_oracle(random_model(seed), seed=seed % 1000, fraction=fraction)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1))
def test_oracle_on_larger_random_graphs(seed):
    check_oracle(random_model(seed, max_blocks=15), seed=seed % 1000)
