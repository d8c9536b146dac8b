"""LAMP (Lee et al., ICLR 2021) at channel level: a channel's squared L2 score divided by the sum of
the scores in its group that are not smaller. Scores become comparable across layers, which is
what a global ranking (--target-flops) needs."""

from __future__ import annotations

import numpy as np

from ..analysis import Analysis
from . import criterion
from .magnitude import l2


@criterion("lamp")
def lamp(analysis: Analysis, data=None) -> dict[int, float]:
    base = l2(analysis)
    out = {}
    for g in analysis.prunable_groups():
        chans = [c for c in g.channels if c in base]
        s = np.array([base[c] ** 2 for c in chans])
        order = np.argsort(s, kind="stable")
        tail = np.cumsum(s[order][::-1])[::-1]  # sum of scores >= each, in ascending order
        for rank, idx in enumerate(order):
            out[chans[idx]] = float(s[idx] / tail[rank]) if tail[rank] > 0 else 0.0
    return out
