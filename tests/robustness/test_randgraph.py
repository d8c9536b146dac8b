"""tools/randgraph.py: random valid CNN-like graphs for property tests."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest
from tests.helpers.ort import session

from tools.randgraph import random_input, random_model


def _declared_shape(vi: onnx.ValueInfoProto, batch: int) -> list[int]:
    return [batch if d.dim_param else d.dim_value for d in vi.type.tensor_type.shape.dim]


@pytest.mark.parametrize("seed", range(50))
def test_random_model_is_valid_and_runs(seed):
    m = random_model(seed)
    onnx.checker.check_model(m, full_check=True)
    assert m.ir_version == 8
    assert [(o.domain, o.version) for o in m.opset_import] == [("", 17)]
    (inp,) = m.graph.input
    assert inp.name == "input"
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param == "N"
    c, h, w = (d.dim_value for d in dims[1:])
    assert 1 <= c <= 4 and 4 <= h <= 8 and h == w
    assert 1 <= len(m.graph.output) <= 2 and m.graph.output[0].name == "output"

    sess = session(m, optimize=True)
    feed = random_input(m, batch=2, seed=seed)
    assert feed["input"].shape == (2, c, h, w)
    outs = sess.run(None, feed)
    for y, vi in zip(outs, m.graph.output):
        assert y.dtype == np.float32
        assert list(y.shape) == _declared_shape(vi, 2)
        assert np.isfinite(y).all(), m.doc_string


def test_deterministic_in_seed():
    a = random_model(11).SerializeToString()
    assert a == random_model(11).SerializeToString()
    assert a != random_model(12).SerializeToString()


def test_max_blocks_bounds_size():
    small = [len(random_model(s, max_blocks=1).graph.node) for s in range(20)]
    big = [len(random_model(s, max_blocks=12).graph.node) for s in range(20)]
    assert sum(small) < sum(big)


def test_seeds_cover_the_op_menu():
    ops = collections.Counter()
    two_outputs = unknown = 0
    for seed in range(200):
        m = random_model(seed)
        types = {n.op_type for n in m.graph.node}
        ops.update(types)
        two_outputs += len(m.graph.output) == 2
        unknown += bool(types & {"LRN", "Softmax"})
    expected = {
        "Conv", "ConvTranspose", "BatchNormalization", "InstanceNormalization", "Relu",
        "LeakyRelu", "Sigmoid", "Tanh", "Clip", "HardSwish", "PRelu", "Add", "Sub", "Mul",
        "Max", "Min", "Sum", "Concat", "Split", "Slice", "MaxPool", "AveragePool",
        "GlobalAveragePool", "Resize", "Pad", "Transpose", "MatMul", "Identity", "Dropout",
        "Flatten", "Gemm", "LRN", "Softmax",
    }
    assert expected <= set(ops), expected - set(ops)
    assert 10 <= two_outputs <= 120
    assert 10 <= unknown <= 80
    # depthwise (group == C_in) and grouped (group 2) convs both occur
    groups = set()
    for seed in range(200):
        for n in random_model(seed).graph.node:
            if n.op_type == "Conv":
                groups |= {onnx.helper.get_attribute_value(a) for a in n.attribute
                           if a.name == "group"}
    assert 2 in groups and len(groups) >= 3
