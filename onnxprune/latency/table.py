"""The per-layer latency table of a model on one runtime target, and the latency it predicts.

Built once per (model structure, device, threads, batch, input shapes, ONNX Runtime version) and
cached on disk as JSON: every segment (segments.py) is timed as a small model at its full channel
counts and at a few kept shares of each side (`FRACTIONS`, kept counts aligned to the table's
`round_to`). A segment's time at other counts is interpolated, and separable across the sides:
T(in, out) = T(in, full) * T(full, out) / T(full, full), which is exact for a conv's FLOPs and keeps
each side's measured steps. The predicted share of a pruned model is the sum of its segments' times
over the sum at full counts (layers timed alone pay their own layout conversions and run hotter in
cache, so their sum is not the whole model's time; the share is what carries over). The whole model
is timed too, to state the prediction in milliseconds.

Alignment: before the grid, a probe times the costliest layers at 64, 60, 56, 48 and 32 kept output
channels and picks the smallest step whose latency saving per removed channel is at least
`PROBE_TIE` of the 32-channel step's (removing 4 channels of an 8-channel block saves nothing on
ORT's NCHWc kernels with AVX2, 16 with AVX-512). The 32-channel step is the reference because its
saving is the one a shared machine's noise distorts least.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from ..analysis import Analysis
from .segments import Segment, SegmentBuilder, find_segments, fixed_shapes, structure_key, with_weights

TABLE_VERSION = 1
FRACTIONS = (0.75, 0.5, 0.3, 0.15)
PROBE_STEPS = (4, 8, 16, 32)
PROBE_LAYERS = 5
PROBE_BASE = 64
PROBE_TIE = 0.6
PROBE_RUNS = 30
RETRIES = 2
WHOLE_RUNS = 8
FALLBACK_ROUND_TO = {"cpu": 16, "cuda": 8}


@dataclass
class SegmentTiming:
    nodes: list[str]
    kind: str
    k_in: int
    k_out: int
    full_ms: float
    in_points: list[list[float]] = field(default_factory=list)   # [kept in-side count, ms], out side full
    out_points: list[list[float]] = field(default_factory=list)  # [kept out-side count, ms], in side full

    def cost(self, k_in: int, k_out: int) -> float:
        a = _interp(self.in_points, k_in) if self.in_points else None
        b = _interp(self.out_points, k_out) if self.out_points else None
        if a is not None and b is not None:
            return a * b / self.full_ms if self.full_ms > 0 else 0.0
        return a if a is not None else b if b is not None else self.full_ms


def _interp(points, k: float) -> float:
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    if k >= xs[-1]:
        return ys[-1]
    if k <= xs[0]:
        if len(xs) == 1 or xs[1] == xs[0]:
            return ys[0]
        slope = (ys[1] - ys[0]) / (xs[1] - xs[0])
        return max(0.0, ys[0] - slope * (xs[0] - k))
    return float(np.interp(k, xs, ys))


@dataclass
class LatencyTable:
    key: dict
    whole_ms: float
    overhead_ms: float
    round_to: int
    segments: list[SegmentTiming]
    probe: dict = field(default_factory=dict)
    seconds: float = 0.0           # wall-clock time the build took
    cpu_seconds: float = 0.0       # CPU time of this process during the build (the time on an idle machine)
    models_timed: int = 0
    skipped: list[str] = field(default_factory=list)   # segments that could not be cut out and run alone

    @property
    def segments_ms(self) -> float:
        return sum(s.full_ms for s in self.segments)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> LatencyTable:
        data = dict(data)
        data["segments"] = [SegmentTiming(**s) for s in data["segments"]]
        return cls(**data)

    def format(self) -> str:
        """The per-layer table: each segment's time at full counts and at the measured kept counts."""
        k = self.key
        lines = [f"latency table: {k.get('device')}, batch {k.get('batch')}, threads {k.get('threads') or 'default'}, "
                 f"onnxruntime {k.get('onnxruntime')}; whole model {self.whole_ms:.3f} ms, "
                 f"{len(self.segments)} layers {self.segments_ms:.3f} ms timed alone; "
                 f"round_to {self.round_to}; built in {self.seconds:.1f} s ({self.cpu_seconds:.1f} s of CPU time, "
                 f"{self.models_timed} models timed)"]
        lines.append(f"{'layer':<40} {'in':>6} {'out':>6} {'ms':>9}  kept in:ms ... | kept out:ms ...")
        for s in sorted(self.segments, key=lambda s: -s.full_ms):
            pts_in = " ".join(f"{int(k)}:{v:.3f}" for k, v in s.in_points[:-1])
            pts_out = " ".join(f"{int(k)}:{v:.3f}" for k, v in s.out_points[:-1])
            name = s.nodes[0] if s.kind == "layer" else f"{s.kind} {s.nodes[0]}"
            lines.append(f"{name[:40]:<40} {s.k_in:>6} {s.k_out:>6} {s.full_ms:>9.3f}  {pts_in} | {pts_out}")
        if self.probe:
            lines.append("alignment probe (saving per removed channel, relative to proportional): "
                         + ", ".join(f"{r}: {v:.2f}" for r, v in self.probe.get("efficiency", {}).items()))
        if self.skipped:
            lines.append(f"not timed alone ({len(self.skipped)}; counted as constant): " + ", ".join(self.skipped[:8]))
        return "\n".join(lines)


