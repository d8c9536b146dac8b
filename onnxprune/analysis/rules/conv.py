"""Conv and ConvTranspose: sources of fresh channels, sinks of their input channels.

Grouped convs (depthwise included) tie each conv-group's input channels to its output channels: a
whole conv-group goes at once, and `group` shrinks with it. For depthwise convs that is exactly one
input channel with its outputs, which is how they are pruned in practice.
"""

from __future__ import annotations

import numpy as np

from ...graph import attr, set_attr
from ..channels import ROLE_CHANNEL, ROLE_IN, ROLE_OUT, TensorChannels
from . import register


def _opt(node, i):
    return node.input[i] if len(node.input) > i and node.input[i] else None


def _source_values(w: np.ndarray, out_axis: int, bias: np.ndarray | None, nonfinite_input: bool = False) -> np.ndarray:
    """Output channels whose filters are all zero are constant: their bias (or 0). Not when the
    input may hold NaN/Inf: 0 * Inf is NaN."""
    if nonfinite_input:
        return np.full(w.shape[out_axis], np.nan)
    moved = np.moveaxis(w, out_axis, 0).reshape(w.shape[out_axis], -1)
    zero = ~np.any(moved != 0, axis=1)
    b = np.zeros(len(zero)) if bias is None else bias.astype(np.float64).reshape(-1)
    return np.where(zero, b, np.nan)


def _group_atoms(ctx, in_atoms, out_atoms, groups):
    """Tie conv-group k's inputs and outputs into one channel."""
    cin_g, cout_g = len(in_atoms) // groups, len(out_atoms) // groups
    for k in range(groups):
        members = np.concatenate([in_atoms[k * cin_g:(k + 1) * cin_g], out_atoms[k * cout_g:(k + 1) * cout_g]])
        ctx.unify(members[:-1], members[1:])


def _grouped_values(in_values, w_values, bias, groups):
    """A conv-group whose inputs are all zero outputs its bias, as does a zero filter."""
    cin_g = len(in_values) // groups
    cout_g = len(w_values) // groups
    b = np.zeros(len(w_values)) if bias is None else bias.astype(np.float64).reshape(-1)
    out = w_values.copy()
    for k in range(groups):
        if np.all(in_values[k * cin_g:(k + 1) * cin_g] == 0):
            out[k * cout_g:(k + 1) * cout_g] = b[k * cout_g:(k + 1) * cout_g]
    return out


def _load(node, ctx, in_axis: int, out_axis: int):
    """Input channels, weights and group of a Conv/ConvTranspose, or None (input blocked) when
    they cannot be followed: computed weights, empty weights, a group that does not divide."""
    w, b = node.input[1], _opt(node, 2)
    tc = ctx.channels(node.input[0])
    if not ctx.is_const(w) or (b is not None and not ctx.is_const(b)):
        refused = ctx.graph.dequantize_refused.get(w) or ctx.graph.dequantize_refused.get(b or "")
        reason = refused or f"{ctx.label}: weights are computed at run time, not constants"
        if tc is not None:
            ctx.block(tc.atoms, reason)
        w_shape = ctx.static_shape(w)
        if w_shape is not None and len(w_shape) > 2:
            # Its output channels still form a group, shown as blocked with the reason.
            groups = attr(node, "group", 1)
            out = ctx.new_atoms(w_shape[out_axis] * (groups if out_axis == 1 else 1))
            ctx.block(out, reason)
            ctx.set(node.output[0], TensorChannels(1, out))
        return None
    if tc is not None and tc.axis != 1:
        if node.op_type == "Conv" and _slides_over_channels(node, ctx, tc):
            return None
        ctx.block(tc.atoms, f"{ctx.label}: channels on axis {tc.axis}, {node.op_type} reads axis 1")
        tc = None
    wv = ctx.const(w)
    groups = attr(node, "group", 1)
    cin = wv.shape[in_axis] * (groups if in_axis == 1 else 1) if wv.ndim > 1 else 0
    cout = wv.shape[out_axis] * (groups if out_axis == 1 else 1) if wv.ndim > 1 else 0
    if wv.size == 0 or groups < 1 or cin % groups or cout % groups:
        if tc is not None:
            ctx.block(tc.atoms, f"{ctx.label}: empty weight or group {groups} does not divide the channels")
        return None
    return tc, w, b, wv, (ctx.const(b) if b else None), groups


def _slides_over_channels(node, ctx, tc) -> bool:
    """ECA's channel attention (ECA-Net, timm's eca*): a 1-in, 1-out Conv1d sliding along the
    channels of the pooled features ([N, 1, C], stride 1, padding keeping the length). Each output
    position stays its channel; removing channels changes the neighbours a window reads, so they go
    in lossy mode only. Its weight follows no channel."""
    w = ctx.const(node.input[1])
    rank = ctx.rank(node.input[0])
    if w is None or w.ndim != 3 or w.shape[:2] != (1, 1) or rank != 3 or tc.axis != 2 or attr(node, "group", 1) != 1:
        return False
    k = w.shape[2]
    pads = list(attr(node, "pads", [0, 0]))
    if (list(attr(node, "strides", [1])) != [1] or list(attr(node, "dilations", [1])) != [1]
            or attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or sum(pads) != k - 1):
        return False
    if any(ctx.channels(i) is not None for i in node.input[1:] if i):
        return False
    ctx.lossy_only(tc.atoms, f"{ctx.label}: a Conv sliding along the channel axis (ECA) mixes neighbouring channels")
    ctx.set(node.output[0], TensorChannels(2, tc.atoms))
    return True


