"""The rewrite: remove chosen channels from every member parameter, fix shape-carrying constants
and attributes, and update the recorded shapes. No Gather/Slice op is ever added to the graph."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx

from ..analysis import Analysis
from ..graph import ModelGraph, proto_dims
from .base import Pass, PassResult


class Rewriter:
    """What fixups see: kept positions of any atom list, and safe edits of constants."""

    def __init__(self, analysis: Analysis, removed: set[int]):
        self.analysis = analysis
        self.graph: ModelGraph = analysis.graph
        self.removed = removed

    def kept(self, atoms: np.ndarray) -> np.ndarray:
        return self.analysis.kept_positions(atoms, self.removed)

    def set_const_input(self, node: onnx.NodeProto, index: int, value: np.ndarray) -> None:
        """Give input `index` of `node` a new constant value; a constant shared with other nodes is
        left alone and the node gets its own copy."""
        name = node.input[index]
        if not self.graph.is_constant(name):  # a shape computed at run time: freeze it
            old = self.graph.value(name)
            dtype = old.dtype if old is not None else np.int64  # a Reshape target with dynamic dims
            node.input[index] = self.graph.add_initializer(np.asarray(value).astype(dtype), f"{name}_frozen")
            return
        old = self.graph.const_value(name)
        value = np.asarray(value).astype(old.dtype)
        if old.shape == value.shape and np.array_equal(old, value):
            return
        users = [n for n in self.graph.users(name) for i in n.input if i == name]
        if len(users) == 1 and name not in self.graph.graph_outputs:
            self.graph.replace_const(name, value)
        else:
            node.input[index] = self.graph.add_initializer(value, f"{name}_pruned")


def drop_channels(analysis: Analysis, removed: set[int]) -> int:
    """Rewrite the analysed model in place without the `removed` channels. Returns parameters removed."""
    graph = analysis.graph
    rw = Rewriter(analysis, removed)
    cuts: dict[str, dict[int, object]] = defaultdict(dict)
    for m in analysis.members:
        kept = rw.kept(m.atoms)
        if len(kept) != len(m.atoms):
            # A grouped conv's input axis keeps different positions in each row block.
            cuts[m.param][m.axis] = kept if m.groups == 1 else (lambda v, m=m, kept=kept: m.take(v, kept))
    params_removed = 0
    for name in sorted(cuts):
        params_removed += graph.take_const(name, cuts[name])
    for fix in analysis.fixups:
        fix.apply(rw)
    _update_value_info(analysis, rw)
    return params_removed


def _update_value_info(analysis: Analysis, rw: Rewriter) -> None:
    graph = analysis.graph
    g = graph.model.graph
    # Weights also declared as graph inputs (old exports) are declared at their new shapes.
    infos = list(g.value_info) + [i for i in g.input if i.name in graph.initializers]
    outputs = list(g.output)
    for bodies in graph.bodies.values():
        for body in bodies:
            infos.extend(body.value_info)
            outputs.extend(body.output)
    for vi in infos:
        # Some exporters (dynamo) record shapes of weights too.
        shape = graph.const_shape(vi.name) if graph.is_constant(vi.name) else None
        if shape is not None and vi.type.tensor_type.HasField("shape"):
            del vi.type.tensor_type.shape.dim[:]
            for d in shape:
                vi.type.tensor_type.shape.dim.add().dim_value = d
    for vi in infos + outputs:
        tc = analysis.tensors.get(vi.name)
        if tc is None:
            tc = analysis.tiled.get(vi.name)
            if tc is not None and vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
                dims = vi.type.tensor_type.shape.dim
                if tc.axis < len(dims) and dims[tc.axis].HasField("dim_value"):
                    # A static tiled axis holds its factor times the channels.
                    dims[tc.axis].dim_value = dims[tc.axis].dim_value // len(tc.atoms) * len(rw.kept(tc.atoms))
            continue
        if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
            continue
        dims = vi.type.tensor_type.shape.dim
        if tc.axis < len(dims):
            n = len(rw.kept(tc.atoms))
            dims[tc.axis].Clear()
            dims[tc.axis].dim_value = n
            analysis.graph.shapes[vi.name] = proto_dims(dims)


class PruneChannels(Pass):
    name = "prune-channels"
    needs = ("analysis",)

    def run(self, state) -> PassResult:
        removed = state.removed
        if not removed:
            return PassResult(False)
        params = drop_channels(state.analysis, removed)
        state.analysis = None  # the rewrite invalidates it
        return PassResult(True, {"channels_removed": len(removed), "params_removed": params})
