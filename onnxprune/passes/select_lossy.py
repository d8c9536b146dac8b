"""Lossy selection: score channels, then remove the least important ones per group (--ratio) or
globally until a FLOPs / parameter budget is met (--target-flops, --target-params)."""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from math import prod

import numpy as np

from ..analysis import ROLE_IN, ROLE_OUT, Analysis
from ..analysis.analyzer import node_label
from ..cost import count_flops, node_flops
from ..errors import TargetUnreachableError
from ..importance import get_criterion
from ..importance.output_sensitivity import (CORE_SHARE, MIN_PROBE_SAMPLES, PROBE_SAMPLES, PROBE_SHARES,
                                             ProbeBudgetExceeded, changed_part, group_damage)
from ..memo import data_key, model_fingerprint
from ..alignment import group_step
from .base import Pass, PassResult
from .select import restore_nonempty

DEFAULT_ROUND_TO = {"cpu": 16, "cuda": 8, "auto": 16}


class CostModel:
    """Exact FLOPs and parameters of the model for any set of removed channels, without rewriting.

    A Conv/Gemm/MatMul costs base * (kept inputs / inputs) * (kept outputs / outputs); a parameter
    holds the product of its kept sizes."""

    def __init__(self, analysis: Analysis):
        self.analysis = analysis
        graph = analysis.graph
        by_node = defaultdict(list)
        for m in analysis.members:
            by_node[m.node].append(m)
        self.nodes = []
        self.fixed_flops = 0
        for n in graph.all_nodes:
            f = node_flops(n, graph)
            if not f:
                continue
            ms = by_node.get(node_label(n), [])
            w = graph.resolve(n.input[1])
            ins = [m for m in ms if m.role == ROLE_IN and m.param == w]
            outs = [m for m in ms if m.role != ROLE_IN and m.param == w]
            carried = analysis.tensors.get(n.output[0]) if n.op_type == "MatMul" and not ins and not outs else None
            if carried is not None:
                self.nodes.append((f, None, carried.atoms))  # activation x activation per head (batch axis)
            elif not ins and not outs:
                self.fixed_flops += f
            else:
                self.nodes.append((f, ins[0].atoms if ins else None, outs[0].atoms if outs else None))
        by_param = defaultdict(dict)
        for m in analysis.members:
            by_param[m.param][m.axis] = m
        self.params = []
        members = set(by_param)
        self.fixed_params = 0
        # A QDQ weight's member is its DequantizeLinear output; the stored data (and a per-channel
        # scale and zero point) shrink with it.
        stored_as = {}
        for out, w in graph.dequantized.items():
            if out in members:
                stored_as[w.data] = by_param[out]
                if w.axis is not None and w.axis in by_param[out]:
                    for p in (w.scale, w.zero_point):
                        if p:
                            stored_as[p] = {0: by_param[out][w.axis]}
        for name in list(graph.initializers) + list(graph.constant_nodes):
            shape = graph.const_shape(name) if graph.is_constant(name) else None
            if shape is None:
                continue
            if name in members or name in stored_as:
                self.params.append((shape, by_param[name] if name in members else stored_as[name]))
            else:
                self.fixed_params += prod(shape)

    def _frac(self, atoms, removed):
        return 1.0 if atoms is None else len(self.analysis.kept_positions(atoms, removed)) / len(atoms)

    def flops(self, removed) -> float:
        return self.fixed_flops + sum(f * self._frac(i, removed) * self._frac(o, removed) for f, i, o in self.nodes)

    def params_count(self, removed) -> float:
        total = self.fixed_params
        for shape, axes in self.params:
            dims = list(shape)
            for axis, m in axes.items():
                dims[axis] = m.axis_size(self.analysis.kept_positions(m.atoms, removed))
            total += prod(dims)
        return total


def eligible_groups(analysis: Analysis, keep_patterns) -> list:
    groups = []
    for g in analysis.prunable_groups():
        names = set(g.sources) | {m.node for m in g.members} | {m.param for m in g.members}
        if any(fnmatch.fnmatchcase(n, p) for p in keep_patterns for n in names):
            continue
        groups.append(g)
    return groups


