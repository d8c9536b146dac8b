"""The pieces of a model that the latency model times: one *segment* per layer.

A layer segment is a Conv/ConvTranspose/Gemm/MatMul with a constant weight, the per-channel ops
that follow it (BatchNormalization, activations, a residual Add, Silu as x*Sigmoid(x)) and the
per-channel ops before it that feed only it (DenseNet's BN-ReLU before each conv): what ONNX
Runtime fuses or runs back to back on the same channels. Other ops that carry prunable channels
(Concat, pools, Resize...) are segments of one op. A segment's time depends on two counts: the
channels kept at its input (`in` side) and at its output (`out` side).

`SegmentBuilder.model` cuts a segment out as a small model whose channel dims are those left by a
removed set, with canonical names and weights without values, so that identical layers (ResNet's
repeated blocks) give identical models and are timed once; `with_weights` fills in random values
(timing does not depend on them) for the models that are timed.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..analysis import Analysis
from ..analysis.analyzer import node_label
from ..cost import node_flops
from ..graph import ModelGraph, attr
from ..io import weightless_copy

SINKS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
UNARY = {"BatchNormalization", "InstanceNormalization", "Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid",
         "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu", "Softplus", "Gelu", "Mish", "Erf", "Identity",
         "Dropout", "Neg", "Abs", "Exp", "Sqrt", "Reciprocal"}
BINARY = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Pow"}
FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE)
# Ops that move no data (ORT runs them as views or not at all): constant cost, never timed alone.
FREE = {"Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Shape", "Cast", "Constant"}


@dataclass
class Segment:
    nodes: tuple[str, ...]              # node labels, in graph order
    kind: str                           # "layer" or the op type of a one-op segment
    in_atoms: np.ndarray | None         # the positions whose kept count is the `in` side
    out_atoms: np.ndarray | None
    in_groups: list[int] = field(default_factory=list)   # prunable groups that change only the in side
    out_groups: list[int] = field(default_factory=list)  # prunable groups that change the out side
    flops: int = 0

    @property
    def timed(self) -> bool:
        return bool(self.in_groups or self.out_groups)

    def label(self) -> str:
        return self.nodes[0] if self.kind == "layer" else f"{self.kind} {self.nodes[0]}"


def find_segments(analysis: Analysis) -> list[Segment]:
    """Every node that carries channels, in one segment each (`timed`: a prunable group on a side, so
    its time can change)."""
    graph = analysis.graph
    order = graph.topological_nodes()
    position = {node_label(n): k for k, n in enumerate(order)}
    owner: dict[str, int] = {}
    members: list[list[onnx.NodeProto]] = []
    sinks: list[onnx.NodeProto] = []

    def claim(node, seg):
        owner[node_label(node)] = seg
        members[seg].append(node)

    for n in order:
        if n.op_type in SINKS and len(n.input) > 1 and graph.is_constant(n.input[1]) and n.output[0] in analysis.tensors:
            seg = len(members)
            members.append([])
            sinks.append(n)
            claim(n, seg)
    for seg, sink in enumerate(sinks):
        cur = sink.output[0]
        while cur not in graph.graph_outputs:
            users = graph.users(cur)
            if len(users) == 1 and _joins(graph, users[0], cur, owner):
                claim(users[0], seg)
                cur = users[0].output[0]
                continue
            silu = _silu(graph, users, cur, owner)
            if silu is None:
                break
            for n in silu:
                claim(n, seg)
            cur = silu[-1].output[0]
    for n in reversed(order):  # per-channel ops that feed one layer only (pre-activation BN-ReLU)
        label = node_label(n)
        if label in owner or n.op_type not in UNARY or len(n.output) != 1 or n.output[0] in graph.graph_outputs:
            continue
        users = graph.users(n.output[0])
        if len(users) == 1 and node_label(users[0]) in owner and len(_dynamic_inputs(graph, n)) == 1:
            claim(n, owner[node_label(users[0])])
    kinds = ["layer"] * len(members)
    for n in order:
        label = node_label(n)
        if label in owner or n.op_type in FREE or not any(o in analysis.tensors for o in n.output):
            continue
        owner[label] = len(members)
        members.append([n])
        kinds.append(n.op_type)
    prunable = {g.id for g in analysis.prunable_groups()}
    out = []
    for seg, nodes in enumerate(members):
        nodes = sorted(nodes, key=lambda n: position[node_label(n)])
        head = sinks[seg] if seg < len(sinks) else nodes[0]
        if kinds[seg] == "layer":
            in_tc, out_tc = analysis.tensors.get(head.input[0]), analysis.tensors.get(head.output[0])
        else:
            out_tc = analysis.tensors.get(head.output[0])
            in_tc = out_tc
        in_atoms = in_tc.atoms if in_tc is not None else None
        out_atoms = out_tc.atoms if out_tc is not None else None
        outs = [g for g in _groups(analysis, out_atoms) if g in prunable]
        ins = [g for g in _groups(analysis, in_atoms) if g in prunable and g not in outs]
        s = Segment(tuple(node_label(n) for n in nodes), kinds[seg], in_atoms, out_atoms, ins, outs,
                    sum(node_flops(n, graph) for n in nodes))
        out.append(s)
    return out


def _groups(analysis: Analysis, atoms) -> list[int]:
    return [] if atoms is None else analysis._groups_of(atoms)


def _dynamic_inputs(graph: ModelGraph, node) -> list[str]:
    return [i for i in node.input if i and not graph.is_constant(i)]


def _joins(graph: ModelGraph, node, cur: str, owner) -> bool:
    """Can `node`, the only reader of `cur`, run in the same segment: a per-channel op that keeps the
    shape of `cur`, whose other inputs are constants or tensors of its output's shape."""
    if node_label(node) in owner or len(node.output) != 1:
        return False
    if node.op_type not in UNARY and node.op_type not in BINARY:
        return False
    shape = graph.shape(cur)
    if shape is None or graph.shape(node.output[0]) != shape:
        return False
    return all(i == cur or graph.is_constant(i) or graph.shape(i) is not None for i in node.input if i)


