"""Prune (and repair, guard) in float, then quantize the result with the same calibration data
(onnxprune/quantize.py does the quantizing), and measure what is written against the pruned float
model at the run's --batch, --threads and --device: ONNX Runtime, interleaved runs, the median of
the per-round time ratios (runtime/timing.OrtTimer.compare). `--quantize auto` picks the layers to
quantize by timing them (strategies/precision.py) and writes the float model where nothing pays."""

from __future__ import annotations

import time

import onnx

from ..config import PruneConfig
from ..graph import ModelGraph
from ..passes.normalize import FoldBatchNorm
from ..passes.select_latency import latency_device, make_timer
from ..passes.state import PruneState
from ..progress import report
from ..report import PruneResult

# Whole-model comparison: rounds of SPEED_RUNS runs of each model until the ratio's standard error
# is below SPEED_PRECISION, at most SPEED_MAX_RUNS runs each.
SPEED_RUNS, SPEED_MAX_RUNS, SPEED_PRECISION = 5, 20, 0.02


def measure_speed(pruned: onnx.ModelProto, quantized: onnx.ModelProto, config: PruneConfig, shapes, timer) -> dict:
    """The quantized model's time against the pruned float model's at config.batch (interleaved)."""
    at = shapes.with_batch(config.batch).as_dict() if shapes is not None else None
    speed = {"batch": config.batch, "threads": config.threads, "device": latency_device(config.device),
             "clock": getattr(timer, "name", type(timer).__name__)}
    try:
        float_s, quant_s, ratio = timer.compare(pruned, quantized, shapes=at, runs=SPEED_RUNS,
                                                max_runs=SPEED_MAX_RUNS, precision=SPEED_PRECISION)
    except Exception as exc:  # noqa: BLE001 - a model that cannot be timed is reported, not fatal
        if isinstance(exc, MemoryError):
            raise
        speed["error"] = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"
        return speed
    speed.update({"pruned_float_ms": round(float_s * 1000.0, 4), "quantized_ms": round(quant_s * 1000.0, 4),
                  "time_ratio": round(ratio, 4), "slower": ratio > 1.0})
    return speed


def _slower_note(speed: dict, mode: str) -> str:
    return (f"warning: the quantized model is slower than the pruned float model at batch {speed['batch']} "
            f"({speed['time_ratio']:.2f}x its time, {speed['device']}, threads {speed['threads'] or 'default'}); "
            + ("write the float model (no --quantize) or let --quantize auto pick the layers"
               if mode != "auto" else "measured on a loaded machine? run `onnxprune bench`"))


def quantize_result(result: PruneResult, config: PruneConfig, timer=None) -> PruneResult:
    """The pruned float `result` quantized as config.quantize asks; the float model is kept beside it
    (PruneResult.float_model), validation checks both. `timer` (tests: a fake) times the models."""
    from ..quantize import quantize_model

    pruned = onnx.ModelProto()
    pruned.CopyFrom(result.model)
    report("quantize")
    start = time.perf_counter()
    to_quantize = result.model
    fold_note = None
    if config.quantize != "dynamic":
        # BatchNormalization left between QDQ pairs runs in float: fold it into the convs first.
        to_quantize = onnx.ModelProto()
        to_quantize.CopyFrom(result.model)
        fold = FoldBatchNorm().run(PruneState(model=to_quantize, config=config, graph=ModelGraph(to_quantize)))
        if fold.modified:
            fold_note = f"folded {fold.details['folded']} BatchNormalization into convs before quantizing"
    timer = timer or make_timer(config)
    if config.quantize == "auto":
        return _auto(result, config, pruned, to_quantize, timer, start, fold_note)
    quantized, info = quantize_model(to_quantize, config.quantize, config.calib_data)
    if fold_note:
        result.report.notes.append(fold_note)
    info["seconds"] = round(time.perf_counter() - start, 4)
    info["written"] = "quantized"
    report("quantize: timing against the pruned float model")
    info["speed"] = measure_speed(pruned, quantized, config, result.shapes, timer)
    result.report.notes.extend(info.pop("notes"))
    if info["speed"].get("slower"):
        result.report.notes.append(_slower_note(info["speed"], config.quantize))
    result.report.quantize = info
    return PruneResult(quantized, result.report, result.shapes, float_model=pruned)