def channel_round_to(g, round_to: int, analysis: Analysis | None) -> int:
    """round_to for a group whose every channel is already a block of at least round_to positions in
    each parameter that makes it (an attention head: head_dim columns of q, k and v) is 1."""
    if analysis is None or round_to <= 1:
        return round_to
    widths = [len(m.atoms) / len(set(analysis.channel_of(m.atoms).tolist())) for m in g.members if m.role == ROLE_OUT]
    return 1 if widths and min(widths) >= round_to else round_to


def removal_count(size: int, wanted: int, max_ratio: float, round_to: int) -> int:
    """How many channels of a group of `size` to remove when `wanted` are asked for: at most
    max_ratio of the group, at least one channel kept, the kept count a multiple of round_to
    (rounded up, so never more is removed than asked), round_to reduced for small groups (group_step)."""
    cap = min(size - 1, int(np.floor(size * max_ratio)))
    n = max(0, min(wanted, cap))
    round_to = group_step(size, round_to)
    if n == 0 or round_to <= 1:
        return n
    kept = size - n
    kept = int(np.ceil(kept / round_to) * round_to)
    if kept >= size:
        return 0 if size > round_to else n
    return size - kept


def channel_scores(analysis: Analysis, cfg) -> dict[int, float]:
    """Each channel's importance under cfg.criterion."""
    crit = get_criterion(cfg.criterion)

    def compute():
        if cfg.criterion in ("activation", "recon"):
            return crit(analysis, cfg.calib_data, device="cpu" if cfg.device == "auto" else cfg.device)
        return crit(analysis, cfg.calib_data)

    if cfg.memo is None:
        return compute()
    key = ("scores", cfg.criterion, model_fingerprint(analysis.graph.model), data_key(cfg.calib_data), cfg.device)
    return cfg.memo.get(key, compute)


