"""L1 / L2 magnitude of each channel's weights: its filters and its consumers' input columns."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..analysis import ROLE_IN, ROLE_OUT, Analysis
from . import criterion


def member_norms(analysis: Analysis, p: int, roles=(ROLE_OUT, ROLE_IN)) -> dict[int, list[float]]:
    """Per channel, one figure per member: the p-norm of its slices, each member scaled by its
    mean so that layers of different magnitude count alike."""
    per_channel: dict[int, list[float]] = defaultdict(list)
    for m in analysis.members:
        if m.role not in roles:
            continue
        w = analysis.graph.const_value(m.param)
        moved = m.slices(w)
        if moved.dtype.kind != "f":
            moved = moved.astype(np.float32)
        # Per-position sums in the tensor's own precision (no float64 copy of the whole tensor).
        norms = (np.abs(moved).sum(axis=1) if p == 1 else np.einsum("ij,ij->i", moved, moved)).astype(np.float64)
        channels = analysis.channel_of(m.atoms)
        ok = channels >= 0
        sums = np.bincount(channels[ok], weights=norms[ok], minlength=int(channels.max(initial=0)) + 1)
        present = np.unique(channels[ok])
        vals = sums[present] ** (1.0 / p)
        scale = float(vals.mean()) if len(vals) and vals.mean() > 0 else 1.0
        for c, v in zip(present.tolist(), (vals / scale).tolist()):
            per_channel[c].append(v)
    return per_channel


def _score(analysis: Analysis, p: int) -> dict[int, float]:
    return {c: sum(v) / len(v) for c, v in member_norms(analysis, p).items()}


@criterion("l1")
def l1(analysis: Analysis, data=None) -> dict[int, float]:
    return _score(analysis, 1)


@criterion("l2")
def l2(analysis: Analysis, data=None) -> dict[int, float]:
    return _score(analysis, 2)
