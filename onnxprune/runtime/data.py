"""Model inputs for check and bench: from an .npz file, a Python data loader, a folder of images
(images.py), or random, as a Dataset (dataset.py) checked against the model's input specs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
import onnx

from ..config import ImageFolder
from ..errors import ConfigError, DataError
from ..shapes import ResolvedShapes, parse_shapes, resolve_shapes  # noqa: F401 (parse_shapes re-exported)
from .dataset import (DEFAULT_BATCH, LABELS, Batch, Dataset, Dim, InputSpec,  # noqa: F401 (re-exported)
                      _names, with_batch_axes)


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


def load_data(path, specs: list[InputSpec], preprocess=None) -> Dataset:
    """Data from an .npz (arrays keyed by input name, samples along dim 0, optional `labels`), a
    .py file defining load_data() that returns or yields dicts {input_name: array}, or a folder of
    images for a model with one 4-D float input (see runtime/images.py).

    `preprocess` (a spec string such as "resize=256,crop=224,mean=0.485/0.456/0.406" or an
    images.Preprocess) applies to a folder only; without it the folder's preprocess.txt is used,
    else the defaults. `path` may also be an images.ImageFolder carrying its own preprocessing."""
    from .images import load_folder

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
    if p.suffix == ".npy":  # one array: the samples of a model's one input
        if len(specs) != 1:
            raise DataError(f"{p}: an .npy holds one array, and this model has {len(specs)} inputs "
                            f"({', '.join(s.name for s in specs)}); use an .npz keyed by input name")
        try:
            array = np.load(p, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"{p}: not a readable .npy file ({exc})") from None
        arrays = {specs[0].name: array}
        dataset = Dataset(lambda: [arrays], specs, str(p))
        dataset._validate(arrays, 0)
        return dataset
    raise DataError(f"{p}: unknown data format '{p.suffix}'; expected an .npz file (or an .npy for a model with one "
                    "input), a .py file defining load_data() or a folder of images")


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