def group_units(g, scores, max_ratio: float, round_to: int, analysis: Analysis | None = None
                ) -> list[tuple[float, int, list[int]]]:
    """The removal units of a group, in the order it loses them: (score, group id, channels). A unit
    is the next block the group can lose while its kept count stays aligned (round_to channels, the
    first block taking it down to a multiple); its score is the running maximum of its channels'
    mean score, normalized by the group's mean so that layers of different scale compare. A group
    thinned conv group by conv group (`_parts`) loses the same share of every conv group per unit."""
    parts = _parts(analysis, g) if analysis is not None else None
    if parts:
        return _thinning_units(g, parts, scores, max_ratio)
    order = sorted(g.channels, key=lambda c: (scores.get(c, 0.0), c))
    vals = np.array([scores.get(c, 0.0) for c in order])
    scale = float(np.mean(vals)) or 1.0
    min_kept = max(1, g.size - removal_count(g.size, g.size, max_ratio, 1))
    step = group_step(g.size, channel_round_to(g, round_to, analysis))
    units = []
    kept, start, running = g.size, 0, 0.0
    while True:
        target = ((kept - 1) // step) * step if step > 1 else kept - 1
        if target < min_kept or target < 1:
            break
        chans = order[start:start + kept - target]
        running = max(running, float(np.mean(vals[start:start + kept - target])) / scale)
        units.append((running, g.id, chans))
        start += kept - target
        kept = target
    return units


def _lowest(group, scores, n) -> list[int]:
    order = sorted(group.channels, key=lambda c: (scores.get(c, 0.0), c))
    return order[:n]


def _parts(analysis: Analysis, group) -> list[list[int]] | None:
    """The conv groups of a thinned grouped conv in this channel group, as channel lists, when
    they hold every channel of the group (otherwise the group is selected as a whole and balanced
    afterwards)."""
    parts = getattr(analysis, "parts_of_group", {}).get(group.id)
    if not parts:
        return None
    lists = [list(dict.fromkeys(p.tolist())) for p in parts]
    flat = [c for p in lists for c in p]
    if len(set(flat)) != len(flat) or set(flat) != set(group.channels):
        return None
    return lists


def _thinning_units(group, parts, scores, max_ratio):
    """Removal units of a thinned grouped conv: the next-lowest channel of every conv group at once."""
    orders = [sorted(p, key=lambda c: (scores.get(c, 0.0), c)) for p in parts]
    vals = np.array([scores.get(c, 0.0) for c in group.channels])
    scale = float(np.mean(vals)) or 1.0
    per = min(len(o) for o in orders)
    cap = min(per - 1, int(np.floor(per * max_ratio)))
    units, running = [], 0.0
    for i in range(cap):
        chans = [o[i] for o in orders]
        running = max(running, float(np.mean([scores.get(c, 0.0) for c in chans])) / scale)
        units.append((running, group.id, chans))
    return units


def _units_removal(units, analysis, scores) -> set[int]:
    """The channels of these removal units, with every group left at least one channel."""
    removed = set()
    for _, _, chans in units:
        removed.update(chans)
    return restore_nonempty(analysis, removed, scores)


FINE_TOLERANCE = 0.01  # share of the total a budget may be undershot before single channels go back


def _give_back_channels(removed: set[int], scores, measure, budget: float, total: float) -> set[int]:
    """Aligned blocks can be too coarse for a small model to land near its budget (MTCNN's P-Net,
    16- and 32-channel layers at 224 x 224: half the FLOPs asked, 42% kept). When the aligned cut
    keeps more than FINE_TOLERANCE of the total below the budget, single channels go back, best
    score first, while the budget holds; such a group then keeps a count between blocks."""
    if measure(removed) >= budget - FINE_TOLERANCE * total:
        return removed
    for c in sorted(removed, key=lambda c: (-scores.get(c, 0.0), c)):
        trial = removed - {c}  # a new set each time: the analysis caches per set object
        cost = measure(trial)
        if cost <= budget:
            removed = trial
            if cost >= budget - FINE_TOLERANCE * total / 4:
                break
    return removed


# The race's sensitivity candidate (strategies/race.py) probes within an allowance of FLOPs: the
# richest of these plans (shares probed per group, samples) that fits, else none.
PROBE_PLANS = ((PROBE_SHARES, PROBE_SAMPLES), ((CORE_SHARE,), PROBE_SAMPLES), ((CORE_SHARE,), MIN_PROBE_SAMPLES))
PROBE_FLOOR_FLOPS = 2.0e12  # any model's probes may cost this much: about 80 s on an idle 2-core machine at the
                            # 25 GFLOP/s COCO YOLO11n's ran (at 320: one share on 16 samples, 0.65 TFLOP, 26 s;
                            # all three, 1.98 TFLOP, held 70.2% box F1 at 70% of the FLOPs, one 61.5%). A budget of
                            # wall seconds left the choice to the machine's load: beside another job COCO
                            # YOLO11n's probes were dropped at 70% of the FLOPs (30.8% box F1, 64.4% with them)
PROBE_MODEL_RUNS = 250.0    # ... or this many runs of the whole model on one sample, where that is more: about
                            # one pipeline run of a large model (a 640 x 640 YOLOv8s, 28.4 GFLOP a run: its
                            # half-share probes on 8 samples, 5.1 TFLOP, took about as long as a pipeline run)


def probe_allowance(analysis: Analysis) -> float:
    """FLOPs the race's sensitivity probes may cost: PROBE_FLOOR_FLOPS, or PROBE_MODEL_RUNS runs of
    the whole model at the resolved shapes, whichever is more."""
    return max(PROBE_FLOOR_FLOPS, PROBE_MODEL_RUNS * count_flops(analysis.graph))


def _trial_flops(analysis: Analysis):
    """removed channels -> FLOPs per sample of the part of the model a trial of them runs."""
    model = analysis.graph.model
    per_node = [node_flops(n, analysis.graph) for n in model.graph.node]

    def flops(removed) -> int:
        part = changed_part(model, analysis, set(removed))
        return sum(per_node) if part is None else sum(per_node[i] for i in part)
    return flops


def sensitivity_units(units, groups, analysis: Analysis, cfg, measure=None):
    """Units re-ranked by measured output damage (--allocation sensitivity). Each group alone loses
    its first units up to each of PROBE_SHARES of its channels, and the output damage of each trial
    (importance/output_sensitivity.py) is measured; a unit's priority is the damage its group is
    at once it is gone, interpolated between the probes (extrapolated past the last). Taking units
    by that level until the budget holds prunes every group to about the same output damage (the
    per-layer sensitivity analysis of Li et al. 2017 and Distiller), rather than by channel scores
    that are not comparable across layers. With `measure` (the budget's cost of a removal) each
    level is then divided by the square root of what one of the group's channels saves, relative
    to the geometric mean over groups (COST_EXPONENT): between equal damage, which spends as much
    damage on a channel that saves little as on one that saves much, and damage per FLOP saved
    (NetAdapt's greedy), which concentrated the cut in a few layers whose single-layer damage
    looked small."""
    by_group = defaultdict(list)
    for u in units:
        by_group[u[1]].append(u)
    size = {g.id: g.size for g in groups}

    def probes_at(shares):
        probes = {}
        for gid, us in by_group.items():
            for share in shares:
                chans: list[int] = []
                for u in us:
                    chans += u[2]
                    if len(chans) >= share * size[gid]:
                        break
                probes[(gid, share)] = chans
        return probes

    mean_replace = bool({"bias", "lsq"} & set(cfg.repair))
    device = "cpu" if cfg.device == "auto" else cfg.device
    if not cfg.sensitivity_limited:
        shares, samples = PROBE_SHARES, PROBE_SAMPLES
        probes = probes_at(shares)
    else:
        # Within the race's allowance: the richest plan whose cost fits, counted in FLOPs from the
        # model (a trial runs what follows the layers it zeroes, per sample; the reference run the
        # whole model), so the same model is probed the same way on any machine at any load.
        allowance = probe_allowance(analysis)
        follows = _trial_flops(analysis)
        for shares, samples in PROBE_PLANS:
            probes = probes_at(shares)
            cost = samples * (count_flops(analysis.graph) + sum(follows(r) for r in probes.values()))
            if cost <= allowance:
                break
        else:
            raise ProbeBudgetExceeded(f"its probes ({len(probes)} trials on {samples} samples) would cost "
                                      f"{cost / 1e12:.2f} TFLOP, more than the {allowance / 1e12:.2f} allowed")
    damage = group_damage(analysis, probes, cfg.calib_data, device, mean_replace, memo=cfg.memo,
                          max_samples=samples)
    out = []
    for gid, us in by_group.items():
        points = sorted({(0, 0.0)} | {(len(probes[(gid, s)]), damage[(gid, s)]) for s in shares})
        xs = [x for x, _ in points]
        ys = list(np.maximum.accumulate([y for _, y in points]))
        slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]) if len(xs) > 1 and xs[-1] > xs[-2] else 0.0
        removed, running = 0, 0.0
        for _, _, chans in us:
            removed += len(chans)
            level = float(np.interp(removed, xs, ys)) if removed <= xs[-1] else ys[-1] + slope * (removed - xs[-1])
            running = max(running, level)
            out.append((running, gid, chans))
    if measure is not None and out:
        saves = _saving_per_channel(by_group, measure)
        scale = float(np.exp(np.mean(np.log(list(saves.values())))))
        out = [(level / (saves[gid] / scale) ** COST_EXPONENT, gid, chans) for level, gid, chans in out]
    return out, len(by_group), len(shares), samples


