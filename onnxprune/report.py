"""What a pruning run reports (PruneReport, PruneResult) and the human-readable summaries of it and
of an analysis."""

from __future__ import annotations

import os
import platform
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from .io import save_model
from .runtime.metrics import LABELS
from .shapes import ResolvedShapes

if TYPE_CHECKING:
    from .passes.base import PassRecord


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
    race: dict | None = None      # the criteria raced on held-out calibration data (strategies/race.py)
    warnings: list[str] = field(default_factory=list)  # the `warning:` lines (a lossy run that removed nothing)
    finetune: dict | None = None  # what --finetune did (strategies/finetuned.py)

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
            "race": self.race,
            "warnings": self.warnings,
            "finetune": self.finetune,
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



def human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def _change(before: int, after: int) -> str:
    if before == 0:
        return ""
    return f"({(after - before) / before * 100:+.1f}%)"


def _source_label(sources: list[str]) -> str:
    return sources[0] + (f" +{len(sources) - 1}" if len(sources) > 1 else "")


def _file_size(path) -> int:
    from pathlib import Path

    p = Path(path)
    data = p.with_name(p.name + ".data")
    return p.stat().st_size + (data.stat().st_size if data.exists() else 0)


def format_summary(report, input_path=None, output_path=None) -> str:
    lines = []
    if input_path is not None:
        lines.append(f"{input_path} -> {output_path}  ({report.mode} mode)")
        before, after = _file_size(input_path), _file_size(output_path)
        lines.append(f"  file size   {human(before) + 'B':>9} -> {human(after) + 'B':>9}  {_change(before, after)}")
    lines.append(f"  parameters  {human(report.params_before):>9} -> {human(report.params_after):>9}  "
                 f"{_change(report.params_before, report.params_after)}")
    lines.append(f"  FLOPs       {human(report.flops_before):>9} -> {human(report.flops_after):>9}  "
                 f"{_change(report.flops_before, report.flops_after)}")
    if report.input_shapes:
        lines.append(f"  at shapes   {report.input_shapes} ({report.shapes_source})")
    lat = getattr(report, "latency", None)
    if lat:
        where = f"{lat['device']}, batch {lat['batch']}, threads {lat['threads'] or 'default'}" + (
            ", CPU time of the run" if lat.get("clock") == "thread" else "")
        if "measured_share" in lat:
            lines.append(f"  latency     {lat['original_ms']:>7.2f}ms -> {lat['measured_ms']:>7.2f}ms  measured "
                         f"{lat['measured_share']:.1%} of the original (asked {lat['asked_share']:.0%}, predicted "
                         f"{lat['predicted_share']:.1%}; {len(lat['rounds'])} round(s), {where})")
        else:
            lines.append(f"  latency     predicted {lat['predicted_share']:.1%} of {lat['model_ms']:.2f}ms ({where})")
        choice = lat.get("choice")
        if choice and len(choice.get("candidates", [])) > 1:
            figs = ", ".join(f"{c['allocation']} {c['measured_share']:.1%}/{c['flops_kept']:.1%}"
                             + (f"/cos {c['cosine']:.4f}" if "cosine" in c else "") for c in choice["candidates"])
            lines.append(f"  allocation  {lat['allocation']} kept, by {choice['by']} (measured share/FLOPs kept: {figs})")
        table = lat["table"]
        source = "read from cache" if table["cached"] else f"measured in {table['seconds']:.1f} s"
        lines.append(f"  latency table {source} ({table['layers']} layers); round_to {lat['round_to']}"
                     + (" chosen from it" if lat["round_to_from_table"] else " (--round-to)"))
    prunable = [g for g in report.groups if g.prunable]
    blocked = [g for g in report.groups if not g.prunable]
    lines.append(f"  groups      {len(report.groups)} found, {len(prunable)} prunable, {len(blocked)} blocked")
    changed = [g for g in report.groups if g.kept < g.size]
    lines.append(f"  channels    {report.channels_removed} removed in {len(changed)} groups")
    for g in changed[:20]:
        lines.append(f"    group {g.id:<4} {_source_label(g.sources):<40} {g.size:>5} -> {g.kept}")
    if len(changed) > 20:
        lines.append(f"    ... and {len(changed) - 20} more groups")
    if blocked:
        reasons = Counter(_reason_kind(r) for g in blocked for r in g.reasons[:1])
        lines.append("  blocked     " + "; ".join(f"{n} x {r}" for r, n in reasons.most_common(6)))
    race = getattr(report, "race", None)
    if race:
        def name(c):
            return c["criterion"] if c.get("allocation", "score") == "score" else f"{c['criterion']}+{c['allocation']}"

        figs = "; ".join(f"{name(c)} {c['figure']}, cosine {c['cosine']:.4f} ({c['flops_kept']:.1%} FLOPs)"
                         for c in race["candidates"])
        kept = name({"criterion": race["kept"], "allocation": race.get("allocation", "score")})
        lines.append(f"  criterion   {kept} kept, on {race['held_out_samples']} held-out samples: {figs}")
        lead = _unclear_lead(race)
        if lead:
            lines.append(f"              {name(lead)} led on them, by less than the race's margin (1.5 samples' worth, "
                         "or 1.5 standard errors of the paired difference): the default stays; --criterion and "
                         "--allocation choose another")
        if race.get("skipped"):
            lines.append(f"              sensitivity allocation not raced: {race['skipped']}")
    q = getattr(report, "quantize", None)
    if q:
        lines.extend(_quantize_lines(q))
    ft = getattr(report, "finetune", None)
    if ft and ft.get("status") == "trained":
        figures = "; ".join(f"{LABELS.get(f['metric'], f['metric'])} {f['before']:.1%} -> {f['after']:.1%}"
                            for f in ft["held_out"].values() if f.get("before") is not None and f.get("after") is not None)
        loss = ft["held_out_loss"]
        lines.append(f"  finetuned   {ft['steps_run']} steps (best weights at step {ft['best_step']}) in "
                     f"{ft['seconds']:.1f} s on {ft['samples']['train']} samples; held out ({ft['samples']['held_out']}): "
                     f"{figures + ', ' if figures else ''}loss {loss['before']:.4g} -> {loss['after']:.4g}")
    if report.mode == "exact" and report.prunable_flops_share:
        lines.append(f"  note        {report.prunable_flops_share * 100:.0f}% of the FLOPs are in prunable layers; "
                     f"--ratio or --target-flops prunes them (lossy)")
    lines.extend(f"  note        {n}" for n in report.notes)
    lines.extend(f"warning: {w}" for w in getattr(report, "warnings", []))
    return "\n".join(lines)


