"""The one-quantization-step tolerance of QDQ outputs (runtime/quantstep.py): a rounding flip passes,
anything more (two steps, or most values one step off) fails, outputs not made by DequantizeLinear
get no allowance; the exactness oracle applies the same rule and, on the float view, none."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune.runtime import compare_models
from onnxprune.runtime.quantstep import output_quant_steps
from tests.helpers.oracle import assert_outputs_match, run, without_activation_qdq

FIX = Path(__file__).resolve().parents[1] / "fixtures"
STEP = 0.125  # a power of two: the grid values and the differences are exact in float32


def _qdq_out(shift=None, tail: str | None = None) -> onnx.ModelProto:
    """y = DequantizeLinear(QuantizeLinear(x + shift)) per tensor with scale STEP; `tail` appends one op."""
    vi = helper.make_tensor_value_info
    inits = [numpy_helper.from_array(np.float32(STEP), "s"), numpy_helper.from_array(np.uint8(128), "z"),
             numpy_helper.from_array(np.zeros(8, np.float32) if shift is None else np.asarray(shift, np.float32), "c")]
    nodes = [helper.make_node("Add", ["x", "c"], ["xc"]), helper.make_node("QuantizeLinear", ["xc", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d" if tail else "y"])]
    if tail:
        nodes.append(helper.make_node(tail, ["d"], ["y"], **({"axis": 1} if tail in ("Flatten", "Softmax") else {})))
    graph = helper.make_graph(nodes, "qdq_out", [vi("x", TensorProto.FLOAT, ["N", 8])],
                              [vi("y", TensorProto.FLOAT, ["N", 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _data(tmp_path) -> Path:
    # Off the rounding boundaries: a shift below is the only cause of a difference.
    x = (np.arange(32, dtype=np.float32).reshape(4, 8) % 11 - 5) * STEP + 0.03
    path = tmp_path / "x.npz"
    np.savez(path, x=x)
    return path


def _shift(steps_at: dict[int, float]) -> np.ndarray:
    c = np.zeros(8, np.float32)
    for i, k in steps_at.items():
        c[i] = k * STEP
    return c


def test_steps_are_read_from_the_output_dequantize():
    assert output_quant_steps(_qdq_out()) == {"y": STEP}
    assert output_quant_steps(_qdq_out(tail="Flatten")) == {"y": STEP}  # reshaping keeps the grid
    assert output_quant_steps(_qdq_out(tail="Softmax")) == {}  # a float op after it: no allowance
    assert output_quant_steps(onnx.load(FIX / "torch_resnet_tiny.onnx")) == {}
    qdq = onnx.load(FIX / "exporters" / "qdq_cnn.onnx")
    scale = next(numpy_helper.to_array(t) for t in qdq.graph.initializer if t.name == "output_scale")
    assert output_quant_steps(qdq) == {"output": pytest.approx(float(scale))}


def test_one_step_flip_passes_only_with_the_allowance(tmp_path):
    data = _data(tmp_path)
    flipped = _qdq_out(_shift({3: 1}))  # one value in 8 of every sample moves by one step
    strict = compare_models(_qdq_out(), flipped, data=data, atol=1e-4, rtol=1e-3)
    assert not strict
    allowed = compare_models(_qdq_out(), flipped, data=data, atol=1e-4, rtol=1e-3, quant_step=True)
    assert allowed, allowed.format_table()
    out, = allowed.outputs
    assert out.one_step_values == 4 and out.quant_step == STEP and out.out_of_tolerance == 0
    assert allowed.thresholds["quant_step"] == {"y": STEP}
    assert any("one quantization step" in h for h in allowed.hints)


@pytest.mark.parametrize("shift, why", [({3: 2}, "out of tolerance"), ({3: -2}, "out of tolerance"),
                                        ({i: 1 for i in range(5)}, "systematic")])
def test_more_than_a_rounding_flip_fails(tmp_path, shift, why):
    result = compare_models(_qdq_out(), _qdq_out(_shift(shift)), data=_data(tmp_path), atol=1e-4, rtol=1e-3,
                            quant_step=True)
    assert not result and why in result.failures[0]


def test_no_allowance_after_a_float_op(tmp_path):
    result = compare_models(_qdq_out(tail="Softmax"), _qdq_out(_shift({3: 1}), tail="Softmax"), data=_data(tmp_path),
                            atol=1e-4, rtol=1e-3, quant_step=True)
    assert not result and result.outputs[0].one_step_values is None


def test_oracle_rule():
    model = _qdq_out()
    w = np.arange(16, dtype=np.float32).reshape(2, 8) * STEP
    one = w.copy()
    one[0, 3] += STEP
    assert_outputs_match(model, [w], [one], 1e-4, 1e-3)
    two = w.copy()
    two[0, 3] += 2 * STEP
    with pytest.raises(AssertionError, match="quantization steps apart"):
        assert_outputs_match(model, [w], [two], 1e-4, 1e-3)
    most = w + STEP * (np.arange(16).reshape(2, 8) % 4 != 0)
    with pytest.raises(AssertionError, match="one quantization step apart"):
        assert_outputs_match(model, [w], [most], 1e-4, 1e-3)
    with pytest.raises(AssertionError):  # a float output: strict
        assert_outputs_match(_qdq_out(tail="Softmax"), [w], [one], 1e-4, 1e-3)


def test_float_view_takes_out_activation_pairs_only():
    qdq = onnx.load(FIX / "exporters" / "qdq_cnn.onnx")
    view = without_activation_qdq(qdq)
    ops = [n.op_type for n in view.graph.node]
    assert "QuantizeLinear" not in ops
    assert ops.count("DequantizeLinear") == 10  # the weights' and biases', read from stored integers
    onnx.checker.check_model(view, full_check=True)
    x = {"input": np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)}
    (y,), (yq,) = run(view, x), run(qdq, x)
    assert np.abs(y - yq).max() > 0  # the activations are no longer rounded
