"""Run two models on the same inputs and say whether their outputs agree.

Metrics are accumulated batch by batch (running sums and maxima), so data of any size is compared
without holding its outputs. The result is truthy when every threshold holds, and prints as a table
ending in PASSED or FAILED: <output>: <figure>, in the manner of Polygraphy's comparator.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, field
from functools import partial

import numpy as np
import onnx

from ..errors import ConfigError, DataError, ValidationFailedError
from ..shapes import ResolvedShapes
from .diagnose import explain
from .data import DEFAULT_BATCH, Dataset, load_data, random_data, resolve_batch
from .metrics import LABELS, BoxF1, choose_metric, row_cosines
from .quantstep import output_quant_steps, split_by_step, step_failure
from .shapes import resolve_input_shapes
from .sessions import create_session, explain_ort_error

DEFAULT_ATOL = 1e-4
LOSSY_HINT = ("no bound was given, so the default atol 1e-4 applied: it is for models that should be equivalent "
              "(exact mode); judge a lossy model (--ratio, --target-flops...) with --min-agreement (classifiers) "
              "or --min-cosine")
RANDOM_WARNING = ("inputs are random: this only shows that both graphs run and agree on noise; "
                  "pass real data (--calib) to measure accuracy")


@dataclass
class OutputComparison:
    """Agreement of one output over all samples; truthy when it meets every threshold."""

    name: str
    shape_a: tuple | None = None
    shape_b: tuple | None = None
    shapes_match: bool = True
    values: int = 0
    max_abs_error: float = 0.0
    mean_rel_error: float = 0.0
    cosine: float = 1.0
    worst_cosine: float = 1.0
    out_of_tolerance: int | None = None
    quant_step: float | None = None    # the one-step allowance of a QDQ output (runtime/quantstep.py)
    one_step_values: int | None = None  # values that used it
    top1_agreement: float | None = None
    top5_agreement: float | None = None
    accuracy_a: float | None = None
    accuracy_b: float | None = None
    metric: str | None = None          # top1, boxes, ctc or cosine (runtime/metrics.py)
    agreement: float | None = None     # that metric's figure, what min_agreement bounds
    metric_reason: str | None = None   # why that metric (its shape, the head it recognised, or --metric)
    failure: str | None = None
    rows_reordered: bool = False       # after a TopK: the same rows in another order (near-equal scores)
    # each sample's (numerator, denominator) of `agreement` (runtime/metrics.Metric.parts); not in JSON
    per_sample: list | None = field(default=None, repr=False, compare=False)

    def __bool__(self) -> bool:
        return self.failure is None


@dataclass
class ComparisonResult:
    """The comparison of two models; `bool(result)` is pass/fail, `str(result)` the report."""

    outputs: list[OutputComparison]
    names: tuple[str, str]
    data: str
    samples: int
    batches: int
    batch_size: int | None
    provider: str
    thresholds: dict
    warnings: list[str] = field(default_factory=list)

    hints: list[str] = field(default_factory=list)
    shape_runs: list = field(default_factory=list)  # runs at other input dims (runtime/shape_check.ShapeRun)

    @property
    def failures(self) -> list[str]:
        return ([f"output '{o.name}': {o.failure}" for o in self.outputs if o.failure]
                + [f"at {r.what} ({r.dims}): {r.detail}" for r in self.shape_runs if r.passed is False])

    @property
    def checked(self) -> bool:
        """Whether any bound was applied; without one the figures are a report, not a verdict."""
        return any(self.thresholds.get(k) is not None for k in ("atol", "min_cosine", "min_agreement"))

    @property
    def passed(self) -> bool | None:
        """True or False against the bounds; None when there were none (NOT CHECKED)."""
        if self.failures:
            return False
        return True if self.checked else None

    def __bool__(self) -> bool:
        """False only when a check failed: a comparison without bounds stops nothing."""
        return not self.failures

    @property
    def status(self) -> str:
        return {True: "PASSED", False: "FAILED", None: "NOT CHECKED"}[self.passed]

    def verdict(self) -> str:
        if self.failures:
            return "FAILED: " + "; ".join(self.failures)
        return "PASSED" if self.checked else "NOT CHECKED: no bound given, figures only"

    def format_table(self) -> str:
        a, b = self.names
        runs = (f"{self.batches} batches of {self.batch_size}" if self.batch_size is not None
                else f"{self.batches} whole feeds: the model has no batch axis")
        head = f"compared {a} and {b} on {self.samples} samples ({runs}), {self.data}, {self.provider}"
        cols = ["output", "shape", "max abs err", "mean rel err", "cosine", "top-1", "top-5", f"acc {a}/{b}",
                "agreement"]
        rows = [[o.name, _shape(o), _num(o.max_abs_error), _num(o.mean_rel_error), f"{o.cosine:.6f}",
                 _pct(o.top1_agreement), _pct(o.top5_agreement),
                 "-" if o.accuracy_a is None else f"{_pct(o.accuracy_a)}/{_pct(o.accuracy_b)}",
                 _agreement(o)]
                for o in self.outputs]
        widths = [max(len(r[i]) for r in [cols, *rows]) for i in range(len(cols))]
        lines = [head, ""]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [cols, *rows]]
        lines += [""]
        if any(o.metric_reason for o in self.outputs):
            lines.append("metrics: " + "; ".join(f"'{o.name}' {LABELS[o.metric]} ({o.metric_reason})"
                                                 for o in self.outputs if o.metric_reason))
        if self.shape_runs:
            lines.append("also run at other input dims: " + "; ".join(
                f"{r.what} ({r.dims}) {_RUN_STATUS[r.passed]}" + (f": {r.detail}" if r.passed is None else "")
                for r in self.shape_runs))
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [f"hint: {h}" for h in self.hints]
        lines.append(self.verdict())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format_table()

    def to_dict(self) -> dict:
        return _json_safe({
            "passed": self.passed, "verdict": self.status, "failures": self.failures, "names": list(self.names),
            "data": self.data, "samples": self.samples, "batches": self.batches, "batch_size": self.batch_size,
            "provider": self.provider, "thresholds": self.thresholds, "warnings": self.warnings, "hints": self.hints,
            "outputs": [{k: v for k, v in asdict(o).items() if k != "per_sample"} for o in self.outputs],
            "other_shapes": [r.to_dict() for r in self.shape_runs],
        })


_RUN_STATUS = {True: "passed", False: "FAILED", None: "skipped"}


def differences(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """|b - a| per value (0 where both are equal or both NaN, inf where only one is NaN or Inf) and
    |a|, in float64."""
    diff = np.abs(b - a)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    return np.where(same, 0.0, np.nan_to_num(diff, nan=np.inf, posinf=np.inf)), np.abs(a)


def tolerance(ref: np.ndarray, atol: float, rtol: float) -> np.ndarray:
    """atol + rtol * |reference| per value. NaN and Inf are values that must match: where the
    reference is not finite the tolerance is atol alone, so any difference there is out of it."""
    return np.where(np.isfinite(ref), atol + rtol * ref, atol)


def _shape(o: OutputComparison) -> str:
    fmt = "x".join
    if o.shapes_match:
        return fmt(map(str, o.shape_a or ()))
    return f"{fmt(map(str, o.shape_a or ()))} vs {fmt(map(str, o.shape_b or ()))}"


def _num(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else str(x)


def _agreement(o: OutputComparison) -> str:
    if o.metric is None:
        return "-"
    return f"{LABELS[o.metric]} {_pct(o.agreement) if o.metric != 'cosine' else _num(o.agreement or 0.0)}"


FEW_BOXES = 50  # a box F1 bound read on fewer of the original's boxes gets a warning


def few_boxes_warning(name: str, boxes: int) -> str:
    """A box F1 bound read on few boxes is coarse: one box that crosses the score threshold moves
    it by about 1/boxes (the COCO detector's guard read 92.3% at 99.3% of the FLOPs on 24 held-out
    images holding 35 boxes, where that share pruned on all 96 agreed on all 51 boxes of 64 others)."""
    step = f"one box moves it about {100 / boxes:.0f} points" if boxes else "no box to match"
    return (f"'{name}': box F1 is read on {boxes} boxes of the original ({step}): the bound is coarse; "
            "more samples (images with objects) make it firmer")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _rows_sorted(a: np.ndarray) -> np.ndarray:
    """Each sample's rows (the last axis's vectors) in lexicographic order."""
    flat = a.reshape(-1, a.shape[-2], a.shape[-1])
    out = np.empty_like(flat)
    for i, rows in enumerate(flat):
        out[i] = rows[np.lexsort(rows.T[::-1])]
    return out.reshape(a.shape)


def same_rows(a: np.ndarray, b: np.ndarray, atol: float, rtol: float, step: float | None = None) -> bool:
    """Do two outputs hold the same rows within tolerance, in whatever order (a TopK's picks)?"""
    if a.ndim < 2 or a.shape[-2] < 2:
        return False
    diff, ref = differences(_rows_sorted(a.astype(np.float64)), _rows_sorted(b.astype(np.float64)))
    return not split_by_step(diff, tolerance(ref, atol, rtol), step)[0]


def ranked_outputs(model) -> set[str]:
    """Graph outputs computed from a TopK's picks (its indices or values): DETR-style heads select
    their queries so, and exact pruning's rounding may swap two queries of near-equal scores."""
    g = model.graph
    marked = set()
    changed = True
    while changed:
        changed = False
        for n in g.node:
            if (n.op_type == "TopK" or marked.intersection(n.input)) and not marked.issuperset(o for o in n.output if o):
                marked.update(o for o in n.output if o)
                changed = True
    return {o.name for o in g.output if o.name in marked}


def _json_safe(value):
    """NaN and Inf become null: strict JSON has neither."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


class _Accumulator:
    """Running figures for one output: sums and extrema only, never the arrays themselves."""

    def __init__(self, name: str, metric: str = "auto", declared: tuple | None = None, ranked=lambda: False):
        self.out = OutputComparison(name)
        self.wanted, self.declared = metric, declared
        # made from a TopK's picks, rows of near-equal scores may come in either order: asked (it
        # reads the graph) only where an output misses the tolerance
        self.ranked = ranked
        self.metric = None
        self.abs_sum = 0.0
        self.ref_sum = 0.0
        self.cos_sum = 0.0
        self.cos_count = 0
        self.top1 = self.top5 = self.hits_a = self.hits_b = 0
        self.classified = self.labelled = 0
        self.top5_seen = False

    def update(self, a: np.ndarray, b: np.ndarray, labels: np.ndarray | None, atol: float | None, rtol: float,
               batch: int = 1, step: float | None = None) -> None:
        if not (_numeric(a) and _numeric(b)):
            # Sequences, optionals, maps, strings: no figures, but they must be equal.
            if not _equal(a, b):
                self.out.failure = self.out.failure or "values differ (a non-numeric output, compared for equality)"
            return
        with np.errstate(all="ignore"):  # inf - inf and friends are handled explicitly below
            self._update(a, b, labels, atol, rtol, step)
            if a.shape == b.shape and a.size:
                if self.metric is None:
                    self.metric = choose_metric(a, batch, self.wanted, self.declared)
                self.metric.update(a, b)

    def _update(self, a, b, labels, atol, rtol, step=None) -> None:
        o = self.out
        if o.shape_a is None:
            o.shape_a, o.shape_b = a.shape, b.shape
        if a.shape != b.shape:
            o.shapes_match, o.shape_a, o.shape_b = False, a.shape, b.shape
            o.failure = o.failure or f"shape {_dims(a.shape)} in one model, {_dims(b.shape)} in the other"
            return
        a64, b64 = a.astype(np.float64, copy=False), b.astype(np.float64, copy=False)
        diff, ref = differences(a64, b64)
        o.values += diff.size
        if diff.size:
            o.max_abs_error = max(o.max_abs_error, float(diff.max()))
        self.abs_sum += float(diff.sum())
        self.ref_sum += float(ref[np.isfinite(ref)].sum())
        if atol is not None:
            over, one_step = split_by_step(diff, tolerance(ref, atol, rtol), step)
            if over and self.ranked() and same_rows(a64, b64, atol, rtol, step):
                over, o.rows_reordered = 0, True
            o.out_of_tolerance = (o.out_of_tolerance or 0) + over
            if step is not None:
                o.quant_step, o.one_step_values = step, (o.one_step_values or 0) + one_step
        self._cosine(a64, b64)
        if a.ndim == 2 and a.shape[1] >= 2 and np.issubdtype(a.dtype, np.floating):
            self._classes(a64, b64, labels)
        elif (a.ndim == 4 and a.shape[1] >= 2 and all(d == 1 for d in a.shape[2:])
              and np.issubdtype(a.dtype, np.floating)):  # [N, K, 1, 1]: a conv classifier's scores
            self._classes(a64.reshape(len(a64), -1), b64.reshape(len(b64), -1), labels)

    def _cosine(self, a: np.ndarray, b: np.ndarray) -> None:
        """Per sample (dim 0 of outputs of rank >= 2, else the whole output), over finite values only:
        NaN and Inf already show in the max abs error."""
        if a.size == 0:
            return  # a 0-sized output: nothing to compare, and no sample to count
        rows = a.shape[0] if a.ndim >= 2 else 1
        if a.size == 0:
            return
        finite = np.isfinite(a) & np.isfinite(b)
        a = np.where(finite, a, 0.0).reshape(rows, -1)
        b = np.where(finite, b, 0.0).reshape(rows, -1)
        cos = row_cosines(a, b)
        self.cos_sum += float(cos.sum())
        self.cos_count += rows
        if rows:
            self.out.worst_cosine = min(self.out.worst_cosine, float(cos.min()))

    def _classes(self, a: np.ndarray, b: np.ndarray, labels: np.ndarray | None) -> None:
        top_a, top_b = a.argmax(axis=1), b.argmax(axis=1)
        self.classified += a.shape[0]
        self.top1 += int((top_a == top_b).sum())
        if a.shape[1] > 5:
            self.top5_seen = True
            top5_b = np.argpartition(-b, 5, axis=1)[:, :5]
            self.top5 += int((top5_b == top_a[:, None]).any(axis=1).sum())
        if labels is not None:
            self.labelled += a.shape[0]
            self.hits_a += int((top_a == labels).sum())
            self.hits_b += int((top_b == labels).sum())

    def bounded(self, o: OutputComparison) -> bool:
        """min_agreement bounds an output measured by a task metric, or by cosine when asked for."""
        return o.agreement is not None and (o.metric != "cosine" or self.wanted == "cosine")

    def finish(self, atol: float | None, rtol: float, min_cosine: float | None, min_agreement: float | None) -> OutputComparison:
        o = self.out
        o.mean_rel_error = self.abs_sum / self.ref_sum if self.ref_sum else (0.0 if self.abs_sum == 0 else math.inf)
        o.cosine = self.cos_sum / self.cos_count if self.cos_count else 1.0
        if self.classified:
            o.top1_agreement = self.top1 / self.classified
            o.top5_agreement = self.top5 / self.classified if self.top5_seen else None
        if self.labelled:
            o.accuracy_a, o.accuracy_b = self.hits_a / self.labelled, self.hits_b / self.labelled
        if self.metric is not None:
            o.metric, o.agreement, o.metric_reason = self.metric.name, self.metric.value, self.metric.reason
            o.per_sample = list(self.metric.parts)
        if o.failure:
            return o
        misses = []
        if atol is not None and o.out_of_tolerance:
            tol = f"atol {atol:g}" + (f" + rtol {rtol:g}*|ref|" if rtol else "")
            if o.quant_step is not None:
                tol += f" + one quantization step {o.quant_step:.4g}"
            misses.append(f"max abs error {_num(o.max_abs_error)} > {tol} "
                          f"({o.out_of_tolerance} of {o.values} values out of tolerance)")
        if atol is not None and o.one_step_values:
            misses.append(step_failure(o.one_step_values, o.values))
        if min_cosine is not None and not o.cosine >= min_cosine:
            misses.append(f"cosine {o.cosine:.6f} < min_cosine {min_cosine:g}")
        if min_agreement is not None and self.bounded(o) and not o.agreement >= min_agreement:
            misses.append(f"{LABELS[o.metric]} {_pct(o.agreement)} < min_agreement {_pct(min_agreement)}")
        o.failure = ", ".join(m for m in misses if m) or None
        return o


def _nbytes(x) -> int:
    """Bytes held by a run output: a tensor, or a sequence / optional / map of them."""
    if isinstance(x, np.ndarray):
        return x.nbytes
    if isinstance(x, (list, tuple)):
        return sum(_nbytes(v) for v in x)
    if isinstance(x, dict):
        return sum(_nbytes(v) for v in x.values())
    return 0


def _numeric(x) -> bool:
    return isinstance(x, np.ndarray) and x.dtype.kind in "biufc"


def _equal(a, b) -> bool:
    """Structural equality of run outputs; NaN equals NaN."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        if a.shape != b.shape or a.dtype.kind != b.dtype.kind:
            return False
        return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _dims(shape) -> str:
    return "[" + ",".join(map(str, shape)) + "]"


# The reference's inputs and outputs are kept up to this size, so that its session can be closed
# before the candidate's opens (one model's weights in memory at a time); beyond it both stay open.
HOLD_BYTES = 256 * 2**20


class Reference:
    """The reference model's outputs on the data, computed once and compared against any number of
    candidates (the fidelity guard's trials, or one pruned model).

    Batches are held with their outputs up to HOLD_BYTES; then the session is closed. Larger data
    keeps the session open and recomputes the rest per comparison."""

    def __init__(self, model, data=None, device: str = "cpu",
                 shapes: ResolvedShapes | dict[str, tuple[int, ...]] | None = None, batch: int | None = None,
                 seed: int = 0, n_batches: int = 4, threads: int | None = None, name: str = "original",
                 default_batch: int = DEFAULT_BATCH, optimize: bool = True):
        self.device, self.threads, self.name, self.batch = device, threads, name, batch
        self.default_batch, self.optimize = default_batch, optimize
        session = create_session(model, device, threads, optimize)
        try:
            self.specs = session.inputs
            self.output_names = session.output_names
            self.declared = {o.name: tuple(o.shape) if o.shape is not None else None
                             for o in session.inference.get_outputs()}
            self.provider, self.fallback = session.provider, session.fallback
            self._model, self._ranked = model, None
            given = shapes.as_dict() if isinstance(shapes, ResolvedShapes) and "--shape" in shapes.source else shapes
            self.given = given if not isinstance(given, ResolvedShapes) else None
            self.size = resolve_batch(self.specs, batch, self.given, default=default_batch)
            self.drop_last = any(s.fixed_batch for s in self.specs)
            self.hint, diagnose = "", None
            if isinstance(data, Dataset):
                self.dataset = data
            elif data is not None:
                self.dataset = load_data(data, self.specs)
            else:
                resolved = (shapes if isinstance(shapes, ResolvedShapes)
                            else resolve_input_shapes(model, given=shapes, specs=self.specs))
                if "guessed" in resolved.source:
                    self.hint = f" (with guessed input shapes {resolved.describe()}; pass --shape to give others)"
                self.dataset = random_data(self.specs, resolved, self.size, seed, n_batches)
                diagnose = partial(explain, model, session, resolved, batch=self.size, seed=seed)
            self.held: list = []
            held_bytes, self.complete = 0, True
            for item in self.dataset.batches(self.size, drop_last=self.drop_last):
                out = _run(session, item.feeds, name, DataError, self.hint, diagnose)
                held_bytes += sum(_nbytes(v) for v in (*item.feeds.values(), *out.values()))
                if held_bytes > HOLD_BYTES:
                    self.complete = False
                    break
                self.held.append((item, out))
            self.dropped = self.dataset.dropped
        except BaseException:
            session.close()
            raise
        self._session = None if self.complete else session
        if self.complete:
            session.close()

    def ranked(self, name: str) -> bool:
        """Is this output made from a TopK's picks (read from the graph the first time it is asked)?"""
        if self._ranked is None:
            self._ranked = _ranked(self._model)
        return name in self._ranked

    def pairs(self):
        """(batch, reference outputs) over all of the data."""
        yield from self.held
        if self.complete:
            return
        for i, item in enumerate(self.dataset.batches(self.size, drop_last=self.drop_last)):
            if i >= len(self.held):
                yield item, _run(self._session, item.feeds, self.name, DataError, self.hint)
        self.dropped = self.dataset.dropped

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self) -> Reference:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _ranked(model) -> set[str]:
    try:
        proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model), load_external_data=False)
    except Exception:  # noqa: BLE001 (the session loaded it; no graph to read here is no TopK known)
        return set()
    return ranked_outputs(proto)


