"""Output damage (--allocation sensitivity) weighs a detection head's scores as much as its boxes."""

from __future__ import annotations

import numpy as np
import pytest

from onnxprune.importance.output_sensitivity import output_damage
from onnxprune.runtime.metrics import detection_layout


def _raw_head(rng) -> np.ndarray:
    """[N, 4 + C, A]: box coordinates in pixels, sigmoid class scores, a few confident anchors."""
    boxes = rng.uniform(0, 320, (2, 4, 400))
    scores = rng.uniform(0, 0.05, (2, 6, 400))
    scores[:, 2, :5] = 0.9
    return np.concatenate([boxes, scores], axis=1).astype(np.float32)


@pytest.mark.parametrize("layout", ["raw", "objectness"])
def test_a_dead_detector_is_damage_though_its_boxes_barely_move(layout):
    """Raw [N, 4+C, A] (YOLOv8/YOLO11) and, transposed, [N, A, 5+C] (YOLOv5/YOLOX: the first score
    is the objectness) alike."""
    rng = np.random.default_rng(0)
    ref = _raw_head(rng)
    dead = ref.copy()
    dead[:, 4:] *= 0.1                     # every score below any threshold: nothing detected
    shifted = ref.copy()
    shifted[:, :4] += rng.normal(0, 8, shifted[:, :4].shape)  # boxes off by a few pixels
    if layout == "objectness":
        ref, dead, shifted = (np.ascontiguousarray(a.transpose(0, 2, 1)) for a in (ref, dead, shifted))
        assert detection_layout(ref) == "objectness"
    assert output_damage([ref], [dead]) > output_damage([ref], [shifted])
    whole = lambda a, b: float(np.sum((b - a) ** 2) / np.sum((a - a.mean()) ** 2))  # noqa: E731
    assert whole(ref, dead) < whole(ref, shifted)  # what the whole head's variance would have said


def test_other_outputs_are_scaled_whole():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (8, 10))
    out = logits + rng.normal(0, 0.3, logits.shape)
    expected = np.sum((out - logits) ** 2) / np.sum((logits - logits.mean()) ** 2)
    assert np.isclose(output_damage([logits], [out]), expected)


def test_a_yolox_heads_class_scores_count_where_there_is_an_object():
    """[N, A, 5+C]: class scores are conditional on an object; at background anchors they may move
    anywhere without changing a detection. Objectness sinking at the objects is the damage."""
    rng = np.random.default_rng(2)
    ref = np.concatenate([rng.uniform(0, 320, (2, 400, 4)), np.full((2, 400, 1), 0.01),
                          rng.uniform(0, 1, (2, 400, 6))], axis=2).astype(np.float32)
    ref[:, :5, 4] = 0.9                                          # five objects per image
    assert detection_layout(ref) == "objectness"
    free = ref.copy()
    free[:, 5:, 5:] = rng.uniform(0, 1, free[:, 5:, 5:].shape)   # background anchors' class scores redrawn
    sunk = ref.copy()
    sunk[:, :5, 4] = 0.2                                         # nothing detected any more
    assert output_damage([ref], [sunk]) > output_damage([ref], [free])
