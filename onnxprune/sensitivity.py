"""Per-group sensitivity: how much the outputs change when one group alone is pruned at a ratio.

Pruning is simulated exactly by zeroing the consumer columns of the chosen channels (the exactness
oracle), so no rewrite is needed per trial."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx

from .analysis import analyze
from .analysis.oracle import zeroed_reference
from .graph import ModelGraph
from .importance import get_criterion
from .passes.untie import untie_shared
from .runtime.data import load_data, random_data, resolve_batch
from .runtime.shapes import resolve_input_shapes
from .runtime.sessions import create_session


@dataclass
class Trial:
    group: int
    ratio: float
    removed: int
    cosine: float
    max_abs_error: float
    top1_agreement: float | None
    accuracy: float | None


@dataclass
class SensitivityResult:
    trials: list[Trial]
    groups: dict[int, dict]
    baseline_accuracy: float | None
    data: str
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"data": self.data, "baseline_accuracy": self.baseline_accuracy, "warnings": self.warnings,
                "groups": self.groups, "trials": [t.__dict__ for t in self.trials]}

    def format_table(self) -> str:
        ratios = sorted({t.ratio for t in self.trials})
        show_acc = self.baseline_accuracy is not None
        head = f"{'group':>5} {'channels':>8}  {'first source':<40}" + "".join(
            f" {'cos@' + format(r, 'g'):>9} {('acc@' if show_acc else 'top1@') + format(r, 'g'):>9}" for r in ratios)
        lines = [f"sensitivity on {self.data}" + (f"; accuracy of the original {self.baseline_accuracy:.2%}"
                                                  if show_acc else ""), head]
        by = {(t.group, t.ratio): t for t in self.trials}
        for gid, info in self.groups.items():
            row = f"{gid:>5} {info['channels']:>8}  {info['sources'][0][:40]:<40}"
            for r in ratios:
                t = by.get((gid, r))
                second = t.accuracy if show_acc else t.top1_agreement
                row += f" {t.cosine:>9.4f} {'-' if second is None else format(second, '.1%'):>9}"
            lines.append(row)
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(np.where(den > 0, num / np.where(den > 0, den, 1), 1.0)))


def sensitivity(model: onnx.ModelProto, data=None, ratios=(0.25, 0.5, 0.75), criterion: str = "l1",
                device: str = "cpu", max_samples: int = 256,
                progress: Callable[[int, int], object] | None = None,
                shapes: dict[str, tuple[int, ...]] | None = None) -> SensitivityResult:
    resolved = resolve_input_shapes(model, given=shapes, data=data)
    untie_shared(model)
    analysis = analyze(ModelGraph(model, shapes=resolved.per_sample()))
    scores = get_criterion(criterion)(analysis, data)
    base = create_session(model, device)
    specs = base.inputs
    size = resolve_batch(specs, None, shapes)
    warnings = list(resolved.notes)
    if data is None:
        dataset = random_data(specs, resolved, size, 0, 4)
        warnings.append("random inputs: figures show output change on noise, not on real data; pass --calib")
    else:
        dataset = load_data(data, specs)
    batches, seen = [], 0
    for item in dataset.batches(size, drop_last=any(s.fixed_batch for s in specs)):
        batches.append(item)
        seen += item.size
        if seen >= max_samples:
            break
    first_out = base.output_names[0]
    reference = [base.run(b.feeds)[first_out] for b in batches]
    base.close()
    labels = [b.labels for b in batches]
    has_labels = all(lab is not None for lab in labels) and reference[0].ndim == 2
    baseline_acc = (float(np.mean(np.concatenate([r.argmax(1) == lab for r, lab in zip(reference, labels)])))
                    if has_labels else None)
    groups = analysis.prunable_groups()
    trials = []
    total, done = len(groups) * len(ratios), 0
    for g in groups:
        order = sorted(g.channels, key=lambda c: (scores.get(c, 0.0), c))
        for r in ratios:
            n = min(len(order) - 1, int(np.floor(len(order) * r)))
            removed = set(order[:n])
            trial_model = zeroed_reference(model, analysis, removed)
            sess = create_session(trial_model, device)
            outs = [sess.run(b.feeds)[first_out] for b in batches]
            sess.close()
            cat_ref, cat_out = np.concatenate(reference), np.concatenate(outs)
            classifier = cat_ref.ndim == 2 and cat_ref.shape[1] >= 2
            trials.append(Trial(
                g.id, r, n, _cosine(cat_ref, cat_out), float(np.max(np.abs(cat_ref - cat_out))),
                float(np.mean(cat_ref.argmax(1) == cat_out.argmax(1))) if classifier else None,
                float(np.mean(np.concatenate([o.argmax(1) == lab for o, lab in zip(outs, labels)]))) if has_labels else None,
            ))
            done += 1
            if progress:
                progress(done, total)
    info = {g.id: {"channels": g.size, "sources": g.sources} for g in groups}
    return SensitivityResult(trials, info, baseline_acc, dataset.source, warnings)
