"""Index maps on the channel axis: Concat joins position lists, Split and Slice cut them.

Their size constants (split sizes, slice bounds) are rewritten from the kept positions.
"""

from __future__ import annotations

import numpy as np

from ...graph import attr, set_attr
from ..channels import FIXED, MAX_POSITIONS, ROLE_CHANNEL, ROLE_OUT, TensorChannels
from . import register


@register("Concat")
def concat(node, ctx):
    inputs = [i for i in node.input]
    carrying = [ctx.channels(i) for i in inputs]
    if not any(t is not None for t in carrying):
        return
    out = node.output[0]
    rank = ctx.rank(out)
    if rank is None:
        ctx.block_node_inputs(node, f"{ctx.label}: rank unknown")
        return
    axis = attr(node, "axis") % rank
    along = [t is not None and t.axis == axis for t in carrying]
    if any(along):
        atoms, values = [], []
        for name, t, ok in zip(inputs, carrying, along):
            if t is not None and not ok:
                ctx.block(t.atoms, f"{ctx.label}: inputs carry channels on different axes")
                t = None
            if t is not None:
                atoms.append(t.atoms)
                values.append(t.values)
                continue
            shape = ctx.shape(name)
            if shape is None or not isinstance(shape[axis], int) or not 0 <= shape[axis] <= MAX_POSITIONS:
                for t2 in carrying:
                    if t2 is not None:
                        ctx.block(t2.atoms, f"{ctx.label}: size of input '{name}' on the concat axis is unknown")
                return
            atoms.append(np.full(shape[axis], FIXED))
            values.append(np.full(shape[axis], np.nan))
        ctx.set(out, TensorChannels(axis, np.concatenate(atoms), np.concatenate(values)))
        return
    # Channels on another axis: every input must carry the same channels there.
    ref = next(t for t in carrying if t is not None)
    for name, t in zip(inputs, carrying):
        if t is None:
            if ctx.is_const(name):
                ctx.param(name, ref.axis, ref.atoms, ROLE_CHANNEL)
            elif _expanded_constant(node, ctx, name, ref):
                pass
            else:
                ctx.block(ref.atoms, f"{ctx.label}: input '{name}' has channels that are not followed")
                return
        elif t.axis != ref.axis:
            ctx.block_node_inputs(node, f"{ctx.label}: inputs carry channels on different axes")
            return
        else:
            ctx.unify(ref.atoms, t.atoms)
    ctx.set(out, TensorChannels(ref.axis, ref.atoms))


@register("Split")
def split(node, ctx):
    tc = ctx.channels(node.input[0])
    if tc is None:
        return
    rank = ctx.rank(node.input[0])
    axis = attr(node, "axis", 0) % rank
    if tc.axis != axis:
        for o in node.output:
            ctx.set(o, TensorChannels(tc.axis, tc.atoms, tc.values))
        return
    sizes = ctx.graph.split_sizes(node, len(tc.atoms))
    if sizes is None:
        ctx.block(tc.atoms, f"{ctx.label}: split sizes are not constant")
        return
    offsets = np.cumsum([0] + sizes)
    parts = [tc.atoms[offsets[k]:offsets[k + 1]] for k in range(len(sizes))]
    for k, o in enumerate(node.output):
        ctx.set(o, tc.take(slice(offsets[k], offsets[k + 1])))

    def resize_split(rw, node=node, parts=parts):
        new = np.array([len(rw.kept(p)) for p in parts], dtype=np.int64)
        if rw.graph.opset >= 13:
            for i, a in enumerate(node.attribute):
                if a.name == "num_outputs":
                    del node.attribute[i]
                    break
            if len(node.input) > 1 and node.input[1]:
                rw.set_const_input(node, 1, new)  # also freezes sizes computed at run time
            else:
                while len(node.input) < 2:
                    node.input.append("")
                node.input[1] = rw.graph.add_initializer(new, f"{node.name or 'split'}_sizes")
        else:
            set_attr(node, "split", [int(s) for s in new])

    ctx.fixup(resize_split, frozen_inputs=(1,))


