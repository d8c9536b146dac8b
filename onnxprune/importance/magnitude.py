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
        w = np.abs(analysis.graph.const_value(m.param).astype(np.float64))
        moved = np.moveaxis(w, m.axis, 0).reshape(w.shape[m.axis], -1)
        norms = (moved ** p).sum(axis=1)
        channels = analysis.channel_of(m.atoms)
        ok = channels >= 0
        sums = defaultdict(float)
        for c, v in zip(channels[ok].tolist(), norms[ok].tolist()):
            sums[c] += v
        vals = {c: v ** (1.0 / p) for c, v in sums.items()}
        scale = np.mean(list(vals.values())) or 1.0
        for c, v in vals.items():
            per_channel[c].append(v / scale)
    return per_channel


def _score(analysis: Analysis, p: int) -> dict[int, float]:
    return {c: float(np.mean(v)) for c, v in member_norms(analysis, p).items()}


@criterion("l1")
def l1(analysis: Analysis, data=None) -> dict[int, float]:
    return _score(analysis, 1)


@criterion("l2")
def l2(analysis: Analysis, data=None) -> dict[int, float]:
    return _score(analysis, 2)
