"""Fidelity in the model's own terms: how often the pruned model gives the original's answer.

Cosine similarity hides a dead detector (box coordinates dominate its output vector, so the cosine
stays near 1 while no box survives) and a broken recognizer, so each output gets the metric fitted
to what it is:

- top1:   [N, K] scores: share of samples with the same arg-max class;
- boxes:  detection heads (LAYOUTS): end-to-end [N, K, 6] (x1, y1, x2, y2, score, class), YOLOv8 /
          YOLO11 raw [N, 4+C, A] (cx, cy, w, h, C class scores per anchor) or YOLOv5 / YOLOX
          [N, A, 5+C] (cx, cy, w, h, objectness, C class scores; score = objectness x class score),
          the raw ones decoded here with per-class NMS: F1 of the pruned model's boxes against the
          original's, a match being the same class at IoU >= 0.5, boxes with score >= 0.25;
- ctc:    [N, T, C] or [T, N, C] per-frame class scores: greedy CTC decode of both (best class per
          frame, repeats merged, the blank dropped: the class the original picks most often), then
          character accuracy 1 - edit distance / length of the original's string;
- cosine: anything else: mean over samples of the per-sample cosine.

`auto` (the default) picks one per output from its shape and, where a shape allows two readings,
from the original's values (raw box coordinates are pixels while class scores lie in [0, 1]); a
task metric only where the output looks like the task: a recurrent state [2, N, 128] is no CTC
head (too few frames), so it gets cosine. Each metric carries the `reason` it was chosen, which
the report prints."""

from __future__ import annotations

import numpy as np

from ..config import METRICS  # noqa: F401 (re-exported)
from ..errors import ConfigError

SCORE_THRESHOLD = 0.25
BOX_COORDS = 4  # [N, K, 4]: boxes (x1, y1, x2, y2 or cx, cy, w, h), never read as CTC scores unless asked
MIN_CTC_FRAMES = 10  # fewer "frames" is a stack of layers (a recurrent state [layers, N, H]), not a sequence
CTC_BLANK_SHARE = 0.3  # a CTC head's best class is the blank in at least this share of its frames
# Ids come as int64 (ArgMax, TopK) or int32; 8-bit outputs are quantized scores or pixels, not ids.
ID_DTYPES = (np.dtype(np.int64), np.dtype(np.int32))
LAYOUTS = {"end2end": "end-to-end [N, K, 6] (x1, y1, x2, y2, score, class)",
           "raw": "YOLOv8/YOLO11 raw [N, 4+C, A] (cx, cy, w, h, class scores)",
           "objectness": "YOLOv5/YOLOX [N, A, 5+C] (cx, cy, w, h, objectness, class scores)"}
MATCH_IOU = 0.5
NMS_IOU = 0.7

LABELS = {"top1": "top-1 agreement", "boxes": "box F1", "ctc": "char accuracy", "cosine": "cosine"}