def _plain(node, ctx, tc, w, b, out_atoms, values, in_axis: int, out_axis: int) -> None:
    """An ungrouped conv: the weight's in_axis reads the input channels, out_axis makes new ones."""
    if tc is not None:
        ctx.param(w, in_axis, tc.atoms, ROLE_IN, values=tc.values, tensor=node.input[0])
    ctx.param(w, out_axis, out_atoms, ROLE_OUT)
    if b:
        ctx.param(b, 0, out_atoms, ROLE_OUT)
    ctx.set(node.output[0], TensorChannels(1, out_atoms, values))


@register("Conv")
def conv(node, ctx):
    loaded = _load(node, ctx, in_axis=1, out_axis=0)
    if loaded is None:
        return
    tc, w, b, wv, bv, groups = loaded
    y = node.output[0]
    cout = wv.shape[0]
    out_atoms = ctx.new_atoms(cout)
    values = _source_values(wv, 0, bv, ctx.may_be_nonfinite(node.input[0]))
    if groups == 1:
        _plain(node, ctx, tc, w, b, out_atoms, values, in_axis=1, out_axis=0)
        return
    if tc is None:
        ctx.block(out_atoms, f"{ctx.label}: grouped conv whose input channels cannot be removed")
        ctx.set(y, TensorChannels(1, out_atoms, values))
        return
    cout_g = cout // groups
    with np.errstate(all="ignore"):
        values = _grouped_values(tc.values, values, bv, groups)
    if cout_g == len(tc.atoms) // groups > 1:
        _thinned(node, ctx, tc, w, b, out_atoms, groups)
        ctx.set(y, TensorChannels(1, out_atoms, values))
        return
    _group_atoms(ctx, tc.atoms, out_atoms, groups)
    ctx.param(w, 0, out_atoms, ROLE_CHANNEL)
    if b:
        ctx.param(b, 0, out_atoms, ROLE_CHANNEL)

    def regroup(rw, node=node, out_atoms=out_atoms, cout_g=cout_g):
        set_attr(node, "group", int(len(rw.kept(out_atoms)) // cout_g))

    ctx.fixup(regroup)
    ctx.set(y, TensorChannels(1, out_atoms, values))


def _thinned(node, ctx, tc, w, b, out_atoms, groups):
    """A grouped conv with as many outputs as inputs per group (ResNeXt, RegNet): output j of group k
    goes with input j of group k, so each group can be thinned and the group count kept, as
    Torch-Pruning does. Every group that keeps channels keeps the same number (ctx.balance); whole
    groups may still go. Thinning costs (1 - r)^2 of the conv's FLOPs where dropping whole groups costs
    (1 - r), for the same channels kept, so the cost model always prefers it. The input columns are
    role `in`: a removed input no longer feeds the other outputs of its group."""
    ctx.unify(tc.atoms, out_atoms)
    ctx.param(w, 0, out_atoms, ROLE_CHANNEL)
    ctx.param(w, 1, tc.atoms, ROLE_IN, values=tc.values, tensor=node.input[0], groups=groups)
    if b:
        ctx.param(b, 0, out_atoms, ROLE_CHANNEL)
    ctx.balance(out_atoms, groups)
    per = len(out_atoms) // groups

    def regroup(rw, node=node, out_atoms=out_atoms, per=per, groups=groups):
        kept = rw.kept(out_atoms)
        set_attr(node, "group", int(len(np.unique(kept // per))))

    ctx.fixup(regroup)


@register("ConvTranspose")
def conv_transpose(node, ctx):
    loaded = _load(node, ctx, in_axis=0, out_axis=1)
    if loaded is None:
        return
    tc, w, b, wv, bv, groups = loaded
    y = node.output[0]
    cout = wv.shape[1] * groups
    out_atoms = ctx.new_atoms(cout)
    if groups == 1:
        _plain(node, ctx, tc, w, b, out_atoms, _source_values(wv, 1, bv, ctx.may_be_nonfinite(node.input[0])),
               in_axis=0, out_axis=1)
        return
    values = np.full(cout, np.nan)
    if tc is None:
        ctx.block(out_atoms, f"{ctx.label}: grouped conv whose input channels cannot be removed")
        ctx.set(y, TensorChannels(1, out_atoms, values))
        return
    _group_atoms(ctx, tc.atoms, out_atoms, groups)
    ctx.param(w, 0, tc.atoms, ROLE_CHANNEL)
    if b:
        ctx.param(b, 0, out_atoms, ROLE_CHANNEL)
    cin_g = wv.shape[0] // groups

    def regroup(rw, node=node, in_atoms=tc.atoms, cin_g=cin_g):
        set_attr(node, "group", int(len(rw.kept(in_atoms)) // cin_g))

    ctx.fixup(regroup)
    ctx.set(y, TensorChannels(1, out_atoms, values))
