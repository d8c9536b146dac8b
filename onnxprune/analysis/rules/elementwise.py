"""Elementwise ops: unary pass-through, and binary/variadic ops that broadcast, couple channels
(residual Add, SE-style Mul) or carry per-channel constants (scales, biases, PRelu slopes)."""

from __future__ import annotations

import numpy as np
import onnx

from ...graph import attr, scalar
from ..channels import ROLE_CHANNEL, TensorChannels, per_channel_values
from . import register


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _unary_values(node, ctx):
    """numpy function giving the op's output for a constant input, or None if not tracked."""
    op = node.op_type
    if op in ("Identity", "Dropout"):
        return lambda v: v
    if op == "Cast":
        return _cast_values(attr(node, "to"))
    if op == "Relu":
        return lambda v: np.maximum(v, 0.0)
    if op == "LeakyRelu":
        alpha = attr(node, "alpha", 0.01)
        return lambda v: np.where(v >= 0, v, alpha * v)
    if op == "Clip":
        lo = hi = None
        if ctx.graph.opset >= 11:
            lo = ctx.const(node.input[1]) if len(node.input) > 1 and node.input[1] else None
            hi = ctx.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            if (len(node.input) > 1 and node.input[1] and lo is None) or (len(node.input) > 2 and node.input[2] and hi is None):
                return None
        else:
            lo, hi = attr(node, "min"), attr(node, "max")
        lo = -np.inf if lo is None else float(scalar(lo))
        hi = np.inf if hi is None else float(scalar(hi))
        return lambda v: np.clip(v, lo, hi)
    if op == "Sigmoid":
        return _sigmoid
    if op == "Tanh":
        return np.tanh
    if op == "HardSigmoid":
        a, b = attr(node, "alpha", 0.2), attr(node, "beta", 0.5)
        return lambda v: np.clip(a * v + b, 0, 1)
    if op == "HardSwish":
        return lambda v: v * np.clip(v / 6 + 0.5, 0, 1)
    if op == "Neg":
        return np.negative
    if op == "Abs":
        return np.abs
    if op == "Elu":
        a = attr(node, "alpha", 1.0)
        return lambda v: np.where(v >= 0, v, a * (np.exp(np.minimum(v, 0)) - 1))
    if op in _ZERO_TO_ZERO:
        return lambda v: np.where(v == 0, 0.0, np.nan)
    return None


# Ops that map 0 to exactly 0 (other values left unknown): a channel a pruned filter zeroed stays
# zero through them (Gelu as an op, opset 20: the dynamo exporter's ViT / ConvNeXt MLPs).
_ZERO_TO_ZERO = frozenset(("Gelu", "Erf", "Softsign", "Mish", "Selu", "Celu", "Sin", "Tan", "Asin", "Atan", "Sinh",
                           "Asinh", "Atanh", "Sign", "Floor", "Ceil", "Round", "Sqrt"))


# A value this close (relative) to an integer may sit on either side of it at run time: the
# rules track values in float64, the model computes in its own precision and order.
_CAST_MARGIN = 1e-5


def _cast_values(to):
    """Cast of known values, exact or unknown: float targets keep the value (the analyzer rounds
    it to the tensor's type), bool is v != 0, integers truncate toward zero, unless the value is
    close enough to an integer (or to 0, for bool) that rounding upstream could move it across."""

    def cast(v):
        known = ~np.isnan(v)
        if to == onnx.TensorProto.BOOL:
            clear = (v == 0) | (np.abs(v) > _CAST_MARGIN)
            return np.where(known & clear, (v != 0).astype(np.float64), np.nan)
        if to in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16):
            return v
        try:
            is_int = np.issubdtype(onnx.helper.tensor_dtype_to_np_dtype(to), np.integer)
        except (KeyError, ValueError, TypeError):
            is_int = False
        if not is_int:
            return np.where(v == 0, 0.0, np.nan)  # bfloat16, float8, strings...: only 0 is sure
        frac = np.abs(v) - np.floor(np.abs(v))
        margin = _CAST_MARGIN * np.maximum(1.0, np.abs(v))
        clear = (np.abs(v) < 1 - margin) | ((frac > margin) & (frac < 1 - margin))
        return np.where(known & np.isfinite(v) & clear, np.trunc(v), np.nan)

    return cast


UNARY = (
    "Identity", "Dropout", "Cast", "Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish",
    "Elu", "Selu", "Celu", "Gelu", "Softplus", "Softsign", "Mish", "Erf", "Exp", "Log", "Abs", "Neg", "Sqrt",
    "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh",
    "Asinh", "Acosh", "Atanh", "Not", "IsNaN", "IsInf", "ThresholdedRelu", "Shrink", "BitwiseNot",
)


