"""Parameter and FLOP counts (per sample: symbolic dims count as 1; one multiply-add = 2 FLOPs)."""

from __future__ import annotations

from math import prod

import onnx

from .graph import ModelGraph


def _dims(shape) -> list[int]:
    return [d if isinstance(d, int) and d > 0 else 1 for d in shape]


def node_flops(node: onnx.NodeProto, graph: ModelGraph) -> int:
    op = node.op_type
    if op not in ("Conv", "ConvTranspose", "Gemm", "MatMul") or len(node.input) < 2:
        return 0
    w_shape = graph.shape(node.input[1])
    if w_shape is None:
        return 0
    if op == "Conv":
        out = graph.shape(node.output[0])
        return 0 if out is None else 2 * prod(_dims(out)[1:]) * prod(_dims(w_shape)[1:])
    if op == "ConvTranspose":
        x = graph.shape(node.input[0])
        return 0 if x is None else 2 * prod(_dims(x)[1:]) * prod(_dims(w_shape)[1:])
    out = graph.shape(node.output[0])
    a = graph.shape(node.input[0])
    if out is None or a is None:
        return 0
    if op == "Gemm":
        trans_a = next((x.i for x in node.attribute if x.name == "transA"), 0)
        k = _dims(a)[0 if trans_a else -1]
        return 2 * prod(_dims(out)[1:]) * k
    k = _dims(a)[-1]
    lead = _dims(out)[1:] if len(out) > 2 else _dims(out)[-1:]
    return 2 * prod(lead) * k


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
