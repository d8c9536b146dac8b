"""A recurrent unit whose state-writing gate has zero weights, recurrence and biases (and zero
initial states) outputs exactly zero at every step: exact mode removes it. Zeroing another gate's
rows does not silence it, and exact mode must leave it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxprune.api import prune
from tests.helpers.oracle import copy, feeds, run

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CASES = {  # model, node, gate order as ONNX defines it
    "lstm": (FIXTURES / "torch_crnn_tiny.onnx", "/rnn2/LSTM", "iofc"),
    "gru": (FIXTURES / "exporters" / "recurrent_cnn.onnx", "gru_0", "zrh"),
}


def _with_gate_zeroed(model: onnx.ModelProto, node_name: str, gate: int, unit: int) -> onnx.ModelProto:
    """Zero rows `gate * H + unit` of W, R and both biases of the named recurrent node."""
    out = copy(model)
    node = next(n for n in out.graph.node if n.name == node_name)
    size = next(a.i for a in node.attribute if a.name == "hidden_size")
    inits = {t.name: t for t in out.graph.initializer}
    for k in (1, 2, 3):
        t = inits[node.input[k]]
        value = numpy_helper.to_array(t).copy()
        gates = value.shape[1] // size // (2 if k == 3 else 1)
        rows = [gate * size + unit] + ([(gates + gate) * size + unit] if k == 3 else [])
        value[:, rows] = 0
        t.CopyFrom(numpy_helper.from_array(value, t.name))
    return out


def _units(model: onnx.ModelProto, node_name: str) -> int:
    node = next(n for n in model.graph.node if n.name == node_name)
    return next(a.i for a in node.attribute if a.name == "hidden_size")


@pytest.mark.parametrize("case", sorted(CASES))
def test_unit_with_a_silent_state_gate_is_removed_exactly(case):
    path, name, order = CASES[case]
    state_gate = order.index("c" if case == "lstm" else "h")
    model = _with_gate_zeroed(onnx.load(str(path)), name, state_gate, unit=3)
    result = prune(copy(model))
    assert _units(result.model, name) == _units(model, name) - 1
    inputs = feeds(model, seed=1)
    for a, b in zip(run(model, inputs), run(result.model, inputs)):
        np.testing.assert_allclose(b, a, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("case", sorted(CASES))
def test_other_gates_zeroed_leave_the_unit(case):
    path, name, order = CASES[case]
    model = onnx.load(str(path))
    for gate in range(len(order)):
        if order[gate] in "ch":
            continue
        zeroed = _with_gate_zeroed(model, name, gate, unit=3)
        result = prune(copy(zeroed))
        assert _units(result.model, name) == _units(model, name), order[gate]


def test_unit_with_a_nonzero_initial_state_stays():
    """c0 != 0 keeps the cell alive (c = f * c0 + ...) though its state gate is silent."""
    path, name, order = CASES["lstm"]
    model = _with_gate_zeroed(onnx.load(str(path)), name, order.index("c"), unit=3)
    node = next(n for n in model.graph.node if n.name == name)
    size = _units(model, name)
    c0 = np.zeros((2, 2, size), np.float32)
    c0[:, :, 3] = 0.5
    model.graph.initializer.append(numpy_helper.from_array(c0, "c0_nonzero"))
    node.input[6] = "c0_nonzero"
    result = prune(copy(model), shapes={"input": (2, 1, 16, 32)})
    assert _units(result.model, name) == size
