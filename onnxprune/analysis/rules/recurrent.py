"""LSTM, GRU and RNN: sinks of their input features, sources of hidden units.

Hidden unit j lives in every gate block of W, R and B (rows j, H+j, 2H+j...), in column j of R (the
recurrence, role `in`: a removed unit no longer feeds the others), in the initial states and in
every output. Both directions of a bidirectional layer lose unit j together (one position of the
outputs' hidden axis). Initial states that exporters build at run time as zeros
(`ConstantOfShape(Concat(..., batch, H))`, sliced per layer) follow the hidden count: the constant
piece holding H is rewritten. Other zeros built at run time (paddle2onnx: a zero Constant
[1, dirs * layers, H] tiled by the batch, transposed and sliced per layer) are dropped from a layer
that loses units: a missing initial state is zero (the ONNX default), so the result is the same.
"""

from __future__ import annotations

import numpy as np
import onnx

from ...graph import attr, set_attr
from ..channels import ROLE_CHANNEL, ROLE_IN, ROLE_OUT, TensorChannels
from . import register

_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def _opt(node, i):
    return node.input[i] if len(node.input) > i and node.input[i] else None


def _zeros_source(ctx, name, axis):
    """(fill tensor, (Concat node, input index, entry) holding its size on `axis`) when `name` is a
    uniform fill made at run time: ConstantOfShape(shape) or Expand(scalar, shape) (torch.onnx,
    tf2onnx), reached through Cast, Slices and Concats of other axes, and Unsqueeze; else None."""
    graph = ctx.graph
    for _ in range(16):
        node = graph.producer.get(name)
        if node is None:
            return None
        op = node.op_type
        if op in ("Identity", "Cast"):
            name = node.input[0]
        elif op == "Slice":
            axes = ctx.const(node.input[3]) if len(node.input) > 3 and node.input[3] else None
            rank = ctx.rank(node.input[0])
            if axes is None or rank is None or axis in [int(a) % rank for a in axes.reshape(-1)]:
                return None
            name = node.input[0]
        elif op == "Unsqueeze":
            rank = ctx.rank(node.output[0])
            axes = attr(node, "axes")
            if axes is None and len(node.input) > 1:
                value = ctx.const(node.input[1])
                axes = None if value is None else value.reshape(-1).tolist()
            if axes is None or rank is None:
                return None
            axes = [int(a) % rank for a in axes]
            if axis in axes:
                return None
            axis -= sum(a < axis for a in axes)
            name = node.input[0]
        elif op == "Concat":
            rank = ctx.rank(node.output[0])
            if rank is None or attr(node, "axis", 0) % rank == axis:
                return None
            found = [_zeros_source(ctx, i, axis) for i in node.input]
            if any(f is None for f in found):
                return None
            keys = {(f[0], id(f[1][0]), f[1][1], f[1][2]) for f in found}
            return found[0] if len(keys) == 1 else None
        elif op == "ConstantOfShape" or (op == "Expand" and _scalar_const(ctx, node.input[0])):
            shape_input = node.input[0] if op == "ConstantOfShape" else node.input[1]
            source = graph.partial_source(shape_input, axis)
            return (node.output[0], source) if source is not None else None
        else:
            return None
    return None


# Ops whose output is all zeros where their (first) input is: they move, repeat or cast values.
_KEEPS_ZEROS = {"Identity", "Cast", "Slice", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten",
                "Tile", "Expand", "Gather"}


def _zero_fill(ctx, name, depth: int = 0) -> bool:
    """Whether `name` is all zeros for every input: a zero constant or ConstantOfShape, moved,
    repeated or cast (Tile, Transpose, Slice, Reshape...), or a Concat of such."""
    value = ctx.const(name)
    if value is not None:
        return value.dtype.kind in "fiub" and not np.any(value)
    node = ctx.graph.producer.get(name)
    if node is None or depth > 32:
        return False
    if node.op_type == "ConstantOfShape":
        t = attr(node, "value")
        return t is None or not np.any(onnx.numpy_helper.to_array(t))
    if node.op_type == "Concat":
        return all(_zero_fill(ctx, i, depth + 1) for i in node.input if i)
    if node.op_type in _KEEPS_ZEROS:
        return _zero_fill(ctx, node.input[0], depth + 1)
    return False


def _scalar_const(ctx, name) -> bool:
    value = ctx.const(name)
    return value is not None and value.size == 1


def _initial_state(node, ctx, index, hidden, state_axis):
    """An initial state (input `index`): a constant (sliced), channels coupled with the hidden units,
    zeros made at run time whose size constant is rewritten, or other zeros made at run time, dropped
    where units go. Anything else blocks the hidden units."""
    name = node.input[index]
    tc = ctx.channels(name)
    if tc is not None:
        if tc.axis != state_axis:
            ctx.block(np.concatenate([tc.atoms, hidden]), f"{ctx.label}: initial state carries channels on axis {tc.axis}")
            return
        ctx.unify(tc.atoms, hidden)
        return
    if ctx.is_const(name):
        ctx.param(name, state_axis, hidden, ROLE_CHANNEL)
        return
    found = _zeros_source(ctx, name, state_axis)
    if found is None and _zero_fill(ctx, name):
        def drop_state(rw, node=node, index=index, hidden=hidden):
            if len(rw.kept(hidden)) < len(hidden):
                node.input[index] = ""  # the ONNX default: zeros of the kept size

        ctx.fixup(drop_state)
        return
    if found is None:
        ctx.block(hidden, f"{ctx.label}: initial state '{name}' is computed at run time")
        return
    fill, (concat, idx, entry) = found
    shared = ctx.zero_states.get(fill)
    if shared is not None:
        ctx.unify(shared, hidden)  # one size constant for both: they keep the same units
        return
    ctx.zero_states[fill] = hidden

    def resize_state(rw, concat=concat, idx=idx, entry=entry, hidden=hidden):
        new = rw.graph.const_value(concat.input[idx]).copy()
        new.reshape(-1)[entry] = len(rw.kept(hidden))
        rw.set_const_input(concat, idx, new)

    ctx.fixup(resize_state)


