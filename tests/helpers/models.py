"""Small hand-built models that tests in several places use."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def constant_channel_model() -> onnx.ModelProto:
    """conv1 channel 0 has a zero filter and bias 2: a constant 2 everywhere; conv2 is 1x1, no padding."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    w1[0] = 0
    b1 = np.array([2.0, 0.1, -0.2, 0.3], np.float32)
    w2 = rng.standard_normal((5, 4, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["y"], name="conv2")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"))])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def fixed_batch_model() -> onnx.ModelProto:
    """x [N, 8, 32] -> Conv1d -> Relu -> Reshape(r, [4, -1]) -> MatMul(256 -> 3), as a third-party
    EEG classifier writes it: the reshape folds a batch of 4 into the features, so only batch 4 runs."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal((8, 8, 3)) * 0.2).astype(np.float32), "conv.weight"),
             numpy_helper.from_array(np.array([4, -1], np.int64), "batch4"),
             numpy_helper.from_array((rng.standard_normal((8 * 32, 3)) * 0.05).astype(np.float32), "fc.weight")]
    nodes = [helper.make_node("Conv", ["x", "conv.weight"], ["c"], pads=[1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Reshape", ["r", "batch4"], ["flat"], name="reshape"),
             helper.make_node("MatMul", ["flat", "fc.weight"], ["logits"], name="fc")]
    g = helper.make_graph(nodes, "eeg", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 32])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [4, 3])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def sample_rate_model(samples: int | str = 64) -> onnx.ModelProto:
    """x [N, samples] and an int64 scalar `sr`, as a VAD model takes its sample rate: If(sr == 16000)
    goes on, else If(sr == 8000) goes on, else a Gather out of range fails inside the If (the
    model's way to refuse another rate)."""
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array((rng.standard_normal((8, 1, 3)) * 0.3).astype(np.float32), "conv.weight"),
             numpy_helper.from_array((rng.standard_normal((4, 8, 1)) * 0.3).astype(np.float32), "head.weight"),
             numpy_helper.from_array(np.array(16000, np.int64), "sr16k"),
             numpy_helper.from_array(np.array(8000, np.int64), "sr8k"),
             numpy_helper.from_array(np.array([1], np.int64), "one")]

    def branch(name, nodes, out):
        return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", 1, samples])])

    refuse = branch("refuse", [
        helper.make_node("Constant", [], ["bad_index"], value=numpy_helper.from_array(np.array([5], np.int64))),
        helper.make_node("Gather", ["x3", "bad_index"], ["refused"], axis=1)], "refused")
    at8k = branch("at8k", [helper.make_node("Identity", ["x3"], ["x8k"])], "x8k")
    not16k = branch("not16k", [helper.make_node("Equal", ["sr", "sr8k"], ["is8k"]),
                               helper.make_node("If", ["is8k"], ["x_other"], then_branch=at8k, else_branch=refuse)],
                    "x_other")
    at16k = branch("at16k", [helper.make_node("Identity", ["x3"], ["x16k"])], "x16k")
    nodes = [helper.make_node("Unsqueeze", ["x", "one"], ["x3"]),
             helper.make_node("Equal", ["sr", "sr16k"], ["is16k"]),
             helper.make_node("If", ["is16k"], ["feat"], then_branch=at16k, else_branch=not16k, name="if_sr"),
             helper.make_node("Conv", ["feat", "conv.weight"], ["c"], pads=[1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Conv", ["r", "head.weight"], ["out"], name="head")]
    g = helper.make_graph(nodes, "vad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", samples]),
                                         helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 4, samples])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
