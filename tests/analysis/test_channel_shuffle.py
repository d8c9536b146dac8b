"""Channel shuffle (ShuffleNet): view(N, g, C/g, H, W) -> transpose(1, 2) -> view(N, C, H, W).

Position j of each of the g parts is one channel: the parts keep the same positions, so the shuffle
interleaves the kept channels as it interleaved all of them. Before this rule every trunk group of a
ShuffleNetV2 was blocked ("Reshape splits the channel axis"). Three forms of the split's target:
torchvision's traced one with static H, W (frozen, the batch kept dynamic), the same with H and W
dynamic too (C // g read at run time, written as it is), and the model zoo's constant targets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from tests.helpers.oracle import check_oracle, copy, run

FIX = Path(__file__).resolve().parents[1] / "fixtures"


def _blocked(analysis):
    return [(g.size, g.reasons) for g in analysis.groups if not g.prunable]


@pytest.mark.parametrize("name", ["torch_shufflenet_tiny", "torch_shufflenet_tiny_dynhw"])
def test_shufflenet_trunk_is_prunable_and_exact(name):
    model = onnx.load(str(FIX / f"{name}.onnx"))
    analysis = onnxprune.analyze(copy(model))
    assert _blocked(analysis) == [(10, ["reaches graph output 'output'"])]
    # The stage-2 trunk: branch1's last conv of the first unit and branch2's last conv of all three.
    trunk = next(g for g in analysis.groups if any("stage2.1/branch2/branch2.5" in s for s in g.sources))
    assert trunk.size == 8 and sum("stage2" in s for s in trunk.sources) == 4
    for seed in range(3):
        assert check_oracle(model, seed=seed)["removed"] > 0


@pytest.mark.parametrize("name, sizes", [("torch_shufflenet_tiny", [(2, 3, 32, 32)]),
                                         ("torch_shufflenet_tiny_dynhw", [(2, 3, 32, 32), (3, 3, 48, 40)])])
def test_pruned_shufflenet_runs_where_the_original_runs(name, sizes):
    """The written targets keep the dynamic dims: another batch (and size, where dynamic)."""
    model = onnx.load(str(FIX / f"{name}.onnx"))
    result = onnxprune.prune(copy(model), ratio=0.5)
    assert result.report.channels_removed > 40
    onnx.checker.check_model(result.model, full_check=True)
    for shape in sizes:
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        (y,) = run(result.model, {"input": x})
        assert y.shape == (shape[0], 10)


def _zoo_shuffle(g: int = 2, c: int = 8) -> onnx.ModelProto:
    """conv -> Reshape [1, g, C/g, H, W] (a constant) -> Transpose -> Reshape [1, C, H, W] -> conv."""
    rng = np.random.default_rng(0)
    h = w = 6
    inits = [numpy_helper.from_array(rng.standard_normal((c, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal(c).astype(np.float32), "b1"),
             numpy_helper.from_array(np.array([1, g, c // g, h, w], np.int64), "split"),
             numpy_helper.from_array(np.array([1, c, h, w], np.int64), "merge"),
             numpy_helper.from_array(rng.standard_normal((4, c, 1, 1)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Reshape", ["r1", "split"], ["s"]),
             helper.make_node("Transpose", ["s"], ["t"], perm=[0, 2, 1, 3, 4]),
             helper.make_node("Reshape", ["t", "merge"], ["m"]),
             helper.make_node("Conv", ["m", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "zoo_shuffle", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, h, w])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, h, w])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return model


@pytest.mark.parametrize("g", [2, 4])
def test_constant_shuffle_targets_are_written(g):
    model = _zoo_shuffle(g=g)
    analysis = onnxprune.analyze(copy(model))
    (group,) = [gr for gr in analysis.groups if gr.prunable]
    assert group.size == 8 // g  # position j of every part is one channel
    for seed in range(3):
        assert check_oracle(model, seed=seed)["removed"] > 0
    result = onnxprune.prune(copy(model), ratio=0.5)
    split = next(t for t in result.model.graph.initializer if t.name == "split")
    assert numpy_helper.to_array(split).tolist()[:3] == [1, g, (8 // g) // 2]


def test_a_part_picked_out_of_the_split_holds_one_position_of_each_channel():
    """[N, g, C/g, ...] followed by a Gather on the g axis (one part picked): the part's position j
    is channel j, unified across the parts, so the pick is exact too."""
    model = _zoo_shuffle()
    g = model.graph
    nodes = [n for n in g.node if n.op_type not in ("Transpose", "Reshape") or n.input[0] == "r1"]
    nodes = [n for n in nodes if n.op_type != "Conv" or n.input[0] == "x"]
    g.initializer.append(numpy_helper.from_array(np.array(1, np.int64), "one"))
    g.initializer.append(numpy_helper.from_array(np.random.default_rng(2).standard_normal((4, 4, 1, 1)).astype(np.float32), "w2h"))
    nodes += [helper.make_node("Gather", ["s", "one"], ["p"], axis=1),
              helper.make_node("Conv", ["p", "w2h"], ["y"])]
    del g.node[:]
    g.node.extend(nodes)
    analysis = onnxprune.analyze(copy(model))
    (group,) = analysis.prunable_groups()
    assert group.size == 4
    for seed in range(3):
        assert check_oracle(model, seed=seed)["removed"] > 0


def test_a_shuffle_target_concatenated_from_shape_pieces_and_constants():
    """onnxsim's form of torchvision's shuffle with H and W dynamic: the target is
    Concat(Shape(x)[0], [g], [C/g], Shape(x)[2], Shape(x)[3]); the constant C/g piece is written."""
    rng = np.random.default_rng(1)
    c, g = 8, 2
    inits = [numpy_helper.from_array(rng.standard_normal((c, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((4, c, 1, 1)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.array([g], np.int64), "g"), numpy_helper.from_array(np.array([c // g], np.int64), "per"),
             numpy_helper.from_array(np.array([c], np.int64), "cc"),
             numpy_helper.from_array(np.array(0, np.int64), "i0"), numpy_helper.from_array(np.array(2, np.int64), "i2"),
             numpy_helper.from_array(np.array(3, np.int64), "i3"), numpy_helper.from_array(np.array([0], np.int64), "ax")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Shape", ["r1"], ["shp"])]
    for k, i in ((0, "i0"), (2, "i2"), (3, "i3")):
        nodes += [helper.make_node("Gather", ["shp", i], [f"d{k}"], axis=0),
                  helper.make_node("Unsqueeze", [f"d{k}", "ax"], [f"u{k}"])]
    nodes += [helper.make_node("Concat", ["u0", "g", "per", "u2", "u3"], ["split"], axis=0),
              helper.make_node("Reshape", ["r1", "split"], ["s"]),
              helper.make_node("Transpose", ["s"], ["t"], perm=[0, 2, 1, 3, 4]),
              helper.make_node("Concat", ["u0", "cc", "u2", "u3"], ["merge"], axis=0),
              helper.make_node("Reshape", ["t", "merge"], ["m"]),
              helper.make_node("Conv", ["m", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "sim_shuffle", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, "H", "W"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    (group,) = onnxprune.analyze(copy(model)).prunable_groups()
    assert group.size == c // g
    from onnxprune import PruneConfig
    from onnxprune.api import resolve_input_shapes
    # ONNX's inference leaves the symbolic graph's shapes open after this target: resolved at 8 x 8,
    # as a run is, and fed at that size
    shapes = resolve_input_shapes(model, PruneConfig(shapes={"x": (1, 3, 8, 8)}))
    for seed in range(3):
        x = {"x": np.random.default_rng(seed).standard_normal((2, 3, 8, 8)).astype(np.float32)}
        assert check_oracle(model, seed=seed, fraction=0.5, shapes=shapes, inputs=x)["removed"] > 0
    result = onnxprune.prune(copy(model), ratio=0.5)
    for shape in [(1, 3, 8, 8), (2, 3, 10, 6)]:
        (y,) = run(result.model, {"x": np.random.default_rng(0).standard_normal(shape).astype(np.float32)})
        assert y.shape == (shape[0], 4, shape[2], shape[3])