# Sensitivity allocation ranks a group's units by its damage level / (its saving per channel) **
# COST_EXPONENT. Mean box F1 / characters over four orders of the same 96 calibration samples (the
# 16 the probes see differ), `--criterion recon --allocation sensitivity`, tuned models only
# (2026-12-07, docs/DETECTORS.md), exponent 0 / 0.5 / 1: coco_yolo11n at 70% of the FLOPs 61.7 /
# 65.6 / 66.5% (at 0: 52-70% by order), at 50% 10.9 / 33.7 / -; isbn_yolo26n at 50% 66.2 / 80.3 / -;
# ppocrv6_tiny_rec at 50% 69.2 / 69.8 / 62.4%; en_ppocrv4_rec at 50% 97.7 / 98.5 / -;
# orinet_orientation at 50% 90.2 / 90.2 / -. Damage per FLOP (1) lost on the recognizer what it
# won on the detector.
COST_EXPONENT = 0.5


def _saving_per_channel(by_group, measure) -> dict:
    """group id -> what removing one of its channels saves by `measure`: its first unit's saving
    per channel, at least 1 (a group whose removal saves nothing is cut last)."""
    base = measure(set())
    out = {}
    for gid, us in by_group.items():
        chans = us[0][2]
        out[gid] = max((base - measure(set(chans))) / max(len(chans), 1), 1.0)
    return out