def _auto(result: PruneResult, config: PruneConfig, pruned, to_quantize, timer, start, fold_note) -> PruneResult:
    """--quantize auto: the candidates precision.py offers (the layers that pay in int8 alone; the
    whole model in int8 where the chain pays), each timed against the pruned float model; the fastest
    is written if it takes at most KEEP of the float model's time and is smaller, else the float model."""
    from ..quantize import quantize_model
    from .precision import KEEP, best_run, chain_pays, int8_nodes, name_nodes, run_nodes, time_layers

    name_nodes(to_quantize)
    layers = time_layers(to_quantize, result.shapes, config.batch, timer)
    candidates = []
    nodes = int8_nodes(to_quantize, layers)
    if nodes:
        candidates.append(("layers", nodes))
    run = best_run(layers)
    if run is not None and run != (0, len(layers) - 1):
        chosen = run_nodes(to_quantize, layers, run)
        if chosen != nodes:
            candidates.append(("run", chosen))
    if chain_pays(layers) and sum(t.int8 for t in layers) < len(layers):
        candidates.append(("all", None))
    auto = {"layers": [t.to_dict() for t in layers], "int8_layers": sum(t.int8 for t in layers),
            "float_layers": sum(not t.int8 for t in layers), "chain_pays": chain_pays(layers),
            "run": [layers[run[0]].nodes[0], layers[run[1]].nodes[0]] if run is not None else None, "candidates": [],
            "chosen": None, "fallback": None}
    info = {"mode": "auto", "format": "float (nothing quantized)", "per_channel": None, "ops": {}, "auto": auto}
    best = None
    for name, chosen in candidates:
        quantized, qinfo = quantize_model(to_quantize, "auto", config.calib_data, nodes=chosen)
        report(f"quantize auto: timing the '{name}' candidate against the pruned float model")
        speed = measure_speed(pruned, quantized, config, result.shapes, timer)
        entry = {"name": name, "nodes": len(chosen) if chosen is not None else None, "speed": speed,
                 "bytes": quantized.ByteSize(), "float_bytes": pruned.ByteSize()}
        auto["candidates"].append(entry)
        if "error" in speed or entry["bytes"] >= entry["float_bytes"]:
            continue
        if best is None or speed["time_ratio"] < best[1]["speed"]["time_ratio"]:
            best = (quantized, entry, qinfo)
    if not candidates:
        auto["fallback"] = f"no layer is faster in int8 at batch {config.batch}, nor the int8 chain"
    elif best is None:
        auto["fallback"] = "no candidate could be timed or was smaller"
    elif best[1]["speed"]["time_ratio"] > KEEP:
        auto["fallback"] = (f"the fastest candidate ('{best[1]['name']}') takes {best[1]['speed']['time_ratio']:.2f}x "
                            f"the pruned float model's time at batch {config.batch}")
    if best is not None:
        info["speed"] = best[1]["speed"]
    if auto["fallback"] is None:
        quantized, entry, qinfo = best
        auto["chosen"] = entry["name"]
        info.update({k: v for k, v in qinfo.items() if k not in ("mode", "notes")})
        result.report.notes.extend([fold_note] if fold_note else [])
        result.report.notes.extend(qinfo["notes"])
    info["seconds"] = round(time.perf_counter() - start, 4)
    info["written"] = "float" if auto["fallback"] is not None else "quantized"
    result.report.quantize = info
    if auto["fallback"] is not None:
        result.report.notes.append(f"--quantize auto wrote the pruned float model: {auto['fallback']}")
        return PruneResult(pruned, result.report, result.shapes)
    return PruneResult(quantized, result.report, result.shapes, float_model=pruned)
