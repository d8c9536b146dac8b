"""A light index over an onnx.ModelProto: who produces and consumes each tensor, which tensors
are constants (initializers or Constant nodes), static shapes from ONNX shape inference.

Passes edit the ModelProto in place through this view; only tensors that change are copied, so a
100 MB model is never duplicated in memory.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import ModelLoadError
from .io import weightless_copy
from .shapes import ResolvedShapes

STATIC_ROUNDS = 8  # rounds of shape inference, each fed the shape computations the last one made static
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


# Integer types a DequantizeLinear weight may be stored as (4-bit and float8 are not followed).
_QUANT_TYPES = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.INT16, onnx.TensorProto.UINT16,
                onnx.TensorProto.INT32}


@dataclass
class DequantizedWeight:
    """A QDQ weight: `DequantizeLinear(data, scale, zero_point)` of stored constants. Its output is
    read as a constant (the dequantized values); edits go to the integer data, and to the scale and
    zero point where they are per-channel along the edited axis (`axis`; None: per-tensor)."""

    node: onnx.NodeProto
    data: str
    scale: str
    zero_point: str | None
    axis: int | None


class ModelGraph:
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
        # Initializers listed as graph inputs can be overridden at run time: never constants.
        self.overridable = {i.name for i in g.input if i.name in self.initializers}
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
        self.shapes: dict[str, Shape] = {}
        self.dtypes: dict[str, int] = {}
        self._static: dict[str, np.ndarray | None] = {}
        self._folded: dict[str, np.ndarray | None] = {}
        self._declared: ModelGraph | None = None
        if infer:
            self.infer_shapes()

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

    # -- constants -------------------------------------------------------------------------
    def _dequantized_weight(self, n: onnx.NodeProto) -> "DequantizedWeight | str | None":
        """The weight a DequantizeLinear node stands for; a reason when its input is a stored
        constant it cannot be followed through; None when it dequantizes an activation."""
        ins = [self.resolve(i) if i else "" for i in n.input]
        if len(ins) < 2 or not self._stored_constant(ins[0]):
            return None
        label = n.name or f"DequantizeLinear({n.output[0]})"
        if not all(self._stored_constant(i) for i in ins[1:] if i):
            return f"{label}: the scale or zero point is computed at run time"
        if attr(n, "block_size", 0):
            return f"{label}: blocked quantization (block_size) is not followed"
        if n.output[0] in self.graph_outputs:
            return None
        data = self.const_tensor(ins[0])
        if data.data_type not in _QUANT_TYPES:
            return f"{label}: weights stored as {onnx.TensorProto.DataType.Name(data.data_type)} are not followed"
        dims = tuple(int(d) for d in data.dims)
        scale_dims = tuple(int(d) for d in self.const_tensor(ins[1]).dims)
        zp = ins[2] if len(ins) > 2 and ins[2] else None
        if zp is not None and tuple(int(d) for d in self.const_tensor(zp).dims) != scale_dims:
            return f"{label}: zero point and scale differ in shape"
        if int(np.prod(scale_dims)) == 1 and len(scale_dims) <= 1:
            axis = None
        elif len(scale_dims) == 1 and dims:
            axis = attr(n, "axis", 1)
            if not -len(dims) <= axis < len(dims) or dims[axis % len(dims)] != scale_dims[0]:
                return f"{label}: per-channel scale does not match axis {axis}"
            axis %= len(dims)
        else:
            return f"{label}: scale of shape {list(scale_dims)} is not per-tensor or per-channel"
        # The stored tensors this node edits must be its own (a per-tensor scale is never edited).
        own = [ins[0]] + ([ins[1]] + ([zp] if zp else []) if axis is not None else [])
        for name in own:
            readers = {id(u) for u in self.consumers.get(name, [])}
            if readers != {id(n)} or name in self.graph_outputs:
                return f"{label}: quantized tensor '{name}' is shared with another node"
        return DequantizedWeight(n, ins[0], ins[1], zp, axis)

    def is_dequantized(self, name: str) -> bool:
        return name in self.dequantized

    def _dequantize(self, w: DequantizedWeight, data: np.ndarray | None = None) -> np.ndarray:
        q = self.const_value(w.data) if data is None else data
        scale, zp = self._quant_params(w, q.ndim)
        return ((q.astype(np.float64) - zp) * scale).astype(scale.dtype)

    def _quant_params(self, w: DequantizedWeight, ndim: int) -> tuple[np.ndarray, np.ndarray]:
        """Scale and zero point, shaped to broadcast over the data."""
        scale = self.const_value(w.scale)
        zp = self.const_value(w.zero_point) if w.zero_point else np.zeros_like(scale, dtype=np.int64)
        if w.axis is None:
            return scale.reshape(()), zp.astype(np.float64).reshape(())
        shape = [1] * ndim
        shape[w.axis] = -1
        return scale.reshape(shape), zp.astype(np.float64).reshape(shape)

    def _quantize(self, w: DequantizedWeight, value: np.ndarray) -> np.ndarray:
        """Float values back to the stored integers with the weight's own scale and zero point
        (round half to even and saturate, as QuantizeLinear does)."""
        q_dtype = numpy_helper.to_array(self.const_tensor(w.data)).dtype
        scale, zp = self._quant_params(w, value.ndim)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.rint(value.astype(np.float64) / scale.astype(np.float64)) + zp
        q = np.where(np.isfinite(q), q, zp + np.zeros_like(q))
        info = np.iinfo(q_dtype)
        return np.clip(q, info.min, info.max).astype(q_dtype)

    def as_stored(self, name: str, value: np.ndarray) -> tuple[np.ndarray, int]:
        """What replace_const(name, value) would store, read back: a QDQ weight's values rounded to
        its own integers (scale and zero point unchanged) and dequantized, with how many of them
        saturated at the integer range; any other constant's values as they are, and 0."""
        w = self.dequantized.get(name)
        if w is None:
            return value, 0
        q = self._quantize(w, value)
        scale, zp = self._quant_params(w, value.ndim)
        with np.errstate(divide="ignore", invalid="ignore"):
            unclipped = np.rint(value.astype(np.float64) / scale.astype(np.float64)) + zp
        info = np.iinfo(q.dtype)
        saturated = int(((unclipped < info.min) | (unclipped > info.max)).sum())
        return self._dequantize(w, q).astype(value.dtype), saturated

    def resolve(self, name: str) -> str:
        """The stored constant a name stands for (itself unless it is an Identity of a constant)."""
        return self.alias.get(name, name)

    def _stored_constant(self, name: str) -> bool:
        return (name in self.initializers and name not in self.overridable) or name in self.constant_nodes

    def is_constant(self, name: str) -> bool:
        """A stored constant, an Identity of one, a QDQ weight (DequantizeLinear of constants), or a
        tensor computed only from constants (`folded`)."""
        if self._stored_constant(self.resolve(name)) or name in self.dequantized:
            return True
        return self.folded(self.resolve(name)) is not None

    def is_stored(self, name: str) -> bool:
        """A constant held as a tensor (initializer or Constant node), not computed by a node."""
        return self._stored_constant(self.resolve(name))

    def folded(self, name: str) -> np.ndarray | None:
        """The value of a tensor computed only from constants (Reshape/Unsqueeze/Cast/Mul... of
        Constant nodes, as Paddle writes per-channel scales), evaluated once by onnx's reference
        evaluator. The model is not changed: `replace_const` stores such a tensor only when a
        rewrite edits it, so a model nothing is done to stays byte-identical."""
        if name in self._folded:
            return self._folded[name]
        self._folded[name] = None  # guards against cycles
        node = self.producer.get(name)
        value = None
        if node is not None and _foldable(node) and name not in self.graph_inputs:
            shape = self.shapes.get(name)
            if shape is None or not all(isinstance(d, int) for d in shape) or int(np.prod(shape)) <= MAX_FOLDED:
                value = self._evaluate(node, name)
        self._folded[name] = value
        return value

    def _evaluate(self, node: onnx.NodeProto, name: str) -> np.ndarray | None:
        from onnx.reference import ReferenceEvaluator

        feeds = {}
        for i in node.input:
            if not i:
                continue
            v = None if i in self.dequantized else self.const_value(i)  # QDQ weights stay quantized
            if v is None:
                return None
            feeds[i] = v
        # One node at a time, as a model of the input's opsets (the evaluator picks op versions
        # from them); the values of its constant inputs are fed, so a chain of folded ops is
        # evaluated once per tensor and cached.
        inputs = [onnx.helper.make_tensor_value_info(k, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                  for k, v in feeds.items()]
        outputs = [onnx.helper.make_empty_tensor_value_info(o) for o in node.output if o]
        probe = onnx.helper.make_model(onnx.helper.make_graph([node], "fold", inputs, outputs),
                                       opset_imports=list(self.model.opset_import))
        try:
            outs = ReferenceEvaluator(probe).run(None, feeds)
        except Exception:  # noqa: BLE001 - an op the reference evaluator cannot run is not folded
            return None
        for o, v in zip([o for o in node.output if o], outs):
            if o != name and o not in self._folded:
                self._folded[o] = np.asarray(v) if isinstance(v, np.ndarray) and np.asarray(v).size <= MAX_FOLDED else None
        out = outs[[o for o in node.output if o].index(name)]
        if not isinstance(out, np.ndarray) or out.size > MAX_FOLDED:
            return None
        return np.asarray(out)

    def const_tensor(self, name: str) -> onnx.TensorProto | None:
        name = self.resolve(name)
        if name in self.initializers and name not in self.overridable:
            return self.initializers[name]
        if name not in self.constant_nodes:
            value = self.folded(name)
            return None if value is None else numpy_helper.from_array(value, name)
        node = self.constant_nodes.get(name)
        if node is not None:
            for a in node.attribute:
                if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                    return a.t
                if a.name == "value_ints":
                    return numpy_helper.from_array(np.array(list(a.ints), dtype=np.int64), name)
                if a.name == "value_int":
                    return numpy_helper.from_array(np.array(a.i, dtype=np.int64), name)
                if a.name == "value_floats":
                    return numpy_helper.from_array(np.array(list(a.floats), dtype=np.float32), name)
                if a.name == "value_float":
                    return numpy_helper.from_array(np.array(a.f, dtype=np.float32), name)
        return None

    def const_value(self, name: str) -> np.ndarray | None:
        if name in self.dequantized:
            return self._dequantize(self.dequantized[name])
        t = self.const_tensor(name)
        if t is None:
            return None
        return numpy_helper.to_array(t)

    def value(self, name: str) -> np.ndarray | None:
        """A constant's value, or the value of a small shape computation that is static here
        (Shape of tensors with static dims, then Gather, Concat, arithmetic...)."""
        v = self.const_value(name)
        if v is not None:
            return v
        return self.static_value(name)

    def static_value(self, name: str, _depth: int = 0) -> np.ndarray | None:
        if name in self._static:
            return self._static[name]
        self._static[name] = None  # guards against cycles
        node = self.producer.get(name)
        result = None
        if node is not None and _depth < 64 and node.domain in ("", "ai.onnx"):
            try:
                result = _evaluate_shape_op(self, node, name, _depth + 1)
            except (ValueError, IndexError, TypeError, OverflowError, ZeroDivisionError):
                result = None
        if result is not None and result.size > 64:
            result = None
        self._static[name] = result
        return result

    def model_value(self, name: str) -> np.ndarray | None:
        """Like value(), but only from dims the model itself fixes, never from resolved input
        shapes: what may be frozen into the written model, which keeps its dynamic dims."""
        if self.input_shapes is None or self.is_constant(name):
            return self.value(name)
        return self.declared().value(name)

    def declared(self) -> "ModelGraph":
        """This model with the dims it declares (no resolved input shapes): what a constant written
        into the model may depend on."""
        if self.input_shapes is None:
            return self
        if self._declared is None:
            self._declared = ModelGraph(self.model)
        return self._declared

    def dims(self, name: str):
        """The inferred shape, with dims shape inference left open filled in where the tensor is a
        Reshape output whose target entry is a known positive int (targets computed at run time)."""
        shape = self.shape(name)
        node = self.producer.get(name)
        if node is None or node.op_type != "Reshape" or node.domain not in ("", "ai.onnx") or len(node.input) < 2:
            return shape
        if shape is not None and all(isinstance(d, int) for d in shape):
            return shape
        target = self.partial_value(node.input[1])
        if target is None or (shape is not None and len(shape) != len(target)):
            return shape
        base = list(shape) if shape is not None else [None] * len(target)
        return tuple(t if not isinstance(b, int) and isinstance(t, int) and t > 0 else b for b, t in zip(base, target))

    def partial_value(self, name: str, _depth: int = 0) -> list | None:
        """A 1-D integer shape computation as a list whose entries are ints, dim symbols (str) or
        None (unknown): enough to read `Reshape(x, Concat(Shape(x)[0:1], [-1]))`."""
        v = self.value(name)
        if v is not None:
            return [int(x) for x in v.reshape(-1)] if v.dtype.kind in "iu" and v.ndim <= 1 else None
        node = self.producer.get(name)
        if node is None or _depth > 32 or node.domain not in ("", "ai.onnx"):
            return None
        op = node.op_type
        if op == "Shape":
            shape = self.dims(node.input[0])
            if shape is None:
                return None
            start, end = slice(attr(node, "start", 0), attr(node, "end", len(shape))).indices(len(shape))[:2]
            return list(shape[start:end])
        if op in ("Cast", "Identity", "Unsqueeze", "Squeeze"):
            return self.partial_value(node.input[0], _depth + 1)
        if op == "Concat":
            parts = [self.partial_value(i, _depth + 1) for i in node.input]
            return None if any(p is None for p in parts) else [x for p in parts for x in p]
        if op in ("Gather", "Slice"):
            data = self.partial_value(node.input[0], _depth + 1)
            if data is None:
                return None
            if op == "Gather":
                idx = self.const_value(node.input[1])
                if idx is None or any(not -len(data) <= int(i) < len(data) for i in idx.reshape(-1)):
                    return None
                return [data[int(i)] for i in idx.reshape(-1)]
            b = [self.const_value(i) if i else None for i in node.input[1:5]] + [None] * 4
            if b[0] is None or b[1] is None:
                return None
            step = int(b[3].reshape(-1)[0]) if b[3] is not None else 1
            return data[int(b[0].reshape(-1)[0]):int(b[1].reshape(-1)[0]):step]
        if op in _PARTIAL_ARITHMETIC and len(node.input) == 2 and self.dtypes.get(name) in _INT64_32:
            # head_dim = Shape(x)[2] / heads: entries known on both sides are computed, others unknown
            a, b = (self.partial_value(i, _depth + 1) for i in node.input)
            if a is None or b is None or (len(a) != len(b) and 1 not in (len(a), len(b))):
                return None
            n = max(len(a), len(b))
            a, b = (p * n if len(p) == 1 else p for p in (a, b))
            return [_PARTIAL_ARITHMETIC[op](x, y) if isinstance(x, int) and isinstance(y, int) else None
                    for x, y in zip(a, b)]
        return None

    def partial_source(self, name: str, index: int, _depth: int = 0):
        """Where entry `index` of a partial shape value is stored: (node, input index, entry) of the
        constant Concat piece holding it, or None."""
        node = self.producer.get(name)
        if node is None or _depth > 32:
            return None
        if node.op_type in ("Cast", "Identity", "Unsqueeze", "Squeeze"):
            return self.partial_source(node.input[0], index, _depth + 1)
        if node.op_type != "Concat":
            return None
        offset = 0
        for i, piece in enumerate(node.input):
            vals = self.partial_value(piece)
            if vals is None:
                return None
            if index < offset + len(vals):
                if self.is_constant(piece):
                    return node, i, index - offset
                return self.partial_source(piece, index - offset, _depth + 1)
            offset += len(vals)
        return None

    def const_shape(self, name: str) -> Shape | None:
        if name in self.dequantized:
            name = self.dequantized[name].data
        t = self.const_tensor(name)
        return None if t is None else tuple(int(d) for d in t.dims)

    def replace_const(self, name: str, value: np.ndarray) -> None:
        """Overwrite a constant in place (initializer or Constant node), keeping name and dtype.
        A QDQ weight keeps its shape, scale and zero point; the values are quantized with them."""
        if name in self.dequantized:
            w = self.dequantized[name]
            if tuple(value.shape) != self.const_shape(name):
                raise ValueError(f"QDQ weight '{name}': a new value must keep the shape; use take_const")
            self.replace_const(w.data, self._quantize(w, value))
            self.shapes[name] = tuple(value.shape)
            return
        name = self.resolve(name)
        t = self.const_tensor(name)
        if t is None:
            raise KeyError(name)
        if not self._stored_constant(name):
            # A folded tensor becomes an initializer of that name; its producer is left without
            # readers (cleanup removes it).
            self._store_folded(name, t)
        value = np.ascontiguousarray(value.astype(numpy_helper.to_array(t).dtype if t.data_type else value.dtype, copy=False))
        new = numpy_helper.from_array(value, name)
        if name in self.initializers:
            self.initializers[name].CopyFrom(new)
        else:
            node = self.constant_nodes[name]
            for i, a in enumerate(node.attribute):
                if a.name.startswith("value"):
                    del node.attribute[i]
                    break
            node.attribute.append(onnx.helper.make_attribute("value", new))
        self.shapes[name] = tuple(value.shape)

    def take_const(self, name: str, kept: dict[int, np.ndarray]) -> int:
        """Keep only positions `kept[axis]` of a constant along each axis (a QDQ weight's per-channel
        scale and zero point follow its data). Returns how many stored values went."""
        w = self.dequantized.get(name)
        target = w.data if w is not None else name
        value = self.const_value(target)
        new = value
        for axis, index in sorted(kept.items(), key=lambda kv: kv[0]):
            new = index(new) if callable(index) else np.take(new, index, axis=axis)
        self.replace_const(target, new)
        gone = value.size - new.size
        if w is not None:
            self.shapes[name] = tuple(new.shape)
            if w.axis is not None and w.axis in kept and not callable(kept[w.axis]):
                for param in (w.scale, w.zero_point):
                    if param:
                        old = self.const_value(param)
                        self.replace_const(param, np.take(old, kept[w.axis], axis=0))
                        gone += old.size - len(kept[w.axis])
        return gone

    def _store_folded(self, name: str, t: onnx.TensorProto) -> None:
        node = self.producer.pop(name)
        spare, k = f"{name}_unfolded", 0
        while spare in self.producer or spare in self.initializers or spare in self.shapes:
            k += 1
            spare = f"{name}_unfolded_{k}"
        node.output[list(node.output).index(name)] = spare
        self.producer[spare] = node
        self._folded.pop(name, None)
        if self.model.ir_version < 4:
            # IR 3 lists every initializer as a graph input; a Constant node needs no declaration.
            const = self.model.graph.node.add()
            const.CopyFrom(onnx.helper.make_node("Constant", [], [name], value=t))
            self.constant_nodes[name] = const
            self.producer[name] = const
        else:
            self.model.graph.initializer.append(t)
            self.initializers[name] = self.model.graph.initializer[-1]

    def add_initializer(self, value: np.ndarray, hint: str) -> str:
        """Add a new initializer with a name derived from hint that no tensor uses yet."""
        name, k = hint, 0
        while name in self.initializers or name in self.producer or name in self.shapes:
            k += 1
            name = f"{hint}_{k}"
        t = numpy_helper.from_array(np.ascontiguousarray(value), name)
        self.model.graph.initializer.append(t)
        self.initializers[name] = self.model.graph.initializer[-1]
        self.shapes[name] = tuple(value.shape)
        return name

    def users(self, name: str) -> list[onnx.NodeProto]:
        return self.consumers.get(name, [])

    # -- shapes ----------------------------------------------------------------------------
    def infer_shapes(self) -> None:
        """Static shapes of every tensor from ONNX shape inference, run on a weight-less skeleton.
        Shape computations that are static here (chunk bounds computed from Shape ops) are fed to
        a second round as constants, so the tensors after them get shapes too."""
        skeleton = weightless_copy(self.model)
        if self.input_shapes is not None:
            self.input_shapes.fix_inputs(skeleton)
        self._read_shapes(self._infer(skeleton))
        done: set[str] = set()
        for _ in range(STATIC_ROUNDS):  # a value made static can make later shapes static: PyTorch's F.pad
            frozen = {k: v for k, v in self._static_inputs().items() if k not in done}
            if not frozen:
                break
            done.update(frozen)
            for n in skeleton.graph.node:
                for i, name in enumerate(n.input):
                    if name in frozen:
                        n.input[i] = "__static__" + name
            for name, value in frozen.items():
                skeleton.graph.initializer.append(numpy_helper.from_array(value, "__static__" + name))
            self._read_shapes(self._infer(skeleton))
        for name, t in self.initializers.items():
            self.shapes[name] = tuple(int(d) for d in t.dims)
            self.dtypes[name] = t.data_type
        for name in self.constant_nodes:
            t = self.const_tensor(name)
            if t is not None:
                self.shapes[name] = tuple(int(d) for d in t.dims)
                self.dtypes[name] = t.data_type

    @staticmethod
    def _infer(model: onnx.ModelProto) -> onnx.ModelProto:
        try:
            return onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
        except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, RuntimeError, ValueError,
                TypeError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"ONNX shape inference failed: {first}") from None

    def _read_shapes(self, inferred: onnx.ModelProto) -> None:
        self._read_graph_shapes(inferred.graph, top=True)

    def _read_graph_shapes(self, g: onnx.GraphProto, top: bool = False) -> None:
        for n in g.node:
            for body in _bodies(n):
                self._read_graph_shapes(body)
        infos = list(g.input) + list(g.value_info) + list(g.output)
        if not top:
            infos = [vi for vi in infos if vi.name in self.body_names]
        for vi in infos:
            if vi.type.HasField("tensor_type"):
                tt = vi.type.tensor_type
                self.dtypes[vi.name] = tt.elem_type
                if tt.HasField("shape"):
                    shape = proto_dims(tt.shape.dim)
                    old = self.shapes.get(vi.name)
                    if old is None or sum(isinstance(d, int) for d in shape) >= sum(isinstance(d, int) for d in old):
                        self.shapes[vi.name] = shape

    def _static_inputs(self) -> dict[str, np.ndarray]:
        """Inputs of size-taking ops that are computed at run time but static here."""
        out = {}
        for n in self.model.graph.node:
            if n.op_type not in ("Slice", "Reshape", "Split", "Resize", "Expand", "Tile", "Pad", "ConstantOfShape"):
                continue
            for name in n.input[1:]:
                if name and not self.is_stored(name) and name in self.producer:
                    v = self.value(name)
                    if v is not None and v.size <= 64:
                        out[name] = v
        self._static.clear()  # values were computed from first-round shapes
        self._folded.clear()
        return out

    def shape(self, name: str) -> Shape | None:
        return self.shapes.get(name)

    def static_shape(self, name: str) -> tuple[int, ...] | None:
        s = self.shapes.get(name)
        if s is None or any(not isinstance(d, int) or d < 0 for d in s):
            return None
        return s

    def rank(self, name: str) -> int | None:
        s = self.shapes.get(name)
        return None if s is None else len(s)

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


