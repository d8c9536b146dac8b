"""Gemm and MatMul with a constant weight: sources of output features, sinks of input features."""

from __future__ import annotations

import numpy as np

from ...graph import attr
from ..channels import ROLE_IN, ROLE_OUT, TensorChannels
from . import register


def _zero_columns(w: np.ndarray, out_axis: int) -> np.ndarray:
    moved = np.moveaxis(w, out_axis, -1).reshape(-1, w.shape[out_axis])
    return ~np.any(moved != 0, axis=0)


@register("Gemm")
def gemm(node, ctx):
    a, b = node.input[0], node.input[1]
    c = node.input[2] if len(node.input) > 2 and node.input[2] else None
    y = node.output[0]
    trans_a, trans_b = attr(node, "transA", 0), attr(node, "transB", 0)
    beta = attr(node, "beta", 1.0)
    tc = ctx.channels(a)
    for other in (b, c):
        if other and ctx.channels(other) is not None:
            ctx.block_node_inputs(node, f"{ctx.label}: channels reach Gemm's B or C input")
            return
    if not ctx.is_const(b):
        if tc is not None:
            ctx.block(tc.atoms, ctx.graph.dequantize_refused.get(b) or f"{ctx.label}: Gemm weight B is not a constant")
        return
    k_axis_a = 0 if trans_a else 1
    k_axis_b, n_axis_b = (1, 0) if trans_b else (0, 1)
    if tc is not None:
        if tc.axis != k_axis_a:
            ctx.block(tc.atoms, f"{ctx.label}: channels on Gemm's row axis")
        else:
            ctx.param(b, k_axis_b, tc.atoms, ROLE_IN, values=tc.values, tensor=a)
    bv = ctx.const(b)
    if bv.ndim != 2 or bv.size == 0:
        if tc is not None:
            ctx.block(tc.atoms, f"{ctx.label}: Gemm weight is empty or not 2-D")
        return
    n = bv.shape[n_axis_b]
    atoms = ctx.new_atoms(n)
    ctx.param(b, n_axis_b, atoms, ROLE_OUT)
    cvals = np.zeros(n)
    if c is not None:
        cshape = ctx.shape(c)
        if cshape is None:
            ctx.block(atoms, f"{ctx.label}: shape of C unknown")
        elif len(cshape) >= 1 and cshape[-1] == n and n > 1:
            if ctx.param(c, len(cshape) - 1, atoms, ROLE_OUT):
                cv = ctx.const(c).astype(np.float64)
                flat = cv.reshape(-1, n)
                cvals = np.where(np.all(flat == flat[:1], axis=0), flat[0], np.nan) * beta
        else:
            cv = ctx.const(c)
            cvals = np.full(n, float(cv.reshape(-1)[0]) * beta if cv is not None and cv.size == 1 else np.nan)
    ignored = _zero_columns(bv, n_axis_b) & (not ctx.may_be_nonfinite(a))  # 0 * Inf is NaN
    values = np.where(ignored, cvals, np.nan)
    ctx.set(y, TensorChannels(1, atoms, values))


@register("MatMul")
def matmul(node, ctx):
    a, b, y = node.input[0], node.input[1], node.output[0]
    ta, tb = ctx.channels(a), ctx.channels(b)
    if (ta is not None or tb is not None) and not ctx.is_const(b) and _batch_channels(node, ctx, ta, tb):
        return
    if tb is not None or (ta is not None and not ctx.is_const(b)):
        ctx.block_node_inputs(node, ctx.graph.dequantize_refused.get(b)
                              or f"{ctx.label}: MatMul of two activations mixes channels")
        return
    if not ctx.is_const(b):
        return
    ra, rb, ry = ctx.rank(a), ctx.rank(b), ctx.rank(y)
    if ra is None or ry is None or rb < 1:
        if ta is not None:
            ctx.block(ta.atoms, f"{ctx.label}: ranks unknown")
        return
    bv = ctx.const(b)
    if bv.size == 0:
        if ta is not None:
            ctx.block(ta.atoms, f"{ctx.label}: empty weight")
        return
    if ta is not None and ta.axis != ra - 1:
        if ta.axis == ra - 2 and rb == 2 and ra >= 2:
            ctx.set(y, TensorChannels(ta.axis + ry - ra, ta.atoms))  # rows pass through a 2-D weight
        else:
            ctx.block(ta.atoms, f"{ctx.label}: channels on a MatMul batch axis")
        return
    if ta is not None:
        ctx.param(b, 0 if rb == 1 else rb - 2, ta.atoms, ROLE_IN, values=ta.values, tensor=a)
    if rb == 1:
        return
    n = bv.shape[-1]
    atoms = ctx.new_atoms(n)
    ctx.param(b, rb - 1, atoms, ROLE_OUT)
    values = np.where(_zero_columns(bv, rb - 1) & (not ctx.may_be_nonfinite(a)), 0.0, np.nan)
    ctx.set(y, TensorChannels(ry - 1, atoms, values))


