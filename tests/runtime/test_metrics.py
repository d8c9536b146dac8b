"""Fidelity metrics fitted to the output: which metric each shape gets, and that each figure moves
when, and only when, the answer it measures changes."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from runtime_models import make_model

from onnxprune.errors import ConfigError
from onnxprune.runtime import compare_models
from onnxprune.runtime.metrics import (BoxF1, CharAccuracy, Cosine, TopOne, choose_metric, ctc_greedy,
                                       edit_distance, nms)


def _end2end(boxes):
    """[1, D, 6] end-to-end detections from (x1, y1, x2, y2, score, class) rows, padded with empties."""
    out = np.zeros((1, 10, 6), np.float32)
    out[0, :len(boxes)] = boxes
    return out


def _raw(boxes, classes=3, anchors=20):
    """[1, 4+C, A] YOLO-style raw output from (cx, cy, w, h, class, score) rows."""
    out = np.zeros((1, 4 + classes, anchors), np.float32)
    for i, (cx, cy, w, h, c, s) in enumerate(boxes):
        out[0, :4, i] = cx, cy, w, h
        out[0, 4 + c, i] = s
    return out


def test_shapes_choose_the_metric():
    assert isinstance(choose_metric(np.random.rand(8, 5).astype(np.float32), 8), TopOne)
    assert isinstance(choose_metric(_end2end([[10, 10, 50, 50, 0.9, 2]]), 1), BoxF1)
    assert choose_metric(_raw([[30, 30, 20, 20, 1, 0.9]]), 1).layout == "raw"
    frames = np.zeros((8, 25, 37), np.float32)
    frames[..., 36] = 1.0                      # mostly blank ...
    frames[:, 10, 5] = 2.0                     # ... with a character
    ctc = choose_metric(frames, 8)
    assert isinstance(ctc, CharAccuracy) and ctc.batch_axis == 0
    assert choose_metric(frames.swapaxes(0, 1).copy(), 8).batch_axis == 1  # [T, N, C]
    assert choose_metric(frames.swapaxes(0, 1).copy(), 25, declared=(25, "batch", 37)).batch_axis == 1
    assert isinstance(choose_metric(np.random.rand(2, 3, 8, 8).astype(np.float32), 2), Cosine)
    assert isinstance(choose_metric(np.random.rand(8, 5, 1, 1).astype(np.float32), 8), TopOne)  # SqueezeNet's
    # one score per anchor (SCRFD's [1, 12800, 1] face scores) is no set of classes
    assert isinstance(choose_metric(np.random.rand(1, 12800, 1).astype(np.float32), 1), Cosine)
    assert isinstance(choose_metric(np.random.rand(8, 5, 1, 1).astype(np.float32), 8, "cosine"), Cosine)
    assert isinstance(choose_metric(np.random.rand(8, 5).astype(np.float32), 8, "cosine"), Cosine)
    with pytest.raises(ConfigError, match="^metric must be one of"):
        choose_metric(np.zeros((2, 2), np.float32), 2, "iou")


def test_box_f1_counts_same_class_matches_at_iou_half():
    ref = _end2end([[0, 0, 10, 10, 0.9, 1], [20, 20, 40, 40, 0.8, 0]])
    m = BoxF1("end2end")
    m.update(ref, ref)
    assert m.value == 1.0
    shifted = _end2end([[0, 0, 10, 10, 0.9, 1], [25, 25, 45, 45, 0.8, 0]])  # IoU 225/575 < 0.5
    m = BoxF1("end2end")
    m.update(ref, shifted)
    assert m.value == pytest.approx(0.5)
    relabelled = _end2end([[0, 0, 10, 10, 0.9, 2], [20, 20, 40, 40, 0.8, 0]])
    m = BoxF1("end2end")
    m.update(ref, relabelled)
    assert m.value == pytest.approx(0.5)
    below = _end2end([[0, 0, 10, 10, 0.1, 1], [20, 20, 40, 40, 0.8, 0]])  # a box under the score threshold is gone
    m = BoxF1("end2end")
    m.update(ref, below)
    assert m.value == pytest.approx(2 / 3)


def test_raw_yolo_output_is_decoded_with_nms():
    ref = _raw([[30, 30, 20, 20, 1, 0.9], [31, 30, 20, 20, 1, 0.8], [80, 80, 10, 10, 2, 0.7]])
    m = BoxF1("raw")
    m.update(ref, ref)
    assert m.value == 1.0 and m.boxes_a == 2  # the duplicate anchor is suppressed
    lost = _raw([[30, 30, 20, 20, 1, 0.9], [80, 80, 10, 10, 2, 0.2]])
    m = BoxF1("raw")
    m.update(ref, lost)
    assert m.value == pytest.approx(2 / 3)
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10]], float)
    assert list(nms(boxes, np.array([0.5, 0.9, 0.4]), np.array([0, 0, 1]))) == [1, 2]


def test_ctc_character_accuracy():
    assert edit_distance([1, 2, 3], [1, 3]) == 1 and edit_distance([], [4, 4]) == 2
    best = np.array([[0, 5, 5, 0, 5, 7, 0]])
    frames = np.eye(9, dtype=np.float32)[best]
    assert ctc_greedy(frames, 0) == [[5, 5, 7]]
    m = CharAccuracy(0)
    m.update(frames, frames)
    assert m.value == 1.0
    worse = np.eye(9, dtype=np.float32)[np.array([[0, 5, 5, 5, 5, 7, 0]])]  # two 5s merge into one
    m = CharAccuracy(0)
    m.update(frames, worse)
    assert m.value == pytest.approx(2 / 3)


def _scale_last(k_frames, classes, weights):
    vi = helper.make_tensor_value_info
    w = numpy_helper.from_array(np.asarray(weights, np.float32), "w")
    return make_model([helper.make_node("Mul", ["x", "w"], ["y"])], [vi("x", TensorProto.FLOAT, ["N", k_frames, classes])],
                      [vi("y", TensorProto.FLOAT, ["N", k_frames, classes])], [w])


def test_compare_bounds_the_ctc_metric(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 20, 6)).astype(np.float32)
    x[..., 0] += 2.0                          # class 0 is the blank most frames pick
    np.savez(tmp_path / "d.npz", x=x)
    same = compare_models(_scale_last(20, 6, np.ones(6)), _scale_last(20, 6, np.ones(6)), data=tmp_path / "d.npz",
                          min_agreement=0.99)
    assert same and same.outputs[0].metric == "ctc" and same.outputs[0].agreement == 1.0
    off = compare_models(_scale_last(20, 6, np.ones(6)), _scale_last(20, 6, [1, 1, 1, 1, 1, 0.2]),
                         data=tmp_path / "d.npz", min_agreement=0.99)
    assert not off and "char accuracy" in off.verdict()
    assert off.outputs[0].cosine > 0.9  # what cosine alone would have let through


def _objectness(rows, classes=3, anchors=12):
    """[1, A, 5+C] YOLOv5/YOLOX output from (cx, cy, w, h, objectness, class, class score) rows."""
    out = np.zeros((1, anchors, 5 + classes), np.float32)
    for i, (cx, cy, w, h, obj, c, s) in enumerate(rows):
        out[0, i, :5] = cx, cy, w, h, obj
        out[0, i, 5 + c] = s
    return out


def test_each_metric_says_why():
    cases = [
        (np.random.rand(8, 5).astype(np.float32), 8, None, "top1", "[8, 5]: 5 class scores per sample (logits)"),
        (np.full((8, 4), 0.25, np.float32), 8, None, "top1", "[8, 4]: 4 class scores per sample (a softmax)"),
        (_end2end([[10, 10, 50, 50, 0.9, 2]]), 1, None, "boxes",
         "[1, 10, 6]: end-to-end [N, K, 6] (x1, y1, x2, y2, score, class) detection head"),
        (_raw([[30, 30, 20, 20, 1, 0.9]]), 1, None, "boxes",
         "[1, 7, 20]: YOLOv8/YOLO11 raw [N, 4+C, A] (cx, cy, w, h, class scores) detection head"),
        (_objectness([[30, 30, 20, 20, 0.9, 1, 0.8]]), 1, None, "boxes",
         "[1, 12, 8]: YOLOv5/YOLOX [N, A, 5+C] (cx, cy, w, h, objectness, class scores) detection head"),
        (np.random.rand(2, 1, 128).astype(np.float32), 1, (2, "batch", 128), "cosine",
         "[2, 1, 128]: 2 frames are too few for a CTC head (a recurrent state [layers, N, H] looks like this)"),
        (np.random.rand(2, 3, 8, 8).astype(np.float32), 2, None, "cosine",
         "[2, 3, 8, 8]: not class scores, a detection head or a CTC head"),
    ]
    for a, batch, declared, name, reason in cases:
        m = choose_metric(a, batch, declared=declared)
        assert (m.name, m.reason) == (name, reason)
    m = choose_metric(np.random.rand(1, 10).astype(np.float32), 1, "boxes")
    assert m.name == "cosine" and m.reason.startswith("--metric boxes, but [1, 10] is none of the heads it knows: ")


def test_recurrent_state_is_not_read_as_ctc():
    """A VAD model's state [2, N, 128]: two 'frames' of 128 'classes', one of which wins both: it
    used to be read as CTC logits (char accuracy 100% whatever the state)."""
    state = np.random.default_rng(0).random((2, 1, 128)).astype(np.float32)
    state[..., 7] = 5.0
    assert isinstance(choose_metric(state, 1, declared=(2, "batch", 128)), Cosine)
    assert isinstance(choose_metric(state, 1, "ctc", declared=(2, "batch", 128)), CharAccuracy)  # when asked


def test_box_coordinates_are_not_read_as_ctc():
    """A table recognizer's cell boxes [N, 501, 4] (PaddleOCR's SLANet): one coordinate is the largest
    in most rows, which looked like a CTC blank; they get cosine unless --metric ctc asks."""
    rng = np.random.default_rng(0)
    boxes = rng.random((2, 501, 4)).astype(np.float32)
    boxes[..., 2] += 1.0  # x2 > x1 in every row
    assert isinstance(choose_metric(boxes, 2), Cosine)
    assert "box coordinates" in choose_metric(boxes, 2).reason
    assert isinstance(choose_metric(boxes, 2, "ctc"), CharAccuracy)
    frames = rng.random((2, 40, 5)).astype(np.float32)  # a four-symbol alphabet and the blank: CTC
    frames[:, ::2, 0] += 2.0
    assert isinstance(choose_metric(frames, 2), CharAccuracy)


def test_objectness_head_is_decoded_with_objectness_times_class():
    ref = _objectness([[30, 30, 20, 20, 0.9, 1, 0.8], [31, 30, 20, 20, 0.9, 1, 0.7], [80, 80, 10, 10, 0.9, 2, 0.6]])
    m = BoxF1("objectness")
    m.update(ref, ref)
    assert m.value == 1.0 and m.boxes_a == 2  # the duplicate is suppressed
    low_obj = ref.copy()
    low_obj[0, 2, 4] = 0.3  # 0.3 x 0.6 = 0.18 < 0.25: the third box is gone, its class score unchanged
    m = BoxF1("objectness")
    m.update(ref, low_obj)
    assert m.value == pytest.approx(2 / 3)


def test_integer_outputs_are_answers():
    """A recognizer that decodes inside the graph (trueocr_rec: ids [B, T] int64 per-frame arg-max,
    conf [B, T] per-position confidences, lengths [B]): the ids are a CTC string, the lengths class
    ids per sample, and conf, whose last axis is declared dynamic, is no set of classes. They had
    got cosine, top-1 over 128 'classes' and cosine."""
    ids = np.zeros((2, 20), np.int64)
    ids[0, [3, 4, 9]] = [5, 5, 7]                 # "5 7"
    ids[1, [2, 8, 12]] = [4, 6, 6]                # "4 6 6"
    m = choose_metric(ids, 2, declared=("B", "T"))
    assert isinstance(m, CharAccuracy) and m.reason == (
        "[2, 20] int64 values: [N, T] per-frame class ids, mostly one (0, the CTC blank)")
    worse = ids.copy()
    worse[1, 12] = 9                              # "4 6 9": one of five characters
    m.update(ids, worse)
    assert m.value == pytest.approx(4 / 5)
    seg = np.zeros((2, 4, 5), np.int64)
    seg[:, 1:3, 1:4] = 7                          # a segmentation's per-pixel arg-max
    m = choose_metric(seg, 2)
    assert m.name == "top1" and "map of class ids" in m.reason
    shifted = seg.copy()
    shifted[0, 1, 1:4] = 0                        # three of forty pixels
    m.update(seg, shifted)
    assert m.value == pytest.approx(37 / 40)
    quantized = np.random.default_rng(0).integers(0, 255, (2, 1001)).astype(np.uint8)  # 8-bit scores, not ids
    assert choose_metric(quantized, 2).name == "cosine" and choose_metric(seg.astype(np.uint8), 2).name == "cosine"
    labels = choose_metric(np.array([3, 1, 2], np.int64), 3)
    assert isinstance(labels, TopOne)
    labels.update(np.array([3, 1, 2]), np.array([3, 1, 0]))
    assert labels.value == pytest.approx(2 / 3)
    conf = np.random.default_rng(0).random((2, 20)).astype(np.float32)
    assert isinstance(choose_metric(conf, 2, declared=("B", "T")), Cosine)
    assert isinstance(choose_metric(conf, 2, declared=("B", 20)), TopOne)  # a fixed last axis: classes
    # a YOLO head declares its anchors dynamic ([batch, 84, anchors]): still a detection head
    assert isinstance(choose_metric(_raw([[30, 30, 20, 20, 1, 0.9]]), 1, declared=("batch", 7, "anchors")), BoxF1)


def test_decoded_token_rows_are_compared_as_strings():
    """Ids that are not per-frame (too few frames or no blank) are strings already: no repeats
    merged ("book" stays four letters), the padding dropped where it fills 30% of the rows."""
    a = np.array([[2, 15, 15, 11, 0, 0, 0, 0]], np.int64)
    b = np.array([[2, 15, 11, 0, 0, 0, 0, 0]], np.int64)
    m = choose_metric(a, 1, declared=("N", 8))
    assert m.name == "ctc" and "compared as strings" in m.reason
    m.update(a, b)
    assert m.value == pytest.approx(3 / 4)


def _argmax_frames(weights):
    vi = helper.make_tensor_value_info
    w = numpy_helper.from_array(np.asarray(weights, np.float32), "w")
    nodes = [helper.make_node("Mul", ["x", "w"], ["s"]),
             helper.make_node("ArgMax", ["s"], ["ids"], axis=2, keepdims=0)]
    return make_model(nodes, [vi("x", TensorProto.FLOAT, ["N", 20, 6])], [vi("ids", TensorProto.INT64, ["N", 20])], [w])


def test_compare_bounds_integer_ids(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 20, 6)).astype(np.float32)
    x[..., 0] += 2.0
    np.savez(tmp_path / "d.npz", x=x)
    off = compare_models(_argmax_frames(np.ones(6)), _argmax_frames([1, 1, 1, 1, 1, 0.2]),
                         data=tmp_path / "d.npz", min_agreement=0.99)
    assert off.outputs[0].metric == "ctc" and not off and "char accuracy" in off.verdict()
    assert off.outputs[0].cosine > 0.8  # what cosine alone would have let through


def test_each_metric_splits_its_figure_by_sample():
    """`parts`: one (numerator, denominator) per sample, summing to the figure; what the race pairs."""
    ref = np.concatenate([_end2end([[0, 0, 10, 10, 0.9, 1], [20, 20, 40, 40, 0.8, 0]]),
                          _end2end([[0, 0, 10, 10, 0.9, 1]]), np.zeros((1, 10, 6), np.float32)])
    out = np.concatenate([_end2end([[0, 0, 10, 10, 0.9, 1]]),  # one of two found
                          np.zeros((1, 10, 6), np.float32),    # the pruned model finds nothing here
                          _end2end([[5, 5, 9, 9, 0.9, 0]])])   # and something where the original does not
    m = BoxF1("end2end")
    m.update(ref, out)
    assert m.parts == [(2.0, 3.0), (0.0, 1.0), (0.0, 1.0)]
    assert m.value == pytest.approx(2 / 5)
    best = np.array([[0, 5, 5, 0, 5, 7, 0], [0, 3, 0, 0, 0, 0, 0]])
    worse = np.array([[0, 5, 5, 5, 5, 7, 0], [0, 3, 0, 0, 0, 0, 0]])
    m = CharAccuracy(0)
    m.update(np.eye(9, dtype=np.float32)[best], np.eye(9, dtype=np.float32)[worse])
    assert m.parts == [(2.0, 3.0), (1.0, 1.0)] and m.value == pytest.approx(3 / 4)
    m = TopOne()
    m.update(np.eye(3)[[0, 1, 2]], np.eye(3)[[0, 2, 2]])
    assert m.parts == [(1.0, 1.0), (0.0, 1.0), (1.0, 1.0)]
    m = Cosine()
    m.update(np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert m.parts == [(1.0, 1.0), (0.0, 1.0)]


def test_one_value_per_sample_is_compared_by_its_relative_difference():
    """A cosine of one value is its sign (1 for any two positive scores: a MOS regressor off by a whole
    point read 1.000000): such rows get 1 - |a - b| / max(|a|, |b|), in the metric and in compare."""
    from onnxprune.runtime.metrics import row_cosines

    a = np.array([[3.0], [2.0], [4.0], [0.0]])
    b = np.array([[3.0], [1.0], [5.0], [0.0]])
    assert np.allclose(row_cosines(a, b), [1.0, 0.5, 0.8, 1.0])
    m = choose_metric(a.astype(np.float32), 4)
    m.update(a, b)
    assert m.value == pytest.approx(0.825)
    assert np.allclose(row_cosines(np.array([[1.0, 0.0]]), np.array([[2.0, 0.0]])), [1.0])  # rows of two: a cosine


def test_raw_heads_with_masks_or_keypoints_are_read_by_their_boxes():
    """A YOLOv8-seg head ([N, 4 + C + 32, A]: mask coefficients after the class scores) or a -pose
    head (keypoints in pixels after one score) was read by cosine, its pixel coordinates drowning the
    scores; the class rows are those in [0, 1] before the first row that is not."""
    ref = _raw([[30, 30, 20, 20, 1, 0.9], [80, 80, 10, 10, 2, 0.7]])
    extras = np.random.default_rng(0).standard_normal((1, 5, ref.shape[2])).astype(np.float32) * 3  # masks
    seg = np.concatenate([ref, extras], axis=1)
    m = choose_metric(seg, 1)
    assert isinstance(m, BoxF1) and m.layout == "raw:3" and "3 class scores" in m.reason
    moved = seg.copy()
    moved[0, 4:7] = 0.0
    moved[0, 4 + 1, 0] = 0.9  # the first box kept, the second lost; the masks' rows are not scores
    m.update(seg, moved)
    assert m.value == pytest.approx(2 / 3)
    kpts = np.concatenate([ref[:, :5], np.full((1, 6, ref.shape[2]), 40.0, np.float32)], axis=1)  # one score, keypoints
    assert choose_metric(kpts, 1).layout == "raw:1"
