"""Consumer input features: what a Conv/Gemm/MatMul multiplies its weight with, as rows of a
matrix, so its output is rows @ W.T + b. Repairs fit weights on these rows.

A recurrent layer (LSTM/GRU/RNN) is one too: its input projection x_t W^T + Wb, all gates of both
directions stacked as outputs, is linear in each step's features; the recurrence (R, Rb) reads the
hidden state, which a restored projection restores, and is left as it is."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from ..analysis import ROLE_IN, Analysis, Member
from ..analysis.analyzer import node_label
from ..graph import ModelGraph, attr


@dataclass
class Consumer:
    """A layer reading pruned channels: its weight as a (out, features) matrix and how to get rows."""

    node: onnx.NodeProto
    member: Member
    kind: str                 # "conv", "gemm", "matmul", "recurrent"
    feature_channel: np.ndarray  # position (along the member axis) of each feature column
    kernel: tuple = ()
    add_bias: str | None = None  # a MatMul's bias: the constant of the Add after it (jax2tf, tf2onnx, Linear on [N, T, C])

    @property
    def n_features(self) -> int:
        return len(self.feature_channel)

    def weight_matrix(self, graph: ModelGraph) -> np.ndarray:
        w = graph.const_value(self.node.input[1]).astype(np.float64)
        if self.kind == "conv":
            return w.reshape(w.shape[0], -1)
        if self.kind == "recurrent":  # W [dirs, gates * H, I]: every gate of every direction an output
            return w.reshape(-1, w.shape[2])
        if self.kind == "gemm":
            return w if attr(self.node, "transB", 0) else w.T
        return w.T

    def _weight_tensor(self, graph: ModelGraph, wm: np.ndarray) -> np.ndarray:
        old = graph.const_value(self.node.input[1])
        if self.kind in ("conv", "recurrent"):
            new = wm.reshape(old.shape)
        elif self.kind == "gemm":
            new = wm if attr(self.node, "transB", 0) else wm.T
        else:
            new = wm.T
        return new.astype(old.dtype)

    def set_weight_matrix(self, graph: ModelGraph, wm: np.ndarray) -> None:
        graph.replace_const(self.node.input[1], self._weight_tensor(graph, wm))

    @property
    def bias_index(self) -> int:
        return 3 if self.kind == "recurrent" else 2

    @property
    def bias_name(self) -> str | None:
        if self.kind == "matmul":
            return self.add_bias
        i = self.bias_index
        return self.node.input[i] if len(self.node.input) > i and self.node.input[i] else None

    def quantized(self, graph: ModelGraph) -> bool:
        """Whether its weight or bias is stored as integers behind DequantizeLinear (a QDQ layer)."""
        return any(graph.is_dequantized(n) for n in (self.node.input[1], self.bias_name) if n)

    def as_stored(self, graph: ModelGraph, wm: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Weight matrix and bias as the model will store them (a QDQ weight or bias rounded to its own
        integers, graph.as_stored), and how many values saturated at the integer range."""
        w_stored, w_sat = graph.as_stored(self.node.input[1], self._weight_tensor(graph, wm))
        if self.kind == "conv":
            wm = w_stored.reshape(w_stored.shape[0], -1)
        elif self.kind == "gemm":
            wm = w_stored if attr(self.node, "transB", 0) else w_stored.T
        else:
            wm = w_stored.T
        b_sat = 0
        if self.bias_name is not None:
            old = graph.const_value(self.bias_name)
            b_stored, b_sat = graph.as_stored(self.bias_name, b.reshape(old.shape).astype(old.dtype))
            b = b_stored.reshape(-1)
        return wm.astype(np.float64), b.astype(np.float64), w_sat + b_sat

    def bias(self, graph: ModelGraph) -> np.ndarray:
        n_out = self.weight_matrix(graph).shape[0]
        if self.kind == "recurrent":  # B [dirs, 2 * gates * H]: the input bias Wb is its first half
            if self.bias_name is None:
                return np.zeros(n_out)
            b = graph.const_value(self.bias_name).astype(np.float64)
            return b[:, :b.shape[1] // 2].reshape(-1)
        if self.kind == "matmul":
            return graph.const_value(self.add_bias).astype(np.float64).reshape(-1)
        if len(self.node.input) > 2 and self.node.input[2]:
            return graph.const_value(self.node.input[2]).astype(np.float64).reshape(-1)
        return np.zeros(n_out)

    def set_bias(self, graph: ModelGraph, b: np.ndarray) -> str | None:
        """Write the bias; returns the name of a newly added bias initializer, if one was needed."""
        dtype = graph.const_value(self.node.input[1]).dtype
        i = self.bias_index
        if self.kind == "recurrent":  # only Wb, the input bias; Rb stays
            dirs = graph.const_shape(self.node.input[1])[0]
            full = (graph.const_value(self.bias_name).copy() if self.bias_name is not None
                    else np.zeros((dirs, 2 * b.size // dirs), dtype))
            full[:, :full.shape[1] // 2] = b.reshape(dirs, -1)
            b = full
        if self.bias_name is not None:
            old = graph.const_value(self.bias_name)
            if old.size == b.size:
                graph.replace_const(self.bias_name, b.reshape(old.shape).astype(old.dtype))
                return None
            raise ValueError("bias shape")
        while len(self.node.input) < i:
            self.node.input.append("")
        name = graph.add_initializer(b.astype(dtype), f"{self.node.name or self.node.input[1]}.bias")
        if len(self.node.input) == i:
            self.node.input.append(name)
        else:
            self.node.input[i] = name
        return name

    def rows(self, x: np.ndarray, rng: np.random.Generator, max_rows: int) -> np.ndarray:
        """Feature rows of input batch x, a random subset of at most max_rows."""
        if self.kind == "conv":
            return _conv_patches(x, self.node, self.kernel, rng, max_rows).astype(np.float64)
        if self.kind in ("recurrent", "matmul"):  # [T, N, I] / [N, T, C]: one row per position and sample
            rows = x.reshape(-1, x.shape[-1])
        else:
            rows = x.T if attr(self.node, "transA", 0) else x
        if len(rows) > max_rows:
            rows = rows[rng.choice(len(rows), size=max_rows, replace=False)]
        return rows.astype(np.float64)


def _conv_patches(x: np.ndarray, node, kernel, rng: np.random.Generator, max_rows: int) -> np.ndarray:
    """Input patches of a conv as rows (C, *kernel flattened), at most max_rows of them drawn at
    random output positions; only the drawn patches are gathered. This runs per layer and batch of
    every calibration pass, so the padded input and its window view are built by hand (np.pad and
    sliding_window_view cost more than the copy on small maps), channels last when patches are
    drawn (each patch is then a few contiguous runs)."""
    kernel = [int(k) for k in kernel]
    nd = len(kernel)
    strides = attr(node, "strides", [1] * nd)
    dil = attr(node, "dilations", [1] * nd)
    pads = attr(node, "pads", [0] * (2 * nd))
    n, c, size = x.shape[0], x.shape[1], x.shape[2:]
    padded = [size[i] + pads[i] + pads[i + nd] for i in range(nd)]
    out_dims = [(padded[i] - (kernel[i] - 1) * dil[i] - 1) // strides[i] + 1 for i in range(nd)]
    inner = tuple(slice(pads[i], pads[i] + size[i]) for i in range(nd))
    total = n * int(np.prod(out_dims))
    if total <= max_rows:  # every position, in (sample, *position) order
        xp = np.zeros((n, c, *padded), dtype=x.dtype)
        xp[(slice(None), slice(None)) + inner] = x
        st = xp.strides[2:]
        win = np.lib.stride_tricks.as_strided(  # (N, C, *positions, *kernel offsets), a view
            xp, (n, c, *out_dims, *kernel), xp.strides[:2] + tuple(st[i] * strides[i] for i in range(nd))
            + tuple(st[i] * dil[i] for i in range(nd)), writeable=False)
        return win.transpose(0, *range(2, 2 + nd), 1, *range(2 + nd, 2 + 2 * nd)).reshape(total, -1)
    xp = np.zeros((n, *padded, c), dtype=x.dtype)
    xp[(slice(None),) + inner] = np.moveaxis(x, 1, -1)
    st = xp.strides[1:-1]
    win = np.lib.stride_tricks.as_strided(  # (N, *positions, *kernel offsets, C), a view
        xp, (n, *out_dims, *kernel, c), (xp.strides[0],) + tuple(st[i] * strides[i] for i in range(nd))
        + tuple(st[i] * dil[i] for i in range(nd)) + (xp.strides[-1],), writeable=False)
    picks = rng.choice(total, size=max_rows, replace=False)
    gathered = win[np.unravel_index(picks, (n, *out_dims))]  # (rows, *kernel, C)
    return gathered.transpose(0, nd + 1, *range(1, nd + 1)).reshape(max_rows, -1)


def _matmul_bias(graph, node, n_out: int) -> str | None:
    """The constant [M] (or [1, M]) added to a MatMul's output by the only node that reads it."""
    users = graph.users(node.output[0])
    if len(users) != 1 or users[0].op_type != "Add" or node.output[0] in graph.graph_outputs:
        return None
    add = users[0]
    other = add.input[1] if add.input[0] == node.output[0] else add.input[0]
    if not graph.is_constant(other) or graph.is_dequantized(other) or graph.resolve(other) != other:
        return None
    shape = tuple(graph.const_shape(other) or ())
    if int(np.prod(shape or (0,))) != n_out or (shape and shape[-1] != n_out) or len(graph.users(other)) != 1:
        return None
    if other not in graph.initializers and other not in graph.constant_nodes:
        return None  # computed (folded) values are not written back here
    return other


def consumers(analysis: Analysis, removed: set[int], max_features: int = 8192) -> list[Consumer]:
    """Layers whose input loses channels and whose features can be fitted (plain convs, Gemm, MatMul)."""
    graph = analysis.graph
    nodes = {node_label(n): n for n in graph.model.graph.node}
    out = []
    for m in analysis.members:
        if m.role != ROLE_IN or not m.tensor or m.node not in nodes:
            continue  # layers inside If/Loop/Scan bodies: their inputs cannot be probed
        if len(analysis.removed_positions(m.atoms, removed)) == 0:
            continue
        node = nodes[m.node]
        if graph.resolve(node.input[1]) != m.param:
            continue
        w_shape = graph.const_shape(m.param)
        if node.op_type == "Conv":
            # VALID is no padding (keras2onnx writes it for every conv), what the patches assume
            # without a pads attribute; SAME_* pads by the input size: not followed.
            if attr(node, "group", 1) != 1 or attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID",
                                                                                         "VALID"):
                continue
            spatial = int(np.prod(w_shape[2:]))
            feature_channel = np.repeat(np.arange(w_shape[1]), spatial)
            kind = "conv"
            kernel = tuple(w_shape[2:])
        elif node.op_type == "Gemm":
            if attr(node, "alpha", 1.0) != 1.0 or attr(node, "beta", 1.0) != 1.0:
                continue
            feature_channel = np.arange(len(m.atoms))
            kind = "gemm"
            kernel = ()
        elif node.op_type in ("LSTM", "GRU", "RNN"):
            if m.axis != 2 or len(w_shape) != 3 or any(graph.is_dequantized(n) for n in node.input[1:4] if n):
                continue
            feature_channel = np.arange(len(m.atoms))
            kind = "recurrent"
            kernel = ()
        elif node.op_type == "MatMul" and len(w_shape) == 2 and m.axis == 0:
            # x [.., K] @ W [K, M]; the intercept goes into the Add of a constant [M] that alone reads
            # the product (a Dense layer); without one there is nowhere to put it.
            add_bias = _matmul_bias(graph, node, w_shape[1])
            if add_bias is None:
                continue
            feature_channel = np.arange(len(m.atoms))
            layer = Consumer(node, m, "matmul", feature_channel, (), add_bias)
            if len(feature_channel) <= max_features:
                out.append(layer)
            continue
        else:
            continue
        layer = Consumer(node, m, kind, feature_channel, kernel)
        bias = layer.bias_name
        if bias is not None:
            if kind == "recurrent":  # B [dirs, 2 * gates * H]
                fits = tuple(graph.const_shape(bias) or ()) == (w_shape[0], 2 * w_shape[1])
            else:
                fits = int(np.prod(graph.const_shape(bias) or (0,))) == w_shape[
                    0 if node.op_type == "Conv" or attr(node, "transB", 0) else 1]
            if not graph.is_constant(bias) or not fits:
                continue  # a broadcast or computed bias cannot take per-output corrections
        if len(feature_channel) > max_features:
            continue
        out.append(layer)
    return out
