"""Graph normalizations before analysis, and cleanup after the rewrite. Each keeps the model's
outputs as they are (BN folding up to float rounding)."""

from __future__ import annotations

import numpy as np
import onnx

from ..graph import ModelGraph, attr
from ..io import sort_graph
from .base import Pass, PassResult


def _remove_nodes(model: onnx.ModelProto, dead: set[int]) -> None:
    _remove_where(model.graph.node, lambda n: id(n) in dead)


def _remove_where(field, drop) -> int:
    """Delete items of a repeated protobuf field in place (no copy of the ones that stay)."""
    gone = [i for i, item in enumerate(field) if drop(item)]
    for i in reversed(gone):
        del field[i]
    return len(gone)


class FoldBatchNorm(Pass):
    """Conv (or ConvTranspose) -> BatchNormalization becomes one conv with scaled filters and a bias."""

    name = "fold-bn"
    needs = ("graph",)
    ensures = ("graph",)

    def run(self, state) -> PassResult:
        g: ModelGraph = state.graph
        dead, folded = set(), 0
        for bn in list(state.model.graph.node):
            if bn.op_type != "BatchNormalization" or any(o for o in bn.output[1:]):
                continue
            conv = g.producer.get(bn.input[0])
            if conv is None or conv.op_type not in ("Conv", "ConvTranspose") or conv.output[0] in g.graph_outputs:
                continue
            if len(g.users(conv.output[0])) != 1 or not all(g.is_constant(i) for i in list(conv.input[1:]) + list(bn.input[1:5]) if i):
                continue
            w_name = conv.input[1]
            if g.is_dequantized(w_name):
                continue  # QDQ weights: scaled filters would need new quantization scales
            b_name = conv.input[2] if len(conv.input) > 2 and conv.input[2] else None
            if any(g.resolve(n) != n or len(g.users(n)) != 1 for n in (w_name, b_name) if n):
                continue  # shared weights: folding would change the other user
            gamma, beta, mean, var = (g.const_value(i).astype(np.float64) for i in bn.input[1:5])
            if any(p.ndim != 1 for p in (gamma, beta, mean, var)):
                continue  # opset < 9 with spatial=0: one value per position, not per channel
            scale = gamma / np.sqrt(var + attr(bn, "epsilon", 1e-5))
            w = g.const_value(w_name)
            scaled, out_channels = _scale_output_channels(conv, w, scale)
            if out_channels != len(scale):
                continue
            b = g.const_value(b_name).astype(np.float64) if b_name else np.zeros(out_channels)
            g.replace_const(w_name, scaled.astype(w.dtype))
            new_b = ((b - mean) * scale + beta).astype(w.dtype)
            if b_name:
                g.replace_const(b_name, new_b)
            else:
                conv.input.append(g.add_initializer(new_b, f"{conv.name or w_name}.bias"))
            conv.output[0] = bn.output[0]
            dead.add(id(bn))
            folded += 1
        if not dead:
            return PassResult(False)
        _remove_nodes(state.model, dead)
        remove_unused(state.model)
        state.graph = ModelGraph(state.model, shapes=state.graph.input_shapes if state.graph else None)
        return PassResult(True, {"folded": folded})


def _scale_output_channels(conv: onnx.NodeProto, w: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, int]:
    """Filters times a per-output-channel scale, and the output channel count. Conv weights are
    [C_out, C_in/group, k...]; ConvTranspose weights are [C_in, C_out/group, k...], output channel
    g * C_out/group + j being column j of group g's rows."""
    if conv.op_type == "Conv":
        if len(scale) != w.shape[0]:
            return w, w.shape[0]
        return w * scale.reshape(-1, *[1] * (w.ndim - 1)), w.shape[0]
    groups = attr(conv, "group", 1)
    per_group = w.shape[1]
    if w.shape[0] % groups or len(scale) != groups * per_group:
        return w, groups * per_group
    blocks = w.reshape(groups, w.shape[0] // groups, per_group, *w.shape[2:])
    factors = scale.reshape(groups, 1, per_group, *[1] * (w.ndim - 2))
    return (blocks * factors).reshape(w.shape), groups * per_group


def remove_unused(model: onnx.ModelProto) -> int:
    """Drop nodes whose outputs nobody reads and initializers nobody uses. Returns how many went."""
    g = model.graph
    outputs = {o.name for o in g.output}
    removed = 0
    while True:
        index = ModelGraph(model, infer=False)
        dead = {id(n) for n in g.node if not any(o in outputs or index.users(o) for o in n.output if o)}
        if not dead:
            break
        removed += len(dead)
        _remove_nodes(model, dead)
    index = ModelGraph(model, infer=False)
    inputs = {i.name for i in g.input}
    removed += _remove_where(g.initializer, lambda t: not (index.users(t.name) or t.name in outputs or t.name in inputs))
    live = {o for n in g.node for o in n.output} | {t.name for t in g.initializer}
    _remove_where(g.value_info, lambda v: v.name not in live)
    return removed


class Cleanup(Pass):
    """After the rewrite: nodes and initializers nothing reads any more. A model nothing was done
    to is written back as it came."""

    name = "cleanup"

    def run(self, state) -> PassResult:
        if not state.removed and not state.config.fold_bn:
            return PassResult(False)
        n = remove_unused(state.model)
        moved = sort_nodes(state.model)
        return PassResult(n > 0 or moved > 0, {"removed": n, "reordered": moved})


def sort_nodes(model: onnx.ModelProto) -> int:
    """Put the nodes back in topological order where a rewrite appended a producer after its
    consumers (an IR 3 model's folded constants become Constant nodes added at the end): ONNX's
    checker and shape inference read the nodes in order. Returns how many nodes moved."""
    return sort_graph(model)
