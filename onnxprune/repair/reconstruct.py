"""Bias compensation and least-squares reconstruction of the layers that read pruned channels,
each kept per layer only where it lowers the reconstruction error on held-out calibration rows.

Both run on the original weights, before the rewrite slices them; the rewrite then drops the
removed columns. With G = E[[x,1][x,1]^T] of the consumer's input features and T = [W, b]^T the
original weights, a candidate M (zero on removed features) has reconstruction error
E||[x,1] M - [x,1] T||^2 = tr((M - T)^T G (M - T)). Candidates:
- none: M = T on the kept features;
- bias: b' = b + sum over removed features f of E[x_f] W[:, f]  (exact for constant channels);
- lsq:  [W_k, b'] = argmin E||[x_k,1][W_k,b']^T - [x,1][W,b]^T||^2 + lam ||[W_k,b'] - [W_k,b]||^2,
  i.e. (G_kk + lam I) S = G_k: T + lam T_k, ridge towards the original weights, lam from a grid.
Each is fitted on the fit rows and scored on the held-out rows (repair/gram.py); the best one (and
the best lam) is refitted on all rows. A layer with fewer rows than features still gets a ridge
fit, its lam chosen the same way, and the report names it.

A QDQ layer (weights stored as integers behind DequantizeLinear) is repaired the same way on its
dequantized weights, and each candidate is scored as it will be stored: rounded to the weight's own
integers with its scale and zero point unchanged (saturating where a refit outgrows the range), so a
refit that rounding or saturation spoils loses to no repair. The graph stays QDQ and the activation
scales stay valid: every candidate aims at the layer's original output, which they were calibrated on.
"""

from __future__ import annotations

import numpy as np

from ..analysis import ROLE_IN, Analysis, Member
from ..progress import report
from .features import Consumer, consumers
from ..runtime.data import Dataset, input_specs, load_data
from .gram import _count_samples, gram_matrices

RIDGES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # lam / (mean diagonal of G_kk)
# A Gemm gives one row per sample: with more inputs than this and fewer samples than inputs, its
# least squares is a large underdetermined solve per ridge (an unrolled CRNN's forty 4096-input
# Gemms held 11.7 GB of Grams and ran 13 minutes on 2 cores), so such a layer gets bias
# compensation, and only its input means are gathered. The report names them.
LSQ_MAX_UNDERDETERMINED = 2048


def _kept_features(analysis: Analysis, layer: Consumer, removed) -> np.ndarray:
    kept_pos = np.zeros(len(layer.member.atoms), dtype=bool)
    kept_pos[analysis.kept_positions(layer.member.atoms, removed)] = True
    return kept_pos[layer.feature_channel]


def _error(g: np.ndarray, m: np.ndarray, t: np.ndarray) -> float:
    """Reconstruction error tr(D^T G D), D = M - T; from a means-only G (its last row, E[[x, 1]],
    all that --repair bias gathers) the squared error of the mean output, ||E[[x, 1]] D||^2."""
    d = m - t
    if g.shape[0] == 1:
        e = g @ d
        return float(np.sum(e * e))
    return float(np.sum(d * (g @ d)))


def _none(t, keep, g):
    m = t.copy()
    m[:-1][~keep] = 0.0
    return m


def _bias(t, keep, g):
    m = _none(t, keep, g)
    mean = g[-1, :-1]
    m[-1] = t[-1] + mean[~keep] @ t[:-1][~keep]
    return m


def _lsq(t, keep, g, rel):
    idx = np.concatenate([np.nonzero(keep)[0], [len(keep)]])
    gkk = g[np.ix_(idx, idx)]
    lam = rel * float(np.trace(gkk)) / len(idx)
    rhs = g[idx, :] @ t + lam * t[idx]
    try:
        sol = np.linalg.solve(gkk + lam * np.eye(len(idx)), rhs)
    except np.linalg.LinAlgError:
        sol = np.linalg.lstsq(gkk + lam * np.eye(len(idx)), rhs, rcond=None)[0]
    m = np.zeros_like(t)
    m[idx] = sol
    return m


def _candidates(methods: tuple[str, ...]) -> list[tuple[str, float | None]]:
    out = [("none", None)]
    if "bias" in methods:
        out.append(("bias", None))
    if "lsq" in methods:
        out += [("lsq", r) for r in RIDGES]
    return out


