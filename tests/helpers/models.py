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


def yolox_style_detector(classes: int = 3, size: int = 32) -> onnx.ModelProto:
    """A YOLOX-style head at a static size: conv stem -> 1x1 head of 5 + C channels per cell ->
    boxes in pixels (Relu * stride + 4), objectness and class scores through Sigmoid -> Reshape
    [1, 5+C, A] -> Transpose -> [1, A, 5+C], as YOLOX (decode in inference) and YOLOv5 export it."""
    rng = np.random.default_rng(3)
    cells = (size // 4) ** 2
    inits = [numpy_helper.from_array((rng.standard_normal((16, 3, 3, 3)) * 0.4).astype(np.float32), "stem.weight"),
             numpy_helper.from_array((rng.standard_normal((16, 16, 3, 3)) * 0.2).astype(np.float32), "down.weight"),
             numpy_helper.from_array((rng.standard_normal((5 + classes, 16, 1, 1)) * 0.5).astype(np.float32), "head.weight"),
             numpy_helper.from_array(np.array([4, 1 + classes], np.int64), "split"),
             numpy_helper.from_array(np.array(4.0, np.float32), "stride"),
             numpy_helper.from_array(np.array(4.0, np.float32), "min_size"),
             numpy_helper.from_array(np.array([1, 5 + classes, cells], np.int64), "flat")]
    nodes = [helper.make_node("Conv", ["x", "stem.weight"], ["s"], pads=[1, 1, 1, 1], strides=[2, 2], name="stem"),
             helper.make_node("Relu", ["s"], ["sr"]),
             helper.make_node("Conv", ["sr", "down.weight"], ["d"], pads=[1, 1, 1, 1], strides=[2, 2], name="down"),
             helper.make_node("Relu", ["d"], ["dr"]),
             helper.make_node("Conv", ["dr", "head.weight"], ["h"], name="head"),
             helper.make_node("Split", ["h", "split"], ["box_raw", "score_raw"], axis=1),
             helper.make_node("Relu", ["box_raw"], ["box_pos"]),
             helper.make_node("Mul", ["box_pos", "stride"], ["box_scaled"]),
             helper.make_node("Add", ["box_scaled", "min_size"], ["boxes"]),
             helper.make_node("Sigmoid", ["score_raw"], ["scores"]),
             helper.make_node("Concat", ["boxes", "scores"], ["cat"], axis=1),
             helper.make_node("Reshape", ["cat", "flat"], ["rows"]),
             helper.make_node("Transpose", ["rows"], ["output"], perm=[0, 2, 1])]
    g = helper.make_graph(nodes, "yolox", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, cells, 5 + classes])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def recurrent_state_model() -> onnx.ModelProto:
    """x [N, 16, 8] -> LSTM(hidden 32) -> the last output through MatMul + Sigmoid as `prob` [N, 1],
    and the LSTM's state Y_h as `state` [1, N, 32], as a VAD model returns its state for the next call."""
    rng = np.random.default_rng(4)
    h = 32
    inits = [numpy_helper.from_array((rng.standard_normal((1, 4 * h, 8)) * 0.3).astype(np.float32), "W"),
             numpy_helper.from_array((rng.standard_normal((1, 4 * h, h)) * 0.3).astype(np.float32), "R"),
             numpy_helper.from_array((rng.standard_normal((h, 1)) * 0.3).astype(np.float32), "fc.weight"),
             numpy_helper.from_array(np.array([0], np.int64), "zero")]
    nodes = [helper.make_node("Transpose", ["x"], ["seq"], perm=[1, 0, 2]),
             helper.make_node("LSTM", ["seq", "W", "R"], ["", "state"], hidden_size=h, name="lstm"),
             helper.make_node("Squeeze", ["state", "zero"], ["last"]),
             helper.make_node("MatMul", ["last", "fc.weight"], ["logit"], name="fc"),
             helper.make_node("Sigmoid", ["logit"], ["prob"])]
    g = helper.make_graph(nodes, "vad_state", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16, 8])],
                          [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", 1]),
                           helper.make_tensor_value_info("state", TensorProto.FLOAT, [1, "N", h])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def interpolate_to_skip_model() -> onnx.ModelProto:
    """x [N, 3, H, W] -> conv a (8) -> Relu -> conv b (8) -> Resize to twice x's size -> conv c -> y,
    with the Resize sizes as PyTorch writes F.interpolate(u, size=...): Concat(Slice(Shape(u), 0, 2)
    with Constant-node bounds, Cast of a size computed from Shape(x)) (trueocr_det's FPN)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal(s) * 0.3).astype(np.float32), n)
             for n, s in (("wa", (8, 3, 3, 3)), ("wb", (8, 8, 3, 3)), ("wc", (4, 8, 1, 1)))]

    def const(name, value):
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(value, np.int64)))

    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"], pads=[1, 1, 1, 1], name="conv_a"),
             helper.make_node("Relu", ["a"], ["ra"]),
             helper.make_node("Conv", ["ra", "wb"], ["u"], pads=[1, 1, 1, 1], name="conv_b"),
             helper.make_node("Shape", ["x"], ["sx"]),
             const("c_hw_from", [2]), const("c_hw_to", [4]), const("c_two", [2]),
             helper.make_node("Slice", ["sx", "c_hw_from", "c_hw_to"], ["hw"]),
             helper.make_node("Mul", ["hw", "c_two"], ["hw2"]),
             helper.make_node("Cast", ["hw2"], ["hw2c"], to=TensorProto.INT64),
             helper.make_node("Shape", ["u"], ["su"]),
             const("c_nc_from", [0]), const("c_nc_to", [2]),
             helper.make_node("Slice", ["su", "c_nc_from", "c_nc_to"], ["nc"]),
             helper.make_node("Concat", ["nc", "hw2c"], ["sizes"], axis=0),
             helper.make_node("Resize", ["u", "", "", "sizes"], ["up"], mode="nearest"),
             helper.make_node("Conv", ["up", "wc"], ["y"], name="conv_c")]
    g = helper.make_graph(nodes, "fpn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
