"""Activation-based importance: a channel's expected contribution to its consumers,
E|x_c| * ||W[:, c]||, from calibration data (needs --calib)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..analysis import ROLE_IN, Analysis
from ..errors import ConfigError
from . import criterion


@criterion("activation")
def activation(analysis: Analysis, data=None, device: str = "cpu") -> dict[int, float]:
    if data is None:
        raise ConfigError("criterion 'activation' needs calibration data: give calib (an .npz, a .py loader or a folder of images)")
    from ..runtime.activations import mean_abs_per_position, run_probe

    # Tensors inside If/Loop/Scan bodies cannot be probed: their readers score by weights alone.
    readers = [m for m in analysis.members if m.role == ROLE_IN and m.tensor
               and m.tensor not in analysis.graph.body_names]
    names = sorted({m.tensor for m in readers})
    sums = {n: None for n in names}
    count = [0]

    def on_batch(outs):
        for n in names:
            tc = analysis.tensors[n]
            v = mean_abs_per_position(outs[n], tc.axis)
            sums[n] = v if sums[n] is None else sums[n] + v
        count[0] += 1

    run_probe(analysis.graph.model, names, data, on_batch, device=device, graph=analysis.graph)
    per_channel = defaultdict(list)
    for m in readers:
        act = sums[m.tensor] / max(count[0], 1)
        w = analysis.graph.const_value(m.param).astype(np.float64)
        col = np.sqrt((m.slices(w) ** 2).sum(axis=1))
        contrib = act * col
        channels = analysis.channel_of(m.atoms)
        acc = defaultdict(float)
        for c, v in zip(channels.tolist(), contrib.tolist()):
            if c >= 0:
                acc[c] += v
        scale = np.mean(list(acc.values())) or 1.0
        for c, v in acc.items():
            per_channel[c].append(v / scale)
    scores = {c: float(np.mean(v)) for c, v in per_channel.items()}
    for g in analysis.prunable_groups():  # channels no consumer reads cost nothing to remove
        for c in g.channels:
            scores.setdefault(c, 0.0)
    return scores
