"""Find the channel groups of the model as it stands (after any normalization)."""

from __future__ import annotations

from ..analysis import Analysis, analyze
from .base import Pass, PassResult
from .weight_inputs import weight_inputs_note


class Analyze(Pass):
    name = "analyze"
    needs = ("graph",)
    ensures = ("analysis",)

    def run(self, state) -> PassResult:
        state.analysis = analyze(state.graph)
        state.groups_before = state.analysis.groups
        state.prunable_flops_share = prunable_flops_share(state.analysis)
        if state.graph.weight_inputs:
            state.notes.append(weight_inputs_note(state.graph.weight_inputs, state.model.ir_version,
                                                  state.config.weight_inputs))
        fused = fused_ops_note(state.model)
        if fused:
            state.notes.append(fused)
        return PassResult(False, {"groups": len(state.analysis.groups),
                                  "prunable": len(state.analysis.prunable_groups())})


def fused_ops_note(model) -> str | None:
    """A model holding ONNX Runtime's fused ops (com.microsoft: what onnxruntime.transformers'
    optimizer writes, Attention, SkipLayerNormalization...): no channel rule follows them and ONNX's
    shape inference stops at them, so the layers around them stay as they are; say where to prune."""
    ops = sorted({n.op_type for n in model.graph.node if n.domain == "com.microsoft"})
    if not ops:
        return None
    shown = ", ".join(ops[:5]) + (", ..." if len(ops) > 5 else "")
    return (f"the model holds ONNX Runtime fused ops (com.microsoft: {shown}), whose channels are not followed: "
            "prune the model as exported, then let ONNX Runtime or its optimizer fuse it")


def prunable_flops_share(analysis: Analysis) -> float:
    """Share of the model's FLOPs in layers that a lossy run could shrink."""
    from ..analysis.analyzer import node_label
    from ..cost import node_flops

    touched = {m.node for g in analysis.prunable_groups() for m in g.members}
    total = part = 0
    for n in analysis.graph.all_nodes:
        f = node_flops(n, analysis.graph)
        total += f
        if node_label(n) in touched:
            part += f
    return part / total if total else 0.0
