"""Model inputs for check and bench: from an .npz file, a Python data loader, a folder of images
(images.py), or random.

Whatever the source, data arrives as chunks {input_name: array}, with samples along each input's
batch axis where the model has one (shapes.batch_axes: axis 1 of a [2, batch, 128] state), else as
whole feeds. Chunks are checked against the model's input specs (names, dtype, rank, fixed dims,
finite values) before they reach ORT, and re-cut into batches of the size asked. Only one chunk plus one partial batch is
held at a time, so a loader may stream a data set larger than memory.
"""

from __future__ import annotations

import hashlib
import importlib.util
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx

from ..errors import ConfigError, DataError
from ..shapes import ResolvedShapes, batch_axes, parse_shapes, resolve_shapes  # noqa: F401 (parse_shapes re-exported)

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
        if self.batched and self.shape and _is_fixed(self.shape[self.batch_axis]):
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


def _is_fixed(dim: Dim) -> bool:
    return isinstance(dim, int) and dim > 0


def with_batch_axes(specs: list[InputSpec]) -> list[InputSpec]:
    """The specs with their batch axes as the model states them (see shapes.batch_axes)."""
    axes = batch_axes({s.name: s.shape for s in specs})
    return [replace(s, batch_axis=axes[s.name]) for s in specs]


_NON_TENSOR = "random data cannot make it; pass --calib data that holds it (calib= from Python)"


def input_specs(model: onnx.ModelProto) -> list[InputSpec]:
    """The inputs a caller must feed: graph inputs that are not also initializers."""
    weights = {t.name for t in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in weights:
            continue
        kind = value.type.WhichOneof("value")
        if kind != "tensor_type":
            raise DataError(f"input '{value.name}' is a {kind.replace('_type', '') if kind else 'value of unknown type'}, "
                            "not a tensor; onnxprune feeds tensors only")
        tensor = value.type.tensor_type
        if tensor.elem_type == onnx.TensorProto.STRING:
            dtype = np.dtype(object)
        else:
            try:
                dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type))
            except (KeyError, ValueError, TypeError):
                raise DataError(f"input '{value.name}' has element type {tensor.elem_type}, which numpy cannot hold") from None
        shape = None
        if tensor.HasField("shape"):
            shape = tuple(d.dim_value if d.dim_value > 0 else (d.dim_param or None) for d in tensor.shape.dim)
        specs.append(InputSpec(value.name, dtype, shape))
    return with_batch_axes(specs)


def resolve_batch(specs: list[InputSpec], batch: int | None, shapes: Mapping[str, tuple[int, ...]] | None = None,
                  default: int = DEFAULT_BATCH) -> int | None:
    """Samples per run along the batch axis: a fixed batch dim in the model wins (and must agree with
    `batch`), then `batch`, then the batch dim of a --shape, then `default`. None when the model has
    no batch axis: every feed is run whole."""
    if batch is not None and batch < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch}")
    batched = [s for s in specs if s.batched]
    if not batched:
        return None
    fixed = {s.name: s.fixed_batch for s in batched if s.fixed_batch is not None}
    if len(set(fixed.values())) > 1:
        raise DataError(f"inputs have different fixed batch dims ({_names(f'{k}={v}' for k, v in fixed.items())})")
    if fixed:
        name, size = next(iter(fixed.items()))
        if batch is not None and batch != size:
            raise DataError(f"input '{name}' has a fixed batch of {size}; use batch size {size} (--batch {size}, batch= from Python)")
        return size
    if batch is not None:
        return batch
    for s in batched:
        dims = (shapes or {}).get(s.name)
        if dims and len(dims) > s.batch_axis:
            return dims[s.batch_axis]
    return default


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
            raise DataError(f"{where}: data has inputs {_names(given)} but the model expects {_names(expected)} ({detail})")
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
            if i != axis and _is_fixed(dim) and got != dim:
                raise DataError(f"{where}: input '{spec.name}' has shape {arr.shape}; dim {i} must be {dim} ({spec.describe()})")
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


