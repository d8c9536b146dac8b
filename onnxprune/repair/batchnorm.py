"""BatchNormalization statistics after pruning, from calibration data.

A BN learned its running mean and variance on the training set; a hundred calibration samples from
a narrow distribution are no substitute (replacing them outright dropped a trained classifier from
100% to 87.5% top-1 agreement with nothing pruned). What pruning changes is the BN's *input*, so
only that change is carried over: on the same calibration data the input statistics are measured
in the original model (m_o, v_o) and in the pruned one (m_p, v_p), and the stored statistics are
corrected by the shift,

    mean' = mean + (m_p - m_o)        var' = var * v_p / v_o,

which leaves a BN whose input did not change exactly as it was. In the probe of the pruned model
each corrected BN already normalizes with its corrected statistics, so every layer's figures
reflect the corrections before it, all in one ONNX Runtime pass.

`recalibrate_bn` without a reference replaces the statistics outright (adaptive BN, as in
EagleEye); benchmarks use it to give random-weight models statistics that match their data."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..graph import ModelGraph, attr
from ..runtime.activations import run_probe

RELATIVE_CHANGE = 1e-4  # a BN whose input statistics moved less than this is left alone


def batchnorms(model: onnx.ModelProto, graph: ModelGraph | None = None) -> list[onnx.NodeProto]:
    """4-D inference-form BatchNormalizations with constant, unshared statistics."""
    graph = graph or ModelGraph(model)
    return [n for n in model.graph.node if n.op_type == "BatchNormalization" and not any(n.output[1:])
            and graph.rank(n.input[0]) == 4 and all(graph.is_constant(i) for i in n.input[1:5])
            and all(graph.resolve(i) == i for i in n.input[3:5])]


def _probe(model: onnx.ModelProto, bns: list[onnx.NodeProto], mode: str,
           shift: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> tuple[onnx.ModelProto, dict]:
    """A copy that also returns each listed BN's per-batch input mean and variance. mode 'measure'
    leaves the BNs as they are; 'batch' normalizes with the batch statistics; 'shift' with the
    stored statistics moved by the batch's shift from the reference, shift[bn] = (m_o, v_o)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    # The probe's own constants are initializers no graph input declares, which IR 3 forbids
    # (ONNX Runtime refuses to load it); the probe is never written, so it is read as IR 4.
    probe.ir_version = max(probe.ir_version, 4)
    opset = next(o.version for o in probe.opset_import if o.domain in ("", "ai.onnx"))
    targets = {n.output[0] for n in bns}
    nodes, stats = [], {}
    init = probe.graph.initializer
    for n in probe.graph.node:
        if n.op_type != "BatchNormalization" or n.output[0] not in targets:
            nodes.append(n)
            continue
        x, gamma, beta, mean, var = n.input[:5]
        p = f"__bnstat_{len(stats)}"
        axes = [0, 2, 3]

        def reduce_mean(inp, out, p=p):
            if opset >= 18:
                name = p + "_axes"
                if name not in {t.name for t in init}:
                    init.append(numpy_helper.from_array(np.array(axes, dtype=np.int64), name))
                return helper.make_node("ReduceMean", [inp, name], [out], keepdims=1)
            return helper.make_node("ReduceMean", [inp], [out], axes=axes, keepdims=1)

        shape = p + "_cshape"
        init.append(numpy_helper.from_array(np.array([1, -1, 1, 1], dtype=np.int64), shape))
        nodes += [reduce_mean(x, p + "_mean"),
                  helper.make_node("Sub", [x, p + "_mean"], [p + "_centered"]),
                  helper.make_node("Mul", [p + "_centered", p + "_centered"], [p + "_sq"]),
                  reduce_mean(p + "_sq", p + "_var")]
        stats[n.output[0]] = (p + "_mean", p + "_var")
        if mode == "measure":
            nodes.append(n)
            continue
        eps = numpy_helper.from_array(np.array(attr(n, "epsilon", 1e-5), dtype=np.float32), p + "_eps")
        init.append(eps)
        if mode == "batch":
            eff_mean, eff_var = p + "_mean", p + "_var"
        else:
            m_o, v_o = shift[n.output[0]]
            graph = ModelGraph(model, infer=False)
            stored_m = graph.const_value(mean).astype(np.float64)
            stored_v = graph.const_value(var).astype(np.float64)
            init.append(numpy_helper.from_array((stored_m - m_o).astype(np.float32).reshape(1, -1, 1, 1), p + "_dm"))
            ratio = np.where(v_o > 0, stored_v / np.maximum(v_o, 1e-30), 1.0)
            init.append(numpy_helper.from_array(ratio.astype(np.float32).reshape(1, -1, 1, 1), p + "_rv"))
            nodes += [helper.make_node("Add", [p + "_mean", p + "_dm"], [p + "_effm"]),
                      helper.make_node("Mul", [p + "_var", p + "_rv"], [p + "_effv"])]
            eff_mean, eff_var = p + "_effm", p + "_effv"
        nodes += [
            helper.make_node("Sub", [x, eff_mean], [p + "_xc"]),
            helper.make_node("Add", [eff_var, eps.name], [p + "_vareps"]),
            helper.make_node("Sqrt", [p + "_vareps"], [p + "_std"]),
            helper.make_node("Div", [p + "_xc", p + "_std"], [p + "_norm"]),
            helper.make_node("Reshape", [gamma, shape], [p + "_g"]),
            helper.make_node("Reshape", [beta, shape], [p + "_b"]),
            helper.make_node("Mul", [p + "_norm", p + "_g"], [p + "_scaled"]),
            helper.make_node("Add", [p + "_scaled", p + "_b"], [n.output[0]]),
        ]
    del probe.graph.node[:]
    probe.graph.node.extend(nodes)
    del probe.graph.value_info[:]
    return probe, stats


