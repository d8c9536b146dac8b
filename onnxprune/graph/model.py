"""ModelGraph: the index over one model, built from one mixin per job (index, values, QDQ weights,
shape inference, edits). Its constructor fills the tables all of them read.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx

from ..shapes import ResolvedShapes
from .edit import Edits
from .fold import Folding
from .index import GraphIndex, Shape, _walk_nodes
from .infer import ShapeInference
from .qdq import DequantizedWeight, QDQWeights


class ModelGraph(GraphIndex, Folding, QDQWeights, ShapeInference, Edits):
    """Index of the main graph of a model. Rebuild it after structural edits."""

    def __init__(self, model: onnx.ModelProto, infer: bool = True, shapes: ResolvedShapes | None = None):
        self.model = model
        self.input_shapes = shapes  # concrete input dims for shape inference; the model keeps its own
        g = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        self.initializers: dict[str, onnx.TensorProto] = {t.name: t for t in g.initializer}
        self.constant_nodes: dict[str, onnx.NodeProto] = {}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        self.implicit_inputs: dict[int, set[str]] = {}
        # If/Loop/Scan bodies whose names are their own (ONNX keeps names unique across scopes;
        # a body that reuses a name stays opaque): id(node) -> its bodies. Their nodes, constants
        # and shapes are indexed with the main graph's, so a branch's own weights form groups.
        self.bodies: dict[int, list[onnx.GraphProto]] = {}
        self.body_outputs: set[str] = set()
        self.body_names: set[str] = set()
        self._index(g.node, set(self.initializers) | {i.name for i in g.input})
        self.graph_inputs = [i.name for i in g.input if i.name not in self.initializers]
        self.all_nodes = [n for n in _walk_nodes(g.node, self.bodies)]
        # Identity(constant) is the constant under another name (PyTorch writes one copy of equal
        # tensors and an Identity for the others): such names resolve to the stored tensor.
        self.alias: dict[str, str] = {}
        # Initializers also listed as graph inputs (IR 3, keep_initializers_as_inputs): what a runtime
        # uses when they are not fed, so constants here; the written model keeps them as inputs
        # (declared at their new shapes) unless asked to drop them (passes/weight_inputs.py).
        self.weight_inputs = [i.name for i in g.input if i.name in self.initializers]
        self.graph_outputs = {o.name for o in g.output}
        for n in self.all_nodes:
            if n.op_type == "Identity" and n.domain in ("", "ai.onnx") and n.output[0] not in self.graph_outputs:
                src = self.resolve(n.input[0])
                if self._stored_constant(src):
                    self.alias[n.output[0]] = src
        # QDQ weights: DequantizeLinear outputs that are constants in all but storage.
        self.dequantized: dict[str, DequantizedWeight] = {}
        self.dequantize_refused: dict[str, str] = {}  # DequantizeLinear output -> why it is not one
        for n in self.all_nodes:
            if n.op_type == "DequantizeLinear" and n.domain in ("", "ai.onnx") and n.output and n.output[0]:
                weight = self._dequantized_weight(n)
                if isinstance(weight, DequantizedWeight):
                    self.dequantized[n.output[0]] = weight
                elif weight:
                    self.dequantize_refused[n.output[0]] = weight
        # Identity of a QDQ weight (quantize_static keeps PyTorch's tie of equal BN biases as
        # Identity(DequantizeLinear(...))) is that weight under another name.
        for n in self.all_nodes:
            if n.op_type == "Identity" and n.domain in ("", "ai.onnx") and n.output[0] not in self.graph_outputs:
                if self.resolve(n.input[0]) in self.dequantized:
                    self.alias[n.output[0]] = self.resolve(n.input[0])
        self.shapes: dict[str, Shape] = {}
        self.dtypes: dict[str, int] = {}
        self._static: dict[str, np.ndarray | None] = {}
        self._folded: dict[str, np.ndarray | None] = {}
        self._declared: ModelGraph | None = None
        if infer:
            self.infer_shapes()