@register(*UNARY)
def unary(node, ctx):
    """Same channels out as in; extra inputs (Clip bounds, Dropout ratio) must not carry channels."""
    tc = ctx.channels(node.input[0])
    for extra in node.input[1:]:
        if ctx.channels(extra) is not None:
            ctx.block_node_inputs(node, f"{ctx.label}: channels reach a {node.op_type} parameter input")
            return
    if tc is None:
        return
    fn = _unary_values(node, ctx)
    if fn is None:
        values = None
    else:
        with np.errstate(all="ignore"):
            values = fn(tc.values)
    ctx.set(node.output[0], TensorChannels(tc.axis, tc.atoms, values))
    if node.op_type == "Dropout" and len(node.output) > 1 and node.output[1]:
        # The mask has the data's shape; ONNX's inference leaves it open before opset 12 (old
        # exports: AlexNet, VGG, Inception of the model zoo keep the mask output, unused).
        if ctx.graph.shape(node.output[1]) is None and ctx.graph.shape(node.input[0]) is not None:
            ctx.graph.shapes[node.output[1]] = ctx.graph.shape(node.input[0])
        ctx.set(node.output[1], TensorChannels(tc.axis, tc.atoms))


_BINARY_VALUES = {
    "Add": np.add, "Sub": np.subtract, "Div": np.divide, "Max": np.maximum, "Min": np.minimum,
    "Sum": np.add, "Pow": np.power,
}


def _mul_values(a, b):
    """x * 0 is 0 for any finite x, known or not (NaN: unknown, finite)."""
    out = a * b
    return np.where(((a == 0) & ~np.isinf(b)) | ((b == 0) & ~np.isinf(a)), 0.0, out)


def _mul_values_nonfinite(a, b):
    """The same when an input may hold NaN/Inf: x * 0 is 0 only for a known finite x."""
    out = a * b
    return np.where(((a == 0) & np.isfinite(b)) | ((b == 0) & np.isfinite(a)), 0.0, out)


def broadcast_channels(node, ctx, inputs, output, values_fn=None):
    """Shared logic of broadcasting ops: align every input to the output rank; channel-carrying
    inputs must meet on one output axis and are coupled position by position; other inputs must
    broadcast over that axis (dim 1 or absent), or be constants sliced along with the channel."""
    out_rank = ctx.rank(output)
    carrying = [(i, ctx.channels(n)) for i, n in enumerate(inputs) if ctx.channels(n) is not None]
    if not carrying:
        return
    if out_rank is None:
        ctx.block_node_inputs(node, f"{ctx.label}: output rank unknown")
        return
    axes = set()
    for i, tc in carrying:
        r = ctx.rank(inputs[i])
        axes.add(tc.axis + out_rank - r)
    if len(axes) != 1:
        ctx.block_node_inputs(node, f"{ctx.label}: inputs carry channels on different axes")
        return
    out_axis = axes.pop()
    n = max(len(tc.atoms) for _, tc in carrying)
    ref = next(tc for _, tc in carrying if len(tc.atoms) == n)
    out_shape = ctx.shape(output)
    values = [None] * len(inputs)
    for i, tc in carrying:
        if len(tc.atoms) == 1 < n and out_shape is not None and out_shape[out_axis] == n:
            # One channel broadcast over the others (a spatial attention map [N, 1, H, W] times the
            # features: CBAM, MobileViTv2's context scores): its channel stays where it is.
            values[i] = np.full(n, tc.values[0])
            continue
        if len(tc.atoms) != n:
            ctx.block_node_inputs(node, f"{ctx.label}: inputs carry different channel counts")
            return
        if tc is not ref:
            ctx.unify(ref.atoms, tc.atoms)
        values[i] = tc.values
    for i, name in enumerate(inputs):
        if not name or values[i] is not None:
            continue
        shape = ctx.shape(name)
        if shape is None:
            ctx.block(ref.atoms, f"{ctx.label}: shape of '{name}' unknown")
            return
        axis = out_axis - (out_rank - len(shape))
        if axis < 0 or shape[axis] == 1:
            const = ctx.const(name)
            values[i] = np.full(n, float(const.reshape(-1)[0])) if const is not None and const.size == 1 else (
                per_channel_values(const, axis, n) if const is not None else np.full(n, np.nan))
            continue
        if shape[axis] == n and not ctx.is_const(name) and _computed_param(ctx, node, name, len(shape) - axis, ref.atoms):
            values[i] = np.full(n, np.nan)
            continue
        if shape[axis] != n or not ctx.is_const(name):
            ctx.block(ref.atoms, f"{ctx.label}: input '{name}' has {shape[axis]} entries on the channel axis and carries no channels")
            return
        const = ctx.const(name)
        ctx.param(name, axis, ref.atoms, ROLE_CHANNEL)
        values[i] = per_channel_values(const, axis, n)
    if values_fn is None:
        out_values = None
    else:
        with np.errstate(all="ignore"):
            acc = values[0]
            for v in values[1:]:
                acc = values_fn(acc, v)
            out_values = acc
    ctx.set(output, TensorChannels(out_axis, ref.atoms, out_values))


