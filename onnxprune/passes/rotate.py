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
from ..graph import ModelGraph, attr
from .base import Pass, PassResult

EXACT_ATOL, EXACT_RTOL = 1e-4, 1e-3  # exact-mode validation's bounds (validation.py)
_PATH_OPS = {"Reshape", "Transpose", "Identity", "Gather", "Squeeze", "Unsqueeze", "Flatten", "Dropout", "Slice"}
NO_STREAM = "no residual stream normalized by LayerNorm"
_WRITER_OPS = {"Gather", "Gemm", "MatMul", "Conv", "Add", "Expand"}


class NotRotatable(Exception):
    """Why a stream cannot be rotated (a note in the report; the run goes on unrotated)."""


@dataclass
class Norm:
    node: onnx.NodeProto
    gamma: str | None
    beta: str | None
    readers: list[Member] = field(default_factory=list)


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

    def perm(self, key) -> np.ndarray:
        return self.order[key]


def plan_rotation(analysis: Analysis) -> StreamPlan:
    """The residual stream of `analysis` (a prunable group normalized by LayerNorms only), or
    NotRotatable saying why not."""
    graph = analysis.graph
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
    g, stats = streams[0]
    index = {c: k for k, c in enumerate(g.channels)}
    order = {}

    def canon(key, atoms):
        ch = analysis.channel_of(atoms)
        if len(atoms) != g.size or (ch < 0).any() or len(set(ch.tolist())) != g.size:
            raise NotRotatable(f"'{key}' does not hold each of the {g.size} stream channels once")
        order[key] = np.array([index[c] for c in ch.tolist()], dtype=np.int64)

    by_node = {}
    for m in g.members:
        by_node.setdefault(m.node, []).append(m)
    norms = {}
    for n in stats:
        if n.op_type != "LayerNormalization":
            raise NotRotatable(f"{node_label(n)}: {n.op_type} over the stream (only LayerNormalization is folded)")
        tc = analysis.tensors[n.input[0]]
        rank = graph.rank(n.input[0])
        if rank is None or attr(n, "axis", -1) % rank != rank - 1 or tc.axis != rank - 1:
            raise NotRotatable(f"{node_label(n)}: LayerNormalization not over the last axis alone")
        if any(o for o in n.output[1:]):
            raise NotRotatable(f"{node_label(n)}: LayerNormalization statistics outputs are used")
        canon(n.input[0], tc.atoms)
        params = [graph.resolve(n.input[i]) if len(n.input) > i and n.input[i] else None for i in (1, 2)]
        norms[n.output[0]] = Norm(n, *params)
    writers, readers = [], []
    for m in g.members:
        if m.node in {node_label(x.node) for x in norms.values()}:
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
        if n.op_type not in ("Gemm", "MatMul") or w is None or w.ndim != 2:
            raise NotRotatable(f"{m.node}: a {n.op_type} reader of the stream is not folded")
        if n.op_type == "Gemm" and attr(n, "alpha", 1.0) != 1.0:
            raise NotRotatable(f"{m.node}: Gemm with alpha != 1 reads the stream")


def _norm_read(graph, m: Member, norms: dict) -> Norm:
    """The LayerNorm whose output the reader `m` reads, through shape-only ops."""
    name = m.tensor
    while name not in norms:
        p = graph.producer.get(name)
        if p is None or p.op_type not in _PATH_OPS:
            raise NotRotatable(f"{m.node} reads the stream not through a LayerNorm")
        name = p.input[0]
    return norms[name]


