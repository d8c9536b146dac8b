"""One pipeline run: the passes a config asks for, in order, over one model at resolved shapes.

    [fold-bn] -> [rotate-stream] -> analyze -> select -> [measure-bn] -> [repair-consumers] -> prune-channels
              -> [repair-bn] -> retie-shared -> cleanup -> weight-inputs

`run_pipeline` dispatches nothing: whatever searches over pipelines (the fidelity guard, the latency
loop, quantize-then-check; onnxprune/strategies/) calls it, never the other way round."""

from __future__ import annotations

import onnx

from ..config import PruneConfig
from ..cost import count_flops, count_params
from ..graph import ModelGraph
from ..io import check_proto, load_model, sort_graph
from ..report import GroupSummary, PruneReport, PruneResult, nothing_removed_warning
from ..shapes import ResolvedShapes
from .analyze import Analyze
from .base import Pass, PassManager
from .normalize import Cleanup, FoldBatchNorm
from .prune_channels import PruneChannels
from .repair import MeasureBN, RecalibrateBN, RepairConsumers
from .select import SelectExact
from .state import PruneState
from .untie import RetieShared, untie_shared
from .weight_inputs import DeclareWeightInputs, check_weight_inputs_mode


def _select_pass(config: PruneConfig, timer=None) -> Pass:
    if config.target_latency is not None:
        from .select_latency import SelectLatency

        return SelectLatency(timer)
    if config.lossy:
        from .select_lossy import SelectLossy

        return SelectLossy()
    return SelectExact()


def build_pipeline(config: PruneConfig, timer=None) -> list[Pass]:
    passes: list[Pass] = []
    if config.fold_bn:
        passes.append(FoldBatchNorm())
    if config.lossy and config.rotate and config.calib is not None and config.target_latency is None:
        from .rotate import RotateStream

        passes.append(RotateStream())
    passes += [Analyze(), _select_pass(config, timer)]
    if config.lossy and "bn" in config.repair:
        passes.append(MeasureBN())
    if config.lossy and {"bias", "lsq"} & set(config.repair):
        passes.append(RepairConsumers())
    passes.append(PruneChannels())
    if config.lossy and "bn" in config.repair:
        passes.append(RecalibrateBN())
    passes += [RetieShared(), Cleanup(), DeclareWeightInputs()]
    return passes


def run_pipeline(model: onnx.ModelProto, config: PruneConfig, shapes: ResolvedShapes, timer=None) -> PruneResult:
    """Prune `model` (edited in place) at `shapes` with the passes `config` asks for."""
    check_weight_inputs_mode(model, config.weight_inputs)
    state = PruneState(model=model, config=config, shapes=shapes)
    params_before = count_params(model)
    state.ties = untie_shared(model)  # merged back by RetieShared
    state.graph = ModelGraph(model, shapes=shapes.per_sample())
    flops_before = count_flops(state.graph)
    records = PassManager(build_pipeline(config, timer)).run(state)
    changed = any(r.result.modified for r in records)
    graph_after = ModelGraph(model, shapes=shapes.per_sample()) if changed else state.graph
    removed = state.removed
    groups = [GroupSummary(g.id, g.size, g.size - sum(1 for c in g.channels if c in removed), g.sources, g.prunable,
                           g.reasons, g.inexact) for g in state.groups_before]
    report = PruneReport(
        mode="lossy" if config.lossy else "exact",
        params_before=params_before, params_after=count_params(model),
        flops_before=flops_before, flops_after=count_flops(graph_after),
        groups=groups, passes=records,
        prunable_flops_share=state.prunable_flops_share,
        notes=list(shapes.notes) + state.notes,
        input_shapes=shapes.per_sample().describe(), shapes_source=shapes.source,
        latency=state.latency,
    )
    if config.lossy and not removed:
        report.warnings.append(nothing_removed_warning(groups))
    if config.lossy and config.calib is not None and config.criterion == "recon" and state.removed:
        report.notes.insert(0, "channels chosen by how much of the next layer's output they carry on the "
                               "calibration data (--criterion recon, the default with --calib)")
    if config.repair_default and state.removed:
        repaired = any(r.result.modified for r in records if r.name.startswith("repair"))
        report.notes.insert(0, "repaired by default because --calib was given (bias, lsq, bn, each kept per layer only "
                               "where it helps on held-out samples); --repair none turns it off" if repaired else
                               "repair (the default with --calib) changed nothing: no layer it can refit (a plain "
                               "Conv, a Gemm, a MatMul with its bias Add) reads the removed channels, or no refit helped on held-out samples")
    return PruneResult(model, report, shapes)


def prune_once(model: onnx.ModelProto, config: PruneConfig, timer=None) -> PruneResult:
    """Shapes resolved for `config`, then one pipeline run: what each trial of a strategy is."""
    from ..runtime.shapes import resolve_input_shapes

    return run_pipeline(model, config, resolve_input_shapes(model, config), timer)


def loaded(model) -> onnx.ModelProto:
    """A path loaded, or a proto's tensors checked (io.check_proto)."""
    if not isinstance(model, onnx.ModelProto):
        return load_model(model)
    check_proto(model)
    sort_graph(model)  # nodes listed out of order (ONNX Runtime runs them) are put in order
    return model