class Metric:
    """Running agreement of one output; `value` is a fraction in [0, 1] (None: nothing to measure).

    `parts` holds each sample's share of it, (numerator, denominator) with value = sum of the
    numerators / sum of the denominators (a box F1's matches and boxes, a string's correct characters
    and length): what a paired comparison of two models on the same samples reads (strategies/race.py)."""

    name = "cosine"
    reason = ""  # why choose_metric picked it, in the report's words

    @property
    def parts(self) -> list[tuple[float, float]]:
        if "_parts" not in self.__dict__:
            self._parts = []
        return self._parts

    def update(self, a: np.ndarray, b: np.ndarray) -> None:
        raise NotImplementedError

    @property
    def value(self) -> float | None:
        raise NotImplementedError

    @property
    def label(self) -> str:
        return LABELS[self.name]


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of two [rows, k] arrays (1 where both are zero, 0 where one is).
    One value a row has no direction (its cosine is its sign: 1 for any positive score), so rows of
    one value get 1 - |a - b| / max(|a|, |b|) instead (a quality score, an age, a liveness logit)."""
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    with np.errstate(all="ignore"):
        if a.shape[1] == 1:
            big = np.maximum(na, nb)
            cos = np.where(big == 0, 1.0, 1.0 - np.abs(a[:, 0] - b[:, 0]) / np.where(big == 0, 1.0, big))
        else:
            dot = np.einsum("ij,ij->i", a, b)
            cos = np.where((na == 0) & (nb == 0), 1.0, np.where((na == 0) | (nb == 0), 0.0, dot / (na * nb)))
    return np.clip(cos, -1.0, 1.0)


class Cosine(Metric):
    name = "cosine"

    def __init__(self):
        self.total = 0.0
        self.count = 0

    def update(self, a, b):
        rows = a.shape[0] if a.ndim >= 2 else 1
        a = np.nan_to_num(a.astype(np.float64)).reshape(rows, -1)
        b = np.nan_to_num(b.astype(np.float64)).reshape(rows, -1)
        cos = row_cosines(a, b)
        self.total += float(cos.sum())
        self.count += rows
        self.parts.extend((float(c), 1.0) for c in cos)

    @property
    def value(self):
        return self.total / self.count if self.count else None


class TopOne(Metric):
    """Share of samples with the same arg-max class; with ids, the output holds the class ids
    already ([N] or [N, 1] integers: a classifier that takes its arg-max inside the graph); with
    elements, a map of them ([N, H, W]: the share of equal elements)."""
    name = "top1"

    def __init__(self, ids: bool = False, elements: bool = False):
        self.ids, self.elements = ids, elements
        self.same = self.count = 0

    def update(self, a, b):
        if self.elements:  # a map of class ids (a segmentation's per-pixel arg-max): per element
            same = (a == b).reshape(len(a), -1).sum(1)
            self.same += int(same.sum())
            self.count += a.size
            self.parts.extend((float(x), float(a[0].size)) for x in same)
            return
        a2, b2 = a.reshape(len(a), -1), b.reshape(len(b), -1)
        same = (a2 == b2).all(1) if self.ids else a2.argmax(1) == b2.argmax(1)
        self.same += int(same.sum())
        self.count += len(a2)
        self.parts.extend((float(x), 1.0) for x in same)

    @property
    def value(self):
        return self.same / self.count if self.count else None


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a [n, 4] with every box in b [m, 4], both x1, y1, x2, y2."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(all="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float = NMS_IOU) -> np.ndarray:
    """Indices kept by per-class greedy non-maximum suppression, best score first."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    suppressed = np.zeros(len(order), dtype=bool)
    ious = iou_matrix(boxes[order], boxes[order])
    cls = classes[order]
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(order[i])
        suppressed |= (ious[i] >= iou) & (cls == cls[i])
    return np.array(keep, dtype=np.int64)


def decode_detections(out: np.ndarray, layout: str, threshold: float = SCORE_THRESHOLD):
    """Per sample: (boxes [n, 4] x1y1x2y2, classes [n]) with score >= threshold."""
    result = []
    for s in out.astype(np.float64):
        if layout == "end2end":                      # [D, 6]: x1, y1, x2, y2, score, class
            keep = s[:, 4] >= threshold
            result.append((s[keep, :4], s[keep, 5].round().astype(np.int64)))
            continue
        if layout == "objectness":                   # [A, 5+C]: cx, cy, w, h, objectness, class scores
            s = s.T
            scores_all = s[5:] * s[4]
        else:
            k = raw_classes(layout)
            scores_all = s[4:] if k is None else s[4:4 + k]  # raw [4+C(+E), A]
        cls = scores_all.argmax(0)
        score = scores_all.max(0)
        keep = score >= threshold
        cx, cy, w, h = s[:4, keep]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        kept = nms(boxes, score[keep], cls[keep])
        result.append((boxes[kept], cls[keep][kept]))
    return result


