"""Normalizations: per-channel ones carry their parameters along; those that mix channels block."""

from __future__ import annotations

from math import prod

import numpy as np

from ...graph import attr, set_attr
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


@register("LRN")
def channel_mixing_norm(node, ctx):
    ctx.block_node_inputs(node, f"{ctx.label}: {node.op_type} mixes neighbouring channels")


# GroupNorm normalizes each of G runs of C / G channels over the run and the spatial dims. With one
# channel per group (G = C) it is InstanceNorm: a zero channel normalizes to its bias and goes like
# any other. Otherwise fewer channels change the statistics of their group, so the channels go in
# lossy mode only, every group that keeps channels keeping the same number (ctx.balance) and whole
# groups going with their count. Two forms: ONNX's GroupNormalization (opset 18: scale and bias per
# group; 21: per channel) and what torch (below opset 21) and paddle2onnx write,
# Reshape(x, [0, G, -1]) -> InstanceNormalization(scale, bias of G) -> Reshape(., Shape(x)) followed
# by the per-channel Mul and Add.


@register("GroupNormalization")
def group_normalization(node, ctx):
    tc = ctx.channels(node.input[0])
    if tc is None:
        return
    groups, c = int(attr(node, "num_groups", 0)), len(tc.atoms)
    if tc.axis != 1 or groups < 1 or c % groups:
        ctx.block(tc.atoms, f"{ctx.label}: GroupNormalization of {groups} groups over axis 1, channels on "
                            f"axis {tc.axis} ({c})")
        return
    if any(o for o in node.output[1:]):
        ctx.block(tc.atoms, f"{ctx.label}: GroupNormalization has more than one output")
        return
    per_channel = ctx.graph.opset >= 21 or groups == c
    for name in node.input[1:3]:
        if not ctx.is_const(name) or ctx.channels(name) is not None:
            ctx.block_node_inputs(node, f"{ctx.label}: GroupNormalization scale or bias is not a constant")
            return
        if per_channel and not ctx.param(name, 0, tc.atoms, ROLE_CHANNEL):
            return
    values = _group_norm_values(node, ctx, tc, groups, ctx.const(node.input[2]), "GroupNormalization")

    def regroup(rw, node=node, atoms=tc.atoms, groups=groups, per_channel=per_channel):
        kept = _kept_groups(rw, atoms, groups)
        if len(kept) == groups:
            return
        set_attr(node, "num_groups", len(kept))
        if not per_channel:
            for i in (1, 2):
                rw.set_const_input(node, i, np.take(rw.graph.const_value(node.input[i]), kept, axis=0))

    ctx.fixup(regroup)
    ctx.group_norms[node.output[0]] = (node, None, groups)
    ctx.set(node.output[0], TensorChannels(1, tc.atoms, values))


def group_norm_pattern(node, ctx, tc, in_shape, target) -> bool:
    """torch's and paddle2onnx's GroupNorm, seen at its first Reshape: the three nodes pass the
    channels from the Reshape's input to the last Reshape's output. False where it is not that form."""
    graph = ctx.graph
    if target is None or tc.tiled or tc.axis != 1 or in_shape is None or len(in_shape) < 3:
        return False
    t = [int(v) for v in np.asarray(target).reshape(-1)]
    c = len(tc.atoms)
    if len(t) != 3 or t[1] < 1 or c % t[1] or t[0] not in (0, in_shape[0]) or t[0] == -1:
        return False
    groups = t[1]
    spatial = in_shape[2:]
    if t[2] != -1 and not (all(isinstance(d, int) for d in spatial) and t[2] == c // groups * prod(spatial)):
        return False
    users = graph.users(node.output[0])
    if len(users) != 1 or users[0].op_type != "InstanceNormalization" or users[0].input[0] != node.output[0]:
        return False
    inorm = users[0]
    params = [inorm.input[i] if len(inorm.input) > i else "" for i in (1, 2)]
    if not all(ctx.is_const(p) and ctx.const(p).size == groups for p in params):
        return False
    after = graph.users(inorm.output[0])
    if len(after) != 1 or after[0].op_type != "Reshape" or after[0].input[0] != inorm.output[0]:
        return False
    back = after[0]
    if any(n in graph.graph_outputs for n in (node.output[0], inorm.output[0])):
        return False
    restored = ctx.const(back.input[1])
    static = restored is not None and ctx.is_const(back.input[1])
    if static:
        if list(np.asarray(restored).reshape(-1)) != list(in_shape):
            return False
    elif not (_reads_shape_of(graph, back.input[1], node.input[0])
              and ctx.counts_itself(back, 1, 1, tc.atoms)):
        return False
    beta = ctx.const(params[1]).astype(np.float64).reshape(-1)
    values = _group_norm_values(inorm, ctx, tc, groups, beta, "GroupNorm")

    def regroup(rw, node=node, inorm=inorm, back=back, atoms=tc.atoms, groups=groups, static=static):
        kept = _kept_groups(rw, atoms, groups)
        n = len(rw.kept(atoms))
        if n == len(atoms):
            return
        new = rw.graph.const_value(node.input[1]).copy()
        new.reshape(-1)[1] = len(kept)
        rw.set_const_input(node, 1, new)
        for i in (1, 2):
            rw.set_const_input(inorm, i, np.take(rw.graph.const_value(inorm.input[i]), kept, axis=0))
        if static:
            shape = rw.graph.const_value(back.input[1]).copy()
            shape.reshape(-1)[1] = n
            rw.set_const_input(back, 1, shape)
        _forget_shapes(rw.graph, (node.output[0], inorm.output[0]))

    ctx.fixup(regroup)
    ctx.group_norms[node.output[0]] = (back, inorm, groups)
    ctx.set(back.output[0], TensorChannels(1, tc.atoms, values))
    return True


def _reads_shape_of(graph, name, tensor) -> bool:
    """Is `name` the whole Shape of `tensor` (through Cast / Identity)?"""
    for _ in range(8):
        p = graph.producer.get(name)
        if p is None:
            return False
        if p.op_type in ("Cast", "Identity"):
            name = p.input[0]
            continue
        return (p.op_type == "Shape" and p.input[0] == tensor and attr(p, "start", 0) == 0
                and attr(p, "end", None) is None)
    return False


def _group_norm_values(node, ctx, tc, groups, beta, what) -> np.ndarray:
    """Known output values: with one channel per group a zero channel gives its bias (as
    InstanceNormalization); otherwise unknown, and the channels go in lossy mode only."""
    if groups == len(tc.atoms):
        beta = np.asarray(beta, dtype=np.float64).reshape(-1)
        return np.where((tc.values == 0) & (attr(node, "epsilon", 1e-5) > 0), beta, np.nan)
    ctx.lossy_only(tc.atoms, f"{ctx.label}: {what} over {len(tc.atoms) // groups} channels a group (its "
                             "statistics change)")
    if groups > 1:
        ctx.balance(tc.atoms, groups)
    return np.full(len(tc.atoms), np.nan)


def _kept_groups(rw, atoms, groups) -> np.ndarray:
    """The groups that keep channels (each keeps the same number: ctx.balance)."""
    per = len(atoms) // groups
    return np.unique(np.asarray(rw.kept(atoms), dtype=np.int64) // per)


def _forget_shapes(graph, names) -> None:
    """Recorded shapes of tensors whose sizes the rewrite changes and no channel tracks."""
    g = graph.model.graph
    keep = [vi for vi in g.value_info if vi.name not in names]
    if len(keep) != len(g.value_info):
        del g.value_info[:]
        g.value_info.extend(keep)
