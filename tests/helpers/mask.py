"""Structured mask pruning as training frameworks leave it: chosen channels' filters, biases and
per-channel parameters set to zero, the model otherwise unchanged."""

from __future__ import annotations

import numpy as np

from onnxprune.analysis import ROLE_IN, Analysis
from onnxprune.analysis.oracle import zero_positions


def mask_channels(analysis: Analysis, channels: set[int]) -> None:
    """Zero every non-consumer member position of `channels` in the analysed model, in place."""
    zero_positions(analysis.graph, analysis, channels, lambda role: role != ROLE_IN)


def pick_channels(analysis: Analysis, rng: np.random.Generator, fraction: float = 0.3) -> set[int]:
    chosen = set()
    for g in analysis.exact_groups():  # exact mode never takes lossy-only channels (a LayerNorm's stream)
        k = max(1, int(len(g.channels) * fraction))
        chosen |= {int(c) for c in rng.choice(g.channels, size=min(k, len(g.channels) - 1), replace=False)}
    return chosen
