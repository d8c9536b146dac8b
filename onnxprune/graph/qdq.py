"""QDQ weights: `DequantizeLinear(data, scale, zero_point)` of stored constants, read as the
constant they dequantize to and edited through their integer data.

A quantized model stores its weights as integers; pruning must see (and the oracle must zero) the
float values while the model keeps its integers, scale and zero point. This module decides which
DequantizeLinear nodes are such weights (and why the others are not) and converts between the two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from .index import attr

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


class QDQWeights:
    """ModelGraph's QDQ job: recognising QDQ weights (`_dequantized_weight`, filling `dequantized`
    and `dequantize_refused`), dequantizing them for reads and quantizing new values for writes
    with each weight's own scale and zero point."""

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
        zp_dims = tuple(int(d) for d in self.const_tensor(zp).dims) if zp is not None else scale_dims
        # quantize_static writes a BN bias's per-tensor scale as [1] and its zero point as []:
        # one value each is per-tensor whatever the rank (0 or 1).
        per_tensor = all(int(np.prod(d)) == 1 and len(d) <= 1 for d in (scale_dims, zp_dims))
        if not per_tensor and zp_dims != scale_dims:
            return f"{label}: zero point and scale differ in shape"
        if per_tensor:
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
        return self.resolve(name) in self.dequantized

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
        w = self.dequantized.get(self.resolve(name))
        if w is None:
            return value, 0
        q = self._quantize(w, value)
        scale, zp = self._quant_params(w, value.ndim)
        with np.errstate(divide="ignore", invalid="ignore"):
            unclipped = np.rint(value.astype(np.float64) / scale.astype(np.float64)) + zp
        info = np.iinfo(q.dtype)
        saturated = int(((unclipped < info.min) | (unclipped > info.max)).sum())
        return self._dequantize(w, q).astype(value.dtype), saturated