class BoxF1(Metric):
    name = "boxes"

    def __init__(self, layout: str):
        self.layout = layout
        self.matched = self.boxes_a = self.boxes_b = 0

    def update(self, a, b):
        for (ba, ca), (bb, cb) in zip(decode_detections(a, self.layout), decode_detections(b, self.layout)):
            self.boxes_a += len(ba)
            self.boxes_b += len(bb)
            if not len(ba) or not len(bb):
                self.parts.append((0.0, float(len(ba) + len(bb))))
                continue
            ious = iou_matrix(ba, bb)
            ious[ca[:, None] != cb[None, :]] = 0.0
            pairs = np.argwhere(ious >= MATCH_IOU)
            pairs = pairs[np.argsort(-ious[pairs[:, 0], pairs[:, 1]], kind="stable")]
            used_a, used_b = set(), set()
            for i, j in pairs:
                if i not in used_a and j not in used_b:
                    used_a.add(i)
                    used_b.add(j)
            self.matched += len(used_a)
            self.parts.append((2.0 * len(used_a), float(len(ba) + len(bb))))

    @property
    def value(self):
        total = self.boxes_a + self.boxes_b
        return 2 * self.matched / total if total else None


def edit_distance(a: list[int], b: list[int]) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


def ctc_greedy(frames: np.ndarray, blank: int | None, ids: bool = False, collapse: bool = True) -> list[list[int]]:
    """Best class per frame (frames [N, T, C]; with ids, frames are already the classes [N, T]),
    repeats merged unless not collapse, blanks dropped."""
    best = frames if ids else frames.argmax(-1)
    out = []
    for seq in best:
        keep = np.ones(len(seq), dtype=bool)
        if collapse:
            keep[1:] = seq[1:] != seq[:-1]
        out.append([int(c) for c in seq[keep] if c != blank])
    return out


def _commonest(values: np.ndarray) -> tuple[int, float]:
    """The commonest value of an integer array and its share."""
    found, counts = np.unique(values.ravel(), return_counts=True)
    return int(found[counts.argmax()]), float(counts.max() / values.size)


class CharAccuracy(Metric):
    """Greedy CTC decode of both (per-frame scores, or with ids the per-frame class ids a model that
    decodes inside the graph gives), then 1 - edit distance / length of the original's string. With
    collapse=False the rows are token sequences already (a decoded, padded output): compared as they
    are, the padding (the commonest id where it fills 30% of the first batch) dropped."""
    name = "ctc"

    def __init__(self, batch_axis: int, ids: bool = False, collapse: bool = True):
        self.batch_axis, self.ids, self.collapse = batch_axis, ids, collapse
        self.blank: int | None = None
        self.seen = False
        self.errors = self.chars = 0

    def update(self, a, b):
        if self.batch_axis == 1:
            a, b = a.swapaxes(0, 1), b.swapaxes(0, 1)
        if not self.seen:  # CTC outputs are mostly blank: the original's commonest class is it
            self.seen = True
            value, share = _commonest(a if self.ids else a.argmax(-1))
            self.blank = value if self.collapse or share >= CTC_BLANK_SHARE else None
        for sa, sb in zip(ctc_greedy(a, self.blank, self.ids, self.collapse),
                          ctc_greedy(b, self.blank, self.ids, self.collapse)):
            errors = edit_distance(sa, sb)
            self.errors += errors
            self.chars += len(sa)
            self.parts.append((float(len(sa) - errors), float(len(sa))))

    @property
    def value(self):
        return max(0.0, 1.0 - self.errors / self.chars) if self.chars else None


def raw_classes(layout: str) -> int | None:
    """How many class rows a raw head's layout holds ('raw:K'), None for all rows after the box."""
    return int(layout.split(":")[1]) if layout.startswith("raw:") else None


def layout_label(layout: str) -> str:
    if layout.startswith("raw:"):
        return (f"YOLOv8/YOLO11 raw [N, 4+C+E, A] (cx, cy, w, h, {raw_classes(layout)} class scores, then other "
                "values: mask coefficients, keypoints or an angle)")
    return LAYOUTS[layout]


