"""Layout ops: Transpose moves the channel axis (tf2onnx NHWC graphs), Squeeze/Unsqueeze renumber
it, Flatten/Reshape fold C*H*W into one axis (each channel becomes a block of positions), and Shape
may only look at the other axes."""

from __future__ import annotations

from math import prod

import numpy as np

from ...graph import attr, set_attr
from ..channels import MAX_POSITIONS, TensorChannels
from . import register
from .normalization import group_norm_pattern


@register("Transpose")
def transpose(node, ctx):
    tc = ctx.tiled_channels(node.input[0])
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
    tc = ctx.tiled_channels(node.input[0])
    if ctx.tiled_channels(node.input[1]) is not None:
        ctx.block_node_inputs(node, f"{ctx.label}: channels reach a Reshape target")
        return
    if tc is None:
        return
    if tc.tiled:
        _untile(node, ctx, tc)
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
    if (target is not None and in_shape is not None and (out_shape is None or not all(isinstance(d, int) for d in out_shape))
            and -1 in target.reshape(-1).tolist()):
        # A constant target whose -1 takes the dynamic dim (onnxsim's [1, L, -1, 3, E]): resolved here,
        # where shape inference leaves a fresh symbol
        out_shape = _resolve_target([int(v) for v in target.reshape(-1)], in_shape) or out_shape
    if (target is None and partial is None) or in_shape is None or out_shape is None:
        ctx.block(tc.atoms, f"{ctx.label}: Reshape target computed at run time")
        return
    c = tc.axis
    if group_norm_pattern(node, ctx, tc, in_shape, target):
        return
    if len(out_shape) == len(in_shape) + 1 and _split_groups(node, ctx, tc, in_shape, out_shape, target):
        return  # a channel shuffle's split: the dims after it stay as they are, static or not
    if _regroup_positions(node, ctx, tc, in_shape, out_shape, target):
        return
    if not all(isinstance(d, int) for d in in_shape[c:]):
        ctx.block(tc.atoms, f"{ctx.label}: dims after the channel axis are not static")
        return
    # Dims before the channel axis the model leaves dynamic (resolved here at one input size, or
    # left open by shape inference) are not folded into channel positions: the count would hold at
    # that size only.
    declared_in = ctx.graph.declared().shape(node.input[0])
    if declared_in is None or len(declared_in) != len(in_shape):
        declared_in = (0,) * len(in_shape)  # not inferred in the model: its resolved dims are trusted
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
                if lo < c and not isinstance(declared_in[lo], int):
                    if hi == c and prod(in_shape[lo:hi + 1]) == out_shape[o] and _tile_into(ctx, node, tc, o, target):
                        return
                    break
                if prod(in_shape[lo:hi + 1]) == out_shape[o]:
                    if _shifts_with_dynamic_dims(ctx, node, declared_in, lo, o):
                        break
                    atoms, values = _fold(ctx, tc, in_shape, lo, hi)
                    if atoms is None:
                        _set_folded(ctx, node.output[0], o, atoms, values, tc)
                        return
                    if target is not None:
                        _reshape_fixup(ctx, node, target, o, atoms)
                    elif (partial[o] != -1 and not ctx.counts_itself(node, 1, o, atoms)
                          and not _piece_fixup(ctx, node, o, atoms)
                          and not _frozen_target_fixup(ctx, node, {o: (atoms, 1)})):
                        ctx.block(tc.atoms, f"{ctx.label}: Reshape target computed at run time")
                        return
                    ctx.set(node.output[0], TensorChannels(o, atoms, values))
                    return
    if not _split_heads(node, ctx, tc, in_shape, out_shape):
        ctx.block(tc.atoms, f"{ctx.label}: Reshape splits the channel axis")


def _shifts_with_dynamic_dims(ctx, node, declared_in, lo, o) -> bool:
    """Input dims before `lo` that the model leaves dynamic, none before output axis `o`: the axes
    match only at the resolved size (a [N, 1, H, W] -> [-1, H, W, 1] at batch 1 looks like the
    channel landing on axis 0, the batch's)."""
    if all(isinstance(d, int) for d in declared_in[:lo]):
        return False
    out = ctx.graph.declared().shape(node.output[0])
    return out is not None and len(out) > o and all(isinstance(d, int) for d in out[:o])