_ARITH = ("Mul", "Add", "Sub", "Div")


def _read_together(ctx, name: str, reader) -> bool:
    """Is `name` read by `reader` alone, or by arithmetic nodes whose results meet again at one node
    within a few steps (Keras 3's LayerNormalization through tf2onnx: gamma * rsqrt multiplies both x
    and -mean, and the two products are added): then every reader slices it alike."""
    users = ctx.graph.users(name)
    if [id(u) for u in users] == [id(reader)]:
        return True
    if any(u.op_type not in _ARITH or u.domain not in ("", "ai.onnx") for u in users):
        return False
    reach = [_downstream(ctx, u, 4) for u in users]
    return all(r is not None for r in reach) and bool(set.intersection(*reach))


def _downstream(ctx, node, depth: int) -> set | None:
    """Ids of arithmetic nodes reachable from `node` (itself included) through arithmetic nodes; None
    where a result is a graph output."""
    out = {id(node)}
    if depth == 0:
        return out
    for o in node.output:
        if o in ctx.graph.graph_outputs:
            return None
        for u in ctx.graph.users(o):
            if u.op_type in _ARITH and u.domain in ("", "ai.onnx"):
                more = _downstream(ctx, u, depth - 1)
                if more is None:
                    return None
                out |= more
    return out


def _computed_param(ctx, reader, name: str, from_end: int, atoms, depth: int = 0) -> bool:
    """A per-channel factor computed at run time from constants that hold one entry per channel and
    tensors that broadcast over the channels (jax2tf's LayerNorm: rsqrt(var + eps) [N, 1] * gamma
    [1, C], then times x - mean): those constants are the channel's parameters (sliced with it).
    Only through Mul/Add/Sub/Div whose outputs nothing else reads; `from_end` counts the channel axis
    from the last."""
    producer = ctx.graph.producer.get(name)
    if (depth > 3 or producer is None or producer.op_type not in _ARITH
            or producer.domain not in ("", "ai.onnx") or name in ctx.graph.graph_outputs
            or not _read_together(ctx, name, reader) or ctx.channels(name) is not None):
        return False
    params = []
    for inp in producer.input:
        shape = ctx.shape(inp)
        if shape is None:
            return False
        axis = len(shape) - from_end
        if axis < 0 or shape[axis] == 1:
            continue  # broadcast over the channels
        if shape[axis] != len(atoms) or ctx.channels(inp) is not None:
            return False
        if ctx.is_const(inp):
            params.append((inp, axis))
        elif not _computed_param(ctx, producer, inp, from_end, atoms, depth + 1):
            return False
    for inp, axis in params:
        ctx.param(inp, axis, atoms, ROLE_CHANNEL, reader=producer)
    return True


@register("Add", "Sub", "Div", "Max", "Min", "Sum", "Mean", "Pow", "Equal", "Less", "LessOrEqual", "Greater",
          "GreaterOrEqual", "And", "Or", "Xor", "Mod", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor")
def binary(node, ctx):
    broadcast_channels(node, ctx, list(node.input), node.output[0], _BINARY_VALUES.get(node.op_type))


@register("Mul")
def mul(node, ctx):
    nonfinite = any(ctx.may_be_nonfinite(i) for i in node.input if i)
    broadcast_channels(node, ctx, list(node.input), node.output[0], _mul_values_nonfinite if nonfinite else _mul_values)


@register("PRelu")
def prelu(node, ctx):
    def prelu_values(x, slope):
        return np.where(x >= 0, x, x * slope)

    if ctx.channels(node.input[1]) is not None:
        ctx.block_node_inputs(node, f"{ctx.label}: channels reach the PRelu slope")
        return
    broadcast_channels(node, ctx, list(node.input), node.output[0], prelu_values)


@register("Where")
def where(node, ctx):
    broadcast_channels(node, ctx, list(node.input), node.output[0], None)
