"""Per-layer weight sparsity: what unstructured (weight-level) pruning left behind.

A zero *weight* saves nothing in a dense runtime; a zero *filter* (every weight of an output channel)
is a channel that exact mode removes. This shows both, so a user sees how much of a mask-pruned
model's sparsity structured removal can turn into speed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..graph import ModelGraph, attr

NEAR_ZERO = 1e-3  # |w| below this share of the layer's largest |w| counts as near zero


@dataclass
class LayerSparsity:
    node: str
    op: str
    weight: str
    size: int
    zeros: float          # share of weights exactly 0 (for QDQ weights: integer at its zero point)
    near_zero: float      # share with |w| < NEAR_ZERO * max|w| (zeros included)
    zero_channels: int    # output channels whose weights are all 0
    channels: int
    quantized: bool

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _out_axis(node, w: np.ndarray) -> int:
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        return 0 if attr(node, "transB", 0) else 1
    return w.ndim - 1  # MatMul


def weight_sparsity(graph: ModelGraph) -> list[LayerSparsity]:
    """Sparsity of every Conv/ConvTranspose/Gemm/MatMul whose weight is a constant (QDQ included)."""
    layers = []
    for node in graph.model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        name = node.input[1]
        if not graph.is_constant(name):
            continue
        w = graph.const_value(name)
        if w is None or w.size == 0 or w.ndim < 2 or not np.issubdtype(w.dtype, np.floating):
            continue
        a = np.abs(w.astype(np.float64))
        top = float(a.max())
        axis = _out_axis(node, w)
        per_channel = np.moveaxis(a, axis, 0).reshape(w.shape[axis], -1)
        layers.append(LayerSparsity(
            node=node.name or f"{node.op_type}({node.output[0]})", op=node.op_type, weight=name, size=int(w.size),
            zeros=float((a == 0).mean()), near_zero=float((a < NEAR_ZERO * top).mean()) if top > 0 else 1.0,
            zero_channels=int((~per_channel.any(axis=1)).sum()), channels=int(w.shape[axis]),
            quantized=graph.is_dequantized(name)))
    return layers


def format_sparsity(layers: list[LayerSparsity], limit: int = 40) -> str:
    if not layers:
        return "weight sparsity: no layer with a constant weight"
    total = sum(x.size for x in layers)
    zeros = sum(x.zeros * x.size for x in layers) / total
    near = sum(x.near_zero * x.size for x in layers) / total
    dead = sum(x.zero_channels for x in layers)
    lines = [f"weight sparsity: {zeros:.1%} of {total} weights are 0, {near:.1%} near 0 (|w| < {NEAR_ZERO:g} x the "
             f"layer's max); {dead} all-zero output channels (exact mode removes those it can)"]
    shown = sorted(layers, key=lambda x: (-x.zeros, -x.near_zero))[:limit]
    width = max(len(x.node) for x in shown)
    lines.append(f"  {'layer':<{width}}  {'weights':>9}  {'zeros':>7}  {'near 0':>7}  zero channels")
    for x in shown:
        lines.append(f"  {x.node:<{width}}  {x.size:>9}  {x.zeros:>7.1%}  {x.near_zero:>7.1%}  "
                     f"{x.zero_channels}/{x.channels}" + ("  (QDQ)" if x.quantized else ""))
    if len(layers) > limit:
        lines.append(f"  ... and {len(layers) - limit} more layers (sparsest first; --json has all)")
    return "\n".join(lines)
