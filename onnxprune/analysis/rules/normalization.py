"""Normalizations: per-channel ones carry their parameters along; those that mix channels block."""

from __future__ import annotations

import numpy as np

from ...graph import attr
from ..channels import ROLE_CHANNEL, TensorChannels, per_channel_values
from . import register


@register("BatchNormalization")
def batch_norm(node, ctx):
    tc = ctx.channels(node.input[0])
    if tc is None:
        return
    if tc.axis != 1:
        ctx.block(tc.atoms, f"{ctx.label}: channels on axis {tc.axis}, BatchNormalization normalizes axis 1")
        return
    if any(o for o in node.output[1:]):
        ctx.block(tc.atoms, f"{ctx.label}: BatchNormalization in training mode")
        return
    for name in node.input[1:5]:
        if not ctx.param(name, 0, tc.atoms, ROLE_CHANNEL):
            return
    # Opset < 9 with spatial=0 holds one value per position ([C, H, W]): a channel's value is
    # known only where its parameters are constant over the other axes.
    gamma, beta, mean, var = (per_channel_values(ctx.const(n), 0, len(tc.atoms)) for n in node.input[1:5])
    eps = attr(node, "epsilon", 1e-5)
    with np.errstate(all="ignore"):
        values = (tc.values - mean) / np.sqrt(var + eps) * gamma + beta
        # gamma = 0 scales any finite input to 0: the channel is its beta (mask-pruned BNs).
        if not ctx.may_be_nonfinite(node.input[0]):
            values = np.where((gamma == 0) & np.isfinite(mean) & (var + eps > 0), beta, values)
    ctx.set(node.output[0], TensorChannels(1, tc.atoms, values))


@register("InstanceNormalization")
def instance_norm(node, ctx):
    tc = ctx.channels(node.input[0])
    if tc is None:
        return
    if tc.axis != 1:
        ctx.block(tc.atoms, f"{ctx.label}: channels on axis {tc.axis}, InstanceNormalization normalizes axis 1")
        return
    if not (ctx.param(node.input[1], 0, tc.atoms, ROLE_CHANNEL) and ctx.param(node.input[2], 0, tc.atoms, ROLE_CHANNEL)):
        return
    # A zero channel normalizes to 0 (mean and variance exactly 0), leaving its bias. Another
    # constant c gives c - mean(c), a rounding error that x / sqrt(eps) magnifies: unknown.
    beta = ctx.const(node.input[2]).astype(np.float64)
    values = np.where((tc.values == 0) & (attr(node, "epsilon", 1e-5) > 0), beta, np.nan)
    ctx.set(node.output[0], TensorChannels(1, tc.atoms, values))


def _normalized_axes_rule(node, ctx, axes):
    tc = ctx.channels(node.input[0])
    if tc is None:
        return
    rank = ctx.rank(node.input[0])
    axes = {a % rank for a in axes} if rank else set()
    if rank is None or tc.axis in axes:
        ctx.block(tc.atoms, f"{ctx.label}: {node.op_type} normalizes over the channel axis")
        return
    for extra in node.input[1:]:
        if extra and ctx.channels(extra) is not None:
            ctx.block_node_inputs(node, f"{ctx.label}: channels reach a {node.op_type} parameter")
            return
    ctx.set(node.output[0], TensorChannels(tc.axis, tc.atoms))


@register("LayerNormalization")
def layer_norm(node, ctx):
    rank = ctx.rank(node.input[0]) or 0
    start = attr(node, "axis", -1) % max(rank, 1)
    if any(o for o in node.output[1:]):
        ctx.block_node_inputs(node, f"{ctx.label}: LayerNormalization statistics outputs are used")
        return
    tc = ctx.channels(node.input[0])
    if tc is not None and rank and start == rank - 1 == tc.axis:
        _channel_layer_norm(node, ctx, tc)
        return
    _normalized_axes_rule(node, ctx, range(start, rank))


def _channel_layer_norm(node, ctx, tc):
    """LayerNorm over the channel axis alone (transformers, ConvNeXt): the normalized stream is one
    group and its scale/bias are per-channel parameters. Fewer channels change the mean and variance
    it normalizes with, so the group is pruned in lossy mode only."""
    for extra in node.input[1:3]:
        if extra and ctx.channels(extra) is not None:
            ctx.block_node_inputs(node, f"{ctx.label}: channels reach a LayerNormalization parameter")
            return
    for extra in node.input[1:3]:
        if not extra:
            continue
        shape = ctx.shape(extra)
        if shape is None or not shape or shape[-1] != len(tc.atoms) or any(d != 1 for d in shape[:-1]):
            ctx.block(tc.atoms, f"{ctx.label}: LayerNormalization parameter '{extra}' is not per channel")
            return
        if not ctx.param(extra, len(shape) - 1, tc.atoms, ROLE_CHANNEL):
            return
    ctx.lossy_only(tc.atoms, f"{ctx.label}: LayerNormalization over the channel axis (its statistics change)")
    ctx.set(node.output[0], TensorChannels(tc.axis, tc.atoms))


@register("LpNormalization")
def lp_norm(node, ctx):
    _normalized_axes_rule(node, ctx, [attr(node, "axis", -1)])


@register("MeanVarianceNormalization")
def mvn(node, ctx):
    _normalized_axes_rule(node, ctx, attr(node, "axes", [0, 2, 3]))


@register("GroupNormalization", "LRN")
def channel_mixing_norm(node, ctx):
    ctx.block_node_inputs(node, f"{ctx.label}: {node.op_type} mixes neighbouring channels")
