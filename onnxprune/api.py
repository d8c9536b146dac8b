"""Library entry points: prune(), analyze_model(). The CLI is a thin layer over these."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from .analysis import Analysis, analyze
from .config import PruneConfig
from .cost import count_flops, count_params
from .graph import ModelGraph
from .io import check_proto, load_model, save_model
from .passes.base import Pass, PassManager, PassRecord, PassResult
from .passes.normalize import FoldBatchNorm, remove_unused
from .passes.prune_channels import PruneChannels
from .passes.select import SelectExact
from .passes.untie import RetieShared, untie_shared
from .shapes import ResolvedShapes, declared_inputs, resolve_shapes
from .progress import Progress, reporting
from .progress import report as report_progress


@dataclass
class PruneState:
    """What passes share: the model being rewritten and what earlier passes found."""

    model: onnx.ModelProto
    config: PruneConfig
    graph: ModelGraph | None = None
    analysis: Analysis | None = None
    removed: set[int] = field(default_factory=set)
    groups_before: list = field(default_factory=list)
    kept_per_group: dict[int, tuple[int, int]] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    shapes: ResolvedShapes | None = None


class Analyze(Pass):
    name = "analyze"

    def run(self, state) -> PassResult:
        state.analysis = analyze(state.graph)
        state.groups_before = state.analysis.groups
        state.info["prunable_flops_share"] = prunable_flops_share(state.analysis)
        return PassResult(False, {"groups": len(state.analysis.groups),
                                  "prunable": len(state.analysis.prunable_groups())})


def prunable_flops_share(analysis: Analysis) -> float:
    """Share of the model's FLOPs in layers that a lossy run could shrink."""
    from .analysis.analyzer import node_label
    from .cost import node_flops

    touched = {m.node for g in analysis.prunable_groups() for m in g.members}
    total = part = 0
    for n in analysis.graph.all_nodes:
        f = node_flops(n, analysis.graph)
        total += f
        if node_label(n) in touched:
            part += f
    return part / total if total else 0.0


class RepairConsumers(Pass):
    name = "repair-consumers"

    def run(self, state) -> PassResult:
        from .repair.reconstruct import repair_consumers

        if not state.removed:
            return PassResult(False)
        methods = tuple(m for m in state.config.repair if m in ("bias", "lsq"))
        info = repair_consumers(state.analysis, state.removed, state.config.calib_data, methods,
                                device=_runtime_device(state.config))
        state.info.setdefault("notes", []).extend(info.pop("notes", []))
        samples = info.get("samples", 0)
        if 0 < samples < SMALL_CALIBRATION:
            state.info["notes"].append(f"only {samples} calibration samples: repair figures are fitted on little "
                                       f"data; a few hundred samples are better")
        return PassResult(info.get("layers", 0) > 0, info)


class MeasureBN(Pass):
    """Before anything is rewritten: the input statistics of the BNs pruning will shift (repair/batchnorm.py)."""

    name = "measure-bn"

    def run(self, state) -> PassResult:
        from .repair.batchnorm import pruning_reference

        if not state.removed:
            return PassResult(False)
        state.info["bn_reference"] = pruning_reference(state.analysis, state.removed, state.config.calib_data,
                                                       device=_runtime_device(state.config))
        return PassResult(False, {"batchnorms": len(state.info["bn_reference"])})


class RecalibrateBN(Pass):
    name = "repair-bn"

    def run(self, state) -> PassResult:
        from .repair.batchnorm import recalibrate_bn

        reference = state.info.pop("bn_reference", None)
        if not state.removed or not reference:
            return PassResult(False, {"batchnorms": 0})
        n = recalibrate_bn(state.model, state.config.calib_data, device=_runtime_device(state.config),
                           reference=reference)
        return PassResult(n > 0, {"batchnorms": n})


SMALL_CALIBRATION = 64


def _runtime_device(config: PruneConfig) -> str:
    return config.device


class Cleanup(Pass):
    name = "cleanup"

    def run(self, state) -> PassResult:
        if not state.removed and not state.config.fold_bn:
            return PassResult(False)  # a model nothing was done to is written back as it came
        n = remove_unused(state.model)
        return PassResult(n > 0, {"removed": n})


