"""What the passes of one pipeline run share, typed: each pass says which fields it needs and which
it ensures (passes/base.py), and the pass manager checks both."""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from ..analysis import Analysis
from ..config import PruneConfig
from ..graph import ModelGraph
from ..shapes import ResolvedShapes


@dataclass
class PruneState:
    """The model being rewritten and what earlier passes found about it."""

    model: onnx.ModelProto
    config: PruneConfig
    graph: ModelGraph | None = None          # the model indexed at `shapes` (per sample)
    analysis: Analysis | None = None         # channel groups (Analyze)
    removed: set[int] = field(default_factory=set)  # channels the select pass chose
    shapes: ResolvedShapes | None = None
    groups_before: list = field(default_factory=list)  # the analysis' groups, for the report
    prunable_flops_share: float = 0.0        # FLOPs in layers a lossy run could shrink (Analyze)
    ties: dict | None = None                 # constants untied before the analysis (RetieShared merges them back)
    bn_reference: dict | None = None         # BN input statistics of the unpruned model (MeasureBN -> RecalibrateBN)
    latency: dict | None = None              # what SelectLatency predicted and how (the report's `latency`)
    score_hints: list | None = None          # (param, axis, score per position) that override the criterion (RotateStream)
    notes: list[str] = field(default_factory=list)  # lines for the report