def _batch_stats(model, bns, data, device, max_samples, mode, shift=None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per BN output name: input mean and variance per channel, averaged over batches."""
    probe, stats = _probe(model, bns, mode, shift)
    names = [s for pair in stats.values() for s in pair]
    sums = {name: 0.0 for name in names}
    batches = [0]

    def on_batch(outs):
        for name in names:
            sums[name] = sums[name] + outs[name].astype(np.float64).reshape(-1)
        batches[0] += 1

    run_probe(probe, names, data, on_batch, device=device, max_samples=max_samples)
    return {bn: (sums[m] / batches[0], sums[v] / batches[0]) for bn, (m, v) in stats.items()}


def input_statistics(model: onnx.ModelProto, data, device: str = "cpu", max_samples: int = 512
                     ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The reference for recalibrate_bn: each BN's input mean and variance in the unpruned model."""
    bns = batchnorms(model)
    return _batch_stats(model, bns, data, device, max_samples, "measure") if bns else {}


def recalibrate_bn(model: onnx.ModelProto, data, device: str = "cpu", max_samples: int = 512,
                   reference: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> int:
    """Correct (with a reference from input_statistics, sliced to the kept channels) or replace (without)
    the running statistics of the 4-D BatchNormalizations. Returns how many changed."""
    graph = ModelGraph(model)
    bns = batchnorms(model, graph)
    if reference is not None:
        bns = [n for n in bns if n.output[0] in reference
               and len(reference[n.output[0]][0]) == graph.const_shape(n.input[3])[0] > 0]
    if not bns:
        return 0
    if reference is None:
        measured = _batch_stats(model, bns, data, device, max_samples, "batch")
        for n in bns:
            dtype = graph.const_value(n.input[3]).dtype
            graph.replace_const(n.input[3], measured[n.output[0]][0].astype(dtype))
            graph.replace_const(n.input[4], measured[n.output[0]][1].astype(dtype))
        return len(bns)
    measured = _batch_stats(model, bns, data, device, max_samples, "shift", reference)
    changed = 0
    for n in bns:
        m_o, v_o = reference[n.output[0]]
        m_p, v_p = measured[n.output[0]]
        scale = np.sqrt(np.maximum(v_o, 1e-12))
        if np.max(np.abs(m_p - m_o) / scale) < RELATIVE_CHANGE and np.max(np.abs(v_p / np.maximum(v_o, 1e-30) - 1)) < RELATIVE_CHANGE:
            continue  # the input did not change: keep what training learned
        mean = graph.const_value(n.input[3])
        var = graph.const_value(n.input[4])
        new_mean = mean.astype(np.float64) + (m_p - m_o)
        new_var = var.astype(np.float64) * np.where(v_o > 0, v_p / np.maximum(v_o, 1e-30), 1.0)
        graph.replace_const(n.input[3], new_mean.astype(mean.dtype))
        graph.replace_const(n.input[4], new_var.astype(var.dtype))
        changed += 1
    return changed


def pruning_reference(analysis, removed: set[int], data, device: str = "cpu", max_samples: int = 512
                      ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Before the rewrite: input statistics of the BNs downstream of a pruned channel, measured in the
    unpruned model and sliced to the channels each keeps. BNs upstream of every pruned channel are
    left out, so they are never touched."""
    from ..analysis.analyzer import node_label

    graph = analysis.graph
    model = graph.model
    touched = {m.node for m in analysis.members if len(analysis.removed_positions(m.atoms, removed))}
    consumers_of: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers_of.setdefault(i, []).append(n)
    frontier = [n for n in model.graph.node if node_label(n) in touched]
    reached: set[int] = set()
    while frontier:
        n = frontier.pop()
        if id(n) in reached:
            continue
        reached.add(id(n))
        for out in n.output:
            frontier.extend(consumers_of.get(out, []))
    bns = [n for n in batchnorms(model, graph) if id(n) in reached]
    if not bns:
        return {}
    stats = _batch_stats(model, bns, data, device, max_samples, "measure")
    scale_members = {(m.param, m.axis): m for m in analysis.members}
    out = {}
    for n in bns:
        m_o, v_o = stats[n.output[0]]
        member = scale_members.get((graph.resolve(n.input[1]), 0))
        if member is not None:
            kept = analysis.kept_positions(member.atoms, removed)
            m_o, v_o = m_o[kept], v_o[kept]
        out[n.output[0]] = (m_o, v_o)
    return out
