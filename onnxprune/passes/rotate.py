"""SliceGPT's rotation of a pre-norm transformer's residual stream (Ashkboos et al., ICLR 2024), so
that slicing the stream drops the directions the calibration data uses least.

Computational invariance, in four steps on a copy of the model (docs/TRANSFORMERS.md):
1. every writer of the stream (embedding tables, projections writing it, their biases, position
   embeddings, a class token) has its mean over the hidden axis subtracted, so the stream is
   centred at every token and each LayerNorm's mean subtraction does nothing;
2. each LayerNorm's scale and shift are folded into the projections that read its output
   (W <- sqrt(d) diag(gamma) W, b <- b + beta W), and the LayerNorm becomes
   x / sqrt(ReduceSumSquare(x) + d * eps), an RMS norm any orthogonal Q commutes with;
3. Q: the eigenvectors of the stream's second moment at every norm input on the calibration data
   (one Q for the whole stream; SliceGPT takes one per block with a rotation on each shortcut);
4. every writer is multiplied by Q and every reader by Q^T along the hidden axis.
The rotated model is checked against the original at exact-mode tolerance before it replaces it;
the select pass then ranks the stream's channels by their eigenvalues, so `--ratio` drops the
least-used directions. A sum of squares (not a mean) keeps the norm's value when channels go.

Post-norm blocks (BERT: the LayerNorm's output is the residual) are refused: the scale there
multiplies the stream itself, and no rotation commutes with a diagonal scale."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from ..analysis import ROLE_IN, ROLE_OUT, Analysis, Member, analyze
from ..analysis.analyzer import node_label
from ..errors import OnnxPruneError
from ..graph import ModelGraph, attr
from .base import Pass, PassResult

EXACT_ATOL, EXACT_RTOL = 1e-4, 1e-3  # exact-mode validation's bounds (validation.py)
_PATH_OPS = {"Reshape", "Transpose", "Identity", "Gather", "Squeeze", "Unsqueeze", "Flatten", "Dropout", "Slice"}
NO_STREAM = "no residual stream normalized by LayerNorm"
_READ_PATH_OPS = _PATH_OPS | {"ReduceMean"}  # a reader's path from a norm: a mean over tokens commutes too
_WRITER_OPS = {"Gather", "Gemm", "MatMul", "Conv", "Add", "Expand"}


class NotRotatable(Exception):
    """Why a stream cannot be rotated (a note in the report; the run goes on unrotated)."""


@dataclass
class Norm:
    """A LayerNorm over the stream's last axis: one LayerNormalization node, or the ops that write it
    out (ReduceMean or, on a [B, L, C] tensor, GlobalAveragePool for the mean and the variance)."""

    nodes: list[str]  # labels of the nodes the RMS norm replaces, the first one reading x
    x: str
    y: str
    eps: float
    gamma: str | None
    beta: str | None
    readers: list[Member] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.nodes[0]


@dataclass
class StreamPlan:
    """One residual stream: its width, LayerNorms (with the readers of each), writers, and for
    every member the canonical coordinate of each of its positions."""

    group: object
    width: int
    norms: list[Norm]
    writers: list[Member]
    readers: list[Member]
    order: dict  # id(member) or tensor name -> canonical index per position
    entries: list = field(default_factory=list)  # tensors given an identity MatMul as their writer (open_entries)

    def perm(self, key) -> np.ndarray:
        return self.order[key]


def _stream(analysis: Analysis):
    """The prunable group some statistic normalizes (the residual stream), and those statistics."""
    streams = []
    for g in analysis.prunable_groups():
        chans = set(g.channels)
        stats = [n for n, atoms in analysis.statistics
                 if set(analysis.channel_of(atoms).tolist()) <= chans and len(atoms)]
        if stats:
            streams.append((g, stats))
    if not streams:
        raise NotRotatable(NO_STREAM)
    if len(streams) > 1:
        raise NotRotatable(f"{len(streams)} normalized streams; one is rotated at a time")
    return streams[0]


def _norms(analysis: Analysis, stats) -> list[Norm]:
    """Each statistic over the stream read as a LayerNorm over its last axis, or NotRotatable."""
    graph = analysis.graph
    norms, claimed = [], set()
    for n in stats:
        if node_label(n) in claimed:
            continue
        if n.op_type == "LayerNormalization":
            norm = _layer_norm_node(graph, n)
        elif n.op_type in ("ReduceMean", "GlobalAveragePool"):
            norm = _written_out_norm(graph, n)
        else:
            raise NotRotatable(f"{node_label(n)}: {n.op_type} over the stream (only a LayerNorm is folded)")
        tc = analysis.tensors[norm.x]
        rank = graph.rank(norm.x)
        if rank is None or tc.axis != rank - 1:
            raise NotRotatable(f"{norm.label}: LayerNorm not over the last axis alone")
        claimed |= set(norm.nodes)
        norms.append(norm)
    return norms


def _layer_norm_node(graph: ModelGraph, n: onnx.NodeProto) -> Norm:
    rank = graph.rank(n.input[0])
    if rank is None or attr(n, "axis", -1) % rank != rank - 1:
        raise NotRotatable(f"{node_label(n)}: LayerNormalization not over the last axis alone")
    if any(o for o in n.output[1:]):
        raise NotRotatable(f"{node_label(n)}: LayerNormalization statistics outputs are used")
    params = [graph.resolve(n.input[i]) if len(n.input) > i and n.input[i] else None for i in (1, 2)]
    return Norm([node_label(n)], n.input[0], n.output[0], float(attr(n, "epsilon", 1e-5)), *params)


def _mean_over_last(graph: ModelGraph, n: onnx.NodeProto | None, x: str | None = None) -> bool:
    """n takes the mean of x over its last axis alone, keeping it (ReduceMean, or GlobalAveragePool
    on a rank-3 [B, L, C] tensor, as tf2onnx writes Keras' mean over the trailing axis)."""
    if n is None or (x is not None and n.input[0] != x):
        return False
    rank = graph.rank(n.input[0])
    if not rank:
        return False
    if n.op_type == "GlobalAveragePool":
        return rank == 3
    if n.op_type != "ReduceMean" or not attr(n, "keepdims", 1):
        return False
    axes = attr(n, "axes")
    if axes is None and len(n.input) > 1 and n.input[1]:
        value = graph.const_value(n.input[1])
        axes = None if value is None else value.reshape(-1).tolist()
    return axes is not None and sorted(int(a) % rank for a in axes) == [rank - 1]


def _scalar(graph: ModelGraph, name: str) -> float | None:
    v = graph.const_value(name)
    return float(v.reshape(-1)[0]) if v is not None and v.size == 1 else None


def _written_out_norm(graph: ModelGraph, mean: onnx.NodeProto) -> Norm:
    """mean = Mean(x); d = x - mean; var = Mean(d ** 2 or d * d); y = d / Sqrt(var + eps), then
    optionally * gamma and + beta (per channel): the LayerNorm paddle2onnx, older exporters and
    tf2onnx write out. Every intermediate is read only inside the pattern."""
    label = node_label(mean)
    outputs = graph.graph_outputs

    def only_user(t, ops):
        users = {id(u): u for u in graph.users(t)}
        if len(users) != 1 or t in outputs:
            return None
        (u,) = users.values()
        return u if u.op_type in ops else None

    def other(node, t):
        return node.input[1] if node.input[0] == t else node.input[0]

    x = mean.input[0]
    if not _mean_over_last(graph, mean):
        raise NotRotatable(f"{label}: {mean.op_type} over the stream is not a LayerNorm's mean over the last axis")
    sub = only_user(mean.output[0], {"Sub"})
    if sub is None or list(sub.input) != [x, mean.output[0]]:
        raise NotRotatable(f"{label}: {mean.op_type} over the stream is not the mean of a LayerNorm written out")
    d = sub.output[0]
    users = list({id(u): u for u in graph.users(d)}.values())
    sq = next((u for u in users if (u.op_type == "Pow" and u.input[0] == d and _scalar(graph, u.input[1]) == 2.0)
               or (u.op_type == "Mul" and list(u.input) == [d, d])), None)
    var = only_user(sq.output[0], {"ReduceMean", "GlobalAveragePool"}) if sq is not None else None
    add = only_user(var.output[0], {"Add"}) if _mean_over_last(graph, var, sq.output[0] if sq else None) else None
    eps = _scalar(graph, other(add, var.output[0])) if add is not None else None
    sqrt = only_user(add.output[0], {"Sqrt"}) if eps is not None else None
    # d / std, or d * Reciprocal(std) (tf2onnx)
    inv = only_user(sqrt.output[0], {"Div", "Reciprocal"}) if sqrt is not None else None
    div = None
    if inv is not None and inv.op_type == "Div" and list(inv.input) == [d, sqrt.output[0]]:
        div, inv = inv, None
    elif inv is not None and inv.op_type == "Reciprocal":
        div = only_user(inv.output[0], {"Mul"})
        div = div if div is not None and sorted(div.input) == sorted([d, inv.output[0]]) else None
    if len(users) != 2 or d in outputs or div is None or div not in users:
        raise NotRotatable(f"{label}: {mean.op_type} over the stream is not the mean of a LayerNorm written out "
                           f"(x - mean, its mean square, + eps, Sqrt, Div)")
    nodes, y = [mean, sub, sq, var, add, sqrt] + ([inv] if inv is not None else []) + [div], div.output[0]
    width = graph.static_shape(x)
    width = width[-1] if width else None
    found = {}
    for op in ("Mul", "Add"):  # gamma, then beta, each optional
        nxt = only_user(y, {op})
        value = graph.const_value(other(nxt, y)) if nxt is not None else None
        if value is None or width is None or value.size != width or value.shape[-1] != width:
            continue
        nodes.append(nxt)
        found[op] = graph.resolve(other(nxt, y))
        y = nxt.output[0]
    gamma, beta = found.get("Mul"), found.get("Add")
    return Norm([node_label(n) for n in nodes], x, y, eps, gamma, beta)


def plan_rotation(analysis: Analysis) -> StreamPlan:
    """The residual stream of `analysis` (a prunable group normalized by LayerNorms only), or
    NotRotatable saying why not."""
    graph = analysis.graph
    g, stats = _stream(analysis)
    index = {c: k for k, c in enumerate(g.channels)}
    order = {}

    def canon(key, atoms):
        ch = analysis.channel_of(atoms)
        if len(atoms) != g.size or (ch < 0).any() or len(set(ch.tolist())) != g.size:
            raise NotRotatable(f"'{key}' does not hold each of the {g.size} stream channels once")
        order[key] = np.array([index[c] for c in ch.tolist()], dtype=np.int64)

    norms = {}
    for norm in _norms(analysis, stats):
        canon(norm.x, analysis.tensors[norm.x].atoms)
        norms[norm.y] = norm
    in_norms = {lab for norm in norms.values() for lab in norm.nodes}
    writers, readers = [], []
    for m in g.members:
        if m.node in in_norms:
            continue
        if m.role == ROLE_IN:
            norm = _norm_read(graph, m, norms)
            norm.readers.append(m)
            readers.append(m)
        else:
            writers.append(m)
        canon(id(m), m.atoms)
    _check_members(graph, writers, readers)
    for norm in norms.values():
        _check_pre_norm(graph, norm)
    return StreamPlan(g, g.size, list(norms.values()), writers, readers, order)


def _nodes_by_label(graph: ModelGraph) -> dict:
    return {node_label(n): n for n in graph.model.graph.node}


def _check_members(graph, writers, readers) -> None:
    nodes = _nodes_by_label(graph)
    for m in writers:
        n = nodes.get(m.node)
        if n is None or n.op_type not in _WRITER_OPS or (m.role != ROLE_OUT and n.op_type not in ("Add", "Expand")):
            raise NotRotatable(f"{m.node}: '{m.param}' scales the stream ({n.op_type if n else '?'}), "
                               f"which no rotation commutes with")
    for m in readers:
        n = nodes[m.node]
        w = graph.const_value(m.param)
        if n.op_type == "Conv":
            # A Conv reading the stream as its input channels (the stream turned back into an image by
            # Reshape/Transpose): its weight's axis 1 folds and rotates like a MatMul's rows. beta
            # folds into its bias only where every output sums the whole kernel: no padding.
            if w is None or m.axis != 1 or attr(n, "group", 1) != 1 or any(attr(n, "pads", []) or [0]) \
                    or attr(n, "auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
                raise NotRotatable(f"{m.node}: a padded or grouped Conv reads the stream")
            continue
        if n.op_type not in ("Gemm", "MatMul") or w is None or w.ndim != 2:
            raise NotRotatable(f"{m.node}: a {n.op_type} reader of the stream is not folded")
        if n.op_type == "Gemm" and attr(n, "alpha", 1.0) != 1.0:
            raise NotRotatable(f"{m.node}: Gemm with alpha != 1 reads the stream")


def _norm_read(graph, m: Member, norms: dict) -> Norm:
    """The LayerNorm whose output the reader `m` reads, through shape-only ops."""
    name = m.tensor
    while name not in norms:
        p = graph.producer.get(name)
        if p is None or p.op_type not in _READ_PATH_OPS:
            raise NotRotatable(f"{m.node} reads the stream not through a LayerNorm")
        name = p.input[0]
    return norms[name]


def _check_pre_norm(graph, norm: Norm) -> None:
    """The norm's output reaches only its readers (and Shape ops): a pre-norm block."""
    reader_nodes = {m.node for m in norm.readers}
    todo, seen = [norm.y], set()
    while todo:
        t = todo.pop()
        for n in graph.users(t):
            if id(n) in seen:
                continue
            seen.add(id(n))
            if node_label(n) in reader_nodes or n.op_type == "Shape":
                continue
            if n.op_type in _READ_PATH_OPS and n.input[0] == t:
                todo.extend(n.output)
                continue
            raise NotRotatable(f"{norm.label}: its output is also read by {node_label(n)} ({n.op_type}): "
                               f"a post-norm block, whose scale multiplies the stream itself")


def _along(value: np.ndarray, axis: int, matrix: np.ndarray) -> np.ndarray:
    """new[..., j, ...] = sum_i value[..., i, ...] * matrix[i, j] along `axis`."""
    out = np.tensordot(value.astype(np.float64), matrix, axes=([axis], [0]))
    return np.moveaxis(out, -1, axis)


def invariant_form(graph: ModelGraph, plan: StreamPlan) -> list[str]:
    """Steps 1 and 2 (centre the writers, fold each LayerNorm into its readers and make it an RMS
    norm), edited into graph.model. Returns the names of the norm inputs (the stream)."""
    d = plan.width
    for m in plan.writers:
        v = graph.const_value(m.param).astype(np.float64)
        graph.replace_const(m.param, v - v.mean(axis=m.axis, keepdims=True))
    nodes = _nodes_by_label(graph)
    model = graph.model
    opset = graph.opset
    inputs = []
    for norm in plan.norms:
        gamma = graph.const_value(norm.gamma).astype(np.float64).reshape(-1) if norm.gamma else np.ones(d)
        beta = graph.const_value(norm.beta).astype(np.float64).reshape(-1) if norm.beta else np.zeros(d)
        ln_perm = plan.perm(norm.x)
        g_canon, b_canon = np.empty(d), np.empty(d)
        g_canon[ln_perm], b_canon[ln_perm] = gamma, beta
        for m in norm.readers:
            perm = plan.perm(id(m))
            w = graph.const_value(m.param).astype(np.float64)
            shape = [1] * w.ndim
            shape[m.axis] = d
            scale = (np.sqrt(d) * g_canon[perm]).reshape(shape)
            shift = np.tensordot(b_canon[perm], w, axes=([0], [m.axis]))
            # one value per output: a Conv's sums its kernel window (no padding: _check_members)
            shift = shift.reshape(len(shift), -1).sum(axis=1) if shift.ndim > 1 else shift
            graph.replace_const(m.param, w * scale)
            if np.any(shift):
                _add_to_bias(graph, nodes[m.node], shift)
        dtype = graph.const_value(norm.gamma).dtype if norm.gamma else np.float32
        x, y, tag = norm.x, norm.y, norm.y
        axes = graph.add_initializer(np.array([-1], dtype=np.int64), f"{tag}_rms_axes")
        deps = graph.add_initializer(np.array(d * norm.eps, dtype=dtype), f"{tag}_rms_eps")
        if opset >= 18:
            ss = onnx.helper.make_node("ReduceSumSquare", [x, axes], [f"{tag}_rms_ss"], keepdims=1)
        else:
            ss = onnx.helper.make_node("ReduceSumSquare", [x], [f"{tag}_rms_ss"], axes=[-1], keepdims=1)
        new = [ss,
               onnx.helper.make_node("Add", [f"{tag}_rms_ss", deps], [f"{tag}_rms_var"]),
               onnx.helper.make_node("Sqrt", [f"{tag}_rms_var"], [f"{tag}_rms_norm"]),
               onnx.helper.make_node("Div", [x, f"{tag}_rms_norm"], [y])]
        for k, n in enumerate(new):
            n.name = f"{norm.label}/rms{k}"
        old = [nodes[lab] for lab in norm.nodes]
        at = min(list(model.graph.node).index(n) for n in old)
        for n in old:
            model.graph.node.remove(n)
        for k, n in enumerate(new):
            model.graph.node.insert(at + k, n)
        inputs.append(x)
    return inputs


def _add_to_bias(graph: ModelGraph, node: onnx.NodeProto, shift: np.ndarray) -> None:
    """Add `shift` (one value per output column) to the bias of a reader: Gemm's C, the constant
    of an Add that alone reads a MatMul, or a new Add."""
    if node.op_type == "Gemm":
        beta = attr(node, "beta", 1.0)
        if len(node.input) > 2 and node.input[2]:
            c = graph.const_value(node.input[2])
            if c is None:
                raise NotRotatable(f"{node_label(node)}: its bias is computed at run time")
            graph.replace_const(node.input[2], c + shift.reshape(c.shape if c.size == shift.size else (-1,)) / beta)
        else:
            while len(node.input) < 2:
                node.input.append("")
            node.input.append(graph.add_initializer(shift.astype(np.float32) / beta, f"{node_label(node)}_bias"))
        return
    if node.op_type == "Conv":
        if len(node.input) > 2 and node.input[2]:
            c = graph.const_value(node.input[2])
            if c is None:
                raise NotRotatable(f"{node_label(node)}: its bias is computed at run time")
            graph.replace_const(node.input[2], c + shift.reshape(c.shape))
        else:
            while len(node.input) < 2:
                node.input.append("")
            node.input.append(graph.add_initializer(shift.astype(np.float32), f"{node_label(node)}_bias"))
        return
    users = graph.users(node.output[0])
    if len(users) == 1 and users[0].op_type == "Add":
        add = users[0]
        other = add.input[1] if add.input[0] == node.output[0] else add.input[0]
        c = graph.const_value(other)
        if c is not None and c.size == shift.size:
            graph.replace_const(other, c + shift.reshape(c.shape))
            return
    out = node.output[0]
    node.output[0] = f"{out}_unbiased"
    bias = graph.add_initializer(shift.astype(np.float32), f"{out}_bias")
    add = onnx.helper.make_node("Add", [node.output[0], bias], [out], name=f"{node_label(node)}/bias")
    at = list(graph.model.graph.node).index(node)
    graph.model.graph.node.insert(at + 1, add)


def stream_moment(model: onnx.ModelProto, plan: StreamPlan, names: list[str], data, device: str) -> np.ndarray:
    """Sum over calibration tokens of x x^T at every norm input, in canonical coordinates."""
    from ..runtime.activations import run_probe

    d = plan.width
    total = np.zeros((d, d))

    def on_batch(outs):
        for n in names:
            x = np.asarray(outs[n], dtype=np.float64).reshape(-1, d)
            xc = np.empty_like(x)
            xc[:, plan.perm(n)] = x
            total[...] += xc.T @ xc

    run_probe(model, names, data, on_batch, device=device)
    return total


def principal_axes(moment: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) and eigenvectors (columns), each column's largest entry positive."""
    vals, vecs = np.linalg.eigh(moment)
    order = np.argsort(-vals, kind="stable")
    vals, vecs = vals[order], vecs[:, order]
    signs = np.sign(vecs[np.argmax(np.abs(vecs), axis=0), np.arange(vecs.shape[1])])
    return vals, vecs * np.where(signs == 0, 1.0, signs)


def rotate(graph: ModelGraph, plan: StreamPlan, q: np.ndarray) -> None:
    """Step 4: writers x Q and readers Q^T along the hidden axis (the same map on the axis)."""
    for m in plan.writers + plan.readers:
        perm = plan.perm(id(m))
        graph.replace_const(m.param, _along(graph.const_value(m.param), m.axis, q[np.ix_(perm, perm)]))


@dataclass
class Rotation:
    model: onnx.ModelProto
    plan: StreamPlan
    eigenvalues: np.ndarray
    scores: list  # (param, axis, score per position): the eigenvalue of the direction each position holds


def _entries(analysis: Analysis, chans: set, norms: list[Norm]) -> list[str]:
    """Where the stream begins other than at a linear writer: walking back from every norm input
    through residual Adds, Concat and shape-only ops, the last tensor holding the stream on its last
    axis before an op no rotation folds into (a PaddleOCR SVTR neck's stream is Swish(BN(Conv)),
    flattened and transposed to [B, L, C]). Linear writers (MatMul/Gemm/Conv with a constant weight,
    an embedding Gather, a constant Expand) end the walk."""
    graph = analysis.graph
    entries, seen = [], set()
    outputs = {n.y: n for n in norms}
    todo = [(n.x, None) for n in norms]
    while todo:
        t, last = todo.pop()
        if t in outputs:
            raise NotRotatable(f"{outputs[t].label}: its output is also the residual stream: a post-norm block, "
                               f"whose scale multiplies the stream itself")
        tc = analysis.tensors.get(t)
        if graph.is_stored(t) or tc is None or not set(analysis.channel_of(tc.atoms).tolist()) & chans:
            continue
        rank = graph.rank(t)
        if rank and tc.axis == rank - 1:
            last = t
        if (t, last) in seen:
            continue
        seen.add((t, last))
        p = graph.producer.get(t)
        op = p.op_type if p is not None else None
        if op in ("MatMul", "Gemm", "Conv") and len(p.input) > 1 and graph.is_stored(p.input[1]) \
                and not graph.is_stored(p.input[0]):
            continue
        if op in ("Gather", "Expand") and graph.is_stored(p.input[0]):
            continue
        if op in ("Add", "Concat"):
            todo.extend((i, last) for i in p.input if i)
            continue
        if op in _PATH_OPS:
            todo.append((p.input[0], last))
            continue
        if last is None:
            raise NotRotatable(f"the stream begins at '{t}' ({op or 'a model input'}) not on its last axis")
        if last in graph.graph_outputs:
            raise NotRotatable(f"the stream begins at '{last}', a model output")
        if last not in entries:
            entries.append(last)
    return entries


def open_entries(analysis: Analysis) -> list[str]:
    """Give the stream a linear writer where it has none (_entries): a MatMul by the identity after
    each entry tensor, read instead of it from then on. Edits analysis.graph.model; returns the
    entry tensors (none: nothing changed)."""
    g, stats = _stream(analysis)
    entries = _entries(analysis, set(g.channels), _norms(analysis, stats))
    graph, model = analysis.graph, analysis.graph.model
    for t in entries:
        eye = graph.add_initializer(np.eye(g.size, dtype=np.float32), f"{t}_rotation")
        out = f"{t}_rotated"
        for n in model.graph.node:
            for k, name in enumerate(n.input):
                if name == t:
                    n.input[k] = out
        node = onnx.helper.make_node("MatMul", [t, eye], [out], name=f"{t}/rotation")
        p = graph.producer.get(t)
        model.graph.node.insert(list(model.graph.node).index(p) + 1 if p is not None else 0, node)
    return entries


def rotated_copy(model: onnx.ModelProto, shapes, data, device: str = "cpu", q: np.ndarray | None = None) -> Rotation:
    """The model with its residual stream rotated (steps 1-4) and checked unsliced against `model`
    at exact-mode tolerance; NotRotatable when it has none or the check fails. `q` replaces the
    principal axes (tests)."""
    from ..runtime.compare import compare_models

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    analysis = analyze(ModelGraph(copy, shapes=shapes))
    entries = open_entries(analysis)
    if entries:
        analysis = analyze(ModelGraph(copy, shapes=shapes))
    plan = plan_rotation(analysis)
    plan.entries = entries
    graph = ModelGraph(copy, shapes=shapes)
    names = invariant_form(graph, plan)
    graph = ModelGraph(copy, shapes=shapes)
    moment = stream_moment(copy, plan, names, data, device)
    vals, vecs = principal_axes(moment)
    rotate(graph, plan, vecs if q is None else q)
    check = compare_models(model, copy, data=data, device=device, atol=EXACT_ATOL, rtol=EXACT_RTOL, n_batches=2)
    if not check.passed:
        raise NotRotatable("the rotated model does not match the original at exact-mode tolerance: "
                           + "; ".join(check.failures)[:300])
    scores = [(m.param, m.axis, vals[plan.perm(id(m))]) for m in plan.writers + plan.readers]
    return Rotation(copy, plan, vals, scores)


def may_have_layer_norm(graph: ModelGraph) -> bool:
    """A cheap look before the analysis: a LayerNormalization, or a mean over the last axis that a
    Sub reads (the written-out form)."""
    for n in graph.all_nodes:
        if n.op_type == "LayerNormalization":
            return True
        if n.op_type in ("ReduceMean", "GlobalAveragePool") and any(u.op_type == "Sub" for u in graph.users(n.output[0])) \
                and _mean_over_last(graph, n):
            return True
    return False


class RotateStream(Pass):
    """With calibration data in a lossy run: rotate the residual stream (rotated_copy) before the
    analysis, and hand the select pass each stream channel's eigenvalue as its score."""

    name = "rotate-stream"
    needs = ("graph",)

    def run(self, state) -> PassResult:
        cfg = state.config
        if not may_have_layer_norm(state.graph):
            return PassResult(False, {"rotated": False})  # nothing to rotate: no note, no second analysis
        device = "cpu" if cfg.device == "auto" else cfg.device
        try:
            rot = self._rotation(state.model, state.shapes.per_sample(), cfg, device)
        except NotRotatable as e:
            if str(e) == NO_STREAM:
                return PassResult(False, {"rotated": False})
            state.notes.append(f"residual stream not rotated ({e}); its channels are ranked like any other group's")
            return PassResult(False, {"rotated": False})
        except OnnxPruneError:
            raise  # bad data, a runtime that cannot run the model: the user's to fix, as in any pass
        except Exception as e:  # noqa: BLE001 - a form the planner misread: the model as given, said so
            state.notes.append(f"residual stream not rotated (a form the rotation does not handle: "
                               f"{type(e).__name__}: {str(e)[:120]}); its channels are ranked like any other group's")
            return PassResult(False, {"rotated": False, "error": f"{type(e).__name__}: {e}"})
        state.model.CopyFrom(rot.model)
        state.graph = ModelGraph(state.model, shapes=state.shapes.per_sample())
        state.score_hints = rot.scores
        kept = np.cumsum(rot.eigenvalues) / max(float(rot.eigenvalues.sum()), 1e-30)
        entry = (f"; a {rot.plan.width} x {rot.plan.width} MatMul begins the stream at "
                 f"{', '.join(repr(t) for t in rot.plan.entries)}, where no linear layer writes it"
                 if rot.plan.entries else "")
        state.notes.append(
            f"residual stream ({rot.plan.width} wide, {len(rot.plan.norms)} LayerNorms made RMS norms{entry}) rotated to its "
            f"principal axes on the calibration data (SliceGPT, one rotation for the whole stream), checked unsliced "
            f"against the original at exact-mode tolerance; its channels go in order of least variance "
            f"(the first 75% of directions hold {kept[int(np.ceil(0.75 * rot.plan.width)) - 1]:.1%} of it)")
        return PassResult(True, {"rotated": True, "width": rot.plan.width})

    @staticmethod
    def _rotation(model: onnx.ModelProto, shapes, cfg, device: str) -> Rotation:
        """rotated_copy, once per model and data where a strategy keeps a memo (the race's and the
        guard's runs rotate the same model on the same data): a refusal is kept too."""
        if cfg.memo is None:
            return rotated_copy(model, shapes, cfg.calib_data, device)
        from ..memo import data_key, model_fingerprint

        def compute():
            try:
                return rotated_copy(model, shapes, cfg.calib_data, device)
            except NotRotatable as e:
                return e

        key = ("rotation", model_fingerprint(model), data_key(cfg.calib_data), device, repr(shapes))
        got = cfg.memo.get(key, compute)
        if isinstance(got, NotRotatable):
            raise got
        return got


def hinted_scores(analysis: Analysis, hints) -> dict[int, float]:
    """Channel scores from per-position hints on parameters (RotateStream's eigenvalues)."""
    out = {}
    if not hints:
        return out
    by_key = {(p, a): s for p, a, s in hints}
    for m in analysis.members:
        s = by_key.get((m.param, m.axis))
        if s is None or len(s) != len(m.atoms):
            continue
        for c, v in zip(analysis.channel_of(m.atoms).tolist(), np.asarray(s).tolist()):
            if c >= 0:
                out[c] = float(v)
    return out