@register("Slice")
def slice_(node, ctx):
    tc = ctx.channels(node.input[0])
    for extra in node.input[1:]:
        if extra and ctx.channels(extra) is not None:
            ctx.block_node_inputs(node, f"{ctx.label}: channels reach Slice bounds")
            return
    if tc is None:
        return
    rank = ctx.rank(node.input[0])
    if ctx.graph.opset < 10:
        starts, ends = attr(node, "starts"), attr(node, "ends")
        axes = attr(node, "axes", list(range(len(starts))))
        steps = [1] * len(starts)
    else:
        inputs = list(node.input) + [""] * 5
        starts, ends = ctx.const(inputs[1]), ctx.const(inputs[2])
        axes = ctx.const(inputs[3]) if inputs[3] else None
        steps = ctx.const(inputs[4]) if inputs[4] else None
        if starts is None or ends is None or (inputs[3] and axes is None) or (inputs[4] and steps is None):
            ctx.block(tc.atoms, f"{ctx.label}: slice bounds are computed at run time")
            return
        starts, ends = starts.reshape(-1).tolist(), ends.reshape(-1).tolist()
        axes = list(range(len(starts))) if axes is None else axes.reshape(-1).tolist()
        steps = [1] * len(starts) if steps is None else steps.reshape(-1).tolist()
    axes = [int(a) % rank for a in axes]
    if tc.axis not in axes:
        ctx.set(node.output[0], tc)
        return
    k = axes.index(tc.axis)
    if steps[k] != 1:
        ctx.block(tc.atoms, f"{ctx.label}: strided slice of the channel axis")
        return
    n = len(tc.atoms)
    start, end = slice(int(starts[k]), int(ends[k])).indices(n)[:2]
    end = max(start, end)
    ctx.set(node.output[0], tc.take(slice(start, end)))

    def rebound(rw, node=node, atoms=tc.atoms, start=start, end=end, k=k):
        kept = rw.kept(atoms)
        new_start = int(np.sum(kept < start))
        new_end = new_start + int(np.sum((kept >= start) & (kept < end)))
        if rw.graph.opset < 10:
            s, e = list(attr(node, "starts")), list(attr(node, "ends"))
            s[k], e[k] = new_start, new_end
            set_attr(node, "starts", s)
            set_attr(node, "ends", e)
            return
        for idx, val in ((1, new_start), (2, new_end)):
            arr = rw.graph.value(node.input[idx]).copy()
            arr.reshape(-1)[k] = val
            rw.set_const_input(node, idx, arr)
        for idx in (3, 4):  # axes and steps computed at run time are frozen as they are
            if len(node.input) > idx and node.input[idx] and not rw.graph.is_constant(node.input[idx]):
                rw.set_const_input(node, idx, rw.graph.value(node.input[idx]))

    ctx.fixup(rebound, frozen_inputs=(1, 2, 3, 4))


@register("Gather")
def gather(node, ctx):
    """Gather along another axis than the channels (q, k, v picked from a packed projection): every
    channel position is taken whole, the channel axis is renumbered. On the channel axis: blocked."""
    tc = ctx.channels(node.input[0])
    if ctx.channels(node.input[1]) is not None:
        ctx.block_node_inputs(node, f"{ctx.label}: channels reach Gather's indices")
        return
    if tc is None:
        _embedding(node, ctx)
        return
    rank, idx_rank = ctx.rank(node.input[0]), ctx.rank(node.input[1])
    axis = attr(node, "axis", 0) % rank if rank else None
    if axis is None or idx_rank is None:
        ctx.block(tc.atoms, f"{ctx.label}: ranks unknown")
        return
    if axis == tc.axis:
        ctx.block(tc.atoms, f"{ctx.label}: Gather along the channel axis")
        return
    out_axis = tc.axis if tc.axis < axis else tc.axis - 1 + idx_rank
    ctx.set(node.output[0], TensorChannels(out_axis, tc.atoms, tc.values))


def _embedding(node, ctx) -> None:
    """An embedding lookup: rows of a constant [vocab, hidden] float table gathered along axis 0
    (token, position and token-type embeddings). A source: each hidden column is a channel, on the
    output's last axis."""
    table = node.input[0]
    if attr(node, "axis", 0) != 0 or not ctx.is_const(table) or ctx.graph.dequantize_refused.get(table):
        return
    value = ctx.const(table)
    if value is None or value.ndim != 2 or value.dtype.kind != "f" or value.shape[1] < 2:
        return
    rank = ctx.rank(node.output[0])
    if rank is None:
        return
    atoms = ctx.new_atoms(value.shape[1])
    ctx.param(table, 1, atoms, ROLE_OUT)
    zero = ~np.any(value != 0, axis=0)  # a zero column gives zeros whatever the indices
    ctx.set(node.output[0], TensorChannels(rank - 1, atoms, np.where(zero, 0.0, np.nan)))


def _expanded_constant(concat, ctx, name: str, ref: TensorChannels) -> bool:
    """A constant broadcast by Expand and read only by this Concat (ViT's class token,
    `cls_token.expand(N, -1, -1)` joined to the patch tokens): the constant is a per-channel
    parameter on the channel axis, which the Expand leaves as it is (its shape entry there is 1)."""
    expand = ctx.graph.producer.get(name)
    users = ctx.graph.users(name)
    if expand is None or expand.op_type != "Expand" or len(users) != 1 or users[0] is not concat:
        return False
    data = expand.input[0]
    shape = ctx.shape(data) if ctx.is_const(data) else None
    target = ctx.graph.partial_value(expand.input[1])
    rank = ctx.rank(name)
    if shape is None or target is None or rank is None:
        return False
    axis = ref.axis - (rank - len(shape))
    entry = ref.axis - (rank - len(target))
    if axis < 0 or shape[axis] != len(ref.atoms) or (entry >= 0 and target[entry] != 1):
        return False
    if not ctx.param(data, axis, ref.atoms, ROLE_CHANNEL, reader=expand):
        return False
    ctx.set(name, TensorChannels(ref.axis, ref.atoms))
    return True