@dataclass
class GroupSummary:
    id: int
    size: int
    kept: int
    sources: list[str]
    prunable: bool
    reasons: list[str]
    lossy_only: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class PruneReport:
    mode: str
    params_before: int
    params_after: int
    flops_before: int
    flops_after: int
    groups: list[GroupSummary]
    passes: list[PassRecord]
    prunable_flops_share: float = 0.0
    notes: list[str] = field(default_factory=list)
    guard: dict | None = None
    input_shapes: str = ""          # the shapes FLOPs are counted at, e.g. "x:1x3x640x640"
    shapes_source: str = "model"    # model, --shape, calibration data, guessed
    latency: dict | None = None
    quantize: dict | None = None  # what --quantize did (mode, per-channel, op counts)

    @property
    def channels_removed(self) -> int:
        return sum(g.size - g.kept for g in self.groups)

    def to_dict(self) -> dict:
        return {
            "mode": self.mode,
            "params": {"before": self.params_before, "after": self.params_after},
            "flops": {"before": self.flops_before, "after": self.flops_after},
            "channels_removed": self.channels_removed,
            "prunable_flops_share": self.prunable_flops_share,
            "groups": [g.to_dict() for g in self.groups],
            "passes": [{"name": r.name, "modified": r.result.modified, "seconds": round(r.seconds, 4),
                        **r.result.details} for r in self.passes],
            "notes": self.notes,
            "guard": self.guard,
            "input_shapes": {"shapes": self.input_shapes, "source": self.shapes_source},
            "latency": self.latency,
            "quantize": self.quantize,
        }