MAX_FOLDED = 1 << 24  # larger computed constants are left to the runtime
_NOT_FOLDED = {
    # Random or quantizing ops: their outputs are not fixed values, or the model means to keep the
    # integer weights (QDQ) as they are.
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli",
    "DequantizeLinear", "QuantizeLinear", "DynamicQuantizeLinear", "Constant", "If", "Loop", "Scan",
}


def _foldable(node: onnx.NodeProto) -> bool:
    return (node.domain in ("", "ai.onnx") and node.op_type not in _NOT_FOLDED and len(node.input) > 0
            and not any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute))


def _int_div(x: int, y: int) -> int | None:
    """ONNX integer Div truncates toward zero."""
    if y == 0:
        return None
    q = abs(x) // abs(y)
    return q if (x >= 0) == (y >= 0) else -q


_INT64_32 = (onnx.TensorProto.INT64, onnx.TensorProto.INT32)
_PARTIAL_ARITHMETIC = {"Add": lambda x, y: x + y, "Sub": lambda x, y: x - y, "Mul": lambda x, y: x * y,
                       "Div": _int_div}

SHAPE_OPS = {"Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Add", "Sub", "Mul", "Div", "Cast", "Slice",
             "Identity", "Neg", "Constant"}


def _pick_from_shape(graph: "ModelGraph", node: onnx.NodeProto) -> np.ndarray | None:
    """Gather/Slice of a Shape output that only reads static dims (batch may stay symbolic)."""
    src = graph.producer.get(node.input[0])
    if src is None or src.op_type != "Shape":
        return None
    shape = graph.dims(src.input[0])
    if shape is None:
        return None
    start, end = slice(attr(src, "start", 0), attr(src, "end", len(shape))).indices(len(shape))[:2]
    dims = np.array([d if isinstance(d, int) else -1 for d in shape[start:end]], dtype=np.int64)
    if node.op_type == "Gather":
        idx = graph.const_value(node.input[1])
        if idx is None or attr(node, "axis", 0) != 0:
            return None
        out = np.take(dims, idx)
    else:
        bounds = [graph.const_value(i) if i else None for i in list(node.input[1:]) + [""] * (4 - len(node.input[1:]))]
        if bounds[0] is None or bounds[1] is None or (node.input[3:4] and node.input[3] and bounds[2] is None):
            return None
        step = int(bounds[3].reshape(-1)[0]) if bounds[3] is not None else 1
        out = dims[int(bounds[0].reshape(-1)[0]):int(bounds[1].reshape(-1)[0]):step]
    return None if np.any(out < 0) else out


