"""The exactness oracle: for any chosen channels, the original model with the consumer columns of
those channels zeroed computes what the pruned model computes. Used by the tests on every model."""

from __future__ import annotations

import onnx

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
