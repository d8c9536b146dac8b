"""Edits to constants in place: overwrite or slice a constant (initializer, Constant node, QDQ
weight, or a folded tensor, which is then stored), and add new initializers.

Passes change weights only through these methods, so the index, the shapes and the QDQ integers
stay in step with the ModelProto, and only the tensors that change are copied.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


class Edits:
    """ModelGraph's edit job: `replace_const`, `take_const`, `add_initializer` (and `_store_folded`,
    which turns a folded tensor into a stored one when a rewrite edits it). Structural edits
    (nodes added or removed) are the passes' own; rebuild the ModelGraph after them."""

    def replace_const(self, name: str, value: np.ndarray) -> None:
        """Overwrite a constant in place (initializer or Constant node), keeping name and dtype.
        A QDQ weight keeps its shape, scale and zero point; the values are quantized with them."""
        name = self.resolve(name)
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
        # order="C", not ascontiguousarray: that makes a 0-d scalar 1-d
        value = np.asarray(value.astype(numpy_helper.to_array(t).dtype if t.data_type else value.dtype, copy=False), order="C")
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
        name = self.resolve(name)
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
            # Placed where the folded node was, before its readers: nodes stay in topological order.
            nodes = self.model.graph.node
            at = next((k for k, n in enumerate(nodes) if n is node), len(nodes))
            nodes.insert(at, onnx.helper.make_node("Constant", [], [name], value=t))
            const = nodes[at]
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
        t = numpy_helper.from_array(np.asarray(value, order="C"), name)  # a scalar stays 0-d
        self.model.graph.initializer.append(t)
        self.initializers[name] = self.model.graph.initializer[-1]
        self.shapes[name] = tuple(value.shape)
        return name
