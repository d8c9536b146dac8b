"""Static shapes of every tensor from ONNX shape inference, run on a weight-less skeleton, with
rounds that feed the shape computations made static back in as constants.

Shapes decide what can be pruned and how; inference is the one costly step of building a
ModelGraph, so it runs on a skeleton without weights (a 100 MB model is never serialized for it).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import ModelLoadError
from ..io import weightless_copy
from .index import Shape, _bodies, proto_dims

STATIC_ROUNDS = 8  # rounds of shape inference, each fed the shape computations the last one made static
# Ops outside the ONNX domain that ONNX's inference does not know, whose output 0 has input 0's shape
# and type (per-element transforms): skl2onnx's Scaler before an MLP, ONNX Runtime's fused activations.
# Without their shapes every tensor after them would have none, and no channel there could be followed.
SAME_SHAPE_OPS = {("ai.onnx.ml", "Scaler"), ("ai.onnx.ml", "Normalizer"), ("ai.onnx.ml", "Binarizer"),
                  ("ai.onnx.ml", "Imputer"), ("com.microsoft", "FastGelu"), ("com.microsoft", "BiasGelu"),
                  ("com.microsoft", "Gelu"), ("com.microsoft", "QuickGelu")}


class ShapeInference:
    """ModelGraph's shape job: `infer_shapes` fills `shapes` and `dtypes` (main graph and indexed
    bodies), reading the values Folding makes static between rounds; `shape`, `static_shape` and
    `rank` read them back."""

    def infer_shapes(self) -> None:
        """Static shapes of every tensor from ONNX shape inference, run on a weight-less skeleton.
        Shape computations that are static here (chunk bounds computed from Shape ops) are fed to
        a second round as constants, so the tensors after them get shapes too."""
        skeleton = weightless_copy(self.model)
        if self.input_shapes is not None:
            self.input_shapes.fix_inputs(skeleton)
        self._read_shapes(self._infer(skeleton))
        for _ in range(STATIC_ROUNDS):  # Scaler -> Cast -> Normalizer: each round follows one more
            if not self._same_shape_outputs(skeleton):
                break
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

    def _same_shape_outputs(self, skeleton: onnx.ModelProto) -> bool:
        """Declare output 0 of each SAME_SHAPE_OPS node with its input's inferred shape and type (as
        value_info of the skeleton, which the next round of inference reads), in graph order so
        that a chain of them follows. Returns whether any was declared."""
        declared = {vi.name for vi in skeleton.graph.value_info}
        added = False
        for n in skeleton.graph.node:
            if ((n.domain, n.op_type) not in SAME_SHAPE_OPS or not n.input or not n.output
                    or n.output[0] in declared or self.shapes.get(n.output[0]) is not None):
                continue
            shape, dtype = self.shapes.get(n.input[0]), self.dtypes.get(n.input[0])
            if shape is None or dtype is None:
                continue
            dims = [d if isinstance(d, (int, str)) else None for d in shape]
            skeleton.graph.value_info.append(onnx.helper.make_tensor_value_info(n.output[0], dtype, dims))
            self.shapes[n.output[0]], self.dtypes[n.output[0]] = tuple(shape), dtype
            declared.add(n.output[0])
            added = True
        return added

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
                # computed at run time, or a stored constant behind an Identity (timm's NF-ResNet:
                # Reshape(w, Identity(shape)), which ONNX's inference does not see through)
                if name and name in self.producer and (not self.is_stored(name) or self.resolve(name) != name):
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
