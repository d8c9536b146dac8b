"""The quantization step of QDQ model outputs: the one-step tolerance exact-mode validation allows.

A pruned QDQ model sums fewer terms than the original with the same channels zeroed, in another
order. Where ONNX Runtime runs the quantized ops in float (DequantizeLinear -> Conv -> QuantizeLinear,
as with graph optimizations off), a last-bit difference in front of a QuantizeLinear moves a value
that sits on a rounding boundary to the next integer, and the output that DequantizeLinear makes of
it moves by exactly one step of its scale. Such a flip is rounding, not a wrong rewrite; a wrong
rewrite moves values by many steps, or most values by one. So, for an output that a per-tensor
DequantizeLinear produces, a value may differ by one step (its scale) on top of the usual tolerance,
and at most MAX_STEP_SHARE of its values may use that allowance. Other outputs get no allowance.
"""

from __future__ import annotations

import os

import numpy as np
import onnx

# Reshaping ops move values without changing them: a value on the output's grid stays on it.
_VALUE_PRESERVING = {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose"}

# A rounding flip is a rare event (a value within a last-bit difference of a rounding boundary, or
# the echo of such a flip inside the model); measured on trained QDQ exports, 5-8% of the output values
# (docs/DEPLOY.md). A systematic error below one step shows in most values instead.
MAX_STEP_SHARE = 0.5


def output_quant_steps(model: onnx.ModelProto | str | os.PathLike) -> dict[str, float]:
    """{output name: its quantization step} for each graph output made by a DequantizeLinear with a
    constant per-tensor scale, directly or through reshaping ops only."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    steps = {}
    for out in g.output:
        node = producer.get(out.name)
        while node is not None and node.op_type in _VALUE_PRESERVING and node.domain in ("", "ai.onnx"):
            node = producer.get(node.input[0])
        if node is None or node.op_type != "DequantizeLinear" or node.domain not in ("", "ai.onnx"):
            continue
        scale = _constant(g, producer, node.input[1])
        if scale is not None and scale.size == 1 and np.isfinite(scale).all() and float(scale.reshape(-1)[0]) != 0:
            steps[out.name] = abs(float(scale.reshape(-1)[0]))
    return steps


def _constant(g: onnx.GraphProto, producer: dict, name: str) -> np.ndarray | None:
    for t in g.initializer:
        if t.name == name:
            if t.data_location == onnx.TensorProto.EXTERNAL:
                return None
            return onnx.numpy_helper.to_array(t)
    node = producer.get(name)
    if node is not None and node.op_type == "Constant":
        for a in node.attribute:
            if a.name == "value":
                return onnx.numpy_helper.to_array(a.t)
    return None


def split_by_step(diff: np.ndarray, tol: np.ndarray | float, step: float | None) -> tuple[int, int]:
    """(values beyond tolerance, values within one step of it) for absolute differences `diff`
    (inf where a value is NaN or Inf in only one model) against the per-value tolerance `tol`."""
    over = diff > tol
    if step is None:
        return int(over.sum()), 0
    # The outputs sit on the same grid, so a flip differs by the step itself up to float rounding.
    one_step = over & (diff <= tol + step * (1 + 1e-5))
    return int(over.sum() - one_step.sum()), int(one_step.sum())


def step_failure(one_step: int, values: int) -> str | None:
    """Why the values one step apart are more than rounding, or None."""
    if values and one_step > MAX_STEP_SHARE * values:
        return (f"{one_step} of {values} values one quantization step apart: more than "
                f"{MAX_STEP_SHARE:.0%}, a systematic difference, not rounding")
    return None
