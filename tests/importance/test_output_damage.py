"""Output damage (--allocation sensitivity) weighs a detection head's scores as much as its boxes."""

from __future__ import annotations

import numpy as np

from onnxprune.importance.output_sensitivity import output_damage


def _raw_head(rng) -> np.ndarray:
    """[N, 4 + C, A]: box coordinates in pixels, sigmoid class scores, a few confident anchors."""
    boxes = rng.uniform(0, 320, (2, 4, 400))
    scores = rng.uniform(0, 0.05, (2, 6, 400))
    scores[:, 2, :5] = 0.9
    return np.concatenate([boxes, scores], axis=1).astype(np.float32)


def test_a_dead_detector_is_damage_though_its_boxes_barely_move():
    rng = np.random.default_rng(0)
    ref = _raw_head(rng)
    dead = ref.copy()
    dead[:, 4:] *= 0.1                     # every score below any threshold: nothing detected
    shifted = ref.copy()
    shifted[:, :4] += rng.normal(0, 8, shifted[:, :4].shape)  # boxes off by a few pixels
    assert output_damage([ref], [dead]) > output_damage([ref], [shifted])
    whole = lambda a, b: float(np.sum((b - a) ** 2) / np.sum((a - a.mean()) ** 2))  # noqa: E731
    assert whole(ref, dead) < whole(ref, shifted)  # what the whole head's variance would have said


def test_other_outputs_are_scaled_whole():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (8, 10))
    out = logits + rng.normal(0, 0.3, logits.shape)
    expected = np.sum((out - logits) ** 2) / np.sum((logits - logits.mean()) ** 2)
    assert np.isclose(output_damage([logits], [out]), expected)