def detection_layout(a: np.ndarray) -> str | None:
    """'end2end' for [N, D, 6|7] (x1, y1, x2, y2, score, class[, ...]), 'raw' for YOLOv8/YOLO11
    [N, 4+C, A], 'raw:K' for the same with K class rows followed by rows of other values (a -seg
    head's 32 mask coefficients, a -pose head's keypoints, an -obb head's angle: the boxes are read,
    axis-aligned), 'objectness' for YOLOv5/YOLOX [N, A, 5+C]; None when the values look like none."""
    if a.ndim != 3 or not np.issubdtype(a.dtype, np.floating) or not np.all(np.isfinite(a)):
        return None
    if a.shape[2] in (6, 7) and a.shape[1] >= 2:
        scores, cls = a[..., 4], a[..., 5]
        if np.all((scores >= 0) & (scores <= 1)) and np.all(cls == np.round(cls)) and np.all(cls >= 0):
            return "end2end"
    if 5 <= a.shape[1] < a.shape[2] and np.abs(a[:, :4, :]).max() > 1.5:
        inside = np.all((a[:, 4:, :] >= 0) & (a[:, 4:, :] <= 1), axis=(0, 2))
        if inside.all():
            return "raw"
        k = int(np.argmin(inside))  # class scores, then rows of other values: masks, keypoints, an angle
        if k >= 1:
            return f"raw:{k}"
    if 6 <= a.shape[2] < a.shape[1]:
        scores = a[:, :, 4:]
        if np.all((scores >= 0) & (scores <= 1)) and np.abs(a[:, :, :4]).max() > 1.5:
            return "objectness"
    return None


def batch_axis(a: np.ndarray, batch: int, declared: tuple | None) -> int:
    """Which of the first two axes holds the samples: a symbolic dim beside a fixed one says it,
    else the one whose size is the batch (dim 0 when both are)."""
    if declared is not None and len(declared) == a.ndim:
        fixed = [isinstance(d, int) for d in declared[:2]]
        if fixed == [True, False]:
            return 1
        if fixed == [False, True]:
            return 0
    return 1 if a.shape[0] != batch and a.shape[1] == batch else 0


def choose_metric(a: np.ndarray, batch: int, wanted: str = "auto", declared: tuple | None = None) -> Metric:
    """The metric for an output, from the original model's first batch of it `a`, with its `reason`."""
    if wanted not in METRICS:
        raise ConfigError(f"metric must be one of {', '.join(METRICS)}, got '{wanted}'")
    metric, reason = _choose(a, batch, wanted, declared)
    metric.reason = reason
    return metric