def load_data(path, specs: list[InputSpec], preprocess=None) -> Dataset:
    """Data from an .npz (arrays keyed by input name, samples along dim 0, optional `labels`), a
    .py file defining load_data() that returns or yields dicts {input_name: array}, or a folder of
    images for a model with one 4-D float input (see runtime/images.py).

    `preprocess` (a spec string such as "resize=256,crop=224,mean=0.485/0.456/0.406" or an
    images.Preprocess) applies to a folder only; without it the folder's preprocess.txt is used,
    else the defaults. `path` may also be an images.ImageFolder carrying its own preprocessing."""
    from .images import ImageFolder, load_folder

    if isinstance(path, ImageFolder):
        preprocess = path.preprocess if preprocess is None else preprocess
        path = path.path
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or folder")
    if p.is_dir():
        return load_folder(p, specs, preprocess)
    if preprocess is not None:
        raise ConfigError(f"{p}: a preprocessing spec applies to a folder of images, not to a file")
    if p.suffix == ".npz":
        arrays = _read_npz(p)
        dataset = Dataset(lambda: [arrays], specs, str(p))
        dataset._validate(arrays, 0)
        return dataset
    if p.suffix == ".py":
        return Dataset(_loader_chunks(p), specs, str(p), per_item=True)
    raise DataError(f"{p}: unknown data format '{p.suffix}'; expected an .npz file, a .py file defining load_data() "
                    "or a folder of images")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    if not arrays:
        raise DataError(f"{path}: holds no arrays (the data is empty)")
    return arrays


def _loader_chunks(path: Path) -> Callable[[], Iterable[Mapping]]:
    module_name = "onnxprune_loader_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise DataError(f"{path}: importing it raised {type(exc).__name__}: {exc}") from None
    load = getattr(module, "load_data", None)
    if not callable(load):
        raise DataError(f"{path}: defines no load_data() function")

    def chunks():
        try:
            produced = load()
        except Exception as exc:
            raise DataError(f"{path}: load_data() raised {type(exc).__name__}: {exc}") from None
        if isinstance(produced, Mapping):
            yield produced
            return
        try:
            items = iter(produced)
        except TypeError:
            raise DataError(f"{path}: load_data() returned a {type(produced).__name__}; "
                            "return or yield dicts {input_name: array}") from None
        while True:
            try:
                item = next(items)
            except StopIteration:
                return
            except Exception as exc:
                raise DataError(f"{path}: load_data() raised {type(exc).__name__}: {exc}") from None
            yield item

    return chunks


def random_data(specs: list[InputSpec], shapes: ResolvedShapes | Mapping[str, tuple[int, ...]] | None = None,
                batch: int | None = 1, seed: int = 0, n_batches: int = 1) -> Dataset:
    """Seeded inputs of the resolved shapes (`shapes`: a ResolvedShapes, or --shape values resolved
    here), `batch` samples along each batch axis: floats ~ N(0, 1), integers in [0, 2), bools at
    random. Small integers keep index-like inputs (token ids, gather indices) in range."""
    if n_batches < 1:
        raise ConfigError(f"number of batches must be at least 1, got {n_batches}")
    if not isinstance(shapes, ResolvedShapes):
        shapes = resolve_shapes(given=shapes, declared={s.name: s.shape for s in specs},
                                axes={s.name: s.batch_axis if s.batched else None for s in specs}, resizes=False)
    for s in specs:
        if s.dtype == np.dtype(object):
            raise DataError(f"input '{s.name}' holds strings; {_NON_TENSOR}")
    if batch is not None and shapes.batched:
        shapes = shapes.with_batch(batch)
    fixed = {s.name: shapes[s.name] for s in specs}

    def chunks():
        rng = np.random.default_rng(seed)
        for _ in range(n_batches):
            yield {s.name: _random_array(rng, s.dtype, fixed[s.name]) for s in specs}

    return Dataset(chunks, specs, f"random inputs (seed {seed})", random=True)


def _random_array(rng: np.random.Generator, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(np.bool_)
    return rng.integers(0, 2, shape).astype(dtype)