def _unclear_lead(race: dict) -> dict | None:
    """The best-scored challenger where the race kept the default (the first candidate) though that
    challenger's held-out figure was higher: a lead within the margin (strategies/race.py)."""
    cands = race.get("candidates") or []
    if not cands or (race.get("kept"), race.get("allocation", "score")) != (cands[0]["criterion"],
                                                                             cands[0].get("allocation", "score")):
        return None
    best = max(cands[1:], key=lambda c: (c["score"], c["cosine"]), default=None)
    return best if best is not None and best["score"] > cands[0]["score"] else None


def _quantize_lines(q: dict) -> list[str]:
    """What --quantize did, what --quantize auto picked, and the written model's speed."""
    lines = []
    auto = q.get("auto")
    if auto is not None:
        tried = ", ".join(f"{c['name']} {c['speed']['time_ratio']:.2f}x" for c in auto["candidates"]
                          if "time_ratio" in c["speed"])
        lines.append(f"  quantized   auto: {auto['int8_layers']} of {len(auto['layers'])} layers faster in int8 alone, "
                     f"int8 chain {'pays' if auto['chain_pays'] else 'does not pay'} (layers timed at batch "
                     f"{q.get('speed', {}).get('batch', '?')})" + (f"; candidates' time vs pruned float: {tried}" if tried else "")
                     + (f"; wrote the pruned float model: {auto['fallback']}" if auto["fallback"] else
                        f"; wrote '{auto['chosen']}'"))
    if q.get("written", "quantized") == "quantized":
        detail = "per-channel" if q.get("per_channel") else "per-tensor"
        calib = f", {q['calibration_samples']} calibration samples" if q.get("calibration_samples") else ""
        ops = ", ".join(f"{n} {op}" for op, n in q.get("ops", {}).items())
        lines.append(f"  quantized   {q['mode']} ({q['format']}, {detail} int8 weights{calib}): {ops or 'nothing'}")
    speed = q.get("speed")
    if q.get("written", "quantized") != "quantized":
        speed = None
    if speed and "time_ratio" in speed:
        faster = "slower" if speed["slower"] else "faster"
        lines.append(f"  speed       quantized {speed['quantized_ms']:.3f} ms vs pruned float {speed['pruned_float_ms']:.3f} ms "
                     f"at batch {speed['batch']} ({speed['device']}, threads {speed['threads'] or 'default'}, interleaved): "
                     f"{speed['time_ratio']:.2f}x the time, {faster}")
    elif speed and "error" in speed:
        lines.append(f"  speed       not measured: {speed['error']}")
    return lines
