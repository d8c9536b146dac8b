"""Spatial ops over axes 2..: pools, Resize/Upsample, Pad. Channels on axis 1 pass through."""

from __future__ import annotations

import numpy as np

from ...graph import attr
from ..channels import TensorChannels
from . import register


def _zero_only(values):
    """Ops that keep a constant channel constant only when it is zero (padding mixes in zeros)."""
    return np.where(values == 0, 0.0, np.nan)


def _spatial(node, ctx, values_fn=None, extra_outputs_ok=False):
    tc = ctx.channels(node.input[0])
    for extra in node.input[1:]:
        if extra and ctx.channels(extra) is not None:
            ctx.block_node_inputs(node, f"{ctx.label}: channels reach a {node.op_type} parameter input")
            return None
    if tc is None:
        return None
    if tc.axis != 1:
        ctx.block(tc.atoms, f"{ctx.label}: channels on axis {tc.axis}, {node.op_type} expects them on axis 1")
        return None
    if not extra_outputs_ok and any(o for o in node.output[1:]):
        ctx.block(tc.atoms, f"{ctx.label}: {node.op_type} index output depends on the channel count")
        return None
    values = tc.values if values_fn is None else values_fn(tc.values)
    ctx.set(node.output[0], TensorChannels(1, tc.atoms, values))
    return tc


@register("MaxPool", "GlobalMaxPool", "MaxRoiPool")
def keeps_constants(node, ctx):
    _spatial(node, ctx)


@register("AveragePool", "GlobalAveragePool")
def average_pool(node, ctx):
    """The mean of a constant c is c only up to rounding (sum, then divide), and padding mixes in
    zeros: only a zero channel stays exactly zero."""
    tc = ctx.channels(node.input[0])
    if (node.op_type == "GlobalAveragePool" and tc is not None and tc.axis == 2 and ctx.rank(node.input[0]) == 3
            and not any(ctx.channels(i) is not None for i in node.input[1:] if i)):
        # tf2onnx writes Keras' mean over the trailing axis of [B, L, C] (a LayerNorm's mean and
        # variance) as GlobalAveragePool, which averages axis 2: a statistic of the kept channels,
        # like ReduceMean over them (rules/reduce.py), its output [B, L, 1] free of channels.
        ctx.lossy_only(tc.atoms, f"{ctx.label}: GlobalAveragePool over the channel axis of a [B, L, C] tensor (a "
                                 f"statistic of the channels: it changes)")
        return
    _spatial(node, ctx, _zero_only)


@register("LpPool", "GlobalLpPool")
def lp_pool(node, ctx):
    _spatial(node, ctx, _zero_only)


def _resize_like(node, ctx, scales_name, sizes_name):
    tc = ctx.channels(node.input[0])
    if tc is None:
        _spatial(node, ctx)
        return
    rank = ctx.rank(node.input[0])
    axes = attr(node, "axes", None)
    axes = list(range(rank)) if axes is None else [a % rank for a in axes]
    if tc.axis in axes:
        pos = axes.index(tc.axis)
        if sizes_name:
            idx = list(node.input).index(sizes_name)
            if ctx.counts_itself(node, idx, pos, tc.atoms):
                # F.interpolate(x, size=y.shape[-2:]): the N, C entries are Shape(x)[0:2], read at run
                # time, so they hold the kept count by themselves and the sizes stay as computed.
                _spatial(node, ctx, None if attr(node, "mode", b"nearest") == b"nearest" else _zero_only)
                return
            sizes = ctx.const(sizes_name)
            if sizes is None:
                ctx.block(tc.atoms, f"{ctx.label}: Resize sizes are computed at run time")
                return
            if int(sizes[pos]) != len(tc.atoms):
                ctx.block(tc.atoms, f"{ctx.label}: resizes the channel axis")
                return

            def resize_sizes(rw, node=node, idx=list(node.input).index(sizes_name), atoms=tc.atoms, pos=pos):
                new = rw.graph.value(node.input[idx]).copy()
                new[pos] = len(rw.kept(atoms))
                rw.set_const_input(node, idx, new)

            ctx.fixup(resize_sizes, frozen_inputs=(list(node.input).index(sizes_name),))
        elif scales_name:
            scales = ctx.const(scales_name)
            if scales is None or scales.size == 0 or float(scales[pos]) != 1.0:
                ctx.block(tc.atoms, f"{ctx.label}: scales of the channel axis are not a constant 1")
                return
    # Nearest copies values; interpolation gives a constant back only up to rounding.
    mode = attr(node, "mode", b"nearest")
    _spatial(node, ctx, None if mode == b"nearest" else _zero_only)


@register("Resize")
def resize(node, ctx):
    inputs = list(node.input) + [""] * 4
    if ctx.graph.opset < 11:
        _resize_like(node, ctx, inputs[1], "")
    else:
        _resize_like(node, ctx, inputs[2], inputs[3])


