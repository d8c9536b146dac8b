"""--target-latency: prune to the latency model's budget, measure the whole pruned model against the
original on the target, and correct the budget when the measurement missed (config.latency_rounds
times at most). The latency model predicts shares well but not exactly (layers timed alone pay
their own layout conversions; fusions across layers differ), so the budget in the model's terms is
scaled: the next budget is asked / c, c the median over the rounds so far of measured / predicted
share (one noisy measurement on a busy machine does not throw the budget about). The pruned model
whose measured share is closest to the asked one is kept."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx

from .config import PruneConfig
from .errors import TargetUnreachableError
from .progress import report

TOLERANCE = 0.03  # a measured share within 3% (relative) of the asked one needs no correction
MISS_NOTE = 0.05  # a measured share further than 5% (relative) from the asked one is reported as missed
WHOLE_RUNS = 10  # interleaved runs per chunk; OrtTimer.compare adds chunks while its figure is noisy


def latency_prune(model: onnx.ModelProto, config: PruneConfig, prune_fn, timer, shapes: dict):
    """`shapes`: concrete input dims (batch included) the whole models are timed at."""
    from .passes.select_latency import make_timer

    timer = timer or make_timer(config)
    asked = config.target_latency
    original = model.SerializeToString()
    budget = asked
    rounds, best, best_miss, cached = [], None, None, True
    for _ in range(config.latency_rounds + 1):
        candidate = onnx.ModelProto()
        candidate.ParseFromString(original)
        try:
            result = prune_fn(candidate, dataclasses.replace(config, target_latency=budget, latency_rounds=0))
        except TargetUnreachableError:
            if best is None:
                raise
            break
        report("timing the pruned model", len(rounds), config.latency_rounds + 1)
        base_s, pruned_s, measured = timer.compare(model, result.model, shapes=shapes, runs=WHOLE_RUNS)
        info = result.report.latency
        cached = cached and info["table"]["cached"]
        rounds.append({"budget_share": round(budget, 4), "predicted_share": round(info["predicted_share"], 4),
                       "measured_share": round(measured, 4), "original_ms": round(base_s * 1000, 4),
                       "pruned_ms": round(pruned_s * 1000, 4)})
        miss = abs(measured / asked - 1.0)
        if best is None or miss < best_miss:
            best, best_miss = result, miss
            best.report.latency = dict(info, measured_share=measured, measured_ms=pruned_s * 1000.0,
                                       original_ms=base_s * 1000.0)
        if miss <= TOLERANCE:
            break
        factor = float(np.median([r["measured_share"] / r["predicted_share"] for r in rounds if r["predicted_share"] > 0]))
        new_budget = min(1.0, asked / factor) if factor > 0 else budget
        if abs(new_budget - budget) < 1e-4:
            break
        budget = new_budget
    best.report.latency.update(asked_share=asked, rounds=rounds)
    got = best.report.latency["measured_share"]
    if abs(got / asked - 1.0) > MISS_NOTE:
        best.report.notes.append(
            f"--target-latency {asked:g} missed: the closest pruned model measured {got:.1%} of the original's "
            f"latency after {len(rounds)} round(s) (predicted {best.report.latency['predicted_share']:.1%}). "
            + ("Latency on this target does not fall with the channels removed (launch- or memory-bound at "
               f"batch {config.batch}: a larger --batch, or --target-flops)" if got > asked else
               "The runtime gained more than the latency table predicted (fusions or layouts changed)"))
    best.report.latency["table"] = dict(best.report.latency["table"], cached=cached)  # measured by this run?
    return best
