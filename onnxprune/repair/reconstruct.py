"""Bias compensation and least-squares reconstruction of the layers that read pruned channels.

Both run on the original weights, before the rewrite slices them; the rewrite then drops the
removed columns. With G = E[[x,1][x,1]^T] of the consumer's input features:
- bias: b' = b + sum over removed features f of E[x_f] W[:, f]  (exact for constant channels)
- lsq:  [W_k, b'] = argmin E||[x_k,1][W_k,b']^T - [x,1][W,b]^T||^2 + lam ||[W_k,b'] - [W_k,b]||^2,
  i.e. (G_kk + lam I) S = G_k: T + lam T_k, ridge towards the original weights.
"""

from __future__ import annotations

import numpy as np

from ..analysis import ROLE_IN, Analysis, Member
from ..progress import report
from .features import Consumer, consumers
from .gram import gram_matrices

RIDGE = 1e-3


def _kept_features(analysis: Analysis, layer: Consumer, removed) -> np.ndarray:
    kept_pos = np.zeros(len(layer.member.atoms), dtype=bool)
    kept_pos[analysis.kept_positions(layer.member.atoms, removed)] = True
    return kept_pos[layer.feature_channel]


def repair_consumers(analysis: Analysis, removed: set[int], data, methods: tuple[str, ...], device: str = "cpu",
                     ridge: float = RIDGE, max_samples: int = 512) -> dict:
    """Apply 'bias' and/or 'lsq' in place on the analysed (still unpruned) model."""
    layers = consumers(analysis, removed)
    if not layers:
        return {"layers": 0}
    grams, rows, seen = gram_matrices(analysis, layers, data, device=device, max_samples=max_samples,
                                      means_only="lsq" not in methods)
    graph = analysis.graph
    fitted = 0
    notes = []
    fallback = []
    for k, layer in enumerate(layers):
        report("repair: refitting layers", k, len(layers))
        g = grams[k]
        w = layer.weight_matrix(graph)          # (out, F)
        b = layer.bias(graph)                   # (out,)
        keep = _kept_features(analysis, layer, removed)
        lsq = "lsq" in methods
        if lsq and rows[k] < 2 * (int(keep.sum()) + 1):
            fallback.append(layer.member.node)  # too few rows to fit the features: bias compensation
            lsq = False
        if lsq:
            t = np.concatenate([w.T, b[None, :]], axis=0)        # (F+1, out)
            idx = np.concatenate([np.nonzero(keep)[0], [len(keep)]])
            gkk = g[np.ix_(idx, idx)]
            lam = ridge * float(np.trace(gkk)) / len(idx)
            rhs = g[idx, :] @ t + lam * t[idx]
            try:
                sol = np.linalg.solve(gkk + lam * np.eye(len(idx)), rhs)
            except np.linalg.LinAlgError:
                sol = np.linalg.lstsq(gkk + lam * np.eye(len(idx)), rhs, rcond=None)[0]
            new_w = w.copy()
            new_w[:, keep] = sol[:-1].T
            layer.set_weight_matrix(graph, new_w)
            new_b = sol[-1]
        else:  # bias compensation
            mean = g[-1, :-1]
            new_b = b + w[:, ~keep] @ mean[~keep]
        added = layer.set_bias(graph, new_b)
        if added is not None:
            _follow_new_bias(analysis, layer, added)
        fitted += 1
    report("repair: refitting layers", len(layers), len(layers))
    if fallback:
        notes.append(f"least squares needs at least twice as many calibration rows as features; "
                     f"{len(fallback)} layer(s) ({fallback[0]}{', ...' if len(fallback) > 1 else ''}) got bias "
                     f"compensation instead: give more calibration samples")
    return {"layers": fitted, "samples": seen, "notes": notes}


def _follow_new_bias(analysis: Analysis, layer: Consumer, name: str) -> None:
    """A bias added to a layer must lose the layer's pruned output channels too."""
    weight = layer.node.input[1]
    out = next((m for m in analysis.members if m.node == layer.member.node and m.role != ROLE_IN
                and m.param == analysis.graph.resolve(weight)), None)
    if out is not None:
        analysis.members.append(Member(name, 0, out.atoms, out.role, out.node))
