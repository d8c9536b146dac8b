"""Concrete input shapes, resolved once before anything else and read by every later step.

Real exports leave dims dynamic (batch, image H/W, sequence length). Shape inference, the analysis,
the cost model, target selection, repair, validation and the report all need numbers, and they must
all use the same ones. `resolve_shapes` picks them, in this order:

1. `--shape NAME:DIMS` (what the user said),
2. the calibration data (the shapes of its first sample),
3. a guess a user would accept: batch 1; an image-like input [N,C,H,W] or [N,H,W,C] with C in
   {1, 3, 4} gets 224 x 224 (640 x 640 when the model resizes feature maps, as detection and
   segmentation necks do); a symbolic dim shared by several inputs gets one value; a dynamic
   leading dim 1 even where it is not a batch axis; one other dynamic dim per input (a sequence
   length) gets 128. Each guess is stated in `notes`.
4. else one error naming --shape with a ready example.

The result is a frozen `ResolvedShapes`. It never changes the model: the written model keeps its
dynamic dims. `ModelGraph(model, shapes=...)` runs shape inference with these dims fixed.

The batch axis is where the model says it is: a symbolic dim that every input with dims shares
(at any position: a recurrent state [2, batch, 128] carries it on axis 1), or axis 0 when all inputs
agree on dim 0 (one input always does). Otherwise there is no batch axis and data is fed whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import onnx

from .errors import ConfigError, DataError

Dim = int | str | None
GUESS_IMAGE = 224
GUESS_DETECTION = 640
GUESS_SEQUENCE = 128
IMAGE_CHANNELS = (1, 3, 4)
# Ops that resize feature maps: their presence says "detection / segmentation neck", 640 x 640.
RESIZING_OPS = {"Resize", "Upsample", "ConvTranspose", "DepthToSpace"}


def is_fixed(dim: Dim) -> bool:
    return isinstance(dim, int) and dim > 0


@dataclass(frozen=True)
class InputShape:
    """One graph input: its declared dims, the concrete dims used, and its batch axis (or None)."""

    name: str
    declared: tuple[Dim, ...] | None
    dims: tuple[int, ...]
    batch_axis: int | None = None

    def text(self) -> str:
        return f"{self.name}:{'x'.join(map(str, self.dims)) if self.dims else '[]'}"


@dataclass(frozen=True)
class ResolvedShapes:
    """Concrete dims of every tensor input, where they came from, and what was guessed.

    `source` says where the dims came from: "model" (all static), "--shape", "calibration data",
    "guessed", "batch 1" (only a dynamic batch, set to 1), or several of these joined by ", "."""

    inputs: tuple[InputShape, ...]
    source: str = "model"
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __getitem__(self, name: str) -> tuple[int, ...]:
        return self.get(name).dims

    def __contains__(self, name: str) -> bool:
        return any(i.name == name for i in self.inputs)

    def get(self, name: str) -> InputShape:
        for i in self.inputs:
            if i.name == name:
                return i
        raise KeyError(name)

    def as_dict(self) -> dict[str, tuple[int, ...]]:
        return {i.name: i.dims for i in self.inputs}

    @property
    def batched(self) -> bool:
        """Whether any input carries samples along a batch axis."""
        return any(i.batch_axis is not None for i in self.inputs)

    def batch_size(self) -> int | None:
        """The size of the batch axis in these dims (None without a batch axis)."""
        for i in self.inputs:
            if i.batch_axis is not None:
                return i.dims[i.batch_axis]
        return None

    def with_batch(self, size: int) -> ResolvedShapes:
        """The same shapes with every batch axis set to `size` (fixed batch dims stay as declared)."""
        out = []
        for i in self.inputs:
            if i.batch_axis is not None and not (i.declared and is_fixed(i.declared[i.batch_axis])):
                dims = list(i.dims)
                dims[i.batch_axis] = size
                i = replace(i, dims=tuple(dims))
            out.append(i)
        return replace(self, inputs=tuple(out))

    def per_sample(self) -> ResolvedShapes:
        """What the cost model counts: a dynamic batch axis set to 1."""
        return self.with_batch(1)

    def describe(self) -> str:
        return ", ".join(i.text() for i in self.inputs)

    def fix_inputs(self, model: onnx.ModelProto) -> None:
        """Set the input dims of `model` (a skeleton for shape inference, never the output) to these."""
        for vi in model.graph.input:
            if vi.name not in self or not vi.type.HasField("tensor_type"):
                continue
            dims = self[vi.name]
            shape = vi.type.tensor_type.shape
            del shape.dim[:]
            for d in dims:
                shape.dim.add().dim_value = d


def declared_inputs(model: onnx.ModelProto) -> dict[str, tuple[Dim, ...] | None]:
    """The tensor inputs a caller feeds (graph inputs that are not initializers) and their dims."""
    weights = {t.name for t in model.graph.initializer}
    out: dict[str, tuple[Dim, ...] | None] = {}
    for vi in model.graph.input:
        if vi.name in weights or not vi.type.HasField("tensor_type"):
            continue
        tt = vi.type.tensor_type
        out[vi.name] = (tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or None)
                              for d in tt.shape.dim) if tt.HasField("shape") else None)
    return out


def batch_axes(declared: Mapping[str, tuple[Dim, ...] | None]) -> dict[str, int | None]:
    """Per input, the axis that carries samples, or None (see the module docstring)."""
    ranked = {n: d for n, d in declared.items() if d}  # scalars and unknown ranks carry no batch
    axes: dict[str, int | None] = {n: None for n in declared}
    if not ranked:
        return axes
    if len(ranked) == 1:
        name = next(iter(ranked))
        axes[name] = 0
        return axes
    shared = None
    common = set.intersection(*({d for d in dims if isinstance(d, str)} for dims in ranked.values()))
    if common:
        shared = min(common, key=lambda s: (min(dims.index(s) for dims in ranked.values()), s))
        for name, dims in ranked.items():
            axes[name] = dims.index(shared)
        return axes
    firsts = {dims[0] for dims in ranked.values()}
    if len(firsts) == 1 and next(iter(firsts)) is not None:
        for name in ranked:
            axes[name] = 0
    return axes


_DIMS = re.compile(r"^\[?\s*(\d+(?:\s*[x,]\s*\d+)*)?\s*\]?$")


def parse_shapes(text: str | Iterable[str] | None) -> dict[str, tuple[int, ...]]:
    """`--shape` values: `x:1x3x224x224`, `x:[1,3,224,224]` or `x:1,3,224,224`, several per string
    separated by spaces or `;` (or by commas between `x` forms). The name ends at the last colon, so
    TensorFlow names such as `input_1:0` work."""
    if text is None:
        return {}
    parts = [text] if isinstance(text, str) else list(text)
    shapes: dict[str, tuple[int, ...]] = {}
    for part in parts:
        for item in _split_items(part):
            name, sep, dims_text = item.rpartition(":")
            m = _DIMS.match(dims_text.strip())
            if not sep or not name or not m:
                raise ConfigError(f"--shape '{item}': expected NAME:DIMS such as input:1x3x224x224 "
                                  "(or input:[1,3,224,224])")
            dims = tuple(int(d) for d in re.split(r"\s*[x,]\s*", m.group(1))) if m.group(1) else ()
            if 0 in dims:
                raise ConfigError(f"--shape '{item}': dims must be positive")
            if name in shapes:
                raise ConfigError(f"--shape gives input '{name}' twice")
            shapes[name] = dims
    return shapes


def _split_items(text: str) -> list[str]:
    """Items of one --shape string. Commas separate items unless they sit inside [...] or the
    item is written with commas (`x:1,3,224,224`): a comma followed by digits continues it."""
    items, current, depth = [], "", 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch in " ;" and depth == 0 or (ch == "," and depth == 0 and not re.match(r"\s*\d+(?:\s*[,x\]]|\s*$|[\s;])", text[i + 1:])):
            if current.strip():
                items.append(current.strip())
            current = ""
            continue
        current += ch
    if current.strip():
        items.append(current.strip())
    return items


def _guess_note(name: str, what: str) -> str:
    return f"input '{name}': {what}"


def _example(declared: Mapping[str, tuple[Dim, ...] | None], dims: Mapping[str, list]) -> str:
    parts = []
    for name, decl in declared.items():
        shape = dims.get(name) or list(decl or [])
        parts.append(f"--shape {name}:{'x'.join(str(d) if is_fixed(d) else 'N' for d in shape) or '1'}")
    return " ".join(parts)


def resolve_shapes(model: onnx.ModelProto | None = None, given: Mapping[str, tuple[int, ...]] | None = None,
                   sample: Mapping[str, np.ndarray] | None = None, *,
                   declared: Mapping[str, tuple[Dim, ...] | None] | None = None,
                   resizes: bool | None = None, axes: Mapping[str, int | None] | None = None,
                   accept: Callable[[ResolvedShapes], bool] | None = None) -> ResolvedShapes:
    """Concrete dims for every tensor input of `model` (or of `declared`, with `resizes` saying
    whether the model resizes feature maps): from `given` (--shape), else `sample` (the first
    calibration sample, arrays keyed by input name), else a stated guess: the first candidate that
    `accept` (e.g. "ONNX Runtime runs the model at these shapes") takes."""
    if declared is None:
        declared = declared_inputs(model)
    if resizes is None:
        resizes = model is not None and any(n.op_type in RESIZING_OPS for n in model.graph.node)
    given = dict(given or {})
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ConfigError(f"--shape names [{', '.join(unknown)}], but the model inputs are [{', '.join(declared)}]")
    axes = dict(axes) if axes is not None else batch_axes(declared)
    symbols: dict[str, int] = {}   # one value per symbolic dim name
    out: dict[str, list] = {}
    sources: set[str] = set()
    notes: list[str] = []

    # 1 and 2: what was given or seen; symbols they pin down hold for the other inputs too.
    for name, decl in declared.items():
        if name in given:
            dims, where = given[name], "--shape"
        elif sample is not None and name in sample:
            dims, where = tuple(np.shape(sample[name])), "calibration data"
            if decl is not None and len(dims) == len(decl) + 1 and axes[name] is None:
                dims = dims[1:]  # whole feeds stacked along a leading axis
        else:
            continue
        _check_given(name, decl, dims, where)
        dims = list(dims)
        if where != "--shape" and axes[name] is not None and decl is not None and len(dims) == len(decl):
            dims[axes[name]] = decl[axes[name]] if is_fixed(decl[axes[name]]) else 1  # one sample
        out[name] = dims
        sources.add(where)
        for d, v in zip(decl or (), dims):
            if isinstance(d, str):
                symbols.setdefault(d, v)
    if sample is not None and not any(a is not None for a in axes.values()):
        notes.extend(_whole_feed_note(declared, sample))
    # 3: guesses for the rest, the first candidate that `accept` takes.
    primary = GUESS_DETECTION if resizes else GUESS_IMAGE
    candidates = list(dict.fromkeys([((primary, primary), GUESS_SEQUENCE), *_FALLBACKS]))
    first_error = None
    for k, (hw, seq) in enumerate(candidates):
        result = _guess(declared, axes, dict(out), dict(symbols), set(sources), list(notes), hw, seq)
        if accept is None or "guessed" not in result.source or accept(result):
            return result
        first_error = first_error or result
        if k + 1 >= MAX_TRIES:
            break
    raise DataError(f"the model does not run at the guessed input shapes ({first_error.describe()}, nor at "
                    f"{min(len(candidates), MAX_TRIES) - 1} other guesses); give the shape to use with --shape (shapes= "
                    f"from Python), e.g. {' '.join('--shape ' + i.text() for i in first_error.inputs)}, or pass --calib "
                    f"data (calib=)")


def _whole_feed_note(declared, sample) -> list[str]:
    """Calibration data for a model with no batch axis is run whole. Where every input leaves dim 0
    dynamic under a name of its own (tf2onnx: unk__330, unk__331) and the data holds the same n > 1
    rows there, those rows are most likely n samples: one note says they make one feed, and how to
    give them as n."""
    ranked = {n: d for n, d in declared.items() if d}
    if not ranked or any(is_fixed(d[0]) or n not in sample or np.ndim(sample[n]) != len(d) for n, d in ranked.items()):
        return []
    rows = {np.shape(sample[n])[0] for n in ranked}
    if len(rows) != 1 or (n := rows.pop()) < 2:
        return []
    names = list(ranked)
    first = names[0]
    return [f"the model's inputs share no batch axis (dim 0 of {', '.join(names)} are different unknowns), so "
            f"the calibration data is run whole: one feed of {n} rows, not {n} samples (too few to hold any "
            f"out for the criterion race and repair); if those rows are samples, stack them along a new axis 0 "
            f"({first} of shape {[n, 1, *np.shape(sample[first])[1:]]})"]


# Other image sizes (H, W) and sequence lengths tried when the first guess does not run: square
# sizes, then the wide strips text recognizers take.
_FALLBACKS = [((224, 224), 128), ((48, 320), 512), ((32, 320), 64), ((320, 320), 256), ((640, 640), 16000),
              ((64, 256), 32)]
MAX_TRIES = 6


def _guess(declared, axes, out, symbols, sources, notes, hw: tuple[int, int], seq: int) -> ResolvedShapes:
    guessed = []
    for name, decl in declared.items():
        if name in out:
            continue
        if decl is None:
            raise DataError(f"input '{name}' has no shape in the model; give one with --shape {name}:DIMS "
                            "(shapes= from Python)")
        dims = [d if is_fixed(d) else None for d in decl]
        for i, d in enumerate(decl):
            if dims[i] is None and isinstance(d, str) and d in symbols:
                dims[i] = symbols[d]
        if axes[name] is not None and dims[axes[name]] is None:
            dims[axes[name]] = 1
        elif dims and dims[0] is None:
            dims[0] = 1  # a dynamic leading dim is a batch in all but name (tf2onnx: unk__330, unk__331)
        said = _guess_spatial(decl, dims, hw)
        open_dims = [i for i, d in enumerate(dims) if d is None]
        if len(open_dims) == 1:
            dims[open_dims[0]] = seq
            said = said or f"dim {open_dims[0]} ({decl[open_dims[0]] or '?'}) = {seq}"
        elif open_dims:
            raise DataError(f"input '{name}' has dynamic dims {[decl[i] or '?' for i in open_dims]} that cannot be "
                            f"guessed; give the shape to use, e.g. {_example({name: decl}, {name: dims})} "
                            "(numbers for N; shapes= from Python), or pass --calib data (calib=)")
        for i, d in enumerate(decl):
            if isinstance(d, str):
                symbols.setdefault(d, dims[i])
        out[name] = dims
        if any(not is_fixed(d) and i != (axes[name] if axes[name] is not None else 0) for i, d in enumerate(decl)):
            guessed.append(name)
            if said:
                notes.append(_guess_note(name, said))
        elif any(not is_fixed(d) for d in decl):
            sources.add("batch 1")
    if guessed:
        sources.add("guessed")
    inputs = tuple(InputShape(n, tuple(declared[n]) if declared[n] is not None else None, tuple(out[n]), axes[n])
                   for n in declared)
    source = "model" if not sources else ", ".join(
        s for s in ("--shape", "calibration data", "guessed", "batch 1") if s in sources)
    result = ResolvedShapes(inputs, source, ())
    if guessed:
        notes.insert(0, f"input shapes guessed: {', '.join(result.get(n).text() for n in guessed)}; "
                        "pass --shape or --calib data (shapes=, calib= from Python) to use others")
    return replace(result, notes=tuple(notes))


def _guess_spatial(decl, dims, size: tuple[int, int]) -> str | None:
    """Image-like rank-4 inputs: the dynamic H and W of [N,C,H,W] or [N,H,W,C] with C in {1,3,4}."""
    if len(decl) != 4:
        return None
    for c_axis, hw in ((1, (2, 3)), (3, (1, 2))):
        if decl[c_axis] in IMAGE_CHANNELS and any(dims[a] is None for a in hw):
            for a, v in zip(hw, size):
                if dims[a] is None:
                    dims[a] = v
            return None
    return None


def _check_given(name: str, decl, dims, where: str) -> None:
    if decl is None:
        return
    if len(dims) != len(decl):
        raise ConfigError(f"{where} {name}: gives {len(dims)} dims {list(dims)}, the model input has "
                          f"{len(decl)}: [{','.join(str(d) if d is not None else '?' for d in decl)}]")
    for i, (v, d) in enumerate(zip(dims, decl)):
        if is_fixed(d) and v != d and where == "--shape":
            raise ConfigError(f"--shape {name}: dim {i} is {v}, but the model fixes it to {d}")
