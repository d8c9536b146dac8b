"""Validated model inputs: an input's spec (InputSpec), a re-iterable source of chunks checked
against the specs and cut into batches (Dataset). Where the data comes from is data.py's (an
.npz, a Python loader, random) and images.py's (a folder of images) business; both build on this.

Whatever the source, data arrives as chunks {input_name: array}, with samples along each input's
batch axis where the model has one (shapes.batch_axes: axis 1 of a [2, batch, 128] state), else as
whole feeds. Chunks are checked against the model's input specs (names, dtype, rank, fixed dims,
finite values) before they reach ORT, and re-cut into batches of the size asked. Only one chunk plus
one partial batch is held at a time, so a loader may stream a data set larger than memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace

import numpy as np

from ..errors import ConfigError, DataError
from ..shapes import batch_axes, is_fixed

LABELS = "labels"
DEFAULT_BATCH = 8
Dim = int | str | None


@dataclass(frozen=True)
class InputSpec:
    """One graph input: dims are ints when fixed, a name or None when dynamic; shape None = unknown
    rank. `batch_axis` is the axis that carries samples (shapes.batch_axes), None when the input is
    fed whole with every run (a scalar, or a model with no batch axis)."""

    name: str
    dtype: np.dtype
    shape: tuple[Dim, ...] | None
    batch_axis: int | None = 0

    @property
    def batched(self) -> bool:
        return self.batch_axis is not None and (self.shape is None or len(self.shape) > self.batch_axis)

    @property
    def fixed_batch(self) -> int | None:
        if self.batched and self.shape and is_fixed(self.shape[self.batch_axis]):
            return self.shape[self.batch_axis]
        return None

    def describe(self) -> str:
        if self.shape is None:
            return f"{self.dtype}[?]"
        return f"{self.dtype}[{','.join(str(d) if d is not None else '?' for d in self.shape)}]"


@dataclass
class Batch:
    feeds: dict[str, np.ndarray]
    labels: np.ndarray | None
    size: int


def with_batch_axes(specs: list[InputSpec]) -> list[InputSpec]:
    """The specs with their batch axes as the model states them (see shapes.batch_axes)."""
    axes = batch_axes({s.name: s.shape for s in specs})
    return [replace(s, batch_axis=axes[s.name]) for s in specs]


class Dataset:
    """A re-iterable source of validated chunks, cut into batches on demand."""

    def __init__(self, chunks: Callable[[], Iterable[Mapping]], specs: list[InputSpec], source: str,
                 random: bool = False, per_item: bool = False):
        self._chunks = chunks
        self._per_item = per_item
        self.specs = list(specs)
        self.source = source
        self.random = random
        self.dropped = 0

    @property
    def batched(self) -> bool:
        return any(s.batched for s in self.specs)

    def batches(self, batch_size: int | None, drop_last: bool = False) -> Iterator[Batch]:
        """Batches of exactly `batch_size` samples along each input's batch axis, the last one
        smaller unless `drop_last` (a model with a fixed batch cannot take it); `dropped` then says
        how many samples were left out. A model without a batch axis (`batch_size` None) gets each
        item whole, or each entry of an item whose arrays stack whole feeds along a new axis 0."""
        if not self.batched:
            yield from self._whole_feeds()
            return
        if batch_size is None or batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}")
        self.dropped = 0
        held: dict[str, np.ndarray] | None = None
        seen = 0
        for index, raw in enumerate(self._chunks()):
            chunk = self._validate(raw, index)
            seen += _count(chunk, self.specs)
            held = chunk if held is None else _join(held, chunk, self.specs)
            n, start = _count(held, self.specs), 0
            while n - start >= batch_size:
                yield _batch(held, start, start + batch_size, self.specs)
                start += batch_size
            held = _slice(held, start, n, self.specs) if start < n else None
        if seen == 0:
            raise DataError(f"{self.source}: no samples (the data is empty)")
        if held is not None:
            n = _count(held, self.specs)
            if drop_last:
                self.dropped = n
            else:
                yield _batch(held, 0, n, self.specs)

    def _whole_feeds(self) -> Iterator[Batch]:
        self.dropped = 0
        seen = 0
        for index, raw in enumerate(self._chunks()):
            chunk = self._validate(raw, index)
            stacked = all(s.shape is not None and chunk[s.name].ndim == len(s.shape) + 1 for s in self.specs)
            feeds = ([{s.name: chunk[s.name][i] for s in self.specs} for i in range(chunk[self.specs[0].name].shape[0])]
                     if stacked and self.specs else [{s.name: chunk[s.name] for s in self.specs}])
            for feed in feeds:
                seen += 1
                yield Batch({k: np.require(v, requirements="C") for k, v in feed.items()}, None, 1)
        if seen == 0:
            raise DataError(f"{self.source}: no samples (the data is empty)")

    def first_sample(self) -> dict[str, np.ndarray]:
        """The arrays of the first item, validated: what input shapes are resolved from."""
        for index, raw in enumerate(self._chunks()):
            return self._validate(raw, index)
        raise DataError(f"{self.source}: no samples (the data is empty)")

    def _validate(self, raw, index: int) -> dict[str, np.ndarray]:
        where = f"{self.source} (item {index})" if self._per_item else self.source
        if not isinstance(raw, Mapping):
            raise DataError(f"{where}: got a {type(raw).__name__}; each item must be a dict {{input_name: array}}")
        chunk = {str(k): np.asarray(v) for k, v in raw.items()}
        expected = [s.name for s in self.specs]
        labels_key = LABELS if LABELS not in expected else None
        given = [k for k in chunk if k != labels_key]
        missing = [n for n in expected if n not in chunk]
        extra = [n for n in given if n not in expected]
        if missing or extra:
            detail = "; ".join(filter(None, [missing and f"missing {_names(missing)}", extra and f"unexpected {_names(extra)}"]))
            hint = ""
            if len(expected) == 1 and len(given) == 1:  # np.savez(path, a) names its array arr_0
                hint = f"; name the array after the input: np.savez(path, **{{{expected[0]!r}: array}})"
            raise DataError(f"{where}: data has inputs {_names(given)} but the model expects {_names(expected)} "
                            f"({detail}){hint}")
        whole = not self.batched
        stacked = whole and all(s.shape is not None and chunk[s.name].ndim == len(s.shape) + 1 for s in self.specs)
        counts = {}
        for spec in self.specs:
            arr = chunk[spec.name]
            _check_array(where, spec, arr[0] if stacked and len(arr) else arr, stacked)
            if spec.batched:
                counts[spec.name] = arr.shape[spec.batch_axis]
            elif stacked:
                counts[spec.name] = arr.shape[0]
        if len(set(counts.values())) > 1:
            raise DataError(f"{where}: inputs hold different numbers of samples ({_names(f'{k}={v}' for k, v in counts.items())})")
        if labels_key and labels_key in chunk:
            if whole:
                chunk.pop(labels_key)  # labels need a batch axis to line up with outputs
            else:
                chunk[LABELS] = _check_labels(where, chunk[LABELS], next(iter(counts.values()), None))
        return chunk


def _check_array(where: str, spec: InputSpec, arr: np.ndarray, stacked: bool = False) -> None:
    if spec.dtype == np.dtype(object):
        if arr.dtype.kind not in "OUS":
            raise DataError(f"{where}: input '{spec.name}' is {arr.dtype}, the model expects strings")
    elif arr.dtype != spec.dtype:
        raise DataError(f"{where}: input '{spec.name}' is {arr.dtype}, the model expects {spec.dtype}; "
                        f"convert it (e.g. array.astype(np.{spec.dtype.name}))")
    axis = spec.batch_axis if spec.batched else None
    if spec.shape is not None:
        if arr.ndim != len(spec.shape):
            along = f" with samples along dim {axis}" if axis is not None else ""
            raise DataError(f"{where}: input '{spec.name}' has shape {arr.shape} (rank {arr.ndim}), "
                            f"the model expects rank {len(spec.shape)}: {spec.describe()}{along}")
        for i, (got, dim) in enumerate(zip(arr.shape, spec.shape)):
            if i != axis and is_fixed(dim) and got != dim:
                raise DataError(f"{where}: input '{spec.name}' has shape {arr.shape}; dim {i} must be {dim} ({spec.describe()})"
                                + _samples_first_hint(spec, arr, stacked))
    if axis is not None and arr.ndim == 0:
        raise DataError(f"{where}: input '{spec.name}' is a scalar; it needs samples along dim {axis}")
    if axis is not None and arr.shape[axis] == 0:
        raise DataError(f"{where}: input '{spec.name}' holds no samples (shape {arr.shape})")
    if np.issubdtype(arr.dtype, np.floating):
        finite = np.isfinite(arr)
        if not finite.all():
            nan = int(np.isnan(arr).sum())
            inf = int(arr.size - finite.sum()) - nan
            first = int(np.argwhere(~finite)[0][axis or 0]) if arr.ndim else 0
            raise DataError(f"{where}: input '{spec.name}' contains {nan} NaN and {inf} Inf values "
                            f"(first in sample {first}); clean the data")


def _samples_first_hint(spec: InputSpec, arr: np.ndarray, stacked: bool) -> str:
    """Where samples were stacked first but the input carries them on another axis (a recurrent
    state [layers, batch, H]), how to lay them out."""
    axis = spec.batch_axis
    if stacked or not axis or arr.ndim != len(spec.shape):
        return ""
    moved = list(arr.shape[1:])
    moved.insert(axis, arr.shape[0])
    moved = tuple(moved)
    if all(i == axis or not is_fixed(d) or m == d for i, (m, d) in enumerate(zip(moved, spec.shape))):
        return f"; this input takes its samples along dim {axis}: np.moveaxis(a, 0, {axis}) gives shape {moved}"
    return ""


def _check_labels(where: str, labels: np.ndarray, samples: int | None) -> np.ndarray:
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: '{LABELS}' is {labels.dtype}; expected integer class indices")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or (samples is not None and labels.shape[0] != samples):
        raise DataError(f"{where}: '{LABELS}' has shape {labels.shape}; expected one class index per sample ({samples})")
    return labels


def _axes(chunk, specs) -> dict[str, int]:
    """The per-sample keys and their sample axis: batched inputs, and labels (axis 0)."""
    out = {s.name: s.batch_axis for s in specs if s.batched}
    if LABELS in chunk and LABELS not in {s.name for s in specs}:
        out[LABELS] = 0
    return out


def _count(chunk: Mapping[str, np.ndarray], specs: list[InputSpec]) -> int:
    for spec in specs:
        if spec.batched:
            return chunk[spec.name].shape[spec.batch_axis]
    return 1


def _join(a, b, specs):
    out = dict(b)
    for k, axis in _axes(b, specs).items():
        out[k] = np.concatenate([a[k], b[k]], axis=axis) if k in a else b[k]
    return out


def _slice(chunk, start, stop, specs):
    out = dict(chunk)
    for k, axis in _axes(chunk, specs).items():
        index = [slice(None)] * chunk[k].ndim
        index[axis] = slice(start, stop)
        out[k] = chunk[k][tuple(index)]
    return out


def _batch(chunk, start, stop, specs) -> Batch:
    part = _slice(chunk, start, stop, specs)
    labels = part.pop(LABELS, None) if LABELS not in {s.name for s in specs} else None
    return Batch({s.name: np.require(part[s.name], requirements="C") for s in specs}, labels, stop - start)


def _names(items) -> str:
    return "[" + ", ".join(str(i) for i in items) + "]"
