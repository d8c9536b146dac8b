"""Reconstruction importance (needs --calib): how much of its consumers' output a channel carries
beyond its mean, the quantity channel-pruning methods that refit the next layer minimise (He et al.
2017, ThiNet). For a consumer with weight columns W_c over the channel's input features (its
kernel window) and their covariance C_cc on calibration data, removing channel c alone changes the
consumer's output by E||W_c (x_c - E x_c)||^2 = tr(W_c C_cc W_c^T) after bias compensation. Each
consumer's figures are divided by its output variance, so a channel's score is the share of its
consumers' signal it carries; channels read by no plain Conv/Gemm (or MatMul with its bias Add) fall back to their l2 norm.

Unlike weight norms this sees the data: a large filter that fires on nothing scores low, and so
does one whose output the other kept channels already carry only when correlated features are
refitted (lsq repair); the score is the one-channel term of that greedy selection."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..analysis import Analysis
from ..errors import ConfigError
from . import criterion
from .magnitude import member_norms

ROWS_PER_SAMPLE = 64


@criterion("recon")
def reconstruction(analysis: Analysis, data=None, device: str = "cpu") -> dict[int, float]:
    if data is None:
        raise ConfigError("criterion 'recon' needs calibration data: pass --calib data.npz (or a .py loader)")
    from ..repair.features import consumers
    from ..runtime.activations import run_probe

    everything = {c for g in analysis.prunable_groups() for c in g.channels}
    layers = consumers(analysis, everything, max_features=1 << 30)
    rng = np.random.default_rng(0)
    # per layer: sums of x, of per-channel blocks x_c x_c^T (C, k, k), and the row count
    acc = [None] * len(layers)

    def on_batch(outs):
        for i, layer in enumerate(layers):
            x = outs[layer.member.tensor]
            rows = layer.rows(x, rng, ROWS_PER_SAMPLE * len(x))
            channels = len(layer.member.atoms)
            blocks = rows.reshape(len(rows), channels, -1)
            s1 = blocks.sum(axis=0)
            per_channel = blocks.transpose(1, 2, 0)             # (C, k, rows): a stack of matrices
            s2 = per_channel @ per_channel.transpose(0, 2, 1)    # BLAS; einsum here took 10x as long
            if acc[i] is None:
                acc[i] = [s1, s2, len(rows)]
            else:
                acc[i][0] += s1
                acc[i][1] += s2
                acc[i][2] += len(rows)

    names = sorted({layer.member.tensor for layer in layers})
    if names:
        run_probe(analysis.graph.model, names, data, on_batch, device=device, graph=analysis.graph)
    per_channel: dict[int, list[float]] = defaultdict(list)
    graph = analysis.graph
    for layer, (s1, s2, n) in zip(layers, acc):
        mean = s1 / n
        cov = s2 / n - np.einsum("ck,cl->ckl", mean, mean)
        w = layer.weight_matrix(graph)                    # (out, C * k)
        wc = w.reshape(w.shape[0], cov.shape[0], -1)      # (out, C, k)
        energy = np.einsum("ock,ckl,ocl->c", wc, cov, wc)  # tr(W_c C_cc W_c^T) per channel
        total = float(energy.sum()) or 1.0
        channels = analysis.channel_of(layer.member.atoms)
        for c, e in zip(channels.tolist(), (energy / total).tolist()):
            if c >= 0:
                per_channel[c].append(max(e, 0.0))
    scores = {c: float(np.sum(v)) for c, v in per_channel.items()}
    fallback = {c: float(np.mean(v)) for c, v in member_norms(analysis, 2).items()}
    for g in analysis.prunable_groups():
        missing = [c for c in g.channels if c not in scores]
        if missing:  # no fitted consumer: rank those by weight norm, below every measured channel
            floor = min((scores[c] for c in g.channels if c in scores), default=1.0)
            top = max((fallback.get(c, 0.0) for c in missing), default=1.0) or 1.0
            for c in missing:
                scores[c] = floor * fallback.get(c, 0.0) / top
    return scores