def nothing_removed_warning(groups: list[GroupSummary], top: int = 3) -> str:
    """Why a lossy run removed no channel: the commonest reasons groups are blocked, or, with
    prunable groups, that the target asked for none of their channels."""
    blocked = [g for g in groups if not g.prunable]
    reasons = Counter(_reason_kind(r) for g in blocked for r in g.reasons[:1])
    kinds = "; ".join(f"{n} x {r}" for r, n in reasons.most_common(top))
    prunable = len(groups) - len(blocked)
    if prunable:
        head = (f"the lossy run removed nothing: {prunable} of {len(groups)} channel groups are prunable but the "
                "target (after --round-to and --max-group-ratio) takes no channel from them")
        return head + (f"; the {len(blocked)} blocked: {kinds}" if blocked else "")
    if not groups:
        return ("the lossy run removed nothing: the model has no channel groups (no Conv, Gemm, MatMul or "
                "recurrent layer whose outputs could be followed; `onnxprune analyze` shows the graph's layers)")
    return (f"the lossy run removed nothing: all {len(groups)} channel groups are blocked"
            + (f"; top reasons: {kinds}" if kinds else "") + " (`onnxprune analyze` lists each)")


def _reason_kind(reason: str) -> str:
    """A reason without its node name, so equal causes are counted together."""
    head, sep, tail = reason.partition(": ")
    return tail if sep else reason


def format_groups(analysis, verbose: bool = False) -> str:
    lines = [f"{'group':>5}  {'channels':>8}  {'status':<8}  sources / reason"]
    for g in analysis.groups:
        status = ("prunable" if not g.inexact else "lossy") if g.prunable else "blocked"
        lines.append(f"{g.id:>5}  {g.size:>8}  {status:<8}  {', '.join(g.sources[:4])}"
                     + (f" +{len(g.sources) - 4}" if len(g.sources) > 4 else ""))
        if not g.prunable:
            lines.append(f"{'':>27}why: {g.reasons[0]}" + (f" (+{len(g.reasons) - 1} more)" if len(g.reasons) > 1 else ""))
        elif g.inexact:
            lines.append(f"{'':>27}lossy only: {g.inexact[0]}")
        if verbose:
            for m in g.members:
                lines.append(f"{'':>27}{m.role:<8} {m.param} axis {m.axis} ({m.node})")
    prunable = analysis.prunable_groups()
    lossy = sum(1 for g in prunable if g.inexact)
    lines.append(f"{len(analysis.groups)} groups: {len(prunable)} prunable "
                 f"({sum(g.size for g in prunable)} channels{f'; {lossy} in lossy mode only' if lossy else ''}), "
                 f"{len(analysis.groups) - len(prunable)} blocked")
    return "\n".join(lines)


def versions() -> dict:
    import numpy
    import onnx

    out = {"python": platform.python_version(), "onnx": onnx.__version__, "numpy": numpy.__version__}
    try:
        import onnxruntime

        out["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        out["onnxruntime"] = None
    from . import __version__

    out["onnxprune"] = __version__
    return out