@register("Upsample")
def upsample(node, ctx):
    if len(node.input) < 2:
        tc = ctx.channels(node.input[0])
        scales = attr(node, "scales", [])
        if tc is not None and (not scales or scales[tc.axis] != 1.0):
            ctx.block(tc.atoms, f"{ctx.label}: scales the channel axis")
            return
        _spatial(node, ctx)
        return
    _resize_like(node, ctx, node.input[1], "")


@register("Pad")
def pad(node, ctx):
    tc = ctx.channels(node.input[0])
    if tc is None:
        return
    rank = ctx.rank(node.input[0])
    if ctx.graph.opset < 11:
        pads, value = attr(node, "pads", []), attr(node, "value", 0.0)
        axes = list(range(rank))
    else:
        inputs = list(node.input) + [""] * 4
        pads = ctx.const(inputs[1])
        if pads is None:
            # Computed at run time from dynamic dims (tf2onnx's Pad after a Conv2DTranspose with H
            # and W dynamic): fine where the channel axis's entries are known zeros.
            pads = ctx.graph.partial_value(inputs[1])
        value = ctx.const(inputs[2]) if inputs[2] else 0.0
        axes = ctx.const(inputs[3]) if inputs[3] else np.arange(rank)
        if pads is None or (inputs[2] and value is None) or axes is None:
            ctx.block(tc.atoms, f"{ctx.label}: pads are computed at run time")
            return
        axes = [int(a) % rank for a in np.asarray(axes).reshape(-1)]
        value = float(np.asarray(value).reshape(-1)[0]) if np.asarray(value).size else 0.0
    pads = [p if isinstance(p, (int, np.integer)) else None for p in np.asarray(pads, dtype=object).reshape(-1)]
    if len(pads) != 2 * len(axes):
        ctx.block(tc.atoms, f"{ctx.label}: pads are computed at run time")
        return
    if tc.axis in axes:
        k = axes.index(tc.axis)
        if pads[k] is None or pads[k + len(axes)] is None:
            ctx.block(tc.atoms, f"{ctx.label}: pads of the channel axis are computed at run time")
            return
        if pads[k] != 0 or pads[k + len(axes)] != 0:
            ctx.block(tc.atoms, f"{ctx.label}: pads the channel axis")
            return
    mode = attr(node, "mode", b"constant")
    if mode == b"constant":
        values = np.where(tc.values == value, tc.values, np.nan)
    else:
        values = tc.values
    ctx.set(node.output[0], TensorChannels(tc.axis, tc.atoms, values))


def _rearranged_input(node, ctx):
    tc = ctx.channels(node.input[0])
    if tc is None:
        return None, 0
    if tc.axis != 1:
        ctx.block(tc.atoms, f"{ctx.label}: channels on axis {tc.axis}, {node.op_type} expects them on axis 1")
        return None, 0
    r = int(attr(node, "blocksize", 0) or 0)
    if r < 1:
        ctx.block(tc.atoms, f"{ctx.label}: {node.op_type} without a blocksize")
        return None, 0
    return tc, r


@register("DepthToSpace")
def depth_to_space(node, ctx):
    """[N, C*r*r, H, W] -> [N, C, H*r, W*r] (a super-resolution model's pixel shuffle). DCR (the
    default): input channel k*C + c lands in output channel c; CRD (PyTorch's PixelShuffle): input
    channel c*r*r + k. The r*r inputs of one output channel are one channel: they go together."""
    tc, r = _rearranged_input(node, ctx)
    if tc is None:
        return
    q, n = r * r, len(tc.atoms)
    if n % q:
        ctx.block(tc.atoms, f"{ctx.label}: {n} channels are not a multiple of blocksize^2 = {q}")
        return
    mode = attr(node, "mode", "DCR")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    # Rows of `blocks`: the positions that make one output channel.
    blocks = tc.atoms.reshape(n // q, q) if mode == "CRD" else tc.atoms.reshape(q, n // q).T
    vals = tc.values.reshape(n // q, q) if mode == "CRD" else tc.values.reshape(q, n // q).T
    for k in range(1, q):
        ctx.unify(blocks[:, 0], blocks[:, k], f"{ctx.label}: pixel-shuffle blocks differ in size")
    values = np.where(np.all(vals == vals[:, :1], axis=1), vals[:, 0], np.nan)
    ctx.set(node.output[0], TensorChannels(1, blocks[:, 0].copy(), values))


@register("SpaceToDepth")
def space_to_depth(node, ctx):
    """[N, C, H, W] -> [N, C*r*r, H/r, W/r]: output channel k*C + c holds offset k of input channel c,
    so each channel becomes r*r positions, one in each block of C."""
    tc, r = _rearranged_input(node, ctx)
    if tc is None:
        return
    q = r * r
    ctx.set(node.output[0], TensorChannels(1, np.tile(tc.atoms, q), np.tile(tc.values, q)))
