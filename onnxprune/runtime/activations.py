"""Per-channel statistics of intermediate tensors, gathered in one ONNX Runtime pass over data."""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx

from ..graph import ModelGraph
from ..progress import report
from .data import Dataset, load_data, resolve_batch
from .sessions import create_session


def with_outputs(model: onnx.ModelProto, names: list[str], graph: ModelGraph | None = None) -> onnx.ModelProto:
    """A copy of `model` that also returns the tensors `names`."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    graph = graph or ModelGraph(model, infer=False)
    for name in names:
        if name in have:
            continue
        elem = graph.dtypes.get(name, onnx.TensorProto.FLOAT)
        probe.graph.output.append(onnx.helper.make_tensor_value_info(name, elem, None))
        have.add(name)
    return probe


def run_probe(model: onnx.ModelProto, names: list[str], data, on_batch: Callable[[dict[str, np.ndarray]], None],
              device: str = "cpu", max_samples: int = 512, batch: int | None = None,
              graph: ModelGraph | None = None) -> int:
    """Run `model` over `data` (a Dataset or path) and hand each batch's `names` tensors to
    `on_batch`. Returns the number of samples seen."""
    session = create_session(with_outputs(model, names, graph), device)
    try:
        specs = session.inputs
        dataset = data if isinstance(data, Dataset) else load_data(data, specs)
        size = resolve_batch(specs, batch, None)
        seen = 0
        for item in dataset.batches(size, drop_last=any(s.fixed_batch for s in specs)):
            outs = dict(zip(session.output_names, session.inference.run(None, item.feeds)))
            on_batch({n: outs[n] for n in names})
            seen += item.size
            report("calibration data", min(seen, max_samples), max_samples)
            if seen >= max_samples:
                break
        return seen
    finally:
        session.close()


def mean_abs_per_position(x: np.ndarray, axis: int) -> np.ndarray:
    moved = np.moveaxis(np.abs(x.astype(np.float64)), axis, 0)
    return moved.reshape(moved.shape[0], -1).mean(axis=1)
