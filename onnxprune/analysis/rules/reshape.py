"""Layout ops: Transpose moves the channel axis (tf2onnx NHWC graphs), Squeeze/Unsqueeze renumber
it, Flatten/Reshape fold C*H*W into one axis (each channel becomes a block of positions), and Shape
may only look at the other axes."""

from __future__ import annotations

from math import prod

import numpy as np

from ...graph import attr, set_attr
from ..channels import MAX_POSITIONS, TensorChannels
from . import register


@register("Transpose")
def transpose(node, ctx):
    tc = ctx.channels(node.input[0])
    if tc is None:
        return
    rank = ctx.rank(node.input[0])
    perm = attr(node, "perm", list(range(rank))[::-1])
    ctx.set(node.output[0], tc.with_axis(list(perm).index(tc.axis)))


def _axes(node, ctx, rank_for_negative):
    """Axes of Squeeze/Unsqueeze/Reduce*: attribute (old opsets) or constant input (new)."""
    axes = attr(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        value = ctx.const(node.input[1])
        if value is None:
            return None
        axes = value.reshape(-1).tolist()
    if axes is None:
        return []
    return sorted(int(a) % rank_for_negative for a in axes)


@register("Squeeze")
def squeeze(node, ctx):
    tc = ctx.channels(node.input[0])
    if tc is None:
        return
    shape = ctx.shape(node.input[0])
    axes = _axes(node, ctx, len(shape))
    if axes is None:
        ctx.block(tc.atoms, f"{ctx.label}: squeeze axes are computed at run time")
        return
    if not axes:
        if any(not isinstance(d, int) for d in shape):
            ctx.block(tc.atoms, f"{ctx.label}: squeezes every axis of size 1 and the input's dims are not static")
            return
        axes = [i for i, d in enumerate(shape) if d == 1]
        # Without axes Squeeze removes every dim of size 1: a group cut down to one channel would
        # lose its axis too. The rewrite writes the axes it squeezes now.
        ctx.fixup(lambda rw, node=node, axes=axes, atoms=tc.atoms: _explicit_squeeze_axes(rw, node, axes, atoms))
    if tc.axis in axes:
        ctx.block(tc.atoms, f"{ctx.label}: squeezes the channel axis")
        return
    ctx.set(node.output[0], tc.with_axis(tc.axis - sum(a < tc.axis for a in axes)))


def _explicit_squeeze_axes(rw, node, axes, atoms) -> None:
    if len(rw.kept(atoms)) == len(atoms):
        return
    if rw.graph.opset < 13:
        set_attr(node, "axes", [int(a) for a in axes])
        return
    while len(node.input) < 2:
        node.input.append("")
    node.input[1] = rw.graph.add_initializer(np.asarray(axes, dtype=np.int64), f"{node.name or 'squeeze'}_axes")


@register("Unsqueeze")
def unsqueeze(node, ctx):
    tc = ctx.channels(node.input[0])
    if tc is None:
        return
    out_rank = ctx.rank(node.output[0])
    axes = _axes(node, ctx, out_rank) if out_rank is not None else None
    if axes is None:
        ctx.block(tc.atoms, f"{ctx.label}: unsqueeze axes unknown")
        return
    kept_axes = [i for i in range(out_rank) if i not in axes]
    ctx.set(node.output[0], tc.with_axis(kept_axes[tc.axis]))


def _fold(ctx, tc, in_shape, lo, hi):
    """Positions of dims lo..hi (inclusive, static) merged into one axis, as channel positions."""
    block = [int(d) for d in in_shape[lo:hi + 1]]
    if prod(block) > MAX_POSITIONS:
        return None, None
    idx = np.indices(block).reshape(len(block), -1)[tc.axis - lo]
    return tc.atoms[idx], tc.values[idx]


def _set_folded(ctx, name, axis, atoms, values, tc):
    if atoms is None:
        ctx.block(tc.atoms, f"{ctx.label}: folds more than {MAX_POSITIONS} positions into one axis")
        return
    ctx.set(name, TensorChannels(axis, atoms, values))


@register("Flatten")
def flatten(node, ctx):
    tc = ctx.channels(node.input[0])
    if tc is None:
        return
    shape = ctx.shape(node.input[0])
    k = attr(node, "axis", 1) % (len(shape) + 1) if shape else 1
    if tc.axis < k:
        if all(d == 1 for i, d in enumerate(shape[:k]) if i != tc.axis):
            atoms, values = _fold(ctx, tc, shape, 0, k - 1) if k > 0 else (tc.atoms, tc.values)
            _set_folded(ctx, node.output[0], 0, atoms, values, tc)
            return
        ctx.block(tc.atoms, f"{ctx.label}: flattens the channel axis into the batch axis")
        return
    if any(not isinstance(d, int) for d in shape[k:]):
        ctx.block(tc.atoms, f"{ctx.label}: flattened dims are not static")
        return
    atoms, values = _fold(ctx, tc, shape, k, len(shape) - 1)
    _set_folded(ctx, node.output[0], 1, atoms, values, tc)


@register("Reshape")
def reshape(node, ctx):
    tc = ctx.channels(node.input[0])
    if ctx.channels(node.input[1]) is not None:
        ctx.block_node_inputs(node, f"{ctx.label}: channels reach a Reshape target")
        return
    if tc is None:
        return
    target = ctx.const(node.input[1])
    if target is not None and not ctx.is_const(node.input[1]) and ctx.graph.model_value(node.input[1]) is None:
        target = None  # static only at the resolved input shapes: never frozen, read entry by entry
    in_shape, out_shape = ctx.shape(node.input[0]), ctx.shape(node.output[0])
    partial = None
    if target is None:
        # e.g. x.view(x.size(0), -1): the batch entry is read at run time, the rest is static.
        partial = ctx.graph.partial_value(node.input[1])
        out_shape = _resolve_target(partial, in_shape) if partial is not None and in_shape else None
    if (target is None and partial is None) or in_shape is None or out_shape is None:
        ctx.block(tc.atoms, f"{ctx.label}: Reshape target computed at run time")
        return
    c = tc.axis
    if not all(isinstance(d, int) for d in in_shape[c:]):
        ctx.block(tc.atoms, f"{ctx.label}: dims after the channel axis are not static")
        return
    # Find an output axis o holding input dims lo..hi (lo <= c <= hi) merged, with the same static
    # product after it in both shapes (then the product before it matches too).
    for o in range(len(out_shape)):
        trail = out_shape[o + 1:]
        if not isinstance(out_shape[o], int) or not all(isinstance(d, int) for d in trail):
            continue
        for hi in range(c, len(in_shape)):
            if prod(in_shape[hi + 1:]) != prod(trail):
                continue
            for lo in range(c, -1, -1):
                if not isinstance(in_shape[lo], int):
                    break
                if prod(in_shape[lo:hi + 1]) == out_shape[o]:
                    atoms, values = _fold(ctx, tc, in_shape, lo, hi)
                    if atoms is None:
                        _set_folded(ctx, node.output[0], o, atoms, values, tc)
                        return
                    if target is not None:
                        _reshape_fixup(ctx, node, target, o, atoms)
                    elif partial[o] != -1 and not _piece_fixup(ctx, node, o, atoms):
                        ctx.block(tc.atoms, f"{ctx.label}: Reshape target computed at run time")
                        return
                    ctx.set(node.output[0], TensorChannels(o, atoms, values))
                    return
    ctx.block(tc.atoms, f"{ctx.label}: Reshape splits the channel axis")


def _resolve_target(target: list, in_shape) -> tuple | None:
    """Output shape of a Reshape whose target entries are ints, symbols of the input's dims, or
    -1; None when it cannot be told here."""
    if any(d is None for d in target) or any(d is None for d in in_shape):
        return None
    out = [in_shape[i] if d == 0 and i < len(in_shape) else d for i, d in enumerate(target)]
    if out.count(-1) > 1:
        return None
    if -1 in out:
        static_in = prod(d for d in in_shape if isinstance(d, int))
        static_out = prod(d for d in out if isinstance(d, int) and d != -1)
        sym_in = sorted(d for d in in_shape if isinstance(d, str))
        sym_out = sorted(d for d in out if isinstance(d, str))
        if sym_in != sym_out or static_out == 0 or static_in % static_out:
            return None
        out[out.index(-1)] = static_in // static_out
    return tuple(out)


def _piece_fixup(ctx, node, o, atoms) -> bool:
    """Target built at run time by a Concat whose piece for entry o is a constant (tf2onnx writes
    Concat(Shape(x)[0:1], [C*H*W])): rewrite that piece."""
    source = ctx.graph.partial_source(node.input[1], o)
    if source is None:
        return False
    concat, idx, entry = source

    def retarget_piece(rw, concat=concat, idx=idx, entry=entry, atoms=atoms):
        new = rw.graph.const_value(concat.input[idx]).copy()
        new.reshape(-1)[entry] = len(rw.kept(atoms))
        rw.set_const_input(concat, idx, new)

    ctx.fixup(retarget_piece)
    return True


def _reshape_fixup(ctx, node, target, o, atoms):
    t = int(target.reshape(-1)[o])
    computed = not ctx.is_const(node.input[1])
    if not computed and (t == -1 or (t == 0 and not attr(node, "allowzero", 0))):
        return

    def retarget(rw, node=node, o=o, atoms=atoms, fixed=t in (-1, 0)):
        new = rw.graph.value(node.input[1]).copy()
        if not fixed:
            new.reshape(-1)[o] = len(rw.kept(atoms))
        rw.set_const_input(node, 1, new)

    ctx.fixup(retarget, frozen_inputs=(1,) if computed else ())


@register("Shape")
def shape_op(node, ctx):
    tc = ctx.channels(node.input[0])
    if tc is None:
        return
    rank = ctx.rank(node.input[0])
    start = attr(node, "start", 0)
    end = attr(node, "end", rank)
    start, end = slice(start, end).indices(rank)[:2]
    if start <= tc.axis < end:
        ctx.read_channel_count(node, tc.atoms, tc.axis - start)


@register("Size")
def size_op(node, ctx):
    ctx.block_node_inputs(node, f"{ctx.label}: the channel count is read by a Size op")
