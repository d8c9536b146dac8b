"""Tiny models built in code for the runtime tests (opset 17, IR 8: what every ORT >= 1.17 loads).

A uniquely named module rather than conftest.py, so `import` cannot pick up another folder's conftest."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8


def make_model(nodes, inputs, outputs, initializers=(), opsets=(("", OPSET),)) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets],
                             ir_version=IR_VERSION)


def classifier(seed: int = 0, classes: int = 10, channels: int = 4, batch="N", input_name="input",
               output_name="logits", perturb: float = 0.0) -> onnx.ModelProto:
    """Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm; `perturb` shifts one Gemm weight."""
    rng = np.random.default_rng(seed)
    conv_w = rng.standard_normal((channels, 3, 3, 3)).astype(np.float32)
    conv_b = rng.standard_normal(channels).astype(np.float32)
    fc_w = rng.standard_normal((classes, channels)).astype(np.float32)
    fc_b = rng.standard_normal(classes).astype(np.float32)
    fc_w[0, 0] += perturb
    nodes = [
        helper.make_node("Conv", [input_name, "conv_w", "conv_b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], [output_name], transB=1),
    ]
    inits = [numpy_helper.from_array(a, n) for a, n in
             [(conv_w, "conv_w"), (conv_b, "conv_b"), (fc_w, "fc_w"), (fc_b, "fc_b")]]
    return make_model(nodes, [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, 3, 8, 8])],
                      [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch, classes])], inits)


def two_outputs(scale_b: float = 1.0) -> onnx.ModelProto:
    """x -> (x * 2 as 'a', x * scale_b as 'b'): lets a test break one output and not the other."""
    two = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    sb = numpy_helper.from_array(np.array(scale_b, np.float32), "sb")
    nodes = [helper.make_node("Mul", ["x", "two"], ["a"]), helper.make_node("Mul", ["x", "sb"], ["b"])]
    vi = helper.make_tensor_value_info
    return make_model(nodes, [vi("x", TensorProto.FLOAT, ["N", 4])],
                      [vi("a", TensorProto.FLOAT, ["N", 4]), vi("b", TensorProto.FLOAT, ["N", 4])], [two, sb])


def save(model: onnx.ModelProto, path) -> str:
    onnx.save_model(model, str(path))
    return str(path)
