"""Trained weights back into the ONNX graph, each into the tensor that stored it (an initializer or
a Constant node's value), in the same field and element type: nothing else of the model changes."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from .interpreter import stored_constants


def write_weights(model: onnx.ModelProto, weights: dict[str, np.ndarray]) -> None:
    """Replace the data of each named stored tensor of `model` (in place) with `weights[name]`."""
    stored = stored_constants(model.graph)
    for name, value in weights.items():
        tensor = stored[name]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
        array = np.asarray(value).astype(dtype).reshape(tuple(tensor.dims))
        if tensor.raw_data or not _typed_data(tensor):
            tensor.raw_data = numpy_helper.from_array(array).raw_data
        else:
            field = _typed_data(tensor)
            getattr(tensor, field)[:] = _as_field(array, field)


def _typed_data(tensor: onnx.TensorProto) -> str | None:
    for field in ("float_data", "double_data", "int32_data"):
        if len(getattr(tensor, field)):
            return field
    return None


def _as_field(array: np.ndarray, field: str) -> list:
    """Values as a typed field holds them (float16 lives in int32_data as its bit pattern)."""
    if field == "int32_data":
        return array.view(np.uint16).ravel().astype(np.int32).tolist()
    return array.ravel().tolist()
