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
        scale = _mean_scale(node, ctx, len(tc.atoms)) if node.op_type == "ReduceSum" and axes == [tc.axis] else None
        if scale is not None:
            # jax2tf's LayerNorm (Magika): sum over the channels times 1/C, a mean written out. Taken
            # over the kept channels with the count rewritten, it is a statistic of them, as ReduceMean.
            user, index, kind = scale
            ctx.lossy_only(tc.atoms, f"{ctx.label}: ReduceSum over the channel axis scaled by their count (a mean "
                                     f"of the channels: it changes)")
            ctx.mean_scales.append((user, index, tc.atoms, kind))

            def recount(rw, user=user, index=index, atoms=tc.atoms, kind=kind):
                n = len(rw.kept(atoms))
                rw.set_const_input(user, index, np.array(1.0 / n if kind == "mul" else float(n)))

            ctx.fixup(recount)
            return
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


def _mean_scale(node, ctx, n: int):
    """The ReduceSum's only reader when it is a Mul by the scalar constant 1/n or a Div by n:
    (node, constant input index, "mul" | "div"), else None."""
    users = ctx.graph.users(node.output[0])
    if len(users) != 1 or node.output[0] in ctx.graph.graph_outputs or n < 1:
        return None
    user = users[0]
    if user.op_type == "Mul" and len(user.input) == 2:
        index = 1 if user.input[0] == node.output[0] else 0
        want, kind = 1.0 / n, "mul"
    elif user.op_type == "Div" and len(user.input) == 2 and user.input[0] == node.output[0]:
        index, want, kind = 1, float(n), "div"
    else:
        return None
    value = ctx.const(user.input[index])
    if value is None or value.size != 1 or not np.issubdtype(value.dtype, np.floating):
        return None
    if not np.isclose(float(value.reshape(-1)[0]), want, rtol=1e-5, atol=0.0):
        return None
    return user, index, kind


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