@register("LSTM", "GRU", "RNN")
def recurrent(node, ctx):
    gates = _GATES[node.op_type]
    x, w, r = node.input[0], node.input[1], node.input[2]
    b, h0 = _opt(node, 3), _opt(node, 5)
    c0 = _opt(node, 6) if node.op_type == "LSTM" else None
    p = _opt(node, 7) if node.op_type == "LSTM" else None
    tc = ctx.channels(x)
    for name in (w, r, b, p, _opt(node, 4)):
        if name and ctx.channels(name) is not None:
            ctx.block_node_inputs(node, f"{ctx.label}: channels reach a {node.op_type} weight")
            return
    if not all(ctx.is_const(n) for n in (w, r, b, p) if n) or (node.op_type == "GRU" and attr(node, "linear_before_reset", 0) not in (0, 1)):
        if tc is not None:
            ctx.block(tc.atoms, f"{ctx.label}: {node.op_type} weights are not constants")
        return
    if tc is not None:
        if tc.axis != 2:
            ctx.block(tc.atoms, f"{ctx.label}: channels on axis {tc.axis}, {node.op_type} reads features on axis 2")
        else:
            ctx.param(w, 2, tc.atoms, ROLE_IN, values=tc.values, tensor=x)
    size = attr(node, "hidden_size")
    r_shape = ctx.graph.const_shape(r)
    if size is None or r_shape is None or len(r_shape) != 3 or r_shape[2] != size:
        return
    hidden = ctx.new_atoms(size)
    values = _zero_units(node, ctx, size, (h0, c0))
    ctx.param(w, 1, np.tile(hidden, gates), ROLE_OUT)
    ctx.param(r, 1, np.tile(hidden, gates), ROLE_OUT)
    ctx.param(r, 2, hidden, ROLE_IN, values=values)  # the recurrence reads the units' own outputs
    if b:
        ctx.param(b, 1, np.tile(hidden, 2 * gates), ROLE_OUT)
    if p:
        ctx.param(p, 1, np.tile(hidden, 3), ROLE_CHANNEL)
    state_axis = 2  # [directions, batch, H], or [batch, directions, H] with layout 1
    for index, state in ((5, h0), (6, c0)):
        if state:
            _initial_state(node, ctx, index, hidden, state_axis)

    def resize_hidden(rw, node=node, hidden=hidden):
        set_attr(node, "hidden_size", int(len(rw.kept(hidden))))

    ctx.fixup(resize_hidden)
    outs = list(node.output) + [""] * 3
    if outs[0]:
        ctx.set(outs[0], TensorChannels(3, hidden, values))  # [seq, dirs, batch, H] / [batch, seq, dirs, H]
    for o in outs[1:3]:
        if o:
            ctx.set(o, TensorChannels(2, hidden, values))


# The gate whose activation writes the state: LSTM's cell candidate (gates i, o, f, c), GRU's new
# gate (z, r, h), the RNN's only one. Where its weights, recurrence and biases are zero for a unit
# and its initial states are zero, the unit's output is exactly zero at every step (tanh(0) = 0;
# LSTM: c stays 0, h = o * tanh(0); GRU: h = z * h_prev), whatever the other gates do: what
# mask-pruned training leaves, and what exact mode may remove.
_STATE_GATE = {"LSTM": 3, "GRU": 2, "RNN": 0}


def _zero_units(node, ctx, size: int, states) -> np.ndarray | None:
    """Per hidden unit: 0.0 where its output is zero for every input, NaN where not known."""
    if attr(node, "activations") is not None:
        return None  # other activations need not map 0 to 0
    gate = _STATE_GATE[node.op_type]
    w, r = ctx.const(node.input[1]), ctx.const(node.input[2])
    b = ctx.const(node.input[3]) if _opt(node, 3) else None
    if w is None or r is None or w.shape[1] < (gate + 1) * size or (_opt(node, 3) and b is None):
        return None
    rows = slice(gate * size, (gate + 1) * size)
    zero = np.all(w[:, rows, :] == 0, axis=(0, 2)) & np.all(r[:, rows, :] == 0, axis=(0, 2))
    if b is not None:
        gates = _GATES[node.op_type]
        zero &= np.all(b[:, rows] == 0, axis=0) & np.all(b[:, gates * size + gate * size:gates * size + (gate + 1) * size] == 0,
                                                          axis=0)
    for state in states:
        if state:
            zero &= _zero_state(ctx, state, size)
    return np.where(zero, 0.0, np.nan)


def _zero_state(ctx, name: str, size: int) -> np.ndarray:
    """Per unit: whether an initial state [dirs, batch, H] is zero there (a constant, or zeros made
    at run time by ConstantOfShape / Expand of a zero scalar)."""
    value = ctx.const(name)
    if value is not None and value.ndim == 3 and value.shape[2] == size:
        return np.all(value == 0, axis=(0, 1))
    found = _zeros_source(ctx, name, 2)
    return np.full(size, _zero_fill(ctx, found[0] if found is not None else name))