@dataclass
class PruneResult:
    model: onnx.ModelProto
    report: PruneReport
    shapes: ResolvedShapes | None = None  # the input shapes every step used; validation reuses them
    float_model: onnx.ModelProto | None = None  # with --quantize: the pruned model before quantization
    source: str | None = None             # the input file, when prune() was given a path

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the pruned model atomically (external data above 2 GB); the input file is never
        written over unless overwrite=True. Check it with onnxprune.validate(source, path, ...)."""
        return save_model(self.model, path, self.source, overwrite)


def resolve_input_shapes(model: onnx.ModelProto, config: PruneConfig) -> ResolvedShapes:
    """The one place input shapes are decided for a run: --shape, else the first calibration
    sample, else a stated guess (shapes.resolve_shapes)."""
    given = dict(config.shapes)
    sample = None
    declared = declared_inputs(model)
    if config.calib and set(declared) - set(given):
        from .runtime.data import input_specs, load_data

        sample = load_data(config.calib_data, input_specs(model)).first_sample()
    from .runtime.compare import RunsAt

    with RunsAt(model) as accept:
        return resolve_shapes(model, given, sample, accept=accept)



def _select_pass(config: PruneConfig, timer=None) -> Pass:
    if config.target_latency is not None:
        from .passes.select_latency import SelectLatency

        return SelectLatency(timer)
    if config.lossy:
        from .passes.select_lossy import SelectLossy

        return SelectLossy()
    return SelectExact()


def build_pipeline(config: PruneConfig, timer=None) -> list[Pass]:
    passes: list[Pass] = []
    if config.fold_bn:
        passes.append(FoldBatchNorm())
    passes += [Analyze(), _select_pass(config, timer)]
    if config.lossy and "bn" in config.repair:
        passes.append(MeasureBN())
    if config.lossy and {"bias", "lsq"} & set(config.repair):
        passes.append(RepairConsumers())
    passes.append(PruneChannels())
    if config.lossy and "bn" in config.repair:
        passes.append(RecalibrateBN())
    passes += [RetieShared(), Cleanup()]
    return passes


def prune(model: onnx.ModelProto | str | os.PathLike, config: PruneConfig | None = None,
          progress: Progress | None = None, timer=None, **options) -> PruneResult:
    """Prune a model (edited in place when a ModelProto is given). Options are PruneConfig fields.
    `progress(step, done, total)` hears of each step: passes, data passes, repair per layer, guard trials.
    `timer` measures latency for target_latency (default: ONNX Runtime on config.device; tests
    inject a fake one, see onnxprune.runtime.timing)."""
    config = config or PruneConfig(**options)
    with reporting(progress):
        result = _prune(model, config, timer)
    if not isinstance(model, onnx.ModelProto):
        result.source = str(model)
    return result


def _prune(model, config: PruneConfig, timer=None) -> PruneResult:
    if not isinstance(model, onnx.ModelProto):
        model = load_model(model)
    else:
        check_proto(model)
    if config.quantize:
        return _prune_then_quantize(model, config)
    if config.guarded:
        from .guard import guarded_prune

        return guarded_prune(model, config, _prune)
    shapes = resolve_input_shapes(model, config)
    if config.target_latency is not None and config.latency_rounds > 0:
        from .latency_target import latency_prune

        return latency_prune(model, config, lambda m, c: _prune(m, c, timer), timer,
                             shapes.with_batch(config.batch).as_dict())
    state = PruneState(model=model, config=config, shapes=shapes)
    params_before = count_params(model)
    state.info["ties"] = untie_shared(model)  # merged back by RetieShared
    state.graph = ModelGraph(model, shapes=shapes.per_sample())
    flops_before = count_flops(state.graph)
    records = PassManager(build_pipeline(config, timer)).run(state)
    changed = any(r.result.modified for r in records)
    graph_after = ModelGraph(model, shapes=shapes.per_sample()) if changed else state.graph
    removed = state.removed
    groups = []
    analysis_groups = state.groups_before
    for g in analysis_groups:
        gone = sum(1 for c in g.channels if c in removed)
        groups.append(GroupSummary(g.id, g.size, g.size - gone, g.sources, g.prunable, g.reasons,
                                   g.inexact))
    report = PruneReport(
        mode="lossy" if config.lossy else "exact",
        params_before=params_before, params_after=count_params(model),
        flops_before=flops_before, flops_after=count_flops(graph_after),
        groups=groups, passes=records,
        prunable_flops_share=state.info.get("prunable_flops_share", 0.0),
        notes=list(shapes.notes) + state.info.get("notes", []),
        input_shapes=shapes.per_sample().describe(), shapes_source=shapes.source,
        latency=state.info.get("latency"),
    )
    if config.lossy and config.calib is not None and config.criterion == "recon" and state.removed:
        report.notes.insert(0, "channels chosen by how much of the next layer's output they carry on the "
                               "calibration data (--criterion recon, the default with --calib)")
    if config.repair_default and state.removed:
        report.notes.insert(0, "repaired by default because --calib was given (bias, lsq, bn, each kept per layer only "
                               "where it helps on held-out samples); --repair none turns it off")
    return PruneResult(model, report, shapes)


def _prune_then_quantize(model: onnx.ModelProto, config: PruneConfig) -> PruneResult:
    """Prune (and repair, guard) in float, then quantize the result with the same calibration data."""
    import dataclasses
    import time

    from .quantize import check_quantizable, quantize_model

    check_quantizable(model, config.quantize)  # before a long pruning run
    result = _prune(model, dataclasses.replace(config, quantize=None))
    pruned = onnx.ModelProto()
    pruned.CopyFrom(result.model)
    report_progress("quantize")
    start = time.perf_counter()
    to_quantize = result.model
    if config.quantize != "dynamic":
        # BatchNormalization left between QDQ pairs runs in float: fold it into the convs first.
        to_quantize = onnx.ModelProto()
        to_quantize.CopyFrom(result.model)
        fold = FoldBatchNorm().run(PruneState(model=to_quantize, config=config, graph=ModelGraph(to_quantize)))
        if fold.modified:
            result.report.notes.append(f"folded {fold.details['folded']} BatchNormalization into convs before "
                                       "quantizing")
    quantized, info = quantize_model(to_quantize, config.quantize, config.calib_data)
    info["seconds"] = round(time.perf_counter() - start, 4)
    result.report.notes.extend(info.pop("notes"))
    result.report.quantize = info
    return PruneResult(quantized, result.report, result.shapes, float_model=pruned)


def _untied_at_shapes(model, config: PruneConfig) -> tuple[onnx.ModelProto, ResolvedShapes]:
    """The model loaded (or its tensors checked), its input shapes resolved and shared constants untied,
    as prune() prepares it before the analysis."""
    if not isinstance(model, onnx.ModelProto):
        model = load_model(model)
    else:
        check_proto(model)
    shapes = resolve_input_shapes(model, config)
    untie_shared(model)
    return model, shapes


def analyze_model(model: onnx.ModelProto | str | os.PathLike, config: PruneConfig | None = None,
                  **options) -> Analysis:
    """Channel groups of a model, after the same normalization and at the same input shapes as
    prune() (options: PruneConfig fields, e.g. shapes, calib)."""
    config = config or PruneConfig(**options)
    model, shapes = _untied_at_shapes(model, config)
    analysis = analyze(ModelGraph(model, shapes=shapes.per_sample()))
    analysis.shapes = shapes
    return analysis


def latency_table(model: onnx.ModelProto | str | os.PathLike, config: PruneConfig | None = None, timer=None,
                  progress: Callable[[int, int], None] | None = None, **options):
    """The per-layer latency table --target-latency uses (measured, or read from the cache), for the
    model after the same normalization prune() applies. Options are PruneConfig fields (device, batch,
    threads, shapes, latency_cache, fold_bn)."""
    from .latency.table import load_or_build
    from .passes.select_latency import latency_device, make_timer

    config = config or PruneConfig(**options)
    model, shapes = _untied_at_shapes(model, config)
    state = PruneState(model=model, config=config, graph=ModelGraph(model, shapes=shapes.per_sample()), shapes=shapes)
    if config.fold_bn:
        FoldBatchNorm().run(state)
    analysis = analyze(state.graph)
    table, _ = load_or_build(analysis, model, timer or make_timer(config), latency_device(config.device),
                             config.threads, config.batch, shapes.with_batch(config.batch).as_dict(),
                             config.latency_cache, use_cache=config.latency_cache != "off", progress=progress)
    return table
