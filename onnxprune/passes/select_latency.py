"""Latency-targeted selection (--target-latency): remove channels where they buy the most latency
for the least importance, until the latency model (latency/table.py) predicts the budget is met.

Greedy, as in NetAdapt and HALP: every group offers its next removal unit (group_units: the
lowest-scored aligned block it can still lose); the unit removed next is the one with the lowest
importance per unit of latency efficiency, where efficiency is the latency the unit saves per FLOP
it removes, relative to the model's average. So memory-bound layers (depthwise convs, wide 1x1
convs at high resolution, DenseNet's BN-ReLU on long concats) lose channels first, and FLOPs that
run fast are kept. The savings are recomputed after each step for the groups whose layers changed,
because a conv's time depends on both its input and its output counts. Once under budget, units
are given back (last taken first) while the budget still holds. The same budget is also met in
plain score order (the order --target-flops ranks by): config.latency_allocation picks one
("latency", "score"), or "auto" leaves the choice to measurement (latency_target.py times both and
keeps the better); without measurement rounds, auto keeps the removal with more FLOPs.
"""

from __future__ import annotations

import heapq

from ..analysis import Analysis
from ..errors import TargetUnreachableError
from ..latency.table import LatencyModel, SideCount, load_or_build
from ..progress import report
from .base import Pass, PassResult
from .select import restore_nonempty
from .select_lossy import CostModel, channel_scores, eligible_groups, group_units

EFFICIENCY_POWER = 1.0
NO_SAVING = 1e9  # units the model predicts to save nothing go last


def latency_device(device: str) -> str:
    """The device latency is measured on: auto means CUDA when this onnxruntime has it."""
    if device != "auto":
        return device
    try:
        import onnxruntime
    except ImportError:
        return "cpu"
    return "cuda" if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else "cpu"


def latency_input_shapes(state) -> dict[str, tuple[int, ...]]:
    """The run's resolved input shapes (onnxprune.shapes) with the batch set to config.batch."""
    return state.shapes.with_batch(state.config.batch).as_dict()


def make_timer(config):
    from ..runtime.timing import OrtTimer

    return OrtTimer(latency_device(config.device), config.threads)


class _FlopsIndex:
    """FLOPs of each Conv/Gemm/MatMul from its kept input and output positions (CostModel's terms)."""

    def __init__(self, analysis: Analysis, cost: CostModel):
        self.nodes = cost.nodes
        self.sides = [(SideCount(analysis, ins), SideCount(analysis, outs)) for _, ins, outs in self.nodes]
        self.of_group: dict[int, list[int]] = {}
        for j, (_, ins, outs) in enumerate(self.nodes):
            gids = set()
            for atoms in (ins, outs):
                if atoms is not None:
                    gids.update(analysis._groups_of(atoms))
            for g in gids:
                self.of_group.setdefault(g, []).append(j)
        self.total = cost.flops(set())

    def counts(self, j: int, removed) -> tuple[int, int]:
        return self.sides[j][0](removed), self.sides[j][1](removed)

    def flops(self, j: int, k_in: int, k_out: int) -> float:
        f, ins, outs = self.nodes[j]
        return f * (1.0 if ins is None else k_in / len(ins)) * (1.0 if outs is None else k_out / len(outs))


class _Counts:
    """Kept (in, out) counts of a list of items (segments or FLOPs nodes) and their costs."""

    def __init__(self, sides, counts, cost, of_group):
        self.sides = sides
        self.counts = counts
        self.cost = cost
        self.of_group = of_group
        self.values = [cost(i, *c) for i, c in enumerate(counts)]

    def trial(self, g: int, n: int, removed) -> dict[int, tuple[int, int]]:
        """New counts of the items of group g once n of its channels go (`removed` includes them)."""
        out = {}
        for i in self.of_group.get(g, ()):
            a, b = self.counts[i]
            side_in, side_out = self.sides[i]
            out[i] = (side_in.after(a, g, n, removed), side_out.after(b, g, n, removed))
        return out

    def delta(self, new: dict[int, tuple[int, int]]) -> float:
        return sum(self.values[i] - self.cost(i, *c) for i, c in new.items())

    def apply(self, new: dict[int, tuple[int, int]]) -> float:
        change = 0.0
        for i, c in new.items():
            value = self.cost(i, *c)
            change += value - self.values[i]
            self.counts[i], self.values[i] = c, value
        return change


