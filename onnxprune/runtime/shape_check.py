"""The written model must run wherever the original ran: both are run once more at a batch of 2 and,
where the model has dynamic sizes (image H/W, sequence length), at another size that the original
accepts, and the outputs compared.

Anything computed at the resolved shapes that slipped into the written graph (a Reshape target
holding batch 1, a Resize size, a folded Shape value) shows here as a run that fails, an output of
another shape, or, in exact mode, other values. Validation at the resolved shapes alone cannot see it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from ..shapes import ResolvedShapes, is_fixed
from .data import Dataset, input_specs, random_data
from .compare import differences, ranked_outputs, same_rows, tolerance
from .quantstep import output_quant_steps, split_by_step, step_failure
from .sessions import create_session

BATCH = 2
STEP = 32  # another size: +32 keeps a multiple of a detector's stride 32 where the first one was


@dataclass
class ShapeRun:
    """One run of both models at other input dims: `passed` None when the original does not run
    there (nothing to hold the pruned model to), with why in `detail`."""

    what: str
    dims: str
    passed: bool | None
    detail: str = ""

    def to_dict(self) -> dict:
        return {"what": self.what, "dims": self.dims, "passed": self.passed, "detail": self.detail}


def variants(shapes: ResolvedShapes) -> list[tuple[str, ResolvedShapes]]:
    """(what, shapes) to run besides `shapes`: batch 2 where the batch is dynamic; every other
    dynamic dim one STEP larger (a symbol shared by several inputs moves together)."""
    out = []
    if any(i.batch_axis is not None and i.declared and not is_fixed(i.declared[i.batch_axis]) for i in shapes.inputs):
        size = BATCH if shapes.batch_size() != BATCH else BATCH + 1
        out.append((f"batch {size}", shapes.with_batch(size)))
    moved: dict[object, int] = {}
    inputs = []
    for i in shapes.inputs:
        dims = list(i.dims)
        for axis, declared in enumerate(i.declared or ()):
            if axis == i.batch_axis or is_fixed(declared):
                continue
            key = declared if isinstance(declared, str) else (i.name, axis)
            moved.setdefault(key, dims[axis] + STEP if dims[axis] >= STEP else dims[axis] + 1)
            dims[axis] = moved[key]
        inputs.append(type(i)(i.name, i.declared, tuple(dims), i.batch_axis))
    if moved:
        other = type(shapes)(tuple(inputs), shapes.source, shapes.notes)
        sizes = "x".join(str(v) for v in dict.fromkeys(moved.values()))
        out.append((f"size {sizes}", other))
    return out


def check_other_shapes(original, written, shapes: ResolvedShapes, device: str = "cpu", exact: bool = False,
                       data: Dataset | None = None, atol: float = 1e-4, rtol: float = 1e-3) -> list[ShapeRun]:
    """Run `original` and `written` (protos or paths) at each of `variants(shapes)`; a run fails when
    the written model fails where the original ran, an output's shape differs, or (exact) its values
    differ beyond atol + rtol * |reference| (a QDQ output also one quantization step on a minority
    of values, as the main check allows). The batch run takes its samples from `data` when given."""
    runs: list[ShapeRun] = []
    todo = variants(shapes)
    if not todo:
        return runs
    proto = original if isinstance(original, onnx.ModelProto) else onnx.load(str(original), load_external_data=False)
    specs = input_specs(proto)
    steps = output_quant_steps(original) if exact else {}
    ranked = ranked_outputs(proto) if exact else set()
    with create_session(original, device, optimize=False) as sess_a, \
            create_session(written, device, optimize=False) as sess_b:
        for what, other in todo:
            dims = other.describe()
            feeds = _feeds(specs, other, data if what.startswith("batch") else None)
            try:
                out_a = sess_a.run(feeds)
            except Exception:  # noqa: BLE001 - the original does not run there: nothing to compare
                runs.append(ShapeRun(what, dims, None, "the original does not run there"))
                continue
            try:
                out_b = sess_b.run(feeds)
            except Exception as exc:  # noqa: BLE001 - ORT's own exception classes
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                runs.append(ShapeRun(what, dims, False, f"the original runs, the written model fails: {first[:300]}"))
                continue
            runs.append(_compare(what, dims, out_a, out_b, exact, atol, rtol, steps, ranked))
    return runs


def _feeds(specs, shapes: ResolvedShapes, data: Dataset | None) -> dict[str, np.ndarray]:
    if data is not None and not data.random:
        size = shapes.batch_size()
        for item in data.batches(size):
            if item.size == size:
                return item.feeds
            break
    return next(iter(random_data(specs, shapes, batch=None, seed=1).batches(shapes.batch_size() or 1))).feeds


def _compare(what, dims, out_a, out_b, exact, atol, rtol, steps, ranked=frozenset()) -> ShapeRun:
    for name, a in out_a.items():
        b = out_b[name]
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return ShapeRun(what, dims, False, f"output '{name}' is {_dims(a.shape)} in the original, "
                                               f"{_dims(b.shape)} in the written model")
        if not exact or a.dtype.kind not in "fiu" or not a.size:
            continue
        diff, ref = differences(a.astype(np.float64), b.astype(np.float64))
        over, one_step = split_by_step(diff, tolerance(ref, atol, rtol), steps.get(name))
        if over and name in ranked and same_rows(a, b, atol, rtol, steps.get(name)):  # a TopK's rows reordered
            over, one_step = 0, 0
        why = step_failure(one_step, diff.size)
        if over or why:
            return ShapeRun(what, dims, False, why or f"output '{name}': {over} of {diff.size} values differ "
                                                      f"(max abs error {float(diff.max()):.3g})")
    return ShapeRun(what, dims, True)


def _dims(shape) -> str:
    return "x".join(str(d) for d in shape) or "scalar"