def _regroup_positions(node, ctx, tc, in_shape, out_shape, target) -> bool:
    """[.., L, C] -> [.., L/q, q*C], channels last (Magika's first Dense, [N, 2048, 64] -> [N, 512, 256]):
    q consecutive positions of L join the channel axis, so position i*C + j of the new axis is channel
    j. L must be static in the model; the target, a constant, gets q times the kept count."""
    r, n = len(in_shape), len(tc.atoms)
    if tc.axis != r - 1 or r < 2 or len(out_shape) != r or list(out_shape[:-2]) != list(in_shape[:-2]):
        return False
    length, rows, width = in_shape[-2], out_shape[-2], out_shape[-1]
    declared = ctx.graph.declared().shape(node.input[0])
    if (not all(isinstance(d, int) for d in (length, rows, width)) or width % n or width == n
            or rows * (width // n) != length or (declared is not None and not isinstance(declared[-2], int))):
        return False
    q = width // n
    atoms = np.tile(tc.atoms, q)
    if target is not None and ctx.is_const(node.input[1]):
        t = target.reshape(-1)
        if len(t) != r or int(t[-1]) != width or int(t[-2]) not in (rows, -1):
            return False

        def retarget(rw, node=node, atoms=atoms):
            new = rw.graph.value(node.input[1]).copy()
            new.reshape(-1)[-1] = len(rw.kept(atoms))
            rw.set_const_input(node, 1, new)

        ctx.fixup(retarget)
    elif not _piece_fixup(ctx, node, r - 1, atoms):  # Concat(Shape(x)[0:1], [L/q], [q*C]) (jax2tf, tf2onnx)
        return False
    ctx.set(node.output[0], TensorChannels(r - 1, atoms, np.tile(tc.values, q)))
    return True


def _tile_into(ctx, node, tc, o, target) -> bool:
    """[.., A, C, ..] -> [.., A * C, ..] with A dynamic in the model (MobileViT's heads merged into
    its batch of patches): position x of the merged axis carries channel x % C at any A, a tiled
    tensor. Only where the target's entry is -1 (nothing to write)."""
    if target is None or int(target.reshape(-1)[o]) != -1:
        return False
    ctx.set(node.output[0], TensorChannels(o, tc.atoms, tc.values, tiled=True))
    return True


def _split_groups(node, ctx, tc, in_shape, out_shape, target) -> bool:
    """[.., C, ..] -> [.., g, C/g, ..], the other dims as they were: a channel shuffle's first view
    (ShuffleNet: view(N, g, C/g, H, W), transpose(1, 2), view(N, C, H, W)). Position j of each of the
    g parts is one channel, so every part keeps the same positions and the shuffle still interleaves
    the kept channels as it interleaved all of them; the channel axis becomes the C/g one. The
    target's C/g entry is written (a constant target), or the target is frozen with the model's
    dynamic dims kept (`_freeze_plan`), or left as it is where it reads C // g at run time; False when
    none applies. A part picked out later (Gather on the g axis) holds one position of every channel."""
    c, n = tc.axis, len(tc.atoms)
    if c == len(in_shape) - 1 or len(out_shape) != len(in_shape) + 1:
        return False
    g, m = out_shape[c], out_shape[c + 1]
    if (not isinstance(g, int) or not isinstance(m, int) or g < 2 or g * m != n
            or list(out_shape[:c]) != list(in_shape[:c]) or list(out_shape[c + 2:]) != list(in_shape[c + 1:])):
        return False
    parts = tc.atoms.reshape(g, m)
    if target is not None:
        t = target.reshape(-1)
        if len(t) != len(out_shape) or int(t[c]) != g or int(t[c + 1]) not in (m, -1):
            return False
        _reshape_fixup(ctx, node, target, c + 1, parts[0])
    elif (not ctx.counts_share(node, 1, c + 1, tc.atoms, g)
          and not _piece_fixup(ctx, node, c + 1, parts[0])  # onnxsim's: Concat(Shape pieces, [g], [C/g], ...)
          and not _frozen_target_fixup(ctx, node, {c + 1: (parts[0], 1)})):
        return False
    for i in range(1, g):
        ctx.unify(parts[0], parts[i], f"{ctx.label}: channel shuffle parts differ in size")
    vals = tc.values.reshape(g, m)
    values = np.where(np.all(vals == vals[:1], axis=0), vals[0], np.nan)
    ctx.set(node.output[0], TensorChannels(c + 1, parts[0], values))
    return True


# -- attention: packed projections and heads ------------------------------------------------------
#
# nn.MultiheadAttention as TorchScript writes it: the packed in-projection [L, N, 3E] is reshaped to
# [L, N, 3, E] and q, k, v are picked by Gather; each is reshaped to [L, N * heads, head_dim]
# (heads merged into the batch axis), transposed, reshaped to [N, heads, L, head_dim], multiplied
# batch-wise, and [L, N, heads, head_dim] is folded back to [L * N, E] for the out-projection. A
# channel is then a whole head: its head_dim positions in q, k and v and its rows of the
# out-projection. Every target is computed at run time from Shape ops; the rewrite writes it as a
# constant with -1 (or 0, a copied dim) for the dynamic dims (`_freeze_plan`).


def _freeze_plan(ctx, node) -> list | None:
    """The Reshape target as a constant that keeps the model's dynamic dims: entries static in the
    model as they are, an entry equal to the same input dim 0 (copy), at most one other -> -1.
    None when that cannot be told."""
    declared = ctx.graph.declared()
    plan = declared.partial_value(node.input[1])
    in_dims = declared.shape(node.input[0])
    if plan is None:
        return None
    allowzero = attr(node, "allowzero", 0)
    out, free = [], []
    for i, e in enumerate(plan):
        if isinstance(e, int) and e >= -1:
            out.append(e)  # 0 keeps its meaning: the attribute stays
            if e == -1:
                free.append(i)
        elif (isinstance(e, str) and not allowzero and in_dims is not None and i < len(in_dims)
              and in_dims[i] == e):
            out.append(0)
        else:
            out.append(-1)
            free.append(i)
    return out if len(free) <= 1 else None


def _frozen_target_fixup(ctx, node, counts: dict) -> bool:
    """Write the target as a constant (`_freeze_plan`) with entry o = kept positions of atoms * factor
    for each o: (atoms, factor) of `counts`; False when the plan is unknown or an entry to rewrite
    is not static in the model."""
    plan = _freeze_plan(ctx, node)
    out_shape = ctx.shape(node.output[0])
    if plan is None or out_shape is None or len(plan) != len(out_shape):
        return False
    for o, (atoms, factor) in counts.items():
        if plan[o] is None or plan[o] <= 0 or plan[o] != out_shape[o] or plan[o] != len(atoms) * factor:
            return False

    def freeze(rw, node=node, plan=plan, counts=counts):
        new = np.asarray(plan, dtype=np.int64)
        for o, (atoms, factor) in counts.items():
            new[o] = len(rw.kept(atoms)) * factor
        rw.set_const_input(node, 1, new)

    ctx.fixup(freeze, frozen_inputs=(1,), checked=True)
    return True


def _split_heads(node, ctx, tc, in_shape, out_shape) -> bool:
    """The channel axis (last) split in two: [.., C] -> [.., k, C/k] (a packed projection: position j
    of each of the k parts is one channel) or [.., A, C] -> [.., A * heads, head_dim] (heads merged
    into the axis before: a whole head is one channel, tiled A times). False if neither."""
    c, r_in, r_out = tc.axis, len(in_shape), len(out_shape)
    n = len(tc.atoms)
    m = out_shape[-1] if r_out >= 2 else None
    if c != r_in - 1 or not isinstance(m, int) or m < 1 or n % m:
        return False
    plan = _freeze_plan(ctx, node)
    if plan is None or len(plan) != r_out or plan[-1] != m:
        return _regrouped_heads(node, ctx, tc, in_shape, out_shape)
    k = out_shape[-2]
    if r_out == r_in + 2 and _packed_heads(node, ctx, tc, in_shape, out_shape, plan):
        return True
    # Leading unit dims may come first: onnxsim folds TorchScript's unflatten(-1, (3, E)).unsqueeze(0)
    # into one Reshape [L, N, 3E] -> [1, L, N, 3, E].
    lead = r_out - r_in - 1
    if (lead >= 0 and k == n // m and plan[-2] == k and all(d == 1 for d in out_shape[:lead])
            and all(e == 1 for e in plan[:lead]) and list(out_shape[lead:-2]) == list(in_shape[:-1])):
        if not _indexed_later(ctx.graph, node.output[0], r_out - 2):
            # [B, L, heads, head_dim] (Hugging Face's view before transpose(1, 2)): a head per channel.
            blocks = tc.atoms.reshape(k, m)
            for d in range(1, m):
                ctx.unify(blocks[:, 0], blocks[:, d], f"{ctx.label}: head blocks differ in size")
            vals = tc.values.reshape(k, m)
            values = np.where(np.all(vals == vals[:, :1], axis=1), vals[:, 0], np.nan)
            if not _frozen_target_fixup(ctx, node, {r_out - 2: (blocks[:, 0], 1)}):
                return False
            ctx.set(node.output[0], TensorChannels(r_out - 2, blocks[:, 0], values))
            return True
        # Packed: the trailing C positions keep their order whatever the leading dims become.
        parts = tc.atoms.reshape(k, m)
        for i in range(1, k):
            ctx.unify(parts[0], parts[i], f"{ctx.label}: packed projection parts differ in size")
        vals = tc.values.reshape(k, m)
        values = np.where(np.all(vals == vals[:1], axis=0), vals[0], np.nan)
        if not _frozen_target_fixup(ctx, node, {r_out - 1: (parts[0], 1)}):
            return False
        ctx.set(node.output[0], TensorChannels(r_out - 1, parts[0], values))
        return True
    if r_out != r_in or r_in < 2 or list(out_shape[:-2]) != list(in_shape[:-2]):
        return _regrouped_heads(node, ctx, tc, in_shape, out_shape)
    heads, a = n // m, in_shape[-2]
    if isinstance(a, int) and isinstance(k, int) and k != a * heads:
        return False
    # Leading entries copy the input's (0) or equal its static dims, so the merged axis is
    # A * heads at every batch size, and position x carries head x % heads.
    declared_in = ctx.graph.declared().shape(node.input[0])
    if declared_in is None or len(declared_in) != r_in:
        declared_in = (None,) * r_in  # not inferred in the model: its resolved dims are trusted
    for i in range(r_out - 2):
        if plan[i] != 0 and (plan[i] != in_shape[i] or isinstance(declared_in[i], str)):
            return False
    if plan[-2] != -1 and (not isinstance(a, int) or plan[-2] != a * heads or isinstance(declared_in[-2], str)):
        return False
    blocks = tc.atoms.reshape(heads, m)
    for d in range(1, m):
        ctx.unify(blocks[:, 0], blocks[:, d], f"{ctx.label}: head blocks differ in size")
    vals = tc.values.reshape(heads, m)
    values = np.where(np.all(vals == vals[:, :1], axis=1), vals[:, 0], np.nan)
    counted = {r_out - 2: (blocks[:, 0], a)} if plan[-2] != -1 else {}  # a static merged axis: A * kept heads
    if not _frozen_target_fixup(ctx, node, counted):
        return False
    ctx.set(node.output[0], TensorChannels(r_out - 2, blocks[:, 0], values, tiled=True))
    return True


def _regrouped_heads(node, ctx, tc, in_shape, out_shape) -> bool:
    """[M, C] -> [B, L, heads, head_dim] (tf2onnx's Keras MultiHeadAttention: the projection runs on
    B * L rows, the target splits them again): heads on the axis before last, as in Hugging Face's
    view, when the leading dims hold as many elements and the heads entry is a constant the rewrite
    can write (the target itself, or its Concat piece), so no dynamic dim is frozen."""
    n, r_out = len(tc.atoms), len(out_shape)
    k, m = out_shape[-2], out_shape[-1]
    lead_in, lead_out = in_shape[:-1], out_shape[:-2]
    if (tc.axis != len(in_shape) - 1 or r_out < 3 or not all(isinstance(d, int) and d > 1 for d in (k, m))
            or k * m != n or not all(isinstance(d, int) for d in (*lead_in, *lead_out))
            or prod(lead_in) != prod(lead_out) or _indexed_later(ctx.graph, node.output[0], r_out - 2)):
        return False
    blocks = tc.atoms.reshape(k, m)
    heads = blocks[:, 0]
    if ctx.is_const(node.input[1]):
        target = ctx.const(node.input[1]).reshape(-1)
        if len(target) != r_out or int(target[-2]) != k or int(target[-1]) != m:
            return False
        _reshape_fixup(ctx, node, target, r_out - 2, heads)
    elif ctx.graph.partial_source(node.input[1], r_out - 2) is None or not _piece_fixup(ctx, node, r_out - 2, heads):
        return False
    for d in range(1, m):
        ctx.unify(heads, blocks[:, d], f"{ctx.label}: head blocks differ in size")
    vals = tc.values.reshape(k, m)
    values = np.where(np.all(vals == vals[:, :1], axis=1), vals[:, 0], np.nan)
    ctx.set(node.output[0], TensorChannels(r_out - 2, heads, values))
    return True


def _indexed_later(graph, name: str, axis: int, depth: int = 0, user=None) -> bool:
    """Is this axis picked apart by Gather or Split further on (q, k, v of a packed projection), seen
    through Unsqueeze/Squeeze/Transpose? Chooses between the two readings of [.., k, C/k]; both are
    sound, the other one blocks later."""
    users = [user] if user is not None else graph.users(name)
    if depth > 8 or not users:
        return False
    if len(users) > 1:
        return all(_indexed_later(graph, name, axis, depth + 1, u) for u in users)
    return _indexed_by(graph, name, axis, depth, users[0])


def _indexed_by(graph, name: str, axis: int, depth: int, node) -> bool:
    rank = graph.rank(name)
    op = node.op_type
    if op in ("Gather", "Split"):
        return rank is not None and attr(node, "axis", 0) % rank == axis
    if op == "Transpose":
        perm = attr(node, "perm", list(range(rank))[::-1] if rank else None)
        return perm is not None and _indexed_later(graph, node.output[0], list(perm).index(axis), depth + 1)
    if op in ("Unsqueeze", "Squeeze"):
        in_dims, out_rank = graph.shape(name), graph.rank(node.output[0])
        axes = attr(node, "axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            value = graph.const_value(node.input[1])
            axes = None if value is None else value.reshape(-1).tolist()
        if axes is None or out_rank is None or in_dims is None:
            return False
        if op == "Unsqueeze":
            axes = sorted(int(a) % out_rank for a in axes)
            kept = [i for i in range(out_rank) if i not in axes]
            return _indexed_later(graph, node.output[0], kept[axis], depth + 1)
        axes = sorted(int(a) % len(in_dims) for a in axes)
        return axis not in axes and _indexed_later(graph, node.output[0], axis - sum(a < axis for a in axes), depth + 1)
    return False


def _packed_heads(node, ctx, tc, in_shape, out_shape, plan) -> bool:
    """[.., C] -> [.., parts, heads, head_dim] (timm's ViT, torchvision's Swin: qkv.reshape(B, L, 3,
    heads, hd)): head h of every part is one channel, on the heads axis."""
    parts, heads, m = out_shape[-3:]
    n = len(tc.atoms)
    if (not all(isinstance(d, int) and d > 0 for d in (parts, heads, m)) or parts * heads * m != n
            or list(out_shape[:-3]) != list(in_shape[:-1]) or list(plan[-3:]) != [parts, heads, m]):
        return False
    blocks = tc.atoms.reshape(parts, heads, m)
    for i in range(parts):
        for d in range(m):
            if i or d:
                ctx.unify(blocks[0, :, 0], blocks[i, :, d], f"{ctx.label}: head blocks differ in size")
    vals = tc.values.reshape(parts, heads, m).transpose(1, 0, 2).reshape(heads, -1)
    values = np.where(np.all(vals == vals[:, :1], axis=1), vals[:, 0], np.nan)
    r_out = len(out_shape)
    if not _frozen_target_fixup(ctx, node, {r_out - 2: (blocks[0, :, 0], 1)}):
        return False
    ctx.set(node.output[0], TensorChannels(r_out - 2, blocks[0, :, 0], values))
    return True


def _untile(node, ctx, tc) -> None:
    """[.., A * heads, ..] -> [.., A, heads, ..]: tiled heads become a plain channel axis again."""
    in_shape, out_shape = ctx.shape(node.input[0]), ctx.shape(node.output[0])
    a, heads = tc.axis, len(tc.atoms)
    plan = _freeze_plan(ctx, node)
    ok = (in_shape is not None and out_shape is not None and plan is not None and len(out_shape) == len(in_shape) + 1
          and all(isinstance(d, int) for d in in_shape[a + 1:]) and list(out_shape[a + 2:]) == list(in_shape[a + 1:])
          and list(plan[a + 2:]) == list(in_shape[a + 1:]) and out_shape[a + 1] == heads
          and list(out_shape[:a]) == list(in_shape[:a]) and all(e == 0 for e in plan[:a]))
    if not ok or not _frozen_target_fixup(ctx, node, {a + 1: (tc.atoms, 1)}):
        ctx.block(tc.atoms, f"{ctx.label}: Reshape of heads merged into another axis is not [.., A, heads, ..]")
        return
    ctx.set(node.output[0], TensorChannels(a + 1, tc.atoms, tc.values))


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
        if static_out == 0 or static_in % static_out:
            return None
        if sym_in != sym_out:
            # -1 takes the one symbol the target does not name, at a static factor of 1
            if len(sym_in) == len(sym_out) + 1 and static_in == static_out and all(d in sym_in for d in sym_out):
                out[out.index(-1)] = next(d for d in sym_in if d not in sym_out)
                return tuple(out)
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


@register("Expand")
def expand(node, ctx):
    """Broadcast to a shape (Hugging Face's repeat_kv: grouped-query K/V heads repeated for their
    query heads). Channels keep their axis (shifted by the ranks added in front); the shape's entry
    for it must be 1 (kept as it is) or the channel count, a constant the rewrite writes."""
    if ctx.channels(node.input[1]) is not None:
        ctx.block_node_inputs(node, f"{ctx.label}: channels reach an Expand shape")
        return
    tc = ctx.channels(node.input[0])
    if tc is None:
        return
    r_in, r_out = ctx.rank(node.input[0]), ctx.rank(node.output[0])
    target = ctx.graph.partial_value(node.input[1])
    if r_in is None or r_out is None or target is None:
        ctx.block(tc.atoms, f"{ctx.label}: Expand shape unknown")
        return
    axis = tc.axis + r_out - r_in
    entry = axis - (r_out - len(target))
    n = len(tc.atoms)
    if entry >= 0 and target[entry] != 1:
        if target[entry] != n:
            ctx.block(tc.atoms, f"{ctx.label}: Expand shape entry for the channel axis is neither 1 nor the channel count")
            return
        if ctx.is_const(node.input[1]):
            const = ctx.const(node.input[1])

            def retarget(rw, node=node, entry=entry, atoms=tc.atoms, const=const):
                new = const.copy()
                new.reshape(-1)[entry] = len(rw.kept(atoms))
                rw.set_const_input(node, 1, new)

            ctx.fixup(retarget)
        elif not (_expands_as(ctx, node, entry, tc.atoms) or _piece_fixup(ctx, node, entry, tc.atoms)):
            ctx.block(tc.atoms, f"{ctx.label}: Expand shape computed at run time")
            return
    ctx.set(node.output[0], TensorChannels(axis, tc.atoms, tc.values))


def _expands_as(ctx, node, entry, atoms) -> bool:
    """x.expand_as(y) (MobileViTv2's context vector over the values): the shape entry reads y's
    channel count at run time, as many as x holds; x's and y's channels go together, so it keeps
    counting them."""
    origin = ctx.graph.partial_origin(node.input[1], entry)
    other = ctx.tensors.get(origin[0]) if origin is not None else None
    if other is None or other.axis != origin[1] or len(other.atoms) != len(atoms):
        return False
    ctx.unify(atoms, other.atoms)
    return ctx.counts_itself(node, 1, entry, atoms)


@register("Tile")
def tile(node, ctx):
    """Repeats along other axes (Keras 3's UpSampling2D: Unsqueeze -> Tile -> Reshape per spatial
    axis): channels keep their axis where its repeat is 1, read from the repeats at run time or not."""
    if ctx.channels(node.input[1]) is not None:
        ctx.block_node_inputs(node, f"{ctx.label}: channels reach Tile repeats")
        return
    tc = ctx.channels(node.input[0])
    if tc is None:
        return
    repeats = ctx.graph.partial_value(node.input[1])
    if repeats is None or tc.axis >= len(repeats) or repeats[tc.axis] != 1:
        ctx.block(tc.atoms, f"{ctx.label}: Tile repeats the channel axis, or its repeats are unknown")
        return
    ctx.set(node.output[0], TensorChannels(tc.axis, tc.atoms, tc.values))


@register("Shape")
def shape_op(node, ctx):
    tc = ctx.tiled_channels(node.input[0])
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