def compare_models(model_a, model_b, data=None, device: str = "cpu", atol: float | None = None, rtol: float = 0.0,
                   min_cosine: float | None = None, min_agreement: float | None = None,
                   shapes: ResolvedShapes | dict[str, tuple[int, ...]] | None = None, batch: int | None = None,
                   seed: int = 0,
                   n_batches: int = 4, threads: int | None = None,
                   names: tuple[str, str] = ("original", "pruned"), bounds: bool = True,
                   metric: str = "auto", default_batch: int = DEFAULT_BATCH, optimize: bool = True,
                   quant_step: bool = False) -> ComparisonResult:
    """Compare `model_b` against the reference `model_a` (protos or paths, or a Reference computed
    earlier, which then fixes data, shapes, batch and device) on `data` (a Dataset, an .npz / .py
    path, or None for `n_batches` random batches).

    atol applies to every value (|b - a| <= atol + rtol*|a|); it defaults to 1e-4 when neither
    min_cosine nor min_agreement is given, and is off otherwise unless given explicitly.
    bounds=False measures without any bound: the result is NOT CHECKED (passed is None).
    min_agreement bounds each output's `metric` (runtime/metrics.py: top1, boxes, ctc, cosine, or
    auto: chosen per output from its shape and values).
    The reference runs first and its session closes before the candidate's opens; a candidate file
    byte-identical to the reference is not run again. optimize=False runs both graphs as written
    (create_session): cheaper for one or two batches.
    quant_step=True (with atol): an output of `model_a` that a per-tensor DequantizeLinear produces may
    differ by one step of its scale on a minority of its values, a rounding flip (runtime/quantstep.py)."""
    atol, min_cosine, min_agreement, default_bound = _bounds(atol, rtol, min_cosine, min_agreement, bounds)
    own = not isinstance(model_a, Reference)
    steps = output_quant_steps(model_a) if quant_step and own and atol is not None else {}
    ref = Reference(model_a, data, device, shapes, batch, seed, n_batches, threads, names[0], default_batch,
                    optimize) if own else model_a
    same = own and identical_files(model_a, model_b)  # one run shows both: no second session
    try:
        with contextlib.nullcontext() if same else create_session(model_b, ref.device, ref.threads,
                                                                   ref.optimize) as sess_b:
            if not same:
                _check_same_io(ref, sess_b, names)
                # A batch dim fixed in either model fixes it for both.
                both = resolve_batch(ref.specs + sess_b.inputs, ref.batch, ref.given, default=ref.default_batch)
                if both != ref.size and own:  # fixed in the candidate only: run the reference again
                    ref.close()
                    ref = Reference(model_a, data, device, shapes, both, seed, n_batches, threads, names[0],
                                    default_batch, optimize)
                elif both != ref.size:
                    raise DataError(f"{names[1]} has a fixed batch of {both}, {names[0]} runs batches of "
                                    f"{ref.size}; use --batch {both}")
            accs = {name: _Accumulator(name, metric, ref.declared.get(name), partial(ref.ranked, name))
                    for name in ref.output_names}
            samples = batches = 0
            labels_seen = False
            for item, out_a in ref.pairs():
                out_b = out_a if same else _run(sess_b, item.feeds, names[1], ValidationFailedError)
                for name, acc in accs.items():
                    acc.update(out_a[name], out_b[name], item.labels, atol, rtol, item.size, steps.get(name))
                samples += item.size
                batches += 1
                labels_seen = labels_seen or item.labels is not None
            outputs = [acc.finish(atol, rtol, min_cosine, min_agreement) for acc in accs.values()]
    finally:
        if own:
            ref.close()
    if min_agreement is not None and not any(acc.bounded(o) for acc, o in zip(accs.values(), outputs)):
        why = "; ".join(f"'{o.name}' {o.metric_reason}" for o in outputs if o.metric_reason)
        raise ConfigError("min_agreement needs a classifier output ([N, K] scores), a detection or a CTC output; none of the "
                          f"outputs is one ({why or 'no numeric output'}); choose a metric with --metric, e.g. --metric cosine")
    size = ref.size
    warnings = [w for w in (ref.fallback,) if w]
    if ref.dataset.random:
        warnings.append(RANDOM_WARNING)
    if ref.dropped:
        warnings.append(f"{ref.dropped} samples left out: the model's fixed batch of {size} does not divide the data")
    if labels_seen and all(o.accuracy_a is None for o in outputs):
        warnings.append("labels given, but no output is classifier-shaped ([N, K]); accuracy not computed")
    if min_agreement is not None:
        warnings += [few_boxes_warning(o.name, acc.metric.boxes_a) for acc, o in zip(accs.values(), outputs)
                     if isinstance(acc.metric, BoxF1) and acc.bounded(o) and acc.metric.boxes_a < FEW_BOXES]
    thresholds = {"atol": atol, "rtol": rtol if atol is not None else None,
                  "min_cosine": min_cosine, "min_agreement": min_agreement}
    if steps:
        thresholds["quant_step"] = steps  # per output: the one-step allowance of QDQ outputs
    result = ComparisonResult(outputs, tuple(names), ref.dataset.source, samples, batches, size, ref.provider,
                              thresholds, warnings)
    if same:
        result.hints.append(f"{names[1]} is byte-identical to {names[0]}: it ran once, its outputs are the same")
    if default_bound and not result:
        result.hints.append(LOSSY_HINT)
    for o in outputs:
        if o.rows_reordered and not o.failure:
            result.hints.append(f"rows of '{o.name}' come in another order than the {names[0]}'s (picked by a TopK over "
                                "near-equal scores): the same rows, compared sorted")
        if o.one_step_values and not o.failure:
            result.hints.append(f"{o.one_step_values} of {o.values} values of '{o.name}' are one quantization step "
                                f"({o.quant_step:.4g}) apart: rounding flips of a QDQ output, allowed (docs/DEPLOY.md)")
    return result