def cache_dir(path: str | os.PathLike | None = None) -> Path:
    if path:
        return Path(path)
    if os.environ.get("ONNXPRUNE_CACHE_DIR"):
        return Path(os.environ["ONNXPRUNE_CACHE_DIR"]) / "latency"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "onnxprune" / "latency"


def ort_version() -> str | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.__version__


def table_key(model: onnx.ModelProto, device: str, threads: int | None, batch: int,
              input_shapes: Mapping[str, tuple[int, ...]], timer_name: str) -> dict:
    return {"version": TABLE_VERSION, "model": structure_key(model), "device": device, "threads": threads,
            "batch": batch, "shapes": {k: list(v) for k, v in sorted(input_shapes.items())},
            "onnxruntime": ort_version(), "timer": timer_name}


def key_digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


# By cache file (or key, without a disk cache): the rounds of one --target-latency run share a table.
_MEMORY: dict[str, LatencyTable] = {}


def load_or_build(analysis: Analysis, model: onnx.ModelProto, timer, device: str, threads: int | None, batch: int,
                  input_shapes: Mapping[str, tuple[int, ...]], cache: str | os.PathLike | None = None,
                  use_cache: bool = True, progress: Callable[[int, int], None] | None = None) -> tuple[LatencyTable, bool]:
    """The model's latency table from memory, the disk cache or a fresh measurement; and whether it
    was cached."""
    key = table_key(model, device, threads, batch, input_shapes, getattr(timer, "name", type(timer).__name__))
    digest = key_digest(key)
    path = cache_dir(cache) / f"{digest}.json"
    memory = str(path) if use_cache else f"off:{digest}"
    if memory in _MEMORY:
        return _MEMORY[memory], True
    if use_cache:
        try:
            table = LatencyTable.from_dict(json.loads(path.read_text()))
            if table.key == key:
                _MEMORY[memory] = table
                return table, True
        except (OSError, ValueError, TypeError, KeyError):
            pass
    table = build_table(analysis, model, timer, key, batch, input_shapes, progress)
    _MEMORY[memory] = table
    if use_cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(table.to_dict()))
            tmp.replace(path)
        except OSError:
            pass  # a cache that cannot be written only costs the next run its measurement
    return table, False


class _Measurer:
    """Times small models, the points of one layer interleaved in one call so that machine noise
    hits them alike; identical cut-outs (repeated blocks) share one measurement."""

    def __init__(self, timer, overhead: float = 0.0):
        self.timer = timer
        self.seen: dict[str, float] = {}
        self.overhead = overhead

    def many(self, models: list[onnx.ModelProto], runs: int | None = None, again: bool = False) -> list[float]:
        """Milliseconds per run of each model, less the runtime's per-run overhead. `again` times
        them once more and keeps the lower figure: load from other processes only ever adds time."""
        keys = [structure_key(m) + f":{runs}" for m in models]
        todo = {}
        for k, m in zip(keys, models):
            if (again or k not in self.seen) and k not in todo:
                todo[k] = m
        if todo:
            times = self.timer.time([with_weights(m) for m in todo.values()], runs=runs)
            for k, t in zip(todo, times):
                t = max(0.0, t * 1000.0 - self.overhead)
                self.seen[k] = min(t, self.seen.get(k, t))
        return [self.seen[k] for k in keys]

    def __call__(self, model: onnx.ModelProto, runs: int | None = None) -> float:
        return self.many([model], runs)[0]


