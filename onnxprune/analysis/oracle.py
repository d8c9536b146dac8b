"""The exactness oracle: for any chosen channels, the original model with the consumer columns of
those channels zeroed computes what the pruned model computes. Used by the tests on every model."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from ..graph import ModelGraph
from .analyzer import Analysis
from .channels import ROLE_IN


def zeroed_reference(model: onnx.ModelProto, analysis: Analysis, removed: set[int]) -> onnx.ModelProto:
    """A copy of `model` (the unpruned one `analysis` was made from) whose consumers ignore `removed`."""
    ref = onnx.ModelProto()
    ref.CopyFrom(model)
    zero_positions(ModelGraph(ref, infer=False), analysis, removed, lambda role: role == ROLE_IN)
    return ref


def zero_positions(graph: ModelGraph, analysis: Analysis, removed, roles) -> None:
    """Set to zero, in `graph`'s model, the positions of `removed` in every member whose role passes."""
    for m in analysis.members:
        if not roles(m.role):
            continue
        gone = analysis.removed_positions(m.atoms, removed)
        if len(gone) == 0:
            continue
        graph.replace_const(m.param, m.zeroed(graph.const_value(m.param), gone))


def lossy_reference(model: onnx.ModelProto, analysis: Analysis, removed: set[int]) -> onnx.ModelProto:
    """The oracle for lossy-only channels: `zeroed_reference`, with every statistic over the channel
    axis (`Analysis.statistics`: LayerNormalization, ReduceMean/Max/Min over the channels) taken over
    the kept positions only, as the pruned model takes it. A LayerNormalization reads a Gather of
    the kept positions with its scale and bias cut alike, and its output is spread back to every
    position (zero where a channel went: nothing reads those any more); a reduction reads the
    Gather and keeps its single position."""
    ref = zeroed_reference(model, analysis, removed)
    g = ref.graph
    by_output = {n.output[0]: n for n in g.node if n.output}
    stored = {t.name: t for t in g.initializer}
    for user, index, atoms, kind in analysis.mean_scales:  # a written-out mean divides by the kept count
        node = by_output.get(user.output[0])
        n = len(analysis.kept_positions(atoms, removed))
        if node is not None and n:
            value = np.array(1.0 / n if kind == "mul" else float(n), dtype=np.float32)
            node.input[index] = _const(g, stored, value, f"{user.output[0]}_oracle_count")
    for original, atoms in analysis.statistics:
        node = by_output.get(original.output[0])
        tc = analysis.tensors.get(original.input[0])
        kept = analysis.kept_positions(atoms, removed)
        if node is None or tc is None or len(kept) == len(atoms):
            continue
        axis, tag = tc.axis, original.output[0]
        kept_name = _const(g, stored, np.asarray(kept, dtype=np.int64), f"{tag}_oracle_kept")
        nodes = [onnx.helper.make_node("Gather", [node.input[0], kept_name], [f"{tag}_oracle_in"], axis=axis)]
        node.input[0] = f"{tag}_oracle_in"
        after, last = [], node
        gn = analysis.group_norms.get(original.output[0])
        if gn is not None:
            last = by_output[gn[0].output[0]]
            nodes += _group_norm_reference(ref, g, stored, node, by_output, gn, atoms, kept, tag)
            after = _spread(g, stored, last, atoms, kept, axis, tag)
        elif node.op_type == "Conv":  # sliding along the channels (ECA): over the kept ones, spread back
            after = _spread(g, stored, node, atoms, kept, axis, tag)
        elif node.op_type == "LayerNormalization":
            for i in (1, 2):
                if len(node.input) > i and node.input[i]:
                    node.input[i] = _const(g, stored, np.take(_value(ref, stored, node.input[i]), kept, axis=-1),
                                           f"{tag}_oracle_p{i}")
            after = _spread(g, stored, node, atoms, kept, axis, tag)
        at = list(g.node).index(node)
        for k, extra in enumerate(nodes):
            g.node.insert(at + k, extra)
        at = list(g.node).index(last)
        for k, extra in enumerate(after):
            g.node.insert(at + 1 + k, extra)
    return ref


def _value(ref, stored, name) -> np.ndarray:
    if name in stored:
        return numpy_helper.to_array(stored[name])
    return ModelGraph(ref, infer=False).const_value(name)


def _spread(g, stored, node, atoms, kept, axis, tag) -> list:
    """Nodes spreading `node`'s output, computed on the kept positions, back to every position (zero
    where a channel went: nothing reads those any more), under its old name."""
    spread = np.full(len(atoms), len(kept), dtype=np.int64)  # removed positions read the zero column
    spread[kept] = np.arange(len(kept))
    out = node.output[0]
    node.output[0] = f"{tag}_oracle_out"
    first = _const(g, stored, np.array([0], dtype=np.int64), f"{tag}_oracle_0")
    one = _const(g, stored, np.array([1], dtype=np.int64), f"{tag}_oracle_1")
    ax = _const(g, stored, np.array([axis], dtype=np.int64), f"{tag}_oracle_axis")
    zero = _const(g, stored, np.array(0, dtype=np.float32), f"{tag}_oracle_zero")
    return [
        onnx.helper.make_node("Slice", [node.output[0], first, one, ax], [f"{tag}_oracle_col"]),
        onnx.helper.make_node("Mul", [f"{tag}_oracle_col", zero], [f"{tag}_oracle_zeros"]),
        onnx.helper.make_node("Concat", [node.output[0], f"{tag}_oracle_zeros"], [f"{tag}_oracle_padded"], axis=axis),
        onnx.helper.make_node("Gather", [f"{tag}_oracle_padded", _const(g, stored, spread, f"{tag}_oracle_spread")],
                              [out], axis=axis),
    ]


def _group_norm_reference(ref, g, stored, node, by_output, gn, atoms, kept, tag) -> list:
    """GroupNorm over the kept channels (its input already gathered): as many groups as keep
    channels, their scale and bias; torch's form restores the gathered input's shape. Returns the
    nodes to insert before `node`."""
    last, inorm, groups = gn
    kept_groups = np.unique(np.asarray(kept, dtype=np.int64) // (len(atoms) // groups))
    if inorm is None:  # GroupNormalization
        for a in node.attribute:
            if a.name == "num_groups":
                a.i = len(kept_groups)
        per_channel = groups == len(atoms) or ModelGraph(ref, infer=False).opset >= 21
        for i in (1, 2):
            index = kept if per_channel else kept_groups
            node.input[i] = _const(g, stored, np.take(_value(ref, stored, node.input[i]), index, axis=0),
                                   f"{tag}_oracle_p{i}")
        return []
    target = _value(ref, stored, node.input[1]).copy()
    target.reshape(-1)[1] = len(kept_groups)
    node.input[1] = _const(g, stored, target, f"{tag}_oracle_groups")
    norm = by_output[inorm.output[0]]
    for i in (1, 2):
        norm.input[i] = _const(g, stored, np.take(_value(ref, stored, norm.input[i]), kept_groups, axis=0),
                               f"{tag}_oracle_p{i}")
    back = by_output[last.output[0]]
    back.input[1] = f"{tag}_oracle_shape"
    return [onnx.helper.make_node("Shape", [node.input[0]], [f"{tag}_oracle_shape"])]


def _const(g: onnx.GraphProto, stored: dict, value: np.ndarray, name: str) -> str:
    t = numpy_helper.from_array(value, name)
    g.initializer.append(t)
    stored[name] = g.initializer[-1]
    return name
