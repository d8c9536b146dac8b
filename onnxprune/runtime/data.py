"""Model inputs for check and bench: from an .npz file, a Python data loader, a folder of images
(images.py), or random.

Whatever the source, data arrives as chunks {input_name: array with a leading sample dim}, is
checked against the model's input specs (names, dtype, rank, fixed dims, finite values) before it
reaches ORT, and is re-cut into batches of the size asked. Only one chunk plus one partial batch is
held at a time, so a loader may stream a data set larger than memory.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from ..errors import ConfigError, DataError

LABELS = "labels"
DEFAULT_BATCH = 8
Dim = int | str | None


@dataclass(frozen=True)
class InputSpec:
    """One graph input: dims are ints when fixed, a name or None when dynamic; shape None = unknown rank."""

    name: str
    dtype: np.dtype
    shape: tuple[Dim, ...] | None

    @property
    def batched(self) -> bool:
        """Inputs of rank >= 1 carry samples along dim 0; scalars are fed whole with every batch."""
        return self.shape is None or len(self.shape) > 0

    @property
    def fixed_batch(self) -> int | None:
        if self.shape and _is_fixed(self.shape[0]):
            return self.shape[0]
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


def input_specs(model: onnx.ModelProto) -> list[InputSpec]:
    """The inputs a caller must feed: graph inputs that are not also initializers."""
    weights = {t.name for t in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in weights:
            continue
        if value.type.WhichOneof("value") != "tensor_type":
            raise DataError(f"input '{value.name}' is not a tensor; only plain tensor inputs can be fed")
        tensor = value.type.tensor_type
        try:
            dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type))
        except (KeyError, ValueError, TypeError):
            raise DataError(f"input '{value.name}' has element type {tensor.elem_type}, which numpy cannot hold") from None
        shape = None
        if tensor.HasField("shape"):
            shape = tuple(d.dim_value if d.dim_value > 0 else (d.dim_param or None) for d in tensor.shape.dim)
        specs.append(InputSpec(value.name, dtype, shape))
    return specs


_SHAPE_ITEM = re.compile(r"^(?P<name>.+):(?P<dims>\d+(?:x\d+)*)$")


def parse_shapes(text: str | Iterable[str] | None) -> dict[str, tuple[int, ...]]:
    """`input:1x3x224x224,mask:1x10` (or several such strings) -> {name: dims}. The name ends at the
    last colon, so TensorFlow-style names such as `input_1:0` work."""
    if text is None:
        return {}
    parts = [text] if isinstance(text, str) else list(text)
    shapes: dict[str, tuple[int, ...]] = {}
    for part in parts:
        for item in filter(None, (s.strip() for s in part.split(","))):
            m = _SHAPE_ITEM.match(item)
            if not m:
                raise ConfigError(f"--shape '{item}': expected NAME:DIMS such as input:1x3x224x224")
            name, dims = m["name"], tuple(int(d) for d in m["dims"].split("x"))
            if 0 in dims:
                raise ConfigError(f"--shape '{item}': dims must be positive")
            if name in shapes:
                raise ConfigError(f"--shape gives input '{name}' twice")
            shapes[name] = dims
    return shapes


def resolve_batch(specs: list[InputSpec], batch: int | None, shapes: Mapping[str, tuple[int, ...]] | None = None,
                  default: int = DEFAULT_BATCH) -> int:
    """The batch size to run: a fixed leading dim in the model wins (and must agree with `batch`),
    then `batch`, then the leading dim of a --shape, then `default`."""
    if batch is not None and batch < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch}")
    fixed = {s.name: s.fixed_batch for s in specs if s.fixed_batch is not None}
    if len(set(fixed.values())) > 1:
        raise DataError(f"inputs have different fixed leading dims ({_names(f'{k}={v}' for k, v in fixed.items())}); "
                        "there is no batch dim to iterate over")
    if fixed:
        name, size = next(iter(fixed.items()))
        if batch is not None and batch != size:
            raise DataError(f"input '{name}' has a fixed batch of {size}; use batch size {size} (--batch {size})")
        return size
    if batch is not None:
        return batch
    for dims in (shapes or {}).values():
        if dims:
            return dims[0]
    return default


def _looks_like_batch(dim: Dim) -> bool:
    return isinstance(dim, str) and (dim.lower() in {"n", "b", "bs"} or "batch" in dim.lower())


def concrete_shape(spec: InputSpec, shapes: Mapping[str, tuple[int, ...]] | None, batch: int) -> tuple[int, ...]:
    """A fixed shape for random data. Dim 0 is the batch; a dynamic dim elsewhere must come from
    --shape unless its name says it is the batch (`batch`, `batch_size`, `N`, ...)."""
    override = (shapes or {}).get(spec.name)
    if override is not None:
        if spec.shape is not None and len(override) != len(spec.shape):
            raise ConfigError(f"--shape {spec.name}: gives {len(override)} dims, the model input is {spec.describe()}")
        for i, (given, dim) in enumerate(zip(override, spec.shape or override)):
            if _is_fixed(dim) and given != dim:
                raise ConfigError(f"--shape {spec.name}: dim {i} is {given}, but the model fixes it to {dim} ({spec.describe()})")
        return (batch, *override[1:]) if spec.batched and override else tuple(override)
    if spec.shape is None:
        raise DataError(f"input '{spec.name}' has no shape in the model; give one with --shape {spec.name}:DIMS")
    dims, unknown = [], []
    for i, dim in enumerate(spec.shape):
        if _is_fixed(dim):
            dims.append(dim)
        elif i == 0 or _looks_like_batch(dim):
            dims.append(batch)
        else:
            dims.append(dim or "?")
            unknown.append(i)
    if unknown:
        example = "x".join(str(d) for d in dims)
        raise DataError(f"input '{spec.name}' {spec.describe()} has dynamic dims ({_names(str(spec.shape[i]) for i in unknown)}) "
                        f"that random data cannot guess; pass --shape {spec.name}:{example} with numbers for them")
    return tuple(dims)


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

    def batches(self, batch_size: int, drop_last: bool = False) -> Iterator[Batch]:
        """Batches of exactly `batch_size` samples, the last one smaller unless `drop_last` (a model
        with a fixed batch cannot take it); `dropped` then says how many samples were left out."""
        if batch_size < 1:
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
        counts = {}
        for spec in self.specs:
            arr = chunk[spec.name]
            _check_array(where, spec, arr)
            if spec.batched:
                counts[spec.name] = arr.shape[0]
        if len(set(counts.values())) > 1:
            raise DataError(f"{where}: inputs hold different numbers of samples ({_names(f'{k}={v}' for k, v in counts.items())})")
        if labels_key and labels_key in chunk:
            chunk[LABELS] = _check_labels(where, chunk[LABELS], next(iter(counts.values()), None))
        return chunk


def _check_array(where: str, spec: InputSpec, arr: np.ndarray) -> None:
    if arr.dtype != spec.dtype:
        raise DataError(f"{where}: input '{spec.name}' is {arr.dtype}, the model expects {spec.dtype}; "
                        f"convert it (e.g. array.astype(np.{spec.dtype.name}))")
    if spec.shape is not None:
        if arr.ndim != len(spec.shape):
            raise DataError(f"{where}: input '{spec.name}' has shape {arr.shape} (rank {arr.ndim}), "
                            f"the model expects rank {len(spec.shape)}: {spec.describe()} with samples along dim 0")
        for i, (got, dim) in enumerate(zip(arr.shape, spec.shape)):
            if i > 0 and _is_fixed(dim) and got != dim:
                raise DataError(f"{where}: input '{spec.name}' has shape {arr.shape}; dim {i} must be {dim} ({spec.describe()})")
    if spec.batched and arr.ndim == 0:
        raise DataError(f"{where}: input '{spec.name}' is a scalar; it needs samples along dim 0")
    if spec.batched and arr.shape[0] == 0:
        raise DataError(f"{where}: input '{spec.name}' holds no samples (shape {arr.shape})")
    if np.issubdtype(arr.dtype, np.floating):
        finite = np.isfinite(arr)
        if not finite.all():
            nan = int(np.isnan(arr).sum())
            inf = int(arr.size - finite.sum()) - nan
            first = int(np.argwhere(~finite)[0][0]) if arr.ndim else 0
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


def _count(chunk: Mapping[str, np.ndarray], specs: list[InputSpec]) -> int:
    for spec in specs:
        if spec.batched:
            return chunk[spec.name].shape[0]
    return 1


def _keys(chunk, specs):
    """The per-sample keys: batched inputs and labels."""
    return [s.name for s in specs if s.batched] + ([LABELS] if LABELS in chunk and LABELS not in {s.name for s in specs} else [])


def _join(a, b, specs):
    out = dict(b)
    for k in _keys(b, specs):
        out[k] = np.concatenate([a[k], b[k]]) if k in a else b[k]
    return out


def _slice(chunk, start, stop, specs):
    out = dict(chunk)
    for k in _keys(chunk, specs):
        out[k] = chunk[k][start:stop]
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


def random_data(specs: list[InputSpec], shapes: Mapping[str, tuple[int, ...]] | None = None, batch: int = 1,
                seed: int = 0, n_batches: int = 1) -> Dataset:
    """Seeded inputs shaped from the specs: floats ~ N(0, 1), integers in [0, 2), bools at random.
    Small integers keep index-like inputs (token ids, gather indices) in range for any model."""
    if n_batches < 1:
        raise ConfigError(f"number of batches must be at least 1, got {n_batches}")
    unknown = set(shapes or {}) - {s.name for s in specs}
    if unknown:
        raise ConfigError(f"--shape names {_names(sorted(unknown))}, but the model inputs are {_names(s.name for s in specs)}")
    fixed = {s.name: concrete_shape(s, shapes, batch) for s in specs}

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
