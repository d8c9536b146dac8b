"""Per-channel statistics of intermediate tensors, gathered in one ONNX Runtime pass over data.

Intermediate tensors are not batch-first: an LSTM writes [T, dirs, N, H], its Transpose/Reshape
successors [T, N, 2H] or [T * N, 2H] (sequence-major). Where a caller needs to know which entries of
a probed tensor belong to which sample (repair's held-out split), `SampleLayout` says so, measured
on the model itself: the tensor at one sample and at two, compared."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class SampleLayout:
    """Where the samples of a run lie in one tensor: along `axis`, each sample owning `per_sample`
    positions, either one block each (`interleaved` False: [N * T], sample-major) or one every N
    positions ([T * N], sample-minor, as a sequence-first LSTM's output viewed as rows). `axis`
    None: the tensor does not follow the samples (or the model ran only whole batches), so the
    run's samples cannot be told apart in it."""

    axis: int | None
    per_sample: int = 1
    interleaved: bool = False

    def owners(self, x: np.ndarray, n: int) -> np.ndarray | None:
        """The sample (0..n-1) of each position along `axis` of x, a tensor of a run of n samples;
        None where that cannot be told."""
        if self.axis is None or self.axis >= x.ndim or x.shape[self.axis] != n * self.per_sample:
            return None
        if self.interleaved:
            return np.tile(np.arange(n), self.per_sample)
        return np.repeat(np.arange(n), self.per_sample)

    def select(self, x: np.ndarray, samples: np.ndarray) -> np.ndarray | None:
        """The part of x that belongs to the samples where `samples` (a bool per sample) is set."""
        owners = self.owners(x, len(samples))
        if owners is None:
            return None
        return np.take(x, np.flatnonzero(samples[owners]), axis=self.axis)


WHOLE = SampleLayout(None)


def _layout(one: np.ndarray, two: np.ndarray) -> SampleLayout:
    """The layout of a tensor from its values at the first sample alone and at the first two."""
    if one.ndim != two.ndim:
        return WHOLE
    differ = [a for a in range(one.ndim) if one.shape[a] != two.shape[a]]
    if len(differ) != 1 or two.shape[differ[0]] != 2 * one.shape[differ[0]]:
        return WHOLE
    axis, k = differ[0], one.shape[differ[0]]
    if k == 1:
        return SampleLayout(axis)
    scale = float(np.abs(one).max()) if one.size else 0.0
    for interleaved in (False, True):
        first = np.take(two, np.arange(0, 2 * k, 2) if interleaved else np.arange(k), axis=axis)
        if np.allclose(first, one, rtol=1e-4, atol=1e-5 * max(scale, 1.0)):
            return SampleLayout(axis, k, interleaved)
    return WHOLE


def _measure_layouts(session, names: list[str], feeds: dict[str, np.ndarray], specs) -> dict[str, SampleLayout]:
    """Each probed tensor's layout, from runs at the first sample and the first two of `feeds`."""
    batched = [s for s in specs if s.batched]
    if not batched or any(s.fixed_batch for s in batched) or feeds[batched[0].name].shape[batched[0].batch_axis] < 2:
        return {n: WHOLE for n in names}
    runs = []
    for count in (1, 2):
        part = dict(feeds)
        for s in batched:
            part[s.name] = np.take(feeds[s.name], np.arange(count), axis=s.batch_axis)
        try:
            outs = dict(zip(session.output_names, session.inference.run(None, part)))
        except Exception:  # noqa: BLE001 - a model that takes only its calibration batch: no layout
            return {n: WHOLE for n in names}
        runs.append(outs)
    return {n: _layout(np.asarray(runs[0][n]), np.asarray(runs[1][n])) for n in names}


def run_probe(model: onnx.ModelProto, names: list[str], data, on_batch: Callable[..., None],
              device: str = "cpu", max_samples: int = 512, batch: int | None = None,
              graph: ModelGraph | None = None, layouts: bool = False) -> int:
    """Run `model` over `data` (a Dataset or path) and hand each batch's `names` tensors to
    `on_batch`; with `layouts`, also each tensor's SampleLayout and the batch's sample count
    (`on_batch(outs, layouts, n)`). Returns the number of samples seen."""
    session = create_session(with_outputs(model, names, graph), device)
    try:
        specs = session.inputs
        dataset = data if isinstance(data, Dataset) else load_data(data, specs)
        size = resolve_batch(specs, batch, None)
        seen = 0
        measured = None
        for item in dataset.batches(size, drop_last=any(s.fixed_batch for s in specs)):
            outs = dict(zip(session.output_names, session.inference.run(None, item.feeds)))
            if not layouts:
                on_batch({n: outs[n] for n in names})
            else:
                if measured is None:
                    measured = _measure_layouts(session, names, item.feeds, specs)
                on_batch({n: outs[n] for n in names}, measured, item.size)
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