def _ridge_descent(error) -> dict:
    """Held-out errors of lsq at the ridges of RIDGES a descent visits: from the middle one towards
    whichever neighbour lowers the error, while it keeps lowering it. The held-out error over the
    ridge is U-shaped (too little ridge overfits the fit rows, too much keeps the pruned weights), so
    the descent stops at the grid's minimum after two to four solves where the whole grid takes five;
    one solve of a wide layer (a 3 x 3 conv reading 512 channels: 4609 unknowns) takes seconds."""
    errors = {}

    def at(i):
        key = ("lsq", RIDGES[i])
        if key not in errors:
            errors[key] = error(RIDGES[i])
        return errors[key]

    i = len(RIDGES) // 2
    for step in (-1, 1):
        moved = False
        while 0 <= i + step < len(RIDGES) and at(i + step) < at(i):
            i, moved = i + step, True
        if moved:
            break
    return errors


def _fit(kind, rel, t, keep, g):
    if kind == "none":
        return _none(t, keep, g)
    if kind == "bias":
        return _bias(t, keep, g)
    return _lsq(t, keep, g, rel)


def repair_consumers(analysis: Analysis, removed: set[int], data, methods: tuple[str, ...], device: str = "cpu",
                     max_samples: int = 512, memo=None) -> dict:
    """Apply the best of 'bias' / 'lsq' / nothing per layer, in place on the analysed (still unpruned)
    model. With a memo (memo.CalibMemo), each layer's Grams are gathered once per model and data."""
    layers = consumers(analysis, removed)
    if not layers:
        return {"layers": 0}
    source = data
    if not isinstance(data, Dataset):
        data = load_data(data, input_specs(analysis.graph.model))
    wide = _wide_underdetermined(layers, data, max_samples) if "lsq" in methods else set()
    means_only = wide if "lsq" in methods else True
    if memo is None:
        grams, seen = gram_matrices(analysis, layers, data, device=device, max_samples=max_samples,
                                    means_only=means_only)
    else:
        grams, seen = _memo_grams(memo, analysis, layers, source, data, device, max_samples, means_only)
    graph = analysis.graph
    chosen = {"none": 0, "bias": 0, "lsq": 0}
    gains = []
    underdetermined = []
    per_layer = []
    candidates = _candidates(methods)
    quantized = {"layers": 0, "saturated": 0}
    for k, (layer, gr) in enumerate(zip(layers, grams)):
        report("repair: refitting layers", k, len(layers))
        w = layer.weight_matrix(graph)          # (out, F)
        b = layer.bias(graph)                   # (out,)
        keep = _kept_features(analysis, layer, removed)
        t = np.concatenate([w.T, b[None, :]], axis=0)  # (F+1, out)
        stored = _as_stored(graph, layer) if layer.quantized(graph) else (lambda m: m)
        if k in wide:                           # input means only: bias compensation, not scored
            kind, rel = ("bias" if "bias" in methods else "none"), None
            errors = {}
        elif gr.rows_held_out == 0:             # too few samples to hold any out: fit and trust
            kind, rel = candidates[-1]
            errors = {}
        else:
            score = lambda kind, rel: _error(gr.held_out, stored(_fit(kind, rel, t, keep, gr.fit)), t)  # noqa: E731
            errors = {(kind, rel): score(kind, rel) for kind, rel in candidates if kind != "lsq"}
            if "lsq" in methods:
                errors.update(_ridge_descent(lambda rel: score("lsq", rel)))
            kind, rel = min(errors, key=lambda c: (errors[c], c[0] != "none"))
        if "lsq" in methods and k not in wide and gr.rows_fit + gr.rows_held_out < int(keep.sum()) + 1:
            underdetermined.append(f"{layer.member.node} ({gr.rows_fit + gr.rows_held_out} rows, "
                                   f"{int(keep.sum()) + 1} unknowns: {kind})")
        chosen[kind] += 1
        base = errors.get(("none", None))
        if base:
            gains.append(errors[(kind, rel)] / base)
        per_layer.append({"layer": layer.member.node, "repair": kind, "ridge": rel,
                          "held_out_error_ratio": None if not base else errors[(kind, rel)] / base})
        if kind == "none":
            continue
        m = _fit(kind, rel, t, keep, gr.total)
        if layer.quantized(graph):
            quantized["layers"] += 1
            quantized["saturated"] += layer.as_stored(graph, m[:-1].T, m[-1])[2]
        new_w = w.copy()
        new_w[:, keep] = m[:-1][keep].T
        if kind == "lsq":
            layer.set_weight_matrix(graph, new_w)
        added = layer.set_bias(graph, m[-1])
        if added is not None:
            _follow_new_bias(analysis, layer, added)
    report("repair: refitting layers", len(layers), len(layers))
    notes = [f"repair per layer, chosen on held-out calibration rows: "
             + ", ".join(f"{v} {k}" for k, v in chosen.items() if v)
             + (f"; held-out reconstruction error {np.median(gains):.2f}x that of no repair (median)" if gains else "")]
    if quantized["layers"]:
        notes.append(f"{quantized['layers']} QDQ layer(s) repaired: refits rounded to each weight's own integers "
                     f"(scales and zero points unchanged) and scored as stored"
                     + (f"; {quantized['saturated']} value(s) saturated at the integer range" if quantized["saturated"]
                        else ""))
    if underdetermined:
        notes.append(f"least squares with fewer calibration rows than unknowns in {len(underdetermined)} layer(s) "
                     f"({', '.join(underdetermined[:3])}{', ...' if len(underdetermined) > 3 else ''}): a ridge fit "
                     f"towards the original weights, its strength (or no lsq) chosen on held-out rows; more samples help")
    if wide:
        names = [layers[k].member.node for k in sorted(wide)]
        notes.append(f"no least squares in {len(wide)} Gemm layer(s) with more than {LSQ_MAX_UNDERDETERMINED} "
                     f"inputs and fewer calibration samples than inputs ({', '.join(names[:3])}"
                     f"{', ...' if len(names) > 3 else ''}): "
                     + ("bias compensation instead" if "bias" in methods else "left as pruned")
                     + "; more samples than inputs bring it back")
    return {"layers": sum(v for k, v in chosen.items() if k != "none"), "samples": seen, "notes": notes,
            "chosen": chosen, "per_layer": per_layer, "quantized_layers": quantized["layers"],
            "saturated": quantized["saturated"]}


