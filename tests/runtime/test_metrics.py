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
