"""Library entry points: prune(), analyze_model(), latency_table(). prune() picks the strategy
(onnxprune/strategies/) or runs the pipeline once (passes/pipeline.py); the CLI is a thin layer
over these."""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

import onnx

from .analysis import Analysis, analyze
from .config import PruneConfig
from .graph import ModelGraph
from .passes.normalize import FoldBatchNorm
from .passes.pipeline import loaded, run_pipeline
from .passes.state import PruneState
from .passes.untie import untie_shared
from .progress import Progress, reporting
from .report import GroupSummary, PruneReport, PruneResult  # noqa: F401 (the library's result types)
from .runtime.shapes import resolve_input_shapes
from .shapes import ResolvedShapes


def prune(model: onnx.ModelProto | str | os.PathLike, config: PruneConfig | None = None,
          progress: Progress | None = None, timer=None, **options) -> PruneResult:
    """Prune a model (edited in place when a ModelProto is given). Options are PruneConfig fields.
    `progress(step, done, total)` hears of each step: passes, data passes, repair per layer, guard trials.
    `timer` measures latency for target_latency (default: ONNX Runtime on config.device; tests
    inject a fake one, see onnxprune.runtime.timing)."""
    config = config or PruneConfig(**options)
    with reporting(progress):
        result = run_strategy(loaded(model), config, timer)
    if not isinstance(model, onnx.ModelProto):
        result.source = str(model)
    return result


def run_strategy(model: onnx.ModelProto, config: PruneConfig, timer=None) -> PruneResult:
    """The strategy the config asks for (onnxprune/strategies/), or one pipeline run."""
    if config.quantize:
        from .quantize import check_quantizable
        from .strategies.quantized import quantize_result

        check_quantizable(model, config.quantize)  # before a long pruning run
        return quantize_result(run_strategy(model, dataclasses.replace(config, quantize=None), timer), config, timer)
    if config.finetune:
        from .finetune import check_available
        from .strategies.finetuned import finetune_result

        check_available()  # before a long pruning run
        if config.guarded:
            from .strategies.finetuned import guarded_finetune

            return guarded_finetune(model, config)
        original = onnx.ModelProto()
        original.CopyFrom(model)
        untrained = run_strategy(model, dataclasses.replace(config, finetune=None, finetune_time=None), timer)
        return finetune_result(original, untrained, config)
    if config.guarded:
        from .strategies.guard import guarded_prune

        return guarded_prune(model, config)
    from .strategies.race import race_criteria, races

    if races(config):
        return race_criteria(model, config, timer)
    shapes = resolve_input_shapes(model, config)
    if config.target_latency is not None and config.latency_rounds > 0:
        from .strategies.latency import latency_prune

        return latency_prune(model, config, timer, shapes.with_batch(config.batch).as_dict())
    return run_pipeline(model, config, shapes, timer)


def _untied_at_shapes(model, config: PruneConfig) -> tuple[onnx.ModelProto, ResolvedShapes]:
    """The model loaded (or its tensors checked), its input shapes resolved and shared constants untied,
    as prune() prepares it before the analysis."""
    model = loaded(model)
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