def build_table(analysis: Analysis, model: onnx.ModelProto, timer, key: dict, batch: int,
                input_shapes: Mapping[str, tuple[int, ...]],
                progress: Callable[[int, int], None] | None = None) -> LatencyTable:
    start, cpu_start = time.perf_counter(), time.process_time()
    segments = find_segments(analysis)
    builder = SegmentBuilder(analysis, fixed_shapes(model, dict(input_shapes)))
    whole = timer.time([model], shapes=input_shapes, runs=WHOLE_RUNS, quantile=0.5)[0] * 1000.0
    overhead = timer.time([_trivial_model()], runs=20)[0] * 1000.0
    measure = _Measurer(timer, overhead)
    usable, skipped, full_ms = [], [], {}
    for seg in segments:
        try:
            full_ms[seg.nodes] = measure(builder.model(seg, set()))
            usable.append(seg)
        except Exception as exc:  # noqa: BLE001 - a segment ORT or ONNX cannot run alone stays constant
            if isinstance(exc, MemoryError):
                raise
            skipped.append(seg.label())
    round_to, probe = _probe(analysis, builder, [s for s in usable if s.timed], full_ms, measure, key["device"])
    timings = []
    for i, seg in enumerate(usable):
        if seg.timed:
            timings.append(_time_segment(analysis, builder, seg, measure, round_to))
        else:
            k_in, k_out = builder.counts(seg, set())
            timings.append(SegmentTiming(list(seg.nodes), seg.kind, k_in, k_out, full_ms[seg.nodes]))
        if progress is not None:
            progress(i + 1, len(usable))
    return LatencyTable(key, whole, overhead, round_to, timings, probe, time.perf_counter() - start,
                        time.process_time() - cpu_start, len(measure.seen), skipped)


def aligned(size: int, share: float, step: int) -> int:
    """A kept count near share*size that is a multiple of step (at least one step, at most size)."""
    if step <= 1:
        return max(1, min(size, int(round(share * size))))
    return max(step, min(size, int(round(share * size / step)) * step))


def _time_segment(analysis, builder: SegmentBuilder, seg: Segment, measure, round_to: int) -> SegmentTiming:
    from ..alignment import group_step

    size = {g.id: g.size for g in analysis.groups}
    full_in, full_out = builder.counts(seg, set())
    plan = [("full", full_in, builder.model(seg, set()))]
    for side, gids in (("in", seg.in_groups), ("out", seg.out_groups)):
        seen = {full_in if side == "in" else full_out}
        for share in FRACTIONS:
            kept = {g: aligned(size[g], share, group_step(size[g], round_to)) for g in gids}
            removed = builder.removal(seg, kept if side == "in" else {}, kept if side == "out" else {})
            k_in, k_out = builder.counts(seg, removed)
            k = k_in if side == "in" else k_out
            if k not in seen:
                seen.add(k)
                plan.append((side, k, builder.model(seg, removed)))
    models = [m for _, _, m in plan]
    times = measure.many(models)
    for _ in range(RETRIES):
        by_side = {"in": [], "out": []}
        for (side, k, _), t in zip(plan, times):
            for s in ("in", "out"):
                if side in (s, "full"):
                    by_side[s].append((full_out if side == "full" and s == "out" else k, t))
        if not any(_suspicious(pts) for pts in by_side.values()):
            break
        times = measure.many(models, again=True)
    full = times[0]
    timing = SegmentTiming(list(seg.nodes), seg.kind, full_in, full_out, full)
    for side, k, t in zip([p[0] for p in plan], [p[1] for p in plan], times):
        if side != "full":
            (timing.in_points if side == "in" else timing.out_points).append([float(k), t])
    if seg.in_groups:
        timing.in_points = monotone(sorted(timing.in_points + [[float(full_in), full]]))
    if seg.out_groups:
        timing.out_points = monotone(sorted(timing.out_points + [[float(full_out), full]]))
    timing.full_ms = max(p[1] for p in timing.in_points + timing.out_points + [[0, full]])
    return timing


def _suspicious(points) -> bool:
    """Points that a burst of load probably inflated: fewer channels costing clearly more, or time
    growing much faster than the channel count. Such a layer is timed again (RETRIES times at most)."""
    pts = sorted(points)
    for (k0, t0), (k1, t1) in zip(pts, pts[1:]):
        if t0 > 1.15 * t1 or (k0 > 0 and t1 > 1.5 * t0 * k1 / k0 + 0.01):
            return True
    return False


def monotone(points: list[list[float]]) -> list[list[float]]:
    """The closest non-decreasing fit (pool adjacent violators): fewer channels never cost more in
    the model. Noise of a shared machine and slow kernels for a few channels (ORT leaves its
    blocked layout under 8 or 16 channels) both make measured points dip; the fit averages them, so
    the allocation sees no saving where there is none to count on."""
    blocks: list[list[float]] = []  # [sum, count, first index]
    for i, (_, t) in enumerate(points):
        blocks.append([t, 1, i])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            t2, n2, _ = blocks.pop()
            blocks[-1][0] += t2
            blocks[-1][1] += n2
    out = []
    for total, n, first in blocks:
        out += [[points[first + j][0], total / n] for j in range(n)]
    return out