def _evaluate_shape_op(graph: "ModelGraph", node: onnx.NodeProto, name: str, depth: int) -> np.ndarray | None:
    """numpy evaluation of the shape-computation ops, when all their inputs are static."""
    op = node.op_type
    if (op not in SHAPE_OPS and op not in _EVALUATED_SHAPE_OPS) or len(node.output) != 1:
        return None
    if op == "Shape":
        shape = graph.dims(node.input[0])
        if shape is None:
            return None
        start, end = slice(attr(node, "start", 0), attr(node, "end", len(shape))).indices(len(shape))[:2]
        dims = shape[start:end]
        if any(not isinstance(d, int) for d in dims):
            return None
        return np.array(dims, dtype=np.int64)
    if op in ("Gather", "Slice"):
        picked = _pick_from_shape(graph, node)
        if picked is not None:
            return picked
    ins = []
    for i in node.input:
        if not i:
            ins.append(None)
            continue
        v = graph.const_value(i)
        if v is None:
            v = graph.static_value(i, depth)
        if v is None:
            return None
        ins.append(v)
    if op == "Identity":
        return ins[0]
    if op == "Neg":
        return -ins[0]
    if op == "Cast":
        return ins[0].astype(onnx.helper.tensor_dtype_to_np_dtype(attr(node, "to")))
    if op in ("Add", "Sub", "Mul"):
        return {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}[op](ins[0], ins[1])
    if op == "Div":
        a, b = ins
        if a.dtype.kind in "iu" and b.dtype.kind in "iu":
            return (np.trunc(a / b)).astype(np.result_type(a, b))
        return a / b
    if op == "Gather":
        return np.take(ins[0], ins[1], axis=attr(node, "axis", 0))
    if op == "Concat":
        return np.concatenate(ins, axis=attr(node, "axis"))
    if op == "Unsqueeze":
        axes = attr(node, "axes")
        axes = list(ins[1].reshape(-1)) if axes is None else axes
        out = ins[0]
        for a in sorted(int(a) % (out.ndim + len(axes)) for a in axes):
            out = np.expand_dims(out, a)
        return out
    if op == "Squeeze":
        axes = attr(node, "axes")
        if axes is None and len(ins) > 1 and ins[1] is not None:
            axes = list(ins[1].reshape(-1))
        return np.squeeze(ins[0], axis=tuple(int(a) for a in axes) if axes is not None else None)
    if op == "Slice" and len(ins) >= 3:
        data = ins[0]
        axes = ins[3].reshape(-1).tolist() if len(ins) > 3 and ins[3] is not None else list(range(len(ins[1])))
        steps = ins[4].reshape(-1).tolist() if len(ins) > 4 and ins[4] is not None else [1] * len(axes)
        index = [slice(None)] * data.ndim
        for a, st, en, sp in zip(axes, ins[1].reshape(-1).tolist(), ins[2].reshape(-1).tolist(), steps):
            index[int(a)] = slice(int(st), int(en), int(sp))
        return data[tuple(index)]
    if op in _EVALUATED_SHAPE_OPS:
        return _reference_run(graph, node, ins)
    return None