def allocate(analysis: Analysis, groups, scores: dict[int, float], lat: LatencyModel, cost: CostModel,
             budget_ms: float, max_ratio: float, round_to: int, power: float | None = None
             ) -> tuple[set[int] | None, float]:
    """The removed set and its predicted latency; None when even every unit does not reach the budget."""
    units = {g.id: group_units(g, scores, max_ratio, round_to, analysis) for g in groups}
    units = {g: u for g, u in units.items() if u}
    flops = _FlopsIndex(analysis, cost)
    removed: set[int] = set()
    pos = dict.fromkeys(units, 0)
    segs = _Counts(lat.sides, [lat.counts(i, removed) for i in range(len(lat.pairs))],
                   lambda i, a, b: lat.pairs[i][1].cost(a, b), lat.of_group)
    nodes = _Counts(flops.sides, [flops.counts(j, removed) for j in range(len(flops.nodes))], flops.flops,
                    flops.of_group)
    total = sum(segs.values)
    ms_per_flop = total / flops.total if flops.total else 1.0
    neighbours: dict[int, set[int]] = {g: {g} for g in units}
    owners = [set(seg.in_groups + seg.out_groups) for seg, _ in lat.pairs]
    owners += [set(analysis._groups_of(ins) if ins is not None else []) | set(analysis._groups_of(outs) if outs is not None else [])
               for _, ins, outs in flops.nodes]
    for gids in owners:
        for g in gids & units.keys():
            neighbours[g].update(gids & units.keys())

    def evaluate(g: int) -> float:
        unit = units[g][pos[g]][2]
        trial = removed | set(unit)
        saved = segs.delta(segs.trial(g, len(unit), trial))
        gone = nodes.delta(nodes.trial(g, len(unit), trial))
        score = units[g][pos[g]][0]
        if saved <= 0:
            return NO_SAVING + score
        efficiency = saved / gone / ms_per_flop if gone > 0 else 100.0
        return score / max(efficiency, 1e-3) ** (EFFICIENCY_POWER if power is None else power)

    version = dict.fromkeys(units, 0)
    heap = [(evaluate(g), g, 0) for g in units]
    heapq.heapify(heap)
    history: list[int] = []
    while total > budget_ms and heap:
        _, g, v = heapq.heappop(heap)
        if v != version[g]:
            continue
        unit = units[g][pos[g]][2]
        removed |= set(unit)
        pos[g] += 1
        history.append(g)
        total += segs.apply(segs.trial(g, len(unit), removed))
        nodes.apply(nodes.trial(g, len(unit), removed))
        for n in neighbours[g]:
            version[n] += 1
            if pos[n] < len(units[n]):
                heapq.heappush(heap, (evaluate(n), n, version[n]))
    if total > budget_ms:
        return None, total
    for g in reversed(history):  # give back what overshot, last taken first
        unit = units[g][pos[g] - 1][2]
        trial = removed - set(unit)
        new = segs.trial(g, -len(unit), trial)
        if total - segs.delta(new) <= budget_ms:
            removed = trial
            total += segs.apply(new)
            nodes.apply(nodes.trial(g, -len(unit), trial))
            pos[g] -= 1
    removed = restore_nonempty(analysis, removed, scores)
    return removed, lat.ms(removed)


class SelectLatency(Pass):
    name = "select"
    needs = ("analysis", "shapes")
    ensures = ("latency",)

    def __init__(self, timer=None):
        self.timer = timer

    def run(self, state) -> PassResult:
        cfg = state.config
        analysis: Analysis = state.analysis
        device = latency_device(cfg.device)
        timer = self.timer or make_timer(cfg)
        shapes = latency_input_shapes(state)
        table, cached = load_or_build(analysis, state.model, timer, device, cfg.threads, cfg.batch, shapes,
                                      cfg.latency_cache, use_cache=cfg.latency_cache != "off",
                                      progress=lambda done, total: report("timing layers", done, total))
        lat = LatencyModel(analysis, table)
        round_to = cfg.round_to if cfg.round_to is not None else table.round_to
        groups = eligible_groups(analysis, cfg.keep)
        scores = channel_scores(analysis, cfg)
        budget = cfg.target_latency * lat.full
        cost = CostModel(analysis)
        mode = cfg.latency_allocation if EFFICIENCY_POWER != 0 else "score"
        # The same budget met in plain score order (what --target-flops ranks by): where latency
        # follows FLOPs on this target, that order can keep more of the model.
        by_score, predicted_s = allocate(analysis, groups, scores, lat, cost, budget, cfg.max_group_ratio,
                                         round_to, power=0.0)
        if mode == "score":
            removed, predicted, allocation = by_score, predicted_s, "score order"
        else:
            removed, predicted = allocate(analysis, groups, scores, lat, cost, budget, cfg.max_group_ratio, round_to)
            allocation = "latency per FLOP"
            if mode == "auto" and by_score is not None and (removed is None or cost.flops(by_score) > cost.flops(removed)):
                # Unmeasured choice (latency_rounds 0): the removal that keeps more FLOPs at the same
                # predicted latency. With measurement rounds, latency_target.py measures both instead.
                removed, predicted, allocation = by_score, predicted_s, "score order"
        if removed is None:
            blocked = len(analysis.groups) - len(analysis.prunable_groups())
            raise TargetUnreachableError(
                f"cannot bring the predicted latency to {cfg.target_latency:.0%} of the original: at most down to "
                f"{predicted / lat.full:.0%} ({blocked} of {len(analysis.groups)} channel groups are blocked, "
                f"max-group-ratio {cfg.max_group_ratio}); see `onnxprune analyze --latency` for where the time goes")
        state.removed = removed
        state.latency = {
            "predicted_share": predicted / lat.full if lat.full else 1.0,
            "predicted_ms": predicted / lat.full * table.whole_ms if lat.full else table.whole_ms,
            "model_ms": table.whole_ms, "budget_share": cfg.target_latency, "allocation": allocation,
            "allocations_differ": by_score is None or removed != by_score,
            "round_to": round_to, "round_to_from_table": cfg.round_to is None,
            "device": device, "batch": cfg.batch, "threads": cfg.threads, "clock": getattr(timer, "clock", None),
            "table": {"cached": cached, "seconds": round(table.seconds, 2), "cpu_seconds": round(table.cpu_seconds, 2), "layers": len(table.segments),
                      "models_timed": table.models_timed, "layers_ms": table.segments_ms,
                      "skipped": len(table.skipped), "probe": table.probe},
        }
        return PassResult(False, {"channels": len(removed), "round_to": round_to,
                                  "predicted_share": round(predicted / lat.full, 4) if lat.full else 1.0})
