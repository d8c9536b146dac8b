"""Which tensors may hold NaN or Inf when the model's inputs are finite.

Exact mode removes a channel that its consumers read through all-zero columns, and treats x * 0 as
0. Both hold only for finite x: 0 * Inf is NaN. A tensor may be non-finite when a constant that
reaches it holds NaN/Inf, or an op on the way can make them from finite values (Log(0), x / 0,
Sqrt(-1)...). Overflow of finite arithmetic is not modelled: the exactness contract is for finite
inputs whose computation stays in range.
"""

from __future__ import annotations

import numpy as np
import onnx

from ..graph import ModelGraph
from ..graph import attr as attr_value

# Finite inputs (and finite constants) give finite outputs, up to overflow.
FINITE_OPS = frozenset((
    "Identity", "Dropout", "Cast", "CastLike", "Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "Tanh",
    "HardSigmoid", "HardSwish", "Elu", "Selu", "Celu", "Gelu", "Softplus", "Softsign", "Mish", "Erf", "Abs",
    "Neg", "Floor", "Ceil", "Round", "Sign", "Sin", "Cos", "Atan", "Asinh", "Not", "IsNaN", "IsInf",
    "ThresholdedRelu", "Shrink", "BitwiseNot", "Add", "Sub", "Mul", "Max", "Min", "Sum", "Mean", "Equal",
    "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Xor", "BitShift", "BitwiseAnd",
    "BitwiseOr", "BitwiseXor", "Where", "Conv", "ConvTranspose", "Gemm", "MatMul", "Einsum", "MaxPool",
    "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "MaxRoiPool", "LpPool", "GlobalLpPool", "Resize",
    "Upsample", "Pad", "Concat", "Split", "Slice", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze",
    "Shape", "Size", "Gather", "GatherElements", "GatherND", "Expand", "Tile", "ReduceMean", "ReduceMax",
    "ReduceMin", "ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceProd", "Softmax", "LogSoftmax",
    "Hardmax", "ArgMax", "ArgMin", "Constant", "ConstantOfShape", "Range", "QuantizeLinear",
    "DequantizeLinear", "DepthToSpace", "SpaceToDepth", "TopK", "NonZero", "OneHot", "Trilu", "CumSum",
))
_NO_NAN = frozenset((onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.INT16, onnx.TensorProto.INT8,
                     onnx.TensorProto.UINT64, onnx.TensorProto.UINT32, onnx.TensorProto.UINT16,
                     onnx.TensorProto.UINT8, onnx.TensorProto.BOOL))
# Finite only when a constant epsilon is positive (x / sqrt(var + eps)).
_EPSILON_OPS = frozenset(("InstanceNormalization", "LayerNormalization", "GroupNormalization",
                          "MeanVarianceNormalization", "LRN", "LpNormalization"))


def nonfinite_tensors(graph: ModelGraph) -> set[str]:
    """Names of tensors that may hold NaN or Inf for finite graph inputs."""
    tainted: set[str] = set()
    stored = list(graph.initializers) + list(graph.constant_nodes)
    for name in stored:
        value = graph.const_value(name)
        if value is not None and value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
            tainted.add(name)
    for name in graph.alias:
        if graph.resolve(name) in tainted:
            tainted.add(name)
    for node in graph.topological_nodes():
        _visit(graph, node, tainted)
    return tainted


def _visit(graph: ModelGraph, node, tainted: set[str]) -> None:
    if node.op_type == "Constant" or (node.op_type == "Identity" and node.output[0] in graph.alias):
        pass
    else:
        inputs = [i for i in node.input if i] + sorted(graph.implicit_inputs.get(id(node), ()))
        if any(i in tainted for i in inputs) or not _keeps_finite(graph, node):
            # Integer and bool tensors hold no NaN or Inf (shape computations: Mod, Div of dims).
            tainted.update(o for o in node.output if o and graph.dtypes.get(o) not in _NO_NAN)
    for body in graph.bodies.get(id(node), ()):
        tainted.update(i.name for i in body.input)  # loop-carried values: not followed
        for inner in graph.topological_nodes(body.node):
            _visit(graph, inner, tainted)


def _keeps_finite(graph: ModelGraph, node) -> bool:
    if node.domain not in ("", "ai.onnx"):
        return False
    op = node.op_type
    if op in FINITE_OPS:
        return op != "ConstantOfShape" or _all_finite(graph, node)
    if op in ("Div", "Sqrt", "Pow", "Reciprocal") and _static_finite(graph, node):
        return True  # a shape computation the model fixes: attention's 1 / sqrt(sqrt(head_dim))
    if op in _EPSILON_OPS:
        return op in ("LRN", "LpNormalization") or attr_value(node, "epsilon", 1e-5) > 0
    if op == "BatchNormalization":
        var = graph.const_value(node.input[4]) if len(node.input) > 4 else None
        return var is not None and bool(np.all(var.astype(np.float64) + attr_value(node, "epsilon", 1e-5) > 0))
    if op == "Div":
        divisor = graph.const_value(node.input[1])
        return divisor is not None and bool(np.all(divisor != 0))
    if op == "Pow":
        exponent = graph.const_value(node.input[1])
        return exponent is not None and bool(np.all((exponent >= 0) & (np.mod(exponent, 1) == 0)))
    return False


def _all_finite(graph: ModelGraph, node) -> bool:
    for a in node.attribute:
        if a.name == "value":
            from onnx import numpy_helper

            v = numpy_helper.to_array(a.t)
            return v.dtype.kind not in "fc" or bool(np.all(np.isfinite(v)))
    return True


def _static_finite(graph: ModelGraph, node) -> bool:
    """Every output has one finite value whatever the input sizes (static in the model itself)."""
    for o in node.output:
        v = graph.model_value(o) if o else None
        if v is None or (v.dtype.kind in "fc" and not np.all(np.isfinite(v))):
            return False
    return True
