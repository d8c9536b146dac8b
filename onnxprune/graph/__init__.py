"""A light index over an onnx.ModelProto: who produces and consumes each tensor, which tensors
are constants (initializers or Constant nodes), static shapes from ONNX shape inference.

Passes edit the ModelProto in place through this view; only tensors that change are copied, so a
100 MB model is never duplicated in memory.

The package is ModelGraph split by job, one mixin per module: `index` (producers, consumers,
aliases, bodies, topological order, and the proto helpers attr/set_attr/proto_dims/scalar),
`fold` (constant reads, constant folding, shape values), `qdq` (QDQ weights), `infer` (shape
inference), `edit` (edits to constants); `model` composes them into ModelGraph.
"""

from __future__ import annotations

from .fold import MAX_FOLDED, SHAPE_OPS
from .index import Shape, attr, proto_dims, scalar, set_attr
from .infer import STATIC_ROUNDS
from .model import ModelGraph
from .qdq import DequantizedWeight

__all__ = ["MAX_FOLDED", "SHAPE_OPS", "STATIC_ROUNDS", "DequantizedWeight", "ModelGraph", "Shape", "attr",
           "proto_dims", "scalar", "set_attr"]
