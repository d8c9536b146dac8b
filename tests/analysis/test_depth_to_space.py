"""DepthToSpace (pixel shuffle, both modes) and SpaceToDepth: channels follow the rearrangement.

Before these rules both ops blocked every channel that reached them (an op the analysis does not
know). Each model below is pruned at random and checked by the exactness oracle."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from tests.helpers.oracle import check_oracle, copy


def _model(op: str, c1: int, c2: int, **attrs) -> onnx.ModelProto:
    """conv(3 -> c1) -> relu -> op -> conv(c2 -> 4), 8 x 8 images, dynamic batch."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((c1, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal(c1).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.standard_normal((4, c2, 3, 3)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node(op, ["r1"], ["s"], blocksize=2, **attrs),
             helper.make_node("Conv", ["s", "w2"], ["y"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, op.lower(), [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, None, None])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return model


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space_ties_each_output_channel_to_its_block(mode):
    model = _model("DepthToSpace", 12, 3, mode=mode)
    (group,) = onnxprune.analyze(copy(model)).prunable_groups()
    assert group.size == 3  # 12 conv channels make 3 output channels
    for seed in range(4):
        assert check_oracle(model, seed=seed)["removed"] > 0


def test_space_to_depth_spreads_each_channel_over_the_blocks():
    model = _model("SpaceToDepth", 5, 20)
    (group,) = onnxprune.analyze(copy(model)).prunable_groups()
    assert group.size == 5
    for seed in range(4):
        assert check_oracle(model, seed=seed)["removed"] > 0
    result = onnxprune.prune(copy(model), ratio=0.4)
    dims = {t.name: list(t.dims) for t in result.model.graph.initializer}
    assert dims["w1"][0] < 5 and dims["w2"][1] == 4 * dims["w1"][0]  # each kept channel: 4 positions
