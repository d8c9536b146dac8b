"""Reductions and softmax: fine over other axes, channel-mixing (so blocking) over the channel axis."""

from __future__ import annotations

import numpy as np

from ...graph import attr
from ..channels import TensorChannels
from . import register

_KEEPS_CONSTANTS = {"ReduceMax", "ReduceMin"}  # a mean is exact only up to rounding
# Over the channels: a statistic of the kept ones (ReduceSumSquare: the RMS norm passes/rotate.py writes)
_STATISTICS = {"ReduceMean", "ReduceMax", "ReduceMin", "ReduceSumSquare"}
REDUCE = ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd", "ReduceL1", "ReduceL2",
          "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")


@register(*REDUCE)
def reduce(node, ctx):
    tc = ctx.channels(node.input[0])
    if tc is None:
        return
    rank = ctx.rank(node.input[0])
    axes = attr(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        value = ctx.const(node.input[1])
        if value is None:
            ctx.block(tc.atoms, f"{ctx.label}: reduction axes are computed at run time")
            return
        axes = value.reshape(-1).tolist()
    if not axes:
        if attr(node, "noop_with_empty_axes", 0):
            ctx.set(node.output[0], tc)
            return
        axes = list(range(rank))
    axes = sorted(int(a) % rank for a in axes)
    if tc.axis in axes:
        if node.op_type in _STATISTICS and attr(node, "keepdims", 1):
            # A statistic over the channels (a LayerNorm written as ReduceMean/Sub/Pow/Sqrt/Div):
            # it is taken over the kept channels, so the output changes but the graph stays valid.
            ctx.lossy_only(tc.atoms, f"{ctx.label}: {node.op_type} over the channel axis (a statistic of the "
                                     f"channels: it changes)")
            return
        ctx.block(tc.atoms, f"{ctx.label}: {node.op_type} reduces over the channel axis")
        return
    axis = tc.axis if attr(node, "keepdims", 1) else tc.axis - sum(a < tc.axis for a in axes)
    values = tc.values if node.op_type in _KEEPS_CONSTANTS else np.where(tc.values == 0, 0.0, np.nan)
    ctx.set(node.output[0], TensorChannels(axis, tc.atoms, values))


@register("ArgMax", "ArgMin")
def arg_reduce(node, ctx):
    tc = ctx.channels(node.input[0])
    if tc is None:
        return
    rank = ctx.rank(node.input[0])
    axis = attr(node, "axis", 0) % rank
    if axis == tc.axis:
        ctx.block(tc.atoms, f"{ctx.label}: {node.op_type} over the channel axis")
        return
    out_axis = tc.axis if attr(node, "keepdims", 1) or tc.axis < axis else tc.axis - 1
    ctx.set(node.output[0], TensorChannels(out_axis, tc.atoms))


@register("Softmax", "LogSoftmax", "Hardmax")
def softmax(node, ctx):
    tc = ctx.channels(node.input[0])
    if tc is None:
        return
    rank = ctx.rank(node.input[0])
    if ctx.graph.opset >= 13:
        mixes = tc.axis == attr(node, "axis", -1) % rank
    else:
        mixes = tc.axis >= attr(node, "axis", 1) % rank  # older opsets flatten from `axis` on
    if mixes:
        ctx.block(tc.atoms, f"{ctx.label}: {node.op_type} over the channel axis")
        return
    ctx.set(node.output[0], TensorChannels(tc.axis, tc.atoms))
