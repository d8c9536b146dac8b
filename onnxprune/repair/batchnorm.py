"""BatchNormalization statistics re-estimated on the pruned model from calibration data (adaptive
BN, as in EagleEye): after pruning, a BN's inputs no longer have the mean and variance it learned.

Statistics are gathered the way training mode would: in a probe copy every BN normalizes with the
statistics of the batch it sees, so each layer's figures already reflect the re-estimated layers
before it, all in one ONNX Runtime pass."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..graph import ModelGraph, attr
from ..runtime.activations import run_probe


def _batch_stat_probe(model: onnx.ModelProto, bns: list[onnx.NodeProto]) -> tuple[onnx.ModelProto, dict]:
    """A copy where each listed BN uses batch statistics; returns it and {bn name: (mean, var) outputs}."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    opset = next(o.version for o in probe.opset_import if o.domain in ("", "ai.onnx"))
    targets = {n.output[0] for n in bns}
    nodes, stats = [], {}
    for n in probe.graph.node:
        if n.op_type != "BatchNormalization" or n.output[0] not in targets:
            nodes.append(n)
            continue
        x, gamma, beta = n.input[0], n.input[1], n.input[2]
        p = f"__adabn_{len(stats)}"
        eps = numpy_helper.from_array(np.array(attr(n, "epsilon", 1e-5), dtype=np.float32), p + "_eps")
        probe.graph.initializer.append(eps)
        axes = [0, 2, 3]

        def reduce_mean(inp, out):
            if opset >= 18:
                name = p + "_axes"
                if name not in {t.name for t in probe.graph.initializer}:
                    probe.graph.initializer.append(numpy_helper.from_array(np.array(axes, dtype=np.int64), name))
                return helper.make_node("ReduceMean", [inp, name], [out], keepdims=1)
            return helper.make_node("ReduceMean", [inp], [out], axes=axes, keepdims=1)

        shape = p + "_cshape"
        probe.graph.initializer.append(numpy_helper.from_array(np.array([1, -1, 1, 1], dtype=np.int64), shape))
        nodes += [
            reduce_mean(x, p + "_mean"),
            helper.make_node("Sub", [x, p + "_mean"], [p + "_centered"]),
            helper.make_node("Mul", [p + "_centered", p + "_centered"], [p + "_sq"]),
            reduce_mean(p + "_sq", p + "_var"),
            helper.make_node("Add", [p + "_var", eps.name], [p + "_vareps"]),
            helper.make_node("Sqrt", [p + "_vareps"], [p + "_std"]),
            helper.make_node("Div", [p + "_centered", p + "_std"], [p + "_norm"]),
            helper.make_node("Reshape", [gamma, shape], [p + "_g"]),
            helper.make_node("Reshape", [beta, shape], [p + "_b"]),
            helper.make_node("Mul", [p + "_norm", p + "_g"], [p + "_scaled"]),
            helper.make_node("Add", [p + "_scaled", p + "_b"], [n.output[0]]),
        ]
        stats[n.output[0]] = (p + "_mean", p + "_var")
    del probe.graph.node[:]
    probe.graph.node.extend(nodes)
    del probe.graph.value_info[:]
    return probe, stats


def recalibrate_bn(model: onnx.ModelProto, data, device: str = "cpu", max_samples: int = 512) -> int:
    """Set running mean/var of every 4-D inference-form BatchNormalization from data. Returns how many."""
    graph = ModelGraph(model)
    bns = [n for n in model.graph.node if n.op_type == "BatchNormalization" and not any(n.output[1:])
           and graph.rank(n.input[0]) == 4 and all(graph.is_constant(i) for i in n.input[1:5])
           and all(graph.resolve(i) == i for i in n.input[3:5])]
    if not bns:
        return 0
    probe, stats = _batch_stat_probe(model, bns)
    names = [s for pair in stats.values() for s in pair]
    sums = {name: 0.0 for name in names}
    batches = [0]

    def on_batch(outs):
        for name in names:
            sums[name] = sums[name] + outs[name].astype(np.float64).reshape(-1)
        batches[0] += 1

    run_probe(probe, names, data, on_batch, device=device, max_samples=max_samples)
    for n in bns:
        mean_name, var_name = stats[n.output[0]]
        dtype = graph.const_value(n.input[3]).dtype
        graph.replace_const(n.input[3], (sums[mean_name] / batches[0]).astype(dtype))
        graph.replace_const(n.input[4], (sums[var_name] / batches[0]).astype(dtype))
    return len(bns)