def _choose(a: np.ndarray, batch: int, wanted: str, declared: tuple | None) -> tuple[Metric, str]:
    dims = "[" + ", ".join(map(str, a.shape)) + "]"
    if wanted == "cosine":
        return Cosine(), "--metric cosine"
    if a.dtype in ID_DTYPES and wanted in ("auto", "top1", "ctc"):
        return _choose_ids(a, batch, wanted, declared, dims)
    if not np.issubdtype(a.dtype, np.floating):
        return Cosine(), f"{dims} {a.dtype} values: no scores"
    symbolic = declared is not None and len(declared) == a.ndim and a.ndim >= 2 and isinstance(declared[-1], str)
    if wanted == "top1":
        if a.ndim >= 2 and a.shape[-1] >= 2:
            return TopOne(), f"--metric top1: {dims}, classes on the last axis"
        return Cosine(), f"--metric top1, but {dims} has no class axis"
    if wanted in ("auto", "boxes"):
        layout = detection_layout(a)
        if layout is not None:
            return BoxF1(layout), f"{dims}: {layout_label(layout)} detection head"
        if wanted == "boxes":
            return Cosine(), (f"--metric boxes, but {dims} is none of the heads it knows: "
                              + "; ".join(LAYOUTS.values()) + " (scores in [0, 1], boxes in pixels)")
    if symbolic and wanted == "auto" and a.ndim in (2, 3):
        return Cosine(), (f"{dims}: the last axis is declared dynamic ('{declared[-1]}'), so it holds no "
                          "fixed set of classes (per-position values)")
    if a.ndim == 2 and a.shape[1] >= 2 and wanted == "auto":
        softmax = bool(np.all(a >= 0) and np.allclose(a.sum(1), 1.0, atol=1e-3))
        return TopOne(), f"{dims}: {a.shape[1]} class scores per sample" + (" (a softmax)" if softmax else " (logits)")
    if a.ndim == 4 and a.shape[1] >= 2 and all(d == 1 for d in a.shape[2:]) and wanted == "auto":
        # A classifier ending in a 1 x 1 conv and a global pool (SqueezeNet, Caffe2's DenseNet). Not
        # [N, K, 1]: one score per anchor (SCRFD's face scores [1, 12800, 1]) or per step.
        flat = a.reshape(len(a), -1)
        softmax = bool(np.all(flat >= 0) and np.allclose(flat.sum(1), 1.0, atol=1e-3))
        return TopOne(), (f"{dims}: {a.shape[1]} class scores per sample on axis 1" +
                          (" (a softmax)" if softmax else " (logits)"))
    if a.ndim == 3 and a.shape[2] >= 3:
        axis = batch_axis(a, batch, declared)
        frames = a.shape[1 - axis]
        layout = "[T, N, C]" if axis else "[N, T, C]"
        if wanted == "ctc":
            return CharAccuracy(axis), f"--metric ctc: {dims} read as {layout} per-frame class scores"
        if frames < MIN_CTC_FRAMES:
            return Cosine(), (f"{dims}: {frames} {'frame is' if frames == 1 else 'frames are'} too few for a CTC head (a recurrent state "
                              "[layers, N, H] looks like this)")
        if a.shape[2] == BOX_COORDS:
            return Cosine(), (f"{dims}: four values per row read as box coordinates, not class scores (a CTC "
                              "alphabet of three symbols and a blank is not a recognizer's)")
        if _looks_ctc(a, axis):
            return CharAccuracy(axis), f"{dims}: {layout} per-frame class scores, mostly one class (the CTC blank)"
        return Cosine(), f"{dims}: per-frame scores whose best class is not mostly one (no CTC blank)"
    if wanted == "ctc":
        return Cosine(), f"--metric ctc, but {dims} is not [N, T, C] or [T, N, C] class scores"
    if a.size <= max(batch, 1) and a.ndim <= 2:
        return Cosine(), f"{dims}: one value per sample, compared as 1 - |a - b| / max(|a|, |b|) (no direction to take a cosine of)"
    return Cosine(), f"{dims}: not class scores, a detection head or a CTC head"


def _choose_ids(a: np.ndarray, batch: int, wanted: str, declared: tuple | None, dims: str) -> tuple[Metric, str]:
    """Integer outputs are answers already: class ids per sample ([N] or [N, 1]) agree or not, and a
    row of ids per sample ([N, T] or [T, N]) is a string: per-frame CTC ids when one id, the blank,
    fills at least 30% of T >= 10 frames (repeats merged, the blank dropped), else a decoded sequence."""
    if a.ndim == 0 or a.size == 0:
        return Cosine(), f"{dims} {a.dtype} values: no samples to compare"
    if a.ndim == 1 or (a.ndim == 2 and a.shape[1] == 1):
        return TopOne(ids=True), f"{dims} {a.dtype} values: one class id per sample, the same id or not"
    if wanted == "top1":
        return Cosine(), f"--metric top1, but {dims} {a.dtype} values are not one class id per sample"
    if a.ndim == 2:
        axis = batch_axis(a, batch, declared)
        frames = a.shape[1 - axis]
        layout = "[T, N]" if axis else "[N, T]"
        value, share = _commonest(a)
        if wanted == "ctc" or (frames >= MIN_CTC_FRAMES and share >= CTC_BLANK_SHARE):
            return CharAccuracy(axis, ids=True), (f"{dims} {a.dtype} values: {layout} per-frame class ids, "
                                                  f"mostly one ({value}, the CTC blank)")
        return CharAccuracy(axis, ids=True, collapse=False), (f"{dims} {a.dtype} values: {layout} rows of "
                                                              "ids, compared as strings")
    return TopOne(ids=True, elements=True), (f"{dims} {a.dtype} values: a map of class ids (a segmentation's "
                                             "per-pixel arg-max), the share of equal elements")


def _looks_ctc(a: np.ndarray, axis: int) -> bool:
    """Per-frame class scores of a CTC head: a sequence of at most a few hundred frames whose best
    class is mostly one class, the blank."""
    return a.shape[1 - axis] <= 512 and _commonest(a.argmax(-1))[1] >= CTC_BLANK_SHARE
