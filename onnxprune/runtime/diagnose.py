"""Why a model does not run on the random inputs onnxprune made up, and the one line that fixes it.

Two causes are common and each has its own fix: an integer setting fed whole (a VAD model's
sample rate, a mode flag) that random data cannot guess -> real inputs with --calib; a graph that
takes one batch size only (it reshapes its batch to a constant) -> --shape at the batch it runs.
Each is tried on the model before it is named, so the hint says what was seen, not a guess.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from ..shapes import ResolvedShapes, is_fixed
from .dataset import InputSpec

PROBE_BATCHES = (1, 2, 4, 8, 16, 32)
MAX_VALUES = 4  # constants tried per setting input


def settings(specs: list[InputSpec]) -> list[InputSpec]:
    """Integer inputs that hold one value and are fed whole: a sample rate, a mode, a count."""
    return [s for s in specs if s.dtype.kind in "iu" and not s.batched and s.shape is not None
            and all(d == 1 for d in s.shape)]


def compared_values(model, name: str) -> list[int]:
    """Integer constants the model compares input `name` with (Equal, in any subgraph too): the
    values it expects (a VAD model's If on sr == 16000, sr == 8000)."""
    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model), load_external_data=False)
    consts: dict[str, np.ndarray] = {}
    nodes: list[onnx.NodeProto] = []
    graphs = [proto.graph]
    while graphs:
        g = graphs.pop()
        consts.update((t.name, t) for t in g.initializer)
        for n in g.node:
            nodes.append(n)
            if n.op_type == "Constant":
                value = next((a.t for a in n.attribute if a.name == "value"), None)
                if value is not None:
                    consts[n.output[0]] = value
            graphs += [a.g for a in n.attribute if a.type == onnx.AttributeProto.GRAPH]
            graphs += list(next((a.graphs for a in n.attribute if a.type == onnx.AttributeProto.GRAPHS), []))
    found: list[int] = []
    for n in nodes:
        if n.op_type != "Equal" or name not in n.input:
            continue
        other = [i for i in n.input if i != name]
        t = consts.get(other[0]) if other else None
        if t is None:
            continue
        value = numpy_helper.to_array(t)
        if value.size == 1 and value.dtype.kind in "iu" and int(value.reshape(-1)[0]) not in found:
            found.append(int(value.reshape(-1)[0]))
    return found


def _runs(session, feeds) -> bool:
    try:
        session.run(feeds)
    except Exception:  # ORT's own exception classes: it does not run with these
        return False
    return True


def explain_setting(model, session, feeds: dict[str, np.ndarray], calib: bool = True) -> str | None:
    """An integer setting input the random feeds cannot have right: which, what it was fed, the
    values the model compares it with and the one it runs with, and the --calib line (`calib`
    False: the command takes no data, bench)."""
    suspects = [s for s in settings(session.inputs) if s.name in feeds]
    if not suspects:
        return None
    for s in suspects:
        values = compared_values(model, s.name)
        for v in values[:MAX_VALUES]:
            if _runs(session, {**feeds, s.name: np.full(np.shape(feeds[s.name]), v, dtype=s.dtype)}):
                return _setting_line(s, feeds, values, v, session.inputs, calib)
    s = suspects[0]
    return _setting_line(s, feeds, compared_values(model, s.name), None, session.inputs, calib)


def _setting_line(s: InputSpec, feeds, values: list[int], works: int | None, specs, calib: bool) -> str:
    kind = "scalar" if not s.shape else "[" + ",".join(map(str, s.shape)) + "]"
    fed = np.asarray(feeds[s.name]).reshape(-1)
    said = f"input '{s.name}' ({s.dtype} {kind}) was fed {int(fed[0]) if fed.size else '[]'}"
    if values:
        said += f"; the model compares it with {', '.join(map(str, values))}"
        if works is not None:
            said += f" and runs with {works}"
    if not calib:
        return f"{said}: an integer setting random data cannot guess, and bench times random inputs only"
    example = works if works is not None else (values[0] if values else "VALUE")
    value = f"np.array({example}, np.{s.dtype})" if not s.shape else f"np.full({list(s.shape)}, {example}, np.{s.dtype})"
    arrays = ", ".join(f"{i.name}=..." if i.name != s.name else f"{i.name}={value}" for i in specs)
    return (f"{said}: an integer setting random data cannot guess; pass real inputs with --calib data.npz "
            f"(np.savez('data.npz', {arrays}))")


def explain_batch(session, resolved: ResolvedShapes, failed: int | None, seed: int = 0, calib: bool = True) -> str | None:
    """A model that runs at another batch size: the first of PROBE_BATCHES it runs at, as a --shape line.
    None where the batch was given (--shape), is fixed, or no probed size runs. `calib` False
    (bench, which times the sizes --batch gives): the --batch line."""
    from .data import random_data

    if failed is None or not resolved.batched or "--shape" in resolved.source:
        return None
    if any(i.batch_axis is not None and i.declared and is_fixed(i.declared[i.batch_axis]) for i in resolved.inputs):
        return None
    for b in PROBE_BATCHES:
        if b == failed:
            continue
        try:
            feeds = next(random_data(session.inputs, resolved, b, seed).batches(b)).feeds
        except Exception:  # noqa: BLE001 - random data cannot feed it: nothing to probe
            return None
        if _runs(session, feeds):
            if not calib:
                return f"it runs at batch {b}: pass --batch {b}"
            at = resolved.with_batch(b)
            args = " ".join(f"--shape {i.text()}" for i in at.inputs
                            if i.declared is None or not all(is_fixed(d) for d in i.declared))
            return f"it runs at batch {b}: pass {args}"
    return None


def explain(model, session, resolved: ResolvedShapes | None, feeds: dict[str, np.ndarray], batch: int | None,
            seed: int = 0, calib: bool = True) -> str | None:
    """What a failed run on random `feeds` (at `batch`) says, with its fix: a setting input first
    (no batch runs with it wrong), then another batch size; None when neither explains it."""
    found = explain_setting(model, session, feeds, calib)
    if found:
        return f"on random inputs: {found}"
    found = explain_batch(session, resolved, batch, seed, calib) if resolved is not None else None
    if found:
        at = ", ".join(f"{k}:{'x'.join(map(str, np.shape(v))) or '[]'}" for k, v in feeds.items())
        return f"on random inputs at batch {batch} ({at}); {found}"
    return None
