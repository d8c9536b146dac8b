"""--fold-bn folds BatchNormalization into ConvTranspose as well as Conv: the folded model gives
the original's outputs in ONNX Runtime (grouped, biased and bias-less, strided)."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune import prune
from tests.helpers.ort import session


def deconv_bn(group: int, bias: bool, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    c_in, per_group = 4, 3
    c_out = group * per_group
    w = rng.standard_normal((c_in, per_group, 3, 3)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w")]
    inputs = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(c_out).astype(np.float32), "b"))
        inputs.append("b")
    for name, values in (("gamma", rng.uniform(0.5, 2, c_out)), ("beta", rng.standard_normal(c_out)),
                         ("mean", rng.standard_normal(c_out)), ("var", rng.uniform(0.5, 2, c_out))):
        inits.append(numpy_helper.from_array(values.astype(np.float32), name))
    nodes = [
        helper.make_node("ConvTranspose", inputs, ["t"], group=group, strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["t", "gamma", "beta", "mean", "var"], ["n"], epsilon=1e-3),
        helper.make_node("Relu", ["n"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "deconv_bn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, c_in, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def run(model, x):
    sess = session(model, optimize=True)
    return sess.run(None, {"x": x})[0]


@pytest.mark.parametrize("group, bias", [(1, True), (1, False), (2, True), (4, False)])
def test_convtranspose_bn_folds_and_keeps_outputs(group, bias):
    model = deconv_bn(group, bias)
    x = np.random.default_rng(1).standard_normal((2, 4, 5, 5)).astype(np.float32)
    expected = run(model, x)
    result = prune(onnx.load_from_string(model.SerializeToString()), fold_bn=True)
    ops = [n.op_type for n in result.model.graph.node]
    assert "BatchNormalization" not in ops and ops.count("ConvTranspose") == 1
    assert result.report.passes[0].result.details["folded"] == 1
    np.testing.assert_allclose(run(result.model, x), expected, rtol=1e-4, atol=1e-4)