def _silu(graph: ModelGraph, users, cur: str, owner):
    """x * Sigmoid(x) read from `cur`: the two nodes, else None."""
    if len(users) != 2:
        return None
    sig = next((u for u in users if u.op_type == "Sigmoid"), None)
    mul = next((u for u in users if u.op_type == "Mul"), None)
    if sig is None or mul is None or any(node_label(u) in owner for u in users):
        return None
    if sorted(mul.input) != sorted([cur, sig.output[0]]) or graph.users(sig.output[0]) != [mul]:
        return None
    return [sig, mul]


# -- small models ------------------------------------------------------------------------------

def fixed_shapes(model: onnx.ModelProto, input_shapes: dict[str, tuple[int, ...]]) -> ModelGraph:
    """The model's tensor shapes with every graph input fixed to `input_shapes`."""
    skeleton = weightless_copy(model)
    for value in skeleton.graph.input:
        dims = input_shapes.get(value.name)
        if dims is None or not value.type.HasField("tensor_type"):
            continue
        shape = value.type.tensor_type.shape
        del shape.dim[:]
        for d in dims:
            shape.dim.add().dim_value = int(d)
    del skeleton.graph.value_info[:]
    for o in skeleton.graph.output:
        if o.type.HasField("tensor_type"):
            o.type.tensor_type.ClearField("shape")
    return ModelGraph(skeleton)