def _batch_channels(node, ctx, ta, tb) -> bool:
    """MatMul of two activations whose channels sit on a batch axis (attention heads: [N, heads, L,
    L] x [N, heads, L, head_dim]): each channel's slice is multiplied on its own, so the channels
    pass through. The other input carries the same channels there, or broadcasts over that axis."""
    ins, y = node.input[:2], node.output[0]
    ry = ctx.rank(y)
    if ry is None:
        return False
    axes = set()
    for name, tc in zip(ins, (ta, tb)):
        if tc is None:
            continue
        r = ctx.rank(name)
        if r is None or r < 3 or tc.axis >= r - 2:
            return False
        axes.add(tc.axis + ry - r)
    if len(axes) != 1:
        return False
    out_axis = axes.pop()
    carrying = [tc for tc in (ta, tb) if tc is not None]
    if len(carrying) == 2:
        if len(ta.atoms) != len(tb.atoms):
            return False
        ctx.unify(ta.atoms, tb.atoms)
    else:
        other = ins[1] if ta is not None else ins[0]
        shape = ctx.shape(other)
        if shape is None:
            return False
        axis = out_axis - (ry - len(shape))
        if axis >= 0 and shape[axis] != 1:
            return False
    # A slice that is all zero gives a zero product (when the other factor is finite: 0 * Inf is NaN):
    # a head whose v is zero outputs zeros whatever its attention.
    n = len(carrying[0].atoms)
    zero = np.zeros(n, dtype=bool)
    for tc, other in ((ta, ins[1]), (tb, ins[0])):
        if tc is not None and not ctx.may_be_nonfinite(other):
            zero |= tc.values == 0
    ctx.set(y, TensorChannels(out_axis, carrying[0].atoms, np.where(zero, 0.0, np.nan)))
    return True


def _einsum_terms(node, ctx) -> tuple[list[str], str] | None:
    """The labels of each operand and of the output of an explicit two-operand equation with one
    label per axis and none repeated in a term; None for any other form (ellipsis, implicit output,
    diagonals)."""
    eq = (attr(node, "equation", b"") or b"")
    eq = (eq.decode() if isinstance(eq, bytes) else str(eq)).replace(" ", "")
    if "->" not in eq or "." in eq:
        return None
    lhs, out = eq.split("->")
    terms = lhs.split(",")
    if len(terms) != 2 or len(node.input) != 2 or len(set(out)) != len(out):
        return None
    for term, name in zip(terms, node.input):
        if len(set(term)) != len(term) or ctx.rank(name) != len(term):
            return None
    return terms, out


@register("Einsum")
def einsum(node, ctx):
    """Two-operand Einsum (Keras EinsumDense, Einsum attention). With a constant operand: the
    activation's channel label contracted against it is a sink (the weight's axis of that label
    loses the positions), and the first output label only the weight has is a source (Keras'
    `abc,cde->abde`: the heads axis d, each head its head_dim positions). Two activations: a channel
    label kept in the output passes through (the heads of `aecd,abcd->acbe`), the same channels on
    both sides when both carry it; a contracted or summed channel label mixes channels and blocks."""
    tcs = [ctx.channels(i) for i in node.input]
    parsed = _einsum_terms(node, ctx)
    y = node.output[0]
    if parsed is None:
        ctx.block_node_inputs(node, f"{ctx.label}: Einsum equation not followed (ellipsis, implicit "
                                    "output, a repeated label or not two operands)")
        return
    terms, out = parsed
    consts = [ctx.is_const(i) for i in node.input]
    if all(consts):
        return
    if any(consts):
        wi = consts.index(True)
        xi = 1 - wi
        _einsum_weight(node, ctx, tcs[xi], node.input[xi], terms[xi], node.input[wi], terms[wi], out, y)
        return
    labels = set()
    for tc, term in zip(tcs, terms):
        if tc is not None:
            labels.add(term[tc.axis])
    if not labels:
        return
    if len(labels) > 1:
        ctx.block_node_inputs(node, f"{ctx.label}: channels on two labels of an Einsum")
        return
    label = labels.pop()
    if label not in out:
        ctx.block_node_inputs(node, f"{ctx.label}: Einsum of two activations sums over the channel axis")
        return
    carrying = [tc for tc in tcs if tc is not None]
    for tc, term in zip(tcs, terms):
        if tc is None and label in term:
            ctx.block_node_inputs(node, f"{ctx.label}: the other Einsum operand has positions on the channel "
                                        "label that are not channels")
            return
    if len(carrying) == 2:
        ctx.unify(carrying[0].atoms, carrying[1].atoms, f"{ctx.label}: Einsum operands' channels differ")
    n = len(carrying[0].atoms)
    zero = np.zeros(n, dtype=bool)  # a zero slice gives a zero product when the other side is finite
    for tc, other in zip(tcs, reversed(node.input)):
        if tc is not None and not ctx.may_be_nonfinite(other):
            zero |= tc.values == 0
    ctx.set(y, TensorChannels(out.index(label), carrying[0].atoms, np.where(zero, 0.0, np.nan)))


def _einsum_weight(node, ctx, tc, x, x_term, w, w_term, out, y) -> None:
    passed = None
    if tc is not None:
        label = x_term[tc.axis]
        if label in w_term and label not in out:
            ctx.param(w, w_term.index(label), tc.atoms, ROLE_IN, values=tc.values, tensor=x)
        elif label in out and label not in w_term:
            passed = TensorChannels(out.index(label), tc.atoms)
        else:
            ctx.block(tc.atoms, f"{ctx.label}: Einsum with a constant shares or sums the channel label")
            return
    new = [lab for lab in out if lab in w_term and lab not in x_term]
    if passed is not None or not new:
        ctx.set(y, passed)
        return
    axis = w_term.index(new[0])
    wv = ctx.const(w)
    if wv is None or wv.size == 0:
        return
    atoms = ctx.new_atoms(wv.shape[axis])
    ctx.param(w, axis, atoms, ROLE_OUT)
    values = np.where(_zero_columns(wv, axis) & (not ctx.may_be_nonfinite(x)), 0.0, np.nan)
    ctx.set(y, TensorChannels(out.index(new[0]), atoms, values))
