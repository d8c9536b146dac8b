"""The index over a model's graph: who produces and consumes each tensor (names that If/Loop/Scan
bodies read from the outer scope included), which names are stored constants and which are
Identity aliases of one, the bodies indexed with the main graph, and a topological order.

Everything else in ModelGraph (values, QDQ weights, shapes, edits) looks tensors up through this
index; it depends on nothing but the ModelProto, so it sits at the bottom of the package. The
small proto helpers (attr, set_attr, proto_dims, scalar) live here for the same reason.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx

from ..errors import ModelLoadError

Shape = tuple  # entries: int for static dims, str or None for dynamic ones


def scalar(value) -> float | None:
    """A value the ONNX spec calls a scalar, stored as shape [] or [1] (exporters write both)."""
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.size != 1:
        raise ValueError(f"expected a scalar, got shape {arr.shape}")
    return arr.reshape(-1)[0].item()


def proto_dims(dims) -> tuple:
    """A TensorShapeProto's dims: ints where static, the symbol or None where not. A negative
    dim_value is how some exporters (paddle2onnx, old tf2onnx) write a dynamic dim, and shape
    inference carries it on: it is no size, never static."""
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else (d.dim_param or None) for d in dims)


def attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def set_attr(node: onnx.NodeProto, name: str, value) -> None:
    for i, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[i]
            break
    node.attribute.append(onnx.helper.make_attribute(name, value))


def _subgraph_outer_names(node: onnx.NodeProto) -> set[str]:
    """Names a node's subgraphs (If/Loop/Scan bodies) read from the enclosing scope."""
    outer: set[str] = set()
    for a in node.attribute:
        graphs = []
        if a.type == onnx.AttributeProto.GRAPH:
            graphs = [a.g]
        elif a.type == onnx.AttributeProto.GRAPHS:
            graphs = list(a.graphs)
        for g in graphs:
            local = {i.name for i in g.input} | {t.name for t in g.initializer}
            for n in g.node:
                local.update(o for o in n.output if o)
            for n in g.node:
                for i in n.input:
                    if i and i not in local:
                        outer.add(i)
                outer.update(x for x in _subgraph_outer_names(n) if x not in local)
            for o in g.output:
                if o.name not in local:
                    outer.add(o.name)
    return outer


def _bodies(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    out = []
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            out.append(a.g)
        elif a.type == onnx.AttributeProto.GRAPHS:
            out.extend(a.graphs)
    return out


def _scope_names(body: onnx.GraphProto) -> set[str]:
    """Every name a body (and the bodies inside it) defines."""
    names = {i.name for i in body.input} | {t.name for t in body.initializer}
    for n in body.node:
        names.update(o for o in n.output if o)
        for inner in _bodies(n):
            names |= _scope_names(inner)
    return names


def _walk_nodes(nodes, bodies):
    for n in nodes:
        yield n
        for body in bodies.get(id(n), ()):
            yield from _walk_nodes(body.node, bodies)


class GraphIndex:
    """ModelGraph's indexing job: producers, consumers, stored constants and their aliases, subgraph
    bodies, topological order. ModelGraph.__init__ fills the tables (`producer`, `consumers`,
    `initializers`, `constant_nodes`, `alias`, `bodies`...); the other jobs read them through
    these methods, so how a name is found is decided in one place."""

    def _index(self, nodes, taken: set[str]) -> None:
        for n in nodes:
            for o in n.output:
                if o:
                    self.producer[o] = n
                    taken.add(o)
            if n.op_type == "Constant" and n.domain in ("", "ai.onnx") and len(n.output) == 1:
                self.constant_nodes[n.output[0]] = n
            for i in n.input:
                if i:
                    self.consumers[i].append(n)
            outer = _subgraph_outer_names(n)
            if outer:
                self.implicit_inputs[id(n)] = outer
                for name in outer:
                    self.consumers[name].append(n)
        for n in nodes:
            for body in _bodies(n):
                names = _scope_names(body)
                if names & taken:
                    continue
                taken |= names
                self.body_names |= names
                self.bodies.setdefault(id(n), []).append(body)
                self.initializers.update((t.name, t) for t in body.initializer)
                self.body_outputs.update(o.name for o in body.output)
                self._index(body.node, taken)

    def resolve(self, name: str) -> str:
        """The stored constant a name stands for (itself unless it is an Identity of a constant)."""
        return self.alias.get(name, name)

    def _stored_constant(self, name: str) -> bool:
        return name in self.initializers or name in self.constant_nodes

    def is_stored(self, name: str) -> bool:
        """A constant held as a tensor (initializer or Constant node), not computed by a node."""
        return self._stored_constant(self.resolve(name))

    def users(self, name: str) -> list[onnx.NodeProto]:
        return self.consumers.get(name, [])

    # -- order -----------------------------------------------------------------------------
    def topological_nodes(self, nodes=None) -> list[onnx.NodeProto]:
        """Nodes (of the main graph, or the given body's) in an order where every producer comes
        before its consumers (Kahn's algorithm, stable: a graph already in order comes back unchanged)."""
        nodes = list(self.model.graph.node if nodes is None else nodes)
        index = {o: k for k, n in enumerate(nodes) for o in n.output if o}
        missing = [0] * len(nodes)
        waiting: dict[int, list[int]] = defaultdict(list)
        for k, n in enumerate(nodes):
            deps = {index[i] for i in (*n.input, *self.implicit_inputs.get(id(n), ())) if i in index}
            deps.discard(k)
            missing[k] = len(deps)
            for d in deps:
                waiting[d].append(k)
        import heapq

        ready = [k for k in range(len(nodes)) if missing[k] == 0]
        heapq.heapify(ready)
        order: list[onnx.NodeProto] = []
        while ready:
            k = heapq.heappop(ready)
            order.append(nodes[k])
            for c in waiting.get(k, ()):
                missing[c] -= 1
                if missing[c] == 0:
                    heapq.heappush(ready, c)
        if len(order) != len(nodes):
            stuck = next(nodes[k] for k in range(len(nodes)) if missing[k] > 0)
            raise ModelLoadError(f"the graph has a cycle (at node '{stuck.name or stuck.op_type}')")
        return order