class SegmentBuilder:
    """Cuts segments out of an analysed model as small stand-alone models at fixed shapes."""

    def __init__(self, analysis: Analysis, shapes: ModelGraph):
        self.analysis = analysis
        self.graph = analysis.graph
        self.shapes = shapes
        self.nodes = {node_label(n): n for n in self.graph.model.graph.node}
        self.by_param: dict[str, list] = defaultdict(list)
        for m in analysis.members:
            self.by_param[m.param].append(m)

    def removal(self, seg: Segment, in_kept: dict[int, int], out_kept: dict[int, int]) -> set[int]:
        """Channels to remove so that each group keeps the count given, the kept ones spread evenly
        over the group (a group that spans the parts of a Concat keeps some of each part)."""
        removed: set[int] = set()
        for gid, k in list(in_kept.items()) + list(out_kept.items()):
            chans = self.analysis.groups[gid].channels
            keep = {chans[j * len(chans) // k] for j in range(k)} if k > 0 else set()
            removed.update(c for c in chans if c not in keep)
        return removed

    def counts(self, seg: Segment, removed) -> tuple[int, int]:
        kept = self.analysis.kept_positions
        return (0 if seg.in_atoms is None else len(kept(seg.in_atoms, removed)),
                0 if seg.out_atoms is None else len(kept(seg.out_atoms, removed)))

    def model(self, seg: Segment, removed: set[int]) -> onnx.ModelProto:
        graph, analysis = self.graph, self.analysis
        nodes = [self.nodes[label] for label in seg.nodes]
        produced = {o for n in nodes for o in n.output if o}
        names: dict[str, str] = {}
        inputs, inits, new_nodes = [], [], []

        def channel_dims(name: str, dims: list[int]) -> list[int]:
            tc = analysis.tensors.get(name)
            if tc is not None and tc.axis < len(dims):
                dims[tc.axis] = len(analysis.kept_positions(tc.atoms, removed))
            return dims

        for n in nodes:
            for i in n.input:
                if not i or i in names:
                    continue
                if i in produced:
                    continue
                if graph.is_constant(i):
                    src = graph.resolve(i)
                    tensor = graph.const_tensor(src)
                    dims = [int(d) for d in tensor.dims]
                    for m in self.by_param.get(src, []):
                        dims[m.axis] = len(analysis.kept_positions(m.atoms, removed))
                    names[i] = f"p{len(inits)}"
                    if tensor.data_type in FLOAT_TYPES:
                        # No values yet: with_weights() draws them for the models that are timed.
                        inits.append(onnx.TensorProto(name=names[i], data_type=tensor.data_type, dims=dims))
                    elif [int(d) for d in tensor.dims] != dims:
                        raise ValueError(f"constant {i} of integer type changes shape")
                    else:
                        inits.append(numpy_helper.from_array(graph.const_value(src), names[i]))
                else:
                    shape = self.shapes.static_shape(i)
                    if shape is None:
                        raise ValueError(f"no static shape for {i}")
                    dims = channel_dims(i, list(shape))
                    names[i] = f"x{len(inputs)}"
                    inputs.append(helper.make_tensor_value_info(names[i], graph.dtypes.get(i, onnx.TensorProto.FLOAT), dims))
        for n in nodes:
            for o in n.output:
                if o:
                    names[o] = f"t{len(names)}"
        for k, n in enumerate(nodes):
            new = onnx.NodeProto()
            new.CopyFrom(n)
            new.name = f"n{k}"
            new.input[:] = [names.get(i, "") for i in n.input]
            new.output[:] = [names.get(o, "") for o in n.output]
            group = attr(n, "group", 1)
            if n.op_type in ("Conv", "ConvTranspose") and group > 1:
                x = n.input[0]
                cin_old = (self.shapes.shape(x) or graph.shape(x) or (None, None))[1]
                tc = analysis.tensors.get(x)
                if not isinstance(cin_old, int) or tc is None:
                    raise ValueError("grouped conv without a known input channel count")
                cin_new = len(analysis.kept_positions(tc.atoms, removed))
                per = cin_old // group
                for a in new.attribute:
                    if a.name == "group":
                        a.i = cin_new // per
            new_nodes.append(new)
        outs = [o for n in nodes for o in n.output if o and (o in graph.graph_outputs or any(
            node_label(u) not in seg.nodes for u in graph.users(o)))] or [nodes[-1].output[0]]
        outputs = [helper.make_tensor_value_info(names[o], graph.dtypes.get(o, onnx.TensorProto.FLOAT), None) for o in outs]
        g = helper.make_graph(new_nodes, "segment", inputs, outputs, inits)
        m = helper.make_model(g, opset_imports=list(graph.model.opset_import))
        m.ir_version = graph.model.ir_version
        return m


def with_weights(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """A copy of a cut-out segment with random values in its float weights (timing does not depend on
    them; positive values keep BatchNormalization variances valid)."""
    rng = np.random.default_rng(seed)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for t in out.graph.initializer:
        if t.data_type in FLOAT_TYPES and not t.raw_data:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(t.data_type)
            t.CopyFrom(numpy_helper.from_array(rng.uniform(0.5, 1.0, size=tuple(t.dims)).astype(dtype), t.name))
    return out


def structure_key(model: onnx.ModelProto) -> str:
    """A digest of what a model's run time depends on: graph, shapes and dtypes, not weight values."""
    h = hashlib.sha256()
    skeleton = weightless_copy(model)
    for t in skeleton.graph.initializer:
        if t.data_type in FLOAT_TYPES:
            t.ClearField("raw_data")
            t.ClearField("float_data")
            t.ClearField("double_data")
            t.ClearField("int32_data")
    h.update(skeleton.SerializeToString(deterministic=True))
    return h.hexdigest()
