"""Values of tensors: stored constants, tensors computed only from constants (folded once with
onnx's reference evaluator), and the small shape computations that are static here (Shape of
tensors with static dims, then Gather, Concat, arithmetic...), whole or in part.

Rules and passes ask "what is this tensor's value" without caring whether it is an initializer,
a Constant node, a QDQ weight or a Reshape of constants; the answers are cached per ModelGraph
(`_folded`, `_static`) and never written into the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import numpy_helper

from .index import Shape, attr

if TYPE_CHECKING:
    from .model import ModelGraph


class Folding:
    """ModelGraph's value job: constant reads (`const_tensor`, `const_value`, `const_shape`),
    constant folding (`folded`), and shape values (`value`, `static_value`, `model_value`,
    `partial_value`, `dims`). Kept apart from the index because it runs onnx's evaluator and holds
    caches that shape inference clears between its rounds."""

    def is_constant(self, name: str) -> bool:
        """A stored constant, an Identity of one, a QDQ weight (DequantizeLinear of constants), or a
        tensor computed only from constants (`folded`)."""
        if self._stored_constant(self.resolve(name)) or self.resolve(name) in self.dequantized:
            return True
        return self.folded(self.resolve(name)) is not None

    def folded(self, name: str) -> np.ndarray | None:
        """The value of a tensor computed only from constants (Reshape/Unsqueeze/Cast/Mul... of
        Constant nodes, as Paddle writes per-channel scales), evaluated once by onnx's reference
        evaluator. The model is not changed: `replace_const` stores such a tensor only when a
        rewrite edits it, so a model nothing is done to stays byte-identical."""
        if name in self._folded:
            return self._folded[name]
        self._fold_ancestors(name)
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

    def _fold_ancestors(self, name: str) -> None:
        """Fold the constant-only tensors `name` is computed from first, deepest first, so that
        folding `name` reads cached inputs instead of recursing down the chain (PP-OCRv5's
        recognizer computes a value through hundreds of ops: Python's stack overflowed)."""
        order, seen, stack = [], {name}, [(name, False)]
        while stack:
            t, done = stack.pop()
            if done:
                order.append(t)
                continue
            node = self.producer.get(t)
            if node is None or not _foldable(node) or t in self.graph_inputs or t in self.constant_nodes:
                continue
            stack.append((t, True))
            for i in node.input:
                r = self.resolve(i) if i else ""
                if (not r or r in seen or r in self._folded or r in self.dequantized or r in self.initializers
                        or r in self.constant_nodes):
                    continue
                seen.add(r)
                stack.append((r, False))
        for t in order[:-1]:  # `name` itself is the last: the caller folds it
            self.folded(t)

    def _evaluate(self, node: onnx.NodeProto, name: str) -> np.ndarray | None:
        from onnx.reference import ReferenceEvaluator

        feeds = {}
        for i in node.input:
            if not i:
                continue
            v = None if self.resolve(i) in self.dequantized else self.const_value(i)  # QDQ weights stay quantized
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
        if name in self.initializers:
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
        name = self.resolve(name)
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
            self._declared = type(self)(self.model)
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
        if op == "Reshape" and self.rank(name) == 1:
            return self.partial_value(node.input[0], _depth + 1)  # a 1-D shape vector stays as it is
        if op == "ConstantOfShape":
            count = self.partial_value(node.input[0], _depth + 1)
            fill = next((numpy_helper.to_array(a.t) for a in node.attribute if a.name == "value"), np.zeros(1))
            if count is None or len(count) != 1 or not isinstance(count[0], int) or fill.dtype.kind not in "iu":
                return None
            return [int(fill.reshape(-1)[0])] * count[0]
        if op in ("Equal", "Where"):
            # torch's expand(n, -1, -1): Where(Equal(shape, -1), ones, shape), entry by entry
            parts = [self.partial_value(i, _depth + 1) for i in node.input]
            if any(p is None for p in parts) or len({len(p) for p in parts} - {1}) > 1:
                return None
            n = max(len(p) for p in parts)
            parts = [p * n if len(p) == 1 else p for p in parts]
            if op == "Equal":
                return [int(a == b) if isinstance(a, int) and isinstance(b, int) else None for a, b in zip(*parts)]
            return [(x if c else y) if isinstance(c, int) else None for c, x, y in zip(*parts)]
        if op == "ReduceProd" and self.rank(node.input[0]) == 1:
            # tf2onnx's Tensordot (a Keras Dense on [B, T, C]): Reshape to [Prod(free dims), Prod(C)]
            data = self.partial_value(node.input[0], _depth + 1)
            if data is None:
                return None
            if all(isinstance(x, int) for x in data):
                return [int(np.prod(data, dtype=np.int64))]
            rest = [x for x in data if not isinstance(x, int)]
            return [rest[0] if len(rest) == 1 and np.prod([x for x in data if isinstance(x, int)]) == 1 else None]
        if op == "Neg" and self.dtypes.get(name) in _INT64_32:
            data = self.partial_value(node.input[0], _depth + 1)
            return None if data is None else [-x if isinstance(x, int) else None for x in data]
        if op == "Split" and self.rank(node.input[0]) == 1:
            # tf2onnx's pads for a Pad after Conv2DTranspose: Concat of Split pieces, reordered
            data = self.partial_value(node.input[0], _depth + 1)
            sizes = self.split_sizes(node, len(data)) if data is not None else None
            if sizes is None:
                return None
            k = list(node.output).index(name)
            return data[sum(sizes[:k]):sum(sizes[:k + 1])]
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

    def split_sizes(self, node, n: int) -> list[int] | None:
        """The piece sizes of a Split of n entries along its axis: its split input (opset 13 on) or
        attribute, else equal pieces (opset 18's num_outputs: the last may be smaller); None where
        they are not known here or do not add up to n."""
        split = attr(node, "split")
        if split is None and len(node.input) > 1 and node.input[1]:
            value = self.value(node.input[1])
            if value is None:
                return None
            split = value.reshape(-1).tolist()
        if split is None:
            parts = len(node.output)
            if not parts:
                return None
            per = -(-n // parts)
            split = [min(per, n - per * i) for i in range(parts)]
        split = [int(x) for x in split]
        return split if sum(split) == n and all(x >= 0 for x in split) else None

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

    def partial_origin(self, name: str, index: int, _depth: int = 0) -> tuple[str, int] | None:
        """Entry `index` of a shape computation when it is a copy of one dim of a tensor:
        (tensor, dim) of the Shape op it comes from, through Cast/Identity/Squeeze/Unsqueeze,
        Concat, and Gather/Slice with constant indices; else None."""
        node = self.producer.get(name)
        if node is None or _depth > 32 or node.domain not in ("", "ai.onnx"):
            return None
        op = node.op_type
        if op in ("Cast", "Identity", "Unsqueeze", "Squeeze"):
            return self.partial_origin(node.input[0], index, _depth + 1)
        if op == "Shape":
            dims = self.dims(node.input[0])
            if dims is None:
                return None
            start, end = slice(attr(node, "start", 0), attr(node, "end", len(dims))).indices(len(dims))[:2]
            return (node.input[0], start + index) if start + index < end else None
        if op == "Concat":
            offset = 0
            for piece in node.input:
                vals = self.partial_value(piece)
                if vals is None:
                    return None
                if index < offset + len(vals):
                    return self.partial_origin(piece, index - offset, _depth + 1)
                offset += len(vals)
            return None
        if op in ("Gather", "Slice"):
            data = self.partial_value(node.input[0])
            if data is None:
                return None
            positions = list(range(len(data)))
            if op == "Gather":
                idx = self.const_value(node.input[1])
                if idx is None or attr(node, "axis", 0) != 0:
                    return None
                picked = [positions[int(i)] for i in idx.reshape(-1) if -len(data) <= int(i) < len(data)]
            else:
                b = [self.const_value(i) if i else None for i in node.input[1:5]] + [None] * 4
                if b[0] is None or b[1] is None or (len(node.input) > 3 and node.input[3] and b[2] is None):
                    return None
                step = int(b[3].reshape(-1)[0]) if b[3] is not None else 1
                picked = positions[int(b[0].reshape(-1)[0]):int(b[1].reshape(-1)[0]):step]
            return self.partial_origin(node.input[0], picked[index], _depth + 1) if index < len(picked) else None
        return None

    def const_shape(self, name: str) -> Shape | None:
        name = self.resolve(name)
        if name in self.dequantized:
            name = self.dequantized[name].data
        t = self.const_tensor(name)
        return None if t is None else tuple(int(d) for d in t.dims)


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
                       "Div": _int_div, "Max": max, "Min": min}

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
                        "Where", "Not", "Less", "Greater", "Expand", "Abs", "Mod", "Sqrt", "Size", "ReduceProd"}


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