# Shape computations past the common ones, evaluated by onnx's reference evaluator when their
# inputs are static: PyTorch's F.pad export builds its pads with ConstantOfShape, Reshape,
# Transpose and a reversing Slice; Range, Max, Where... appear in other exporters' size logic.
_EVALUATED_SHAPE_OPS = {"ConstantOfShape", "Reshape", "Transpose", "Range", "Max", "Min", "Floor", "Ceil", "Equal",
                        "Where", "Not", "Less", "Greater", "Expand", "Abs", "Mod", "Sqrt", "Size"}


def _reference_run(graph: "ModelGraph", node: onnx.NodeProto, ins: list) -> np.ndarray | None:
    from onnx.reference import ReferenceEvaluator

    names = [f"in{k}" if i else "" for k, i in enumerate(node.input)]
    feeds = {n: v for n, v in zip(names, ins) if n}
    probe_node = onnx.NodeProto()
    probe_node.CopyFrom(node)
    del probe_node.input[:]
    probe_node.input.extend(names)
    del probe_node.output[:]
    probe_node.output.append("out")
    inputs = [onnx.helper.make_tensor_value_info(k, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
              for k, v in feeds.items()]
    probe = onnx.helper.make_model(onnx.helper.make_graph([probe_node], "shape", inputs,
                                                          [onnx.helper.make_empty_tensor_value_info("out")]),
                                   opset_imports=list(graph.model.opset_import))
    try:
        out = ReferenceEvaluator(probe).run(None, feeds)[0]
    except Exception:  # noqa: BLE001 - what the evaluator cannot run stays unknown
        return None
    return np.asarray(out) if isinstance(out, np.ndarray) and out.size <= 64 else None
