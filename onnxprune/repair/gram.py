"""Second-moment statistics of consumer inputs, [x, 1]^T [x, 1], gathered in ONNX Runtime passes
over calibration data (as few passes as the memory budget allows)."""

from __future__ import annotations

import numpy as np

from ..analysis import Analysis
from ..runtime.activations import run_probe
from .features import Consumer

MEMORY_BUDGET = 1 << 30  # bytes of Gram matrices held at once


def gram_matrices(analysis: Analysis, layers: list[Consumer], data, device: str = "cpu",
                  max_samples: int = 512, rows_per_batch: int = 4096, seed: int = 0,
                  means_only: bool = False) -> tuple[dict[int, np.ndarray], dict[int, int], int]:
    """G[k] for layer k (features + 1 bias column), averaged over rows, the rows behind it, and the
    number of samples seen. With means_only, G[k] holds only its last row, E[[x, 1]] (all that
    bias compensation needs), at a fraction of the cost."""
    rng = np.random.default_rng(seed)
    grams: dict[int, np.ndarray] = {}
    rows: dict[int, int] = {}
    seen = 0
    chunk, size = [], 0
    chunks = []
    for k, layer in enumerate(layers):
        need = 8 * (layer.n_features + 1) * (1 if means_only else layer.n_features + 1)
        if chunk and size + need > MEMORY_BUDGET:
            chunks.append(chunk)
            chunk, size = [], 0
        chunk.append(k)
        size += need
    if chunk:
        chunks.append(chunk)
    for ks in chunks:
        acc = {k: np.zeros((1 if means_only else layers[k].n_features + 1, layers[k].n_features + 1)) for k in ks}
        rows_seen = {k: 0 for k in ks}
        names = sorted({layers[k].member.tensor for k in ks})

        def on_batch(outs, ks=ks, acc=acc, rows_seen=rows_seen):
            for k in ks:
                rows = layers[k].rows(outs[layers[k].member.tensor], rng, rows_per_batch)
                aug = np.concatenate([rows, np.ones((len(rows), 1))], axis=1)
                acc[k] += aug.sum(axis=0, keepdims=True) if means_only else aug.T @ aug
                rows_seen[k] += len(rows)

        seen = run_probe(analysis.graph.model, names, data, on_batch, device=device, max_samples=max_samples,
                         graph=analysis.graph)
        for k in ks:
            grams[k] = acc[k] / max(rows_seen[k], 1)
            rows[k] = rows_seen[k]
    return grams, rows, seen