def _check_pre_norm(graph, norm: Norm) -> None:
    """The norm's output reaches only its readers (and Shape ops): a pre-norm block."""
    reader_nodes = {m.node for m in norm.readers}
    todo, seen = [norm.node.output[0]], set()
    while todo:
        t = todo.pop()
        for n in graph.users(t):
            if id(n) in seen:
                continue
            seen.add(id(n))
            if node_label(n) in reader_nodes or n.op_type == "Shape":
                continue
            if n.op_type in _PATH_OPS and n.input[0] == t:
                todo.extend(n.output)
                continue
            raise NotRotatable(f"{node_label(norm.node)}: its output is also read by {node_label(n)} ({n.op_type}): "
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
        ln = norm.node
        eps = attr(ln, "epsilon", 1e-5)
        gamma = graph.const_value(norm.gamma).astype(np.float64).reshape(-1) if norm.gamma else np.ones(d)
        beta = graph.const_value(norm.beta).astype(np.float64).reshape(-1) if norm.beta else np.zeros(d)
        ln_perm = plan.perm(ln.input[0])
        g_canon, b_canon = np.empty(d), np.empty(d)
        g_canon[ln_perm], b_canon[ln_perm] = gamma, beta
        for m in norm.readers:
            perm = plan.perm(id(m))
            w = graph.const_value(m.param).astype(np.float64)
            shape = [1] * w.ndim
            shape[m.axis] = d
            scale = (np.sqrt(d) * g_canon[perm]).reshape(shape)
            shift = np.tensordot(b_canon[perm], w, axes=([0], [m.axis]))
            graph.replace_const(m.param, w * scale)
            if np.any(shift):
                _add_to_bias(graph, nodes[m.node], shift)
        dtype = graph.const_value(norm.gamma).dtype if norm.gamma else np.float32
        x, y, tag = ln.input[0], ln.output[0], ln.output[0]
        axes = graph.add_initializer(np.array([-1], dtype=np.int64), f"{tag}_rms_axes")
        deps = graph.add_initializer(np.array(d * eps, dtype=dtype), f"{tag}_rms_eps")
        if opset >= 18:
            ss = onnx.helper.make_node("ReduceSumSquare", [x, axes], [f"{tag}_rms_ss"], keepdims=1)
        else:
            ss = onnx.helper.make_node("ReduceSumSquare", [x], [f"{tag}_rms_ss"], axes=[-1], keepdims=1)
        new = [ss,
               onnx.helper.make_node("Add", [f"{tag}_rms_ss", deps], [f"{tag}_rms_var"]),
               onnx.helper.make_node("Sqrt", [f"{tag}_rms_var"], [f"{tag}_rms_norm"]),
               onnx.helper.make_node("Div", [x, f"{tag}_rms_norm"], [y])]
        for k, n in enumerate(new):
            n.name = f"{ln.name or tag}/rms{k}"
        at = list(model.graph.node).index(ln)
        del model.graph.node[at]
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


def rotated_copy(model: onnx.ModelProto, shapes, data, device: str = "cpu", q: np.ndarray | None = None) -> Rotation:
    """The model with its residual stream rotated (steps 1-4) and checked unsliced against `model`
    at exact-mode tolerance; NotRotatable when it has none or the check fails. `q` replaces the
    principal axes (tests)."""
    from ..runtime.compare import compare_models

    analysis = analyze(ModelGraph(model, shapes=shapes))
    plan = plan_rotation(analysis)
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = ModelGraph(copy, shapes=shapes)
    nodes = _nodes_by_label(graph)
    # The plan's nodes are the analysed model's; point them at the copy's.
    for norm in plan.norms:
        norm.node = nodes[node_label(norm.node)]
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


class RotateStream(Pass):
    """With calibration data in a lossy run: rotate the residual stream (rotated_copy) before the
    analysis, and hand the select pass each stream channel's eigenvalue as its score."""

    name = "rotate-stream"
    needs = ("graph",)

    def run(self, state) -> PassResult:
        cfg = state.config
        if not any(n.op_type == "LayerNormalization" for n in state.graph.all_nodes):
            return PassResult(False, {"rotated": False})  # nothing to rotate: no note, no second analysis
        device = "cpu" if cfg.device == "auto" else cfg.device
        try:
            rot = rotated_copy(state.model, state.shapes.per_sample(), cfg.calib_data, device)
        except NotRotatable as e:
            if str(e) == NO_STREAM:
                return PassResult(False, {"rotated": False})
            state.notes.append(f"residual stream not rotated ({e}); its channels are ranked like any other group's")
            return PassResult(False, {"rotated": False})
        state.model.CopyFrom(rot.model)
        state.graph = ModelGraph(state.model, shapes=state.shapes.per_sample())
        state.score_hints = rot.scores
        kept = np.cumsum(rot.eigenvalues) / max(float(rot.eigenvalues.sum()), 1e-30)
        state.notes.append(
            f"residual stream ({rot.plan.width} wide, {len(rot.plan.norms)} LayerNorms made RMS norms) rotated to its "
            f"principal axes on the calibration data (SliceGPT, one rotation for the whole stream), checked unsliced "
            f"against the original at exact-mode tolerance; its channels go in order of least variance "
            f"(the first 75% of directions hold {kept[int(np.ceil(0.75 * rot.plan.width)) - 1]:.1%} of it)")
        return PassResult(True, {"rotated": True, "width": rot.plan.width})


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
