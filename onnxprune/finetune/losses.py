"""What the pruned model is trained to match, per output, in the terms of what the output is
(runtime/metrics.py decides the kind from the original's values, as the fidelity figures do):

- classes: [N, K] scores: KL divergence from the original's class distribution (softmax of logits,
  or the probabilities themselves when the output already sums to 1);
- ctc: [N, T, C] / [T, N, C] frame scores: the same KL per time step;
- boxes: a raw YOLO-style head [N, 4+C, A]: the class scores by binary cross-entropy, the box
  coordinates by squared error weighted by the original's best score per anchor (background anchors
  barely count) and scaled by the coordinates' spread;
- selection: an output computed by picking (TopK, ArgMax, GatherElements: an end-to-end detector's
  top boxes, a recognizer's ids) is not compared element by element (ties reorder it); the float
  tensors the picking reads are targets instead: KL over an ArgMax's axis, otherwise cross-entropy
  for scores in [0, 1] and squared error scaled by the variance;
- mse: anything else, squared error scaled by the original's variance.
Every term is about 1 for an unrelated output and 0 for a perfect copy, so they add up evenly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import torch

from ..runtime.metrics import BoxF1, CharAccuracy, Cosine, TopOne, choose_metric

SELECTING = ("TopK", "ArgMax", "ArgMin", "GatherElements", "GatherND", "NonMaxSuppression")
EPS = 1e-7


@dataclass(frozen=True)
class Target:
    """One tensor the student is trained to match: its name, kind and the axis its distribution lies on."""

    name: str
    kind: str        # classes, ctc, boxes, bce, mse
    axis: int = -1
    probabilities: bool = False  # the original's values are already a distribution over `axis`


def _is_distribution(t: np.ndarray, axis: int) -> bool:
    return bool(np.all(t >= 0) and np.allclose(t.sum(axis=axis), 1.0, atol=1e-3))


def _in_unit(t: np.ndarray) -> bool:
    return bool(t.size and np.all(t >= 0) and np.all(t <= 1))


def selection_inputs(model: onnx.ModelProto, output: str) -> list[tuple[str, str, int]]:
    """(float tensor, op, axis) read by the picking ops (SELECTING) that `output` is computed from,
    first picks only: a tensor that is itself computed from a pick (YOLO26's second TopK over the
    classes of the first one's top anchors) is reordered by ties, so the first pick's inputs serve."""
    producer = {o: n for n in model.graph.node for o in n.output}
    stored = {t.name for t in model.graph.initializer} | {n.output[0] for n in model.graph.node if n.op_type == "Constant"}

    def upstream(start: str) -> list:
        """The nodes `start` is computed from (itself included), each once."""
        nodes, seen, todo = [], set(), [start]
        while todo:
            name = todo.pop()
            node = producer.get(name)
            if node is None or name in seen:
                continue
            seen.add(name)
            nodes.append(node)
            todo.extend(i for i in node.input if i)
        return nodes

    found = []
    for node in upstream(output):
        if node.op_type not in SELECTING or node.input[0] in stored:
            continue
        data = node.input[0]
        if any(n.op_type in SELECTING for n in upstream(data)):
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0 if node.op_type == "ArgMax" else -1)
        if all(f[0] != data for f in found):
            found.append((data, node.op_type, axis))
    return sorted(found)


def choose_targets(model: onnx.ModelProto, outputs: dict[str, np.ndarray], batch: int,
                   metric: str = "auto") -> tuple[list[Target], dict[str, str]]:
    """Targets for the original's first batch of outputs (name -> array), and per graph output the
    kind it was given (for the report)."""
    targets, kinds = [], {}
    declared = {o.name: tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                              for d in o.type.tensor_type.shape.dim)
                for o in model.graph.output if o.type.tensor_type.HasField("shape")}
    for name, value in outputs.items():
        floating = np.issubdtype(value.dtype, np.floating)
        chosen = choose_metric(value, batch, metric, declared.get(name)) if floating else None
        if isinstance(chosen, BoxF1) and chosen.layout == "raw":
            targets.append(Target(name, "boxes"))
            kinds[name] = "boxes"
            continue
        if isinstance(chosen, TopOne):
            targets.append(Target(name, "classes"))
            kinds[name] = "classes"
            continue
        if isinstance(chosen, CharAccuracy):
            targets.append(Target(name, "ctc"))
            kinds[name] = "ctc"
            continue
        picked = selection_inputs(model, name) if (chosen is None or (isinstance(chosen, BoxF1)
                                                                        and not chosen.layout.startswith("raw:"))) else []
        if picked:
            kinds[name] = "selection: " + ", ".join(p for p, _, _ in picked)
            for data, op_type, axis in picked:
                targets.append(Target(data, "classes" if op_type in ("ArgMax", "ArgMin") else "select", axis))
            continue
        if floating and isinstance(chosen, (Cosine, BoxF1)):
            targets.append(Target(name, "mse"))
            kinds[name] = "mse"
        else:
            kinds[name] = "none (not a float output)"
    unique = list({t.name: t for t in targets}.values())
    return unique, kinds


def refine(targets: list[Target], teacher: dict[str, np.ndarray]) -> list[Target]:
    """Settle what only the original's values say: a selection input in [0, 1] is scores (bce), else
    mse; whether a class axis already holds probabilities."""
    out = []
    for t in targets:
        value = teacher[t.name]
        if t.kind == "select":
            out.append(Target(t.name, "bce" if _in_unit(value) else "mse", t.axis))
        elif t.kind in ("classes", "ctc"):
            flat = t.kind == "classes" and t.axis in (-1, value.ndim - 1)
            probabilities = _is_distribution(value.reshape(len(value), -1) if flat else value, -1 if flat else t.axis)
            out.append(Target(t.name, t.kind, t.axis, probabilities))
        else:
            out.append(t)
    return out


def _log_distribution(x: torch.Tensor, axis: int, probabilities: bool) -> torch.Tensor:
    return torch.log(x.clamp_min(EPS)) if probabilities else torch.log_softmax(x, dim=axis)


def _kl(student: torch.Tensor, teacher: torch.Tensor, axis: int, probabilities: bool) -> torch.Tensor:
    log_s = _log_distribution(student, axis, probabilities)
    log_t = _log_distribution(teacher, axis, probabilities)
    per = (log_t.exp() * (log_t - log_s)).sum(dim=axis)
    return per.mean()


def _scaled_mse(student, teacher, weight=None) -> torch.Tensor:
    scale = teacher.var() + EPS
    err = (student - teacher).pow(2)
    if weight is not None:
        return (err * weight).sum() / (weight.sum() * err.shape[1] + EPS) / scale
    return err.mean() / scale


def _bce(student, teacher) -> torch.Tensor:
    s = student.clamp(EPS, 1 - EPS)
    loss = -(teacher * torch.log(s) + (1 - teacher) * torch.log(1 - s))
    floor = -(teacher * torch.log(teacher.clamp(EPS, 1)) + (1 - teacher) * torch.log((1 - teacher).clamp(EPS, 1)))
    return (loss - floor).mean()  # 0 for a perfect copy


def feature_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Squared error at an inner layer, scaled by the original's variance there."""
    return _scaled_mse(student.float(), teacher.float())


def target_loss(target: Target, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    student = student.float()
    teacher = teacher.float()
    if target.kind == "classes":
        if student.dim() == 2 or target.axis not in (-1, student.dim() - 1):
            return _kl(student, teacher, target.axis, target.probabilities)
        return _kl(student.reshape(len(student), -1), teacher.reshape(len(teacher), -1), -1, target.probabilities)
    if target.kind == "ctc":
        return _kl(student, teacher, -1, target.probabilities)
    if target.kind == "boxes":  # [N, 4+C, A]
        scores_s, scores_t = student[:, 4:], teacher[:, 4:]
        weight = scores_t.amax(dim=1, keepdim=True)
        return _bce(scores_s, scores_t) * 10 + _scaled_mse(student[:, :4], teacher[:, :4], weight)
    if target.kind == "bce":
        return _bce(student, teacher) * 10
    return _scaled_mse(student, teacher)


def feature_tensors(original: onnx.ModelProto, pruned: onnx.ModelProto, limit: int) -> list[str]:
    """Outputs of the layers right after pruned channels, by name in both graphs: a Conv, Gemm or
    MatMul whose weight lost input channels (or rows) and kept its output ones. The original's
    values there are what repair aimed at; the last `limit` of them in graph order (the deeper ones,
    smaller maps; graph outputs have their own loss), for a feature loss beside the outputs'."""
    from .interpreter import stored_constants

    def weights(model):
        stored = stored_constants(model.graph)
        out = {}
        for node in model.graph.node:
            if node.op_type in ("Conv", "Gemm", "MatMul") and len(node.input) > 1 and node.input[1] in stored:
                shape = tuple(stored[node.input[1]].dims)
                trans = node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute)
                out[node.output[0]] = (node.op_type, shape, trans)
        return out

    before, after = weights(original), weights(pruned)
    outputs = {o.name for o in original.graph.output}
    found = []
    for name, (op_type, shape, trans) in after.items():
        old = before.get(name)
        if old is None or name in outputs or old[0] != op_type or len(old[1]) != len(shape) or len(shape) < 2:
            continue
        into, out = (1, 0) if op_type == "Conv" or trans else (0, 1)
        if shape[out] == old[1][out] and shape[into] < old[1][into]:
            found.append(name)
    return found[-limit:] if limit > 0 else []
