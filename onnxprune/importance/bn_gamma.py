"""|gamma| of the BatchNormalization scales a channel passes through (Network Slimming); channels
with no BN fall back to L2 magnitude."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..analysis import Analysis
from ..analysis.analyzer import node_label
from . import criterion
from .magnitude import l2


@criterion("bn-gamma")
def bn_gamma(analysis: Analysis, data=None) -> dict[int, float]:
    scales = {}
    for n in analysis.graph.model.graph.node:
        if n.op_type == "BatchNormalization":
            scales[(node_label(n), analysis.graph.resolve(n.input[1]))] = True
    per_channel = defaultdict(list)
    for m in analysis.members:
        if (m.node, m.param) not in scales:
            continue
        gamma = np.abs(analysis.graph.const_value(m.param).astype(np.float64))
        for c, v in zip(analysis.channel_of(m.atoms).tolist(), gamma.tolist()):
            if c >= 0:
                per_channel[c].append(v)
    fallback = l2(analysis)
    return {c: float(np.mean(per_channel[c])) if c in per_channel else fallback[c] for c in fallback}
