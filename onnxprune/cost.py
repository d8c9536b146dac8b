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
    return sum(node_flops(n, graph) for n in graph.model.graph.node)


def count_params(model: onnx.ModelProto) -> int:
    total = sum(prod(t.dims) for t in model.graph.initializer)
    for n in model.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                    total += prod(a.t.dims)
    return int(total)
