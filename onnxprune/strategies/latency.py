"""--target-latency: prune to the latency model's budget, measure the whole pruned model against the
original on the target, and correct the budget when the measurement missed (config.latency_rounds
times at most). The latency model predicts shares well but not exactly (layers timed alone pay
their own layout conversions; fusions across layers differ), so the budget in the model's terms is
scaled: the next budget is asked / c, c the median over the rounds so far of measured / predicted
share (one noisy measurement on a busy machine does not throw the budget about).

Two allocations meet a budget (passes/select_latency.py): latency per FLOP, and plain score order.
With config.latency_allocation "auto" both go through the rounds (score order only when it selects
other channels than latency per FLOP), and measurement decides, not the table. Each allocation's
model closest to the asked share is a candidate. With calibration data, the candidates within
MISS_NOTE of the asked share (else the closest) compete and the one whose outputs agree best with
the original's on it (mean cosine) is kept; without, those within TOLERANCE (else within MISS_NOTE,
else the closest) compete and the one keeping more FLOPs per measured share is kept. A table that
mis-times small layers then costs a measurement, not the model.

The rounds prune without repair (repair changes weights, never shapes, so it does not change the
latency); the candidates that compete on fidelity, and the one kept, are pruned again with the
run's repair."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx

from ..config import PruneConfig
from ..errors import TargetUnreachableError
from ..passes.pipeline import prune_once
from ..progress import report

TOLERANCE = 0.03  # a measured share within 3% (relative) of the asked one needs no correction
MISS_NOTE = 0.05  # a measured share further than 5% (relative) from the asked one is reported as missed
WHOLE_RUNS = 10  # interleaved runs per chunk; OrtTimer.compare adds chunks while its figure is noisy
MODES = ("latency", "score")  # config.latency_allocation "auto" tries both, in this order


@dataclasses.dataclass
class _Candidate:
    mode: str
    budget: float
    result: object
    measured: float
    base_s: float
    pruned_s: float
    miss: float
    repaired: bool = False

    def __post_init__(self):
        self.trial_kept = _kept(self.result)

    @property
    def flops_kept(self) -> float:
        r = self.result.report
        return r.flops_after / r.flops_before if r.flops_before else 1.0


def latency_prune(model: onnx.ModelProto, config: PruneConfig, timer, shapes: dict):
    """`shapes`: concrete input dims (batch included) the whole models are timed at; `timer` (None:
    ONNX Runtime on config.device) times them and, in each pipeline run, the layers."""
    from ..passes.select_latency import make_timer

    layers_timer, timer = timer, timer or make_timer(config)
    asked = config.target_latency
    original = model.SerializeToString()
    trial_config = dataclasses.replace(config, latency_rounds=0)
    if config.repair:
        trial_config = dataclasses.replace(trial_config, repair="none", repair_default=False)
    modes = list(MODES) if config.latency_allocation == "auto" else [config.latency_allocation]
    steps = len(modes) * (config.latency_rounds + 1)
    rounds: list[dict] = []
    closest: list[_Candidate] = []
    cached, unreachable = True, None
    for mode in modes:
        budget, mine, differ = asked, [], True
        for _ in range(config.latency_rounds + 1):
            try:
                result = prune_once(_fresh(original), dataclasses.replace(trial_config, target_latency=budget,
                                                                          latency_allocation=mode), layers_timer)
            except TargetUnreachableError as exc:
                unreachable = unreachable or exc
                break
            report("timing the pruned model", len(rounds), steps)
            base_s, pruned_s, measured = timer.compare(model, result.model, shapes=shapes, runs=WHOLE_RUNS)
            info = result.report.latency
            cached = cached and info["table"]["cached"]
            if not mine:
                differ = info.get("allocations_differ", True)
            rounds.append({"allocation": info["allocation"], "budget_share": round(budget, 4),
                           "predicted_share": round(info["predicted_share"], 4),
                           "measured_share": round(measured, 4), "original_ms": round(base_s * 1000, 4),
                           "pruned_ms": round(pruned_s * 1000, 4)})
            mine.append(_Candidate(mode, budget, result, measured, base_s, pruned_s, abs(measured / asked - 1.0)))
            if mine[-1].miss <= TOLERANCE:
                break
            ratios = [c.measured / c.result.report.latency["predicted_share"] for c in mine
                      if c.result.report.latency["predicted_share"] > 0]
            factor = float(np.median(ratios)) if ratios else 0.0
            new_budget = min(1.0, asked / factor) if factor > 0 else budget
            if abs(new_budget - budget) < 1e-4:
                break
            budget = new_budget
        if mine:
            closest.append(min(mine, key=lambda c: c.miss))
        if mode == "latency" and mine and not differ:
            break  # score order selects the same channels at this budget: nothing else to measure
    if not closest:
        raise unreachable
    best, choice = _choose(model, closest, config, layers_timer, original)
    if config.repair and not best.repaired:
        _repair(best, config, layers_timer, original)
    if best.trial_kept != _kept(best.result):  # repair left the shapes as measured; should that change, measure
        report("timing the pruned model", len(rounds), len(rounds) + 1)
        best.base_s, best.pruned_s, best.measured = timer.compare(model, best.result.model, shapes=shapes,
                                                                  runs=WHOLE_RUNS)
    result = best.result
    info = dict(result.report.latency, measured_share=best.measured, measured_ms=best.pruned_s * 1000.0,
                original_ms=best.base_s * 1000.0, asked_share=asked, rounds=rounds, choice=choice)
    result.report.latency = info
    got = info["measured_share"]
    if abs(got / asked - 1.0) > MISS_NOTE:
        result.report.notes.append(
            f"--target-latency {asked:g} missed: the closest pruned model measured {got:.1%} of the original's "
            f"latency after {len(rounds)} round(s) (predicted {info['predicted_share']:.1%}). "
            + ("Latency on this target does not fall with the channels removed (launch- or memory-bound at "
               f"batch {config.batch}: a larger --batch, or --target-flops)" if got > asked else
               "The runtime gained more than the latency table predicted (fusions or layouts changed)"))
    info["table"] = dict(info["table"], cached=cached)  # measured by this run?
    return result


def _kept(result) -> list[int]:
    return [g.kept for g in result.report.groups]


def _repair(c: _Candidate, config: PruneConfig, timer, original: bytes) -> None:
    """The candidate's removal pruned again with the run's repair (same budget and allocation)."""
    c.result = prune_once(_fresh(original), dataclasses.replace(config, latency_rounds=0, target_latency=c.budget,
                                                                latency_allocation=c.mode), timer)
    c.repaired = True


def _fresh(original: bytes) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.ParseFromString(original)
    return m


def _choose(model, closest: list[_Candidate], config: PruneConfig, timer, original: bytes):
    """The kept candidate and the `choice` the report gives (see the module docstring)."""
    near = [c for c in closest if c.miss <= MISS_NOTE]
    if config.calib:  # fidelity is measured: every candidate within 5% competes on it
        within = near or [min(closest, key=lambda c: c.miss)]
    else:
        within = [c for c in closest if c.miss <= TOLERANCE] or near or [min(closest, key=lambda c: c.miss)]
    figures = [{"allocation": c.result.report.latency["allocation"], "measured_share": round(c.measured, 4),
                "flops_kept": round(c.flops_kept, 4), "competed": c in within} for c in closest]
    if len(within) == 1:
        return within[0], {"by": "only candidate" if len(closest) == 1 else "measured share", "candidates": figures}
    if config.calib:
        from ..runtime.compare import Reference, compare_models

        report("comparing the allocations on the calibration data", 0, len(within))
        with Reference(model, data=config.calib_data, device="cpu") as reference:
            scored = []
            for i, c in enumerate(within):
                if config.repair:
                    _repair(c, config, timer, original)
                outputs = compare_models(reference, c.result.model, atol=float("inf"), bounds=False).outputs
                fidelity = float(np.mean([o.cosine for o in outputs])) if outputs else float("nan")
                figures[closest.index(c)]["cosine"] = round(fidelity, 6)
                scored.append((fidelity if np.isfinite(fidelity) else -np.inf, c.flops_kept / c.measured, i))
                report("comparing the allocations on the calibration data", i + 1, len(within))
        best = within[max(scored)[2]]
        return best, {"by": "cosine on the calibration data", "candidates": figures}
    best = max(within, key=lambda c: c.flops_kept / c.measured)
    return best, {"by": "FLOPs kept per measured share", "candidates": figures}
