"""Second-moment statistics of consumer inputs, [x, 1]^T [x, 1], gathered in ONNX Runtime passes
over calibration data (as few passes as the memory budget allows).

Every fourth sample is held out: its rows go to a second Gram matrix, on which repair.reconstruct
measures each candidate repair's reconstruction error, so a repair is kept only where it helps on
samples it was not fitted to. A sample's rows are found through the tensor's SampleLayout (a
sequence-first LSTM output viewed as [T * N, 2H] rows holds sample s every N rows); where a tensor
does not tell its samples apart, every fourth batch is held out whole instead."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from ..analysis import Analysis
from ..runtime.activations import run_probe
from ..runtime.data import Dataset, input_specs, load_data
from .features import Consumer

MEMORY_BUDGET = 1 << 30  # bytes of Gram matrices held at once
HOLDOUT_EVERY = 4        # sample i is held out when i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1


def row_target(n_features: int) -> int:
    """Rows a layer's fit wants: four per unknown, at least 2048, at most 16384 (the Gram costs
    rows x features^2, the largest share of repair time on big layers)."""
    return int(np.clip(4 * (n_features + 1), 2048, 16384))


@dataclass
class Grams:
    """Fit and held-out Gram matrices of one layer (features + 1 bias column, averaged over rows)."""

    fit: np.ndarray
    held_out: np.ndarray
    rows_fit: int
    rows_held_out: int

    @property
    def total(self) -> np.ndarray:
        n = self.rows_fit + self.rows_held_out
        return (self.fit * self.rows_fit + self.held_out * self.rows_held_out) / max(n, 1)


def gram_matrices(analysis: Analysis, layers: list[Consumer], data, device: str = "cpu",
                  max_samples: int = 512, seed: int = 0,
                  means_only: bool | Collection[int] = False) -> tuple[list[Grams], int]:
    """Grams for each layer and the number of samples seen. With means_only (True, or the indices of
    the layers it applies to), a Gram holds only its last row, E[[x, 1]] (all that bias compensation
    needs), at a fraction of the cost.

    A conv contributes several rows (output positions) per sample: enough that the samples given
    reach row_target, so a small calibration set still fits a layer with many inputs."""
    rng = np.random.default_rng(seed)
    graph = analysis.graph
    if not isinstance(data, Dataset):
        data = load_data(data, input_specs(graph.model))
    samples = _count_samples(data, max_samples)
    means = [means_only if isinstance(means_only, bool) else k in means_only for k in range(len(layers))]
    out: list[Grams | None] = [None] * len(layers)
    seen = 0
    chunk, size = [], 0
    chunks = []
    for k, layer in enumerate(layers):
        need = 16 * (layer.n_features + 1) * (1 if means[k] else layer.n_features + 1)
        if chunk and size + need > MEMORY_BUDGET:
            chunks.append(chunk)
            chunk, size = [], 0
        chunk.append(k)
        size += need
    if chunk:
        chunks.append(chunk)
    for ks in chunks:
        acc = {k: [np.zeros((1 if means[k] else layers[k].n_features + 1, layers[k].n_features + 1))
                   for _ in range(2)] for k in ks}
        rows_seen = {k: [0, 0] for k in ks}
        names = sorted({layers[k].member.tensor for k in ks})
        counter = [0, 0]

        def on_batch(outs, layouts, n, ks=ks, acc=acc, rows_seen=rows_seen, counter=counter):
            first, batch_no = counter[0], counter[1]
            counter[0] += n
            counter[1] += 1
            held = (np.arange(first, first + n) % HOLDOUT_EVERY) == HOLDOUT_EVERY - 1
            whole_held = batch_no % HOLDOUT_EVERY == HOLDOUT_EVERY - 1
            for k in ks:
                x = outs[layers[k].member.tensor]
                layout = layouts[layers[k].member.tensor]
                per_sample = max(1, -(-row_target(layers[k].n_features) // samples))
                for part, mask in ((0, ~held), (1, held)):
                    chosen = layout.select(x, mask)
                    if chosen is None:  # samples not told apart in this tensor: the batch goes whole
                        chosen, mask = (x, np.ones(n, bool)) if (part == 1) == whole_held else (None, mask)
                    if chosen is None or not mask.any() or chosen.size == 0:
                        continue
                    rows = layers[k].rows(chosen, rng, per_sample * int(mask.sum()))
                    aug = np.concatenate([rows, np.ones((len(rows), 1))], axis=1)
                    if means[k]:
                        acc[k][part] += aug.sum(axis=0, keepdims=True)
                    else:
                        a32 = aug.astype(np.float32)
                        acc[k][part] += (a32.T @ a32).astype(np.float64)
                    rows_seen[k][part] += len(rows)

        seen = run_probe(analysis.graph.model, names, data, on_batch, device=device, max_samples=max_samples,
                         graph=analysis.graph, layouts=True)
        for k in ks:
            (fit, hold), (rf, rh) = acc[k], rows_seen[k]
            out[k] = Grams(fit / max(rf, 1), hold / max(rh, 1), rf, rh)
    return out, seen


def _count_samples(data: Dataset, max_samples: int) -> int:
    n = 0
    for item in data.batches(64):
        n += item.size
        if n >= max_samples:
            return max_samples
    return max(n, 1)