class SelectLossy(Pass):
    name = "select"
    needs = ("analysis",)

    def run(self, state) -> PassResult:
        cfg = state.config
        analysis: Analysis = state.analysis
        round_to = cfg.round_to if cfg.round_to is not None else DEFAULT_ROUND_TO[cfg.device]
        groups = eligible_groups(analysis, cfg.keep)
        scores = channel_scores(analysis, cfg)
        if state.score_hints:
            from .rotate import hinted_scores

            scores = {**scores, **hinted_scores(analysis, state.score_hints)}
        if cfg.ratio is not None:
            wanted = {g.id: int(np.floor(g.size * cfg.ratio)) for g in groups}
            state.removed = self._removal(groups, scores, wanted, cfg.max_group_ratio, round_to, analysis)
            return PassResult(False, {"channels": len(state.removed), "round_to": round_to})
        cost = CostModel(analysis)
        if cfg.target_flops is not None:
            measure, budget, what = cost.flops, cfg.target_flops * cost.flops(set()), "FLOPs"
        else:
            measure, budget, what = cost.params_count, cfg.target_params * cost.params_count(set()), "parameters"
        units = [u for g in groups for u in group_units(g, scores, cfg.max_group_ratio, round_to, analysis)]
        if cfg.allocation == "sensitivity" and measure(set()) > budget:
            units, probed, n_shares, n_samples = sensitivity_units(units, groups, analysis, cfg, measure)
            state.notes.append(
                f"budget spread over layers by measured output sensitivity ({probed} groups each pruned alone at "
                f"{n_shares} share{'s' if n_shares > 1 else ''} on {n_samples} calibration samples)")
        removed = self._global(units, scores, analysis, measure, budget)
        if removed is None:
            best = self._removal(groups, scores, {g.id: g.size for g in groups}, cfg.max_group_ratio, round_to, analysis)
            reachable = measure(best) / measure(set())
            blocked = len(analysis.groups) - len(analysis.prunable_groups())
            raise TargetUnreachableError(
                f"cannot keep only {budget / measure(set()):.0%} of the {what}: at most down to {reachable:.0%} "
                f"({blocked} of {len(analysis.groups)} channel groups are blocked, max-group-ratio "
                f"{cfg.max_group_ratio}); see `onnxprune analyze` for why")
        state.removed = removed
        return PassResult(False, {"channels": len(removed), "round_to": round_to})

    @staticmethod
    def _removal(groups, scores, per_group, max_ratio, round_to, analysis) -> set[int]:
        removed = set()
        for g in groups:
            parts = _parts(analysis, g)
            if parts:
                # A thinned grouped conv: the same share out of every conv group (its channels
                # per group are the alignment unit, not round_to).
                wanted = per_group.get(g.id, 0) / g.size
                for part in parts:
                    n = removal_count(len(part), int(np.floor(len(part) * wanted + 1e-9)), max_ratio, 1)
                    removed |= set(sorted(part, key=lambda c: (scores.get(c, 0.0), c))[:n])
                continue
            n = removal_count(g.size, per_group.get(g.id, 0), max_ratio, channel_round_to(g, round_to, analysis))
            removed |= set(_lowest(g, scores, n))
        return restore_nonempty(analysis, removed, scores)

    def _global(self, units, scores, analysis, measure, budget):
        """Smallest prefix of a global ranking of removal units (group_units) that meets the budget."""
        units = sorted(units, key=lambda u: (u[0], u[1], u[2][0]))

        def removal_at(k):
            return _units_removal(units[:k], analysis, scores)

        if measure(set()) <= budget:
            return set()
        if measure(removal_at(len(units))) > budget:
            return None
        lo, hi = 0, len(units)
        while lo < hi:
            mid = (lo + hi) // 2
            if measure(removal_at(mid)) <= budget:
                hi = mid
            else:
                lo = mid + 1
        removed = self._refill(units[:lo], scores, analysis, measure, budget)
        return _give_back_channels(removed, scores, measure, budget, measure(set()))

    @staticmethod
    def _refill(chosen, scores, analysis, measure, budget) -> set[int]:
        """The prefix that meets the budget may overshoot it by a whole block (a 16-channel unit of a
        32-channel layer at high resolution is a tenth of a small model's FLOPs). Give back, best
        score first, the last unit a group lost while the budget still holds."""
        chosen = list(chosen)
        while True:
            last = {}
            for i, u in enumerate(chosen):
                last[u[1]] = i
            for i in sorted(last.values(), key=lambda i: -chosen[i][0]):
                trial = chosen[:i] + chosen[i + 1:]
                if measure(_units_removal(trial, analysis, scores)) <= budget:
                    chosen = trial
                    break
            else:
                return _units_removal(chosen, analysis, scores)