def _memo_grams(memo, analysis: Analysis, layers: list[Consumer], source, data, device: str, max_samples: int,
                means_only) -> tuple[list, int]:
    """gram_matrices through the memo: only the layers no earlier run of the strategy measured."""
    from ..memo import data_key, model_fingerprint

    scope = ("gram", model_fingerprint(analysis.graph.model), data_key(source), device, max_samples)
    means = [means_only if isinstance(means_only, bool) else k in means_only for k in range(len(layers))]
    keys = [(*scope, layer.member.node, layer.member.tensor, layer.kind, layer.n_features, means[k])
            for k, layer in enumerate(layers)]
    missing = [k for k, key in enumerate(keys) if memo.peek(key) is None]
    if missing:
        got, seen = gram_matrices(analysis, [layers[k] for k in missing], data, device=device,
                                  max_samples=max_samples, means_only={i for i, k in enumerate(missing) if means[k]})
        for k, g in zip(missing, got):
            memo.put(keys[k], g)
        memo.put((*scope, "samples"), seen)
    return [memo.get(key, lambda: None) for key in keys], memo.peek((*scope, "samples"))


def _wide_underdetermined(layers: list[Consumer], data: Dataset, max_samples: int) -> set[int]:
    """Indices of the Gemm layers too wide for the samples given (LSQ_MAX_UNDERDETERMINED)."""
    candidates = [k for k, layer in enumerate(layers)
                  if layer.kind in ("gemm", "matmul") and layer.n_features > LSQ_MAX_UNDERDETERMINED]
    if not candidates:
        return set()
    samples = _count_samples(data, max_samples)
    return {k for k in candidates if samples < layers[k].n_features + 1}


def _as_stored(graph, layer: Consumer):
    """Candidate [W^T; b] as the QDQ layer will store it."""
    def stored(m: np.ndarray) -> np.ndarray:
        wm, b, _ = layer.as_stored(graph, m[:-1].T, m[-1])
        return np.concatenate([wm.T, b[None, :]], axis=0)
    return stored


def _follow_new_bias(analysis: Analysis, layer: Consumer, name: str) -> None:
    """A bias added to a layer must lose the layer's pruned output channels too."""
    weight = layer.node.input[1]
    out = next((m for m in analysis.members if m.node == layer.member.node and m.role != ROLE_IN
                and m.param == analysis.graph.resolve(weight)), None)
    if out is not None:
        if layer.kind == "recurrent":  # B [dirs, 2 * gates * H]: Wb then Rb, each laid out as W's rows
            analysis.members.append(Member(name, 1, np.tile(out.atoms, 2), out.role, out.node))
        else:
            analysis.members.append(Member(name, 0, out.atoms, out.role, out.node))