def identical_files(original, written) -> bool:
    """Whether `written` (a path) is byte for byte `original` and holds all its weights (no external
    data file beside it): then both give the same outputs on every input, and one run shows them."""
    import filecmp
    import os
    from pathlib import Path

    if not all(isinstance(m, (str, os.PathLike)) for m in (original, written)):
        return False
    a, b = Path(original), Path(written)
    return (a.is_file() and b.is_file() and not b.with_name(b.name + ".data").exists()
            and a.stat().st_size == b.stat().st_size and filecmp.cmp(a, b, shallow=False))


def _bounds(atol, rtol, min_cosine, min_agreement, bounds):
    """The bounds that apply, and whether atol is the default one."""
    _check_thresholds(atol, rtol, min_cosine, min_agreement)
    default_bound = bounds and atol is None and min_cosine is None and min_agreement is None
    if not bounds:
        atol = min_cosine = min_agreement = None
    elif default_bound:
        atol = DEFAULT_ATOL
    return atol, min_cosine, min_agreement, default_bound


def _check_thresholds(atol, rtol, min_cosine, min_agreement) -> None:
    if atol is not None and not atol >= 0:
        raise ConfigError(f"atol must be >= 0, got {atol}")
    if not rtol >= 0:
        raise ConfigError(f"rtol must be >= 0, got {rtol}")
    if min_cosine is not None and not -1 <= min_cosine <= 1:
        raise ConfigError(f"min_cosine must be between -1 and 1, got {min_cosine}")
    if min_agreement is not None and not 0 <= min_agreement <= 1:
        raise ConfigError(f"min_agreement is a fraction between 0 and 1, got {min_agreement}")


