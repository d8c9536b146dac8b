"""Parameter and FLOP counts at the graph's resolved input shapes (see shapes.py).

FLOPs are 2 per multiply-add of the ops that do nearly all the arithmetic: Conv, ConvTranspose,
Gemm, MatMul (with a weight or between two activations, as attention does), Einsum of two operands,
and the recurrent LSTM / GRU / RNN. Elementwise ops, pools and normalizations are not counted.
A dim that stays unknown after shape inference (data-dependent, e.g. after NonZero) counts as 1."""

from __future__ import annotations

from math import prod

import onnx

from .graph import ModelGraph, attr

_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def _dims(shape) -> list[int]:
    return [d if isinstance(d, int) and d > 0 else 1 for d in shape]


def node_flops(node: onnx.NodeProto, graph: ModelGraph) -> int:
    op = node.op_type
    if node.domain not in ("", "ai.onnx") or len(node.input) < 2:
        return 0
    if op in _GATES:
        return _recurrent_flops(node, graph)
    if op == "Einsum":
        return _einsum_flops(node, graph)
    if op not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
        return 0
    w_shape = graph.shape(node.input[1])
    if w_shape is None:
        return 0
    if op == "Conv":
        out = graph.shape(node.output[0])
        return 0 if out is None else 2 * prod(_dims(out)) * prod(_dims(w_shape)[1:])
    if op == "ConvTranspose":
        x = graph.shape(node.input[0])
        return 0 if x is None else 2 * prod(_dims(x)) * prod(_dims(w_shape)[1:])
    out = graph.shape(node.output[0])
    a = graph.shape(node.input[0])
    if out is None or a is None:
        return 0
    if op == "Gemm":
        k = _dims(a)[0 if attr(node, "transA", 0) else -1]
        return 2 * prod(_dims(out)) * k
    k = _dims(a)[-1] if a else 1
    return 2 * prod(_dims(out)) * k


def _recurrent_flops(node: onnx.NodeProto, graph: ModelGraph) -> int:
    """Per step and direction, the gates multiply [input, hidden] by their weights:
    seq * batch * directions * (gates * hidden) * (input + hidden) multiply-adds."""
    x, w, r = (graph.shape(node.input[i]) for i in range(3))
    if x is None or w is None or r is None or len(x) != 3 or len(w) != 3 or len(r) != 3:
        return 0
    seq, batch, _ = _dims(x) if not attr(node, "layout", 0) else [_dims(x)[i] for i in (1, 0, 2)]
    dirs, gated, inputs = _dims(w)
    hidden = _dims(r)[2]
    return 2 * seq * batch * dirs * gated * (inputs + hidden)


def _einsum_flops(node: onnx.NodeProto, graph: ModelGraph) -> int:
    """Two-operand Einsum: one multiply-add per point of the joint index space."""
    eq = attr(node, "equation")
    if isinstance(eq, bytes):
        eq = eq.decode()
    if not eq or "->" not in eq or len(node.input) != 2 or "." in eq:
        return 0
    lhs = eq.replace(" ", "").split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for letters, name in zip(lhs, node.input):
        shape = graph.shape(name)
        if shape is None or len(shape) != len(letters):
            return 0
        for ch, d in zip(letters, _dims(shape)):
            sizes[ch] = max(sizes.get(ch, 1), d)
    return 2 * prod(sizes.values())


def count_flops(graph: ModelGraph) -> int:
    """Every Conv/Gemm/MatMul in the file, those in If/Loop/Scan bodies included (each branch of an
    If, and a Loop body once)."""
    return sum(node_flops(n, graph) for n in graph.all_nodes)


def count_params(model: onnx.ModelProto) -> int:
    """Stored weights (initializers and Constant nodes), those of If/Loop/Scan bodies included."""
    return int(_graph_params(model.graph))


def _graph_params(g: onnx.GraphProto) -> int:
    total = sum(prod(t.dims) for t in g.initializer)
    for n in g.node:
        for a in n.attribute:
            if n.op_type == "Constant" and a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                total += prod(a.t.dims)
            elif a.type == onnx.AttributeProto.GRAPH:
                total += _graph_params(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                total += sum(_graph_params(b) for b in a.graphs)
    return total
