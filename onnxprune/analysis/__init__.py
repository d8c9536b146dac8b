"""Channel-group analysis: which channels of a model can be removed together, and what blocks the rest."""

from __future__ import annotations

import onnx

from ..graph import ModelGraph
from .analyzer import Analysis, Analyzer
from .channels import FIXED, ROLE_CHANNEL, ROLE_IN, ROLE_OUT, ChannelGroup, Member, TensorChannels

__all__ = ["analyze", "Analysis", "ChannelGroup", "Member", "TensorChannels", "FIXED", "ROLE_IN", "ROLE_OUT",
           "ROLE_CHANNEL"]


def analyze(model: onnx.ModelProto | ModelGraph) -> Analysis:
    """Find the channel groups of a model (the model is not changed)."""
    graph = model if isinstance(model, ModelGraph) else ModelGraph(model)
    return Analyzer(graph).run()