def _check_same_io(ref: Reference, sess_b, names) -> None:
    """Both models must take the same inputs and give the same outputs, or no comparison is possible."""
    a, b = names
    ins_a, ins_b = {s.name: s for s in ref.specs}, {s.name: s for s in sess_b.inputs}
    if set(ins_a) != set(ins_b):
        raise DataError(f"the models take different inputs: {a} has {sorted(ins_a)}, {b} has {sorted(ins_b)}")
    for name, spec in ins_a.items():
        other = ins_b[name]
        both = spec.shape is not None and other.shape is not None
        if spec.dtype != other.dtype or (both and (len(spec.shape) != len(other.shape) or any(
                isinstance(x, int) and isinstance(y, int) and x != y for x, y in zip(spec.shape, other.shape)))):
            raise DataError(f"input '{name}' is {spec.describe()} in {a} but {other.describe()} in {b}")
    outs_a, outs_b = ref.output_names, sess_b.output_names
    if set(outs_a) != set(outs_b):
        raise ValidationFailedError(f"the models have different outputs: {a} has {sorted(outs_a)}, {b} has {sorted(outs_b)}; "
                                    "a pruned model must keep the original's output names")


def _run(session, feeds, name, error, hint: str = "", diagnose=None):
    """session.run; a failure is one line, with `diagnose(feeds)`'s cause and fix where it finds one."""
    try:
        return session.run(feeds)
    except Exception as exc:  # ORT's own exception classes; the message says what went wrong
        found = diagnose(feeds) if diagnose is not None else None
        if found:
            raise error(f"{name}: onnxruntime failed to run it {found}") from None
        raise error(f"{name}: onnxruntime failed to run it{hint}: {explain_ort_error(str(exc))}") from None


