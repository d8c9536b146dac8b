"""QDQ activations and integer-quantized ops.

QuantizeLinear / DequantizeLinear of an activation pass channels through: per-tensor parameters
unchanged, per-channel ones along the channel axis as per-channel parameters. A DequantizeLinear of
a stored weight is read as a constant by its consumer (`ModelGraph.dequantized`); it needs no rule
here. Dynamically quantized and QOperator ops (ConvInteger, MatMulInteger, QLinearConv...) compute
on integers with their own scales: their channels cannot be followed and are blocked with a reason.
"""

from __future__ import annotations

import numpy as np
import onnx

from ...graph import attr
from ..channels import ROLE_CHANNEL, TensorChannels
from . import register

_QUANT_RANGE = {np.dtype(t): (np.iinfo(t).min, np.iinfo(t).max) for t in (np.int8, np.uint8, np.int16, np.uint16,
                                                                        np.int32)}


def _params(node, ctx, tc):
    """Scale and zero point broadcast over the channel positions (per-tensor or per-channel along
    the channel axis), or a reason why the channels cannot pass."""
    scale_name = node.input[1] if len(node.input) > 1 else ""
    zp_name = node.input[2] if len(node.input) > 2 and node.input[2] else ""
    if not ctx.is_const(scale_name) or (zp_name and not ctx.is_const(zp_name)):
        return f"{ctx.label}: quantization scale computed at run time"
    if attr(node, "block_size", 0):
        return f"{ctx.label}: blocked quantization (block_size) mixes positions"
    scale = ctx.const(scale_name).astype(np.float64)
    zp = ctx.const(zp_name) if zp_name else None
    if scale.size == 1:
        return scale.reshape(-1)[0], (0.0 if zp is None else float(zp.reshape(-1)[0])), zp, False
    rank = ctx.rank(node.input[0])
    axis = attr(node, "axis", 1)
    if scale.ndim != 1 or rank is None or axis % rank != tc.axis or len(scale) != len(tc):
        return f"{ctx.label}: per-channel quantization along another axis than the channels"
    ctx.param(scale_name, 0, tc.atoms, ROLE_CHANNEL)
    if zp_name:
        ctx.param(zp_name, 0, tc.atoms, ROLE_CHANNEL)
    return scale, (np.zeros(len(tc)) if zp is None else zp.astype(np.float64)), zp, True


@register("QuantizeLinear")
def quantize_linear(node, ctx):
    tc = ctx.channels(node.input[0])
    if tc is None:
        return
    got = _params(node, ctx, tc)
    if isinstance(got, str):
        ctx.block(tc.atoms, got)
        return
    scale, zp, zp_value, _ = got
    to = attr(node, "output_dtype", 0)
    dtype = zp_value.dtype if zp_value is not None else (
        np.dtype(np.uint8) if not to else np.dtype(onnx.helper.tensor_dtype_to_np_dtype(to)))
    lo, hi = _QUANT_RANGE.get(np.dtype(dtype), (-np.inf, np.inf))
    if np.dtype(dtype) not in _QUANT_RANGE:
        values = np.where(tc.values == 0, 0.0, np.nan) if np.all(zp == 0) else np.full(len(tc), np.nan)
    else:
        with np.errstate(all="ignore"):
            q = tc.values / scale
            # Halfway between two integers, the model's own rounding (float32) may go either way.
            tie = np.abs(np.abs(q - np.floor(q)) - 0.5) < 1e-5 * np.maximum(1.0, np.abs(q))
            values = np.where(tie, np.nan, np.clip(np.rint(q) + zp, lo, hi))
    ctx.set(node.output[0], TensorChannels(tc.axis, tc.atoms, values))


@register("DequantizeLinear")
def dequantize_linear(node, ctx):
    tc = ctx.channels(node.input[0])
    if tc is None:
        return  # a weight (read as a constant by its consumer) or a tensor without channels
    got = _params(node, ctx, tc)
    if isinstance(got, str):
        ctx.block(tc.atoms, got)
        return
    scale, zp, _, _ = got
    with np.errstate(all="ignore"):
        values = (tc.values - zp) * scale
    ctx.set(node.output[0], TensorChannels(tc.axis, tc.atoms, values))


_INTEGER_OPS = ("ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul", "DynamicQuantizeLinear")
_MS_INTEGER_OPS = ("DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QLinearAdd", "QLinearMul", "QLinearConcat",
                   "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearSigmoid", "QLinearLeakyRelu",
                   "QGemm", "QAttention", "DynamicQuantizeLSTM")


def _integer_op(node, ctx):
    reason = (f"{ctx.label}: {node.op_type} computes on integers (dynamic or QOperator quantization); "
              f"prune the float model, then quantize it (--quantize int8 or --quantize dynamic)")
    ctx.block_node_inputs(node, reason)
    # The op's output channels still form a group, shown as blocked with the reason.
    weight = node.input[3] if node.op_type in ("QLinearConv", "QLinearMatMul") and len(node.input) > 3 else (
        node.input[1] if len(node.input) > 1 else "")
    shape = ctx.static_shape(weight) if weight else None
    y = node.output[0] if node.output else ""
    if shape and len(shape) >= 2 and y and ctx.rank(y):
        conv = "Conv" in node.op_type
        n = shape[0] if conv else shape[-1]
        atoms = ctx.new_atoms(n)
        ctx.block(atoms, reason)
        ctx.set(y, TensorChannels(1 if conv else ctx.rank(y) - 1, atoms))


register(*_INTEGER_OPS)(_integer_op)
register(*_MS_INTEGER_OPS, domain="com.microsoft")(_integer_op)