def _probe(analysis, builder: SegmentBuilder, segments, full_ms, measure, device: str) -> tuple[int, dict]:
    """round_to from the costliest layers' measured steps (see the module docstring)."""
    size = {g.id: g.size for g in analysis.groups}
    candidates = [(full_ms[s.nodes], s) for s in segments if s.kind == "layer" and len(s.out_groups) == 1
                  and size[s.out_groups[0]] > PROBE_BASE]
    candidates.sort(key=lambda c: -c[0])
    eff: dict[int, list[float]] = {r: [] for r in PROBE_STEPS}
    used = []
    for _, seg in candidates[:PROBE_LAYERS]:
        gid = seg.out_groups[0]
        base = PROBE_BASE
        models = [builder.model(seg, builder.removal(seg, {}, {gid: base - r})) for r in (0, *PROBE_STEPS)]
        t0, *ts = measure.many(models, runs=PROBE_RUNS)
        if t0 <= 0:
            continue
        used.append(seg.nodes[0])
        for r, t in zip(PROBE_STEPS, ts):
            eff[r].append((t0 - t) / (r * t0 / base))
    if not used:
        return FALLBACK_ROUND_TO.get(device, 16), {}
    mean = {r: float(np.mean(v)) for r, v in eff.items()}
    reference = mean[PROBE_STEPS[-1]]
    round_to = next((r for r in PROBE_STEPS if mean[r] >= PROBE_TIE * reference), PROBE_STEPS[-1])
    return round_to, {"layers": used, "efficiency": {str(r): round(v, 3) for r, v in mean.items()}}


def _trivial_model() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "trivial", [x], [y])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


class SideCount:
    """Kept positions of an atom list. When every group on it appears with all its channels the same
    number of times (the usual case: then which channels go does not matter), removing n channels of
    a group takes a known number of positions away, without a pass over the atoms."""

    def __init__(self, analysis: Analysis, atoms: np.ndarray | None):
        self.analysis = analysis
        self.atoms = atoms
        self.parts: dict[int, int] | None = {}
        self.fixed = 0
        if atoms is None:
            return
        self.fixed = int(np.sum(atoms < 0))
        chans = analysis.channel_of(atoms)
        chans = chans[chans >= 0]
        ids, counts = np.unique(chans, return_counts=True)
        by_group: dict[int, list[int]] = {}
        for c, n in zip(ids.tolist(), counts.tolist()):
            by_group.setdefault(analysis.group_of_channel[c], []).append(n)
        for gid, ns in by_group.items():
            if len(ns) != analysis.groups[gid].size or len(set(ns)) != 1:
                self.parts = None
                return
            self.parts[gid] = ns[0]

    def __call__(self, removed) -> int:
        if self.atoms is None:
            return 0
        return len(self.analysis.kept_positions(self.atoms, removed))

    def after(self, count: int, group: int, n: int, removed) -> int:
        """The count once `n` more channels of `group` are removed (`removed` already without them)."""
        if self.atoms is None:
            return 0
        if self.parts is None:
            return self(removed)
        return count - self.parts.get(group, 0) * n


class LatencyModel:
    """Predicted latency of the model for any removed set, from its table."""

    def __init__(self, analysis: Analysis, table: LatencyTable):
        self.analysis = analysis
        self.table = table
        by_nodes = {tuple(s.nodes): s for s in table.segments}
        self.pairs: list[tuple[Segment, SegmentTiming]] = []
        self.sides: list[tuple[SideCount, SideCount]] = []
        for seg in find_segments(analysis):
            t = by_nodes.get(seg.nodes)
            if t is not None:
                self.pairs.append((seg, t))
                self.sides.append((SideCount(analysis, seg.in_atoms), SideCount(analysis, seg.out_atoms)))
        self.of_group: dict[int, list[int]] = {}
        for i, (seg, _) in enumerate(self.pairs):
            for g in seg.in_groups + seg.out_groups:
                self.of_group.setdefault(g, []).append(i)
        self.full = sum(t.cost(t.k_in, t.k_out) for _, t in self.pairs)

    def counts(self, i: int, removed) -> tuple[int, int]:
        count_in, count_out = self.sides[i]
        return count_in(removed), count_out(removed)

    def segment_ms(self, i: int, removed) -> float:
        return self.pairs[i][1].cost(*self.counts(i, removed))

    def ms(self, removed) -> float:
        """Sum of the segments' times (the units budgets are given in)."""
        return sum(self.segment_ms(i, removed) for i in range(len(self.pairs)))

    def share(self, removed) -> float:
        return self.ms(removed) / self.full if self.full > 0 else 1.0
