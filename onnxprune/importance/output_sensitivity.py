"""Output sensitivity of channel groups (needs calibration data): how far the model's outputs move
when one group alone loses some of its channels, run with ONNX Runtime on a few calibration
samples. `--allocation sensitivity` spreads a FLOPs budget over the groups by it
(passes/select_lossy.py) instead of comparing channel scores across layers.

A trial is the exactness oracle's zeroed model (the pruned model's function without a rewrite).
When the run repairs (bias or lsq), a trial also adds each removed input's calibration mean to
its consumer's bias (mean replacement, what bias compensation does): damage after repair, not
after raw zeroing, is what the budget should be spread by."""

from __future__ import annotations

import numpy as np
import onnx

from ..analysis import Analysis
from ..analysis.analyzer import node_label
from ..analysis.channels import ROLE_IN
from ..analysis.oracle import zeroed_reference
from ..graph import ModelGraph
from ..progress import report

PROBE_SAMPLES = 16
MIN_PROBE_SAMPLES = 8  # where 16 do not fit the race's allowance, the probes may run on half as many, not fewer
PROBE_SHARES = (0.25, 0.5, 0.75)  # shares of a group its sensitivity probes remove
CORE_SHARE = 0.5                  # the one share probed first, and alone where time is short
FRONTIER_BYTES = 1 << 30  # tensors kept so that trials run only the part of the model they change


def output_damage(ref: list[np.ndarray], out: list[np.ndarray]) -> float:
    """Mean over outputs of the squared error relative to the output's variance on the data. A
    detection head counts as two outputs, its box coordinates and its scores: coordinates in pixels
    would otherwise swamp scores in [0, 1] (on YOLO11n the whole head's damage chose a cut with output
    cosine 0.992 and box F1 0; per part, 0.72 at 70% of the FLOPs). Scaling every class on its own
    instead let rare classes' noise decide (a CTC recognizer at 50%: 51% characters against 83%)."""
    figures = []
    for a, b in zip(ref, out):
        a = np.nan_to_num(a.astype(np.float64))
        b = np.nan_to_num(b.astype(np.float64))
        for x, y in zip(_parts(a, a), _parts(a, b)):
            spread = float(np.sum((x - x.mean()) ** 2))
            figures.append(float(np.sum((y - x) ** 2)) / spread if spread > 0 else float(np.any(x != y)))
    return float(np.mean(figures)) if figures else 0.0


def _parts(ref: np.ndarray, a: np.ndarray) -> list[np.ndarray]:
    """An output `a`'s parts on different scales, told by the original's values `ref`: a YOLO-style
    raw head [N, 4+C, A] split into boxes and class scores; a YOLOv5/YOLOX head [N, A, 5+C] into
    boxes and the scores a detection is read by, objectness and objectness x class score (its class
    scores alone are conditional on an object: at background anchors they are free to move, and
    nothing detected changes); anything else whole (an end-to-end head [N, D, 6] too: its scores and
    class ids sit beside its boxes already cut by a threshold, and nothing measured asks more)."""
    from ..runtime.metrics import detection_layout, raw_classes

    layout = detection_layout(ref) if ref.ndim == 3 else None
    if layout == "raw":
        return [a[:, :4], a[:, 4:]]
    if layout is not None and layout.startswith("raw:"):  # masks / keypoints / angle on their own scale
        k = 4 + raw_classes(layout)
        return [a[:, :4], a[:, 4:k], a[:, k:]]
    if layout == "objectness":
        return [a[..., :4], np.concatenate([a[..., 4:5], a[..., 4:5] * a[..., 5:]], axis=-1)]
    return [a]


def changed_part(model: onnx.ModelProto, analysis: Analysis, removed: set[int]) -> list[int] | None:
    """Indices (in order) of the nodes whose outputs a trial of `removed` changes: the layers it
    zeroes and everything downstream of them. None where that cannot be told from node inputs alone
    (a node with a subgraph reads outer tensors it does not list)."""
    changed = {m.param for m in analysis.members if m.role == ROLE_IN
               and len(analysis.removed_positions(m.atoms, removed))}
    marked, dirty = [], set(changed)
    for i, node in enumerate(model.graph.node):
        if dirty.intersection(node.input) or dirty.intersection(node.output):
            if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
                return None
            marked.append(i)
            dirty.update(o for o in node.output if o)
    return marked


class SensitivityProbe:
    """Runs trials of removed channel sets on the same calibration samples."""

    def __init__(self, analysis: Analysis, data, device: str = "cpu", mean_replace: bool = True,
                 max_samples: int = PROBE_SAMPLES):
        from ..runtime.activations import with_outputs
        from ..runtime.data import Dataset, load_data, resolve_batch
        from ..runtime.sessions import create_session

        self.device = device
        self.mean_replace = mean_replace
        self.bind(analysis)
        names = sorted({layer.member.tensor for layer in self.layers})
        session = create_session(with_outputs(self.model, names, analysis.graph), device)
        try:
            self.output_names = [o.name for o in self.model.graph.output]
            specs = session.inputs
            dataset = data if isinstance(data, Dataset) else load_data(data, specs)
            size = resolve_batch(specs, None, None)
            if size is not None and not any(s.fixed_batch for s in specs):
                size = min(size, max_samples)
            self.feeds, outs, seen = [], [], 0
            sums = {n: None for n in names}
            for item in dataset.batches(size, drop_last=any(s.fixed_batch for s in specs)):
                got = dict(zip(session.output_names, session.inference.run(None, item.feeds)))
                self.feeds.append(item.feeds)
                outs.append([got[o] for o in self.output_names])
                for n in names:
                    x = got[n].astype(np.float64)
                    axis = 1 if x.ndim > 1 else 0
                    s = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
                    part = (s.sum(axis=1), s.shape[1])
                    sums[n] = part if sums[n] is None else (sums[n][0] + part[0], sums[n][1] + part[1])
                seen += item.size
                if seen >= max_samples:
                    break
        finally:
            session.close()
        self.samples = seen
        self.batch_outputs = outs
        self.reference = [np.concatenate([o[i] for o in outs]) for i in range(len(self.output_names))]
        self.means = {n: s / c for n, (s, c) in sums.items() if sums[n] is not None}
        self.frontier: dict[str, list[np.ndarray]] = {}  # tensors entering the trials' parts, per feed

    def bind(self, analysis: Analysis) -> SensitivityProbe:
        """Trials on this analysis's model (an identical copy of the one measured: a memo hands the
        probe to the next pipeline run of a strategy, whose model is a fresh copy)."""
        from ..repair.features import consumers

        self.analysis = analysis
        self.model = analysis.graph.model
        everything = {c for g in analysis.prunable_groups() for c in g.channels}
        self.layers = consumers(analysis, everything, max_features=1 << 30) if self.mean_replace else []
        graph = analysis.graph
        self._weights = {id(layer): (layer.weight_matrix(graph), layer.bias(graph)) for layer in self.layers}
        return self

    def changed_part(self, removed: set[int]) -> list[int] | None:
        return changed_part(self.model, self.analysis, removed)

    def _entering(self, part: list[int]) -> list[str]:
        nodes = self.model.graph.node
        produced = {o for i in part for o in nodes[i].output}
        consts = {t.name for t in self.model.graph.initializer} | set(_constant_nodes(self.model))
        return sorted({x for i in part for x in nodes[i].input if x and x not in produced and x not in consts})

    def prepare(self, trials: list[set[int]]) -> None:
        """One run of the original that keeps, per feed, every tensor entering the changed part of
        some trial, so that each trial then runs only that part (a group deep in the model changes
        little of it). Kept only within FRONTIER_BYTES; beyond it trials run the whole model."""
        from ..runtime.activations import with_outputs
        from ..runtime.sessions import create_session

        parts = [self.changed_part(r) for r in trials]
        if any(p is None for p in parts):
            return
        inputs = {i.name for i in self.model.graph.input}
        names = sorted({x for p in parts for x in self._entering(p)} - inputs - set(self.frontier))
        if not names:
            return
        session = create_session(with_outputs(self.model, names, self.analysis.graph), self.device)
        got: dict[str, list[np.ndarray]] = {n: [] for n in names}
        size = 0
        try:
            for feeds in self.feeds:
                for n, v in zip(names, session.inference.run(names, feeds)):
                    got[n].append(v)
                    size += v.nbytes
                if size > FRONTIER_BYTES:
                    return
        finally:
            session.close()
        self.frontier.update(got)

    def damage(self, removed: set[int]) -> float:
        """Output damage (output_damage) of the model with `removed` zeroed (and mean-replaced)."""
        from ..runtime.sessions import create_session

        part = self.changed_part(removed)
        if part == []:
            return 0.0  # nothing zeroed: the original's outputs
        trial = zeroed_reference(self.model, self.analysis, removed)
        if self.layers:
            self._replace_means(trial, removed)
        entering = self._entering(part) if part is not None else None
        inputs = {i.name for i in self.model.graph.input}
        if entering is not None and all(n in self.frontier or n in inputs for n in entering):
            sub, outputs = _part_model(trial, part, entering, self.frontier, self.output_names)
            session = create_session(sub, self.device)
            try:
                outs = []
                for b, feeds in enumerate(self.feeds):
                    given = {n: feeds[n] if n in inputs else self.frontier[n][b] for n in entering}
                    new = dict(zip(outputs, session.inference.run(outputs, given))) if outputs else {}
                    outs.append([new.get(o, old) for o, old in zip(self.output_names, self.batch_outputs[b])])
            finally:
                session.close()
        else:
            session = create_session(trial, self.device)
            try:
                outs = [session.inference.run(self.output_names, feeds) for feeds in self.feeds]
            finally:
                session.close()
        return output_damage(self.reference, [np.concatenate([o[i] for o in outs])
                                              for i in range(len(self.output_names))])

    def _replace_means(self, trial: onnx.ModelProto, removed: set[int]) -> None:
        from dataclasses import replace

        graph = ModelGraph(trial, infer=False)
        nodes = {node_label(n): n for n in trial.graph.node}
        for layer in self.layers:
            gone = self.analysis.removed_positions(layer.member.atoms, removed)
            mean = self.means.get(layer.member.tensor)
            if len(gone) == 0 or mean is None or len(mean) != len(layer.member.atoms):
                continue
            w, b = self._weights[id(layer)]
            cols = np.isin(layer.feature_channel, gone)
            shift = w[:, cols] @ mean[layer.feature_channel[cols]]
            replace(layer, node=nodes[layer.member.node]).set_bias(graph, b + shift)


def _part_model(trial: onnx.ModelProto, part: list[int], entering: list[str], frontier: dict, outputs: list[str]
                ) -> tuple[onnx.ModelProto, list[str]]:
    """The trial's changed part as a model of its own: the tensors entering it are its inputs (typed
    from the values kept for them, each dim fixed where every feed's value has the same), the model's
    outputs it computes are its outputs."""
    g = trial.graph
    nodes = [g.node[i] for i in part]
    produced = {o for n in nodes for o in n.output}
    used = {x for n in nodes for x in n.input}
    # Constant nodes the part reads go with it, not as inputs: ONNX Runtime's shape inference reads
    # a Slice's bounds or a Resize's sizes from them (a size built as Concat(Slice(Shape(x), 0, 2),
    # ...) with unknown bounds makes it refuse the model: PyTorch's F.interpolate(size=...) export)
    constants = _constant_nodes(trial)
    nodes = [constants[x] for x in sorted(used - produced) if x in constants] + nodes
    types = {i.name: i for i in g.input}
    inputs = []
    for name in entering:
        if name in types:
            inputs.append(types[name])
        else:
            values = frontier[name]
            dims = [d if all(x.shape[a] == d for x in values) else None for a, d in enumerate(values[0].shape)]
            inputs.append(onnx.helper.make_tensor_value_info(
                name, onnx.helper.np_dtype_to_tensor_dtype(values[0].dtype), dims))
    outs = [o for o in g.output if o.name in produced]
    sub = onnx.helper.make_graph(nodes, "part", inputs, outs, [t for t in g.initializer if t.name in used])
    model = onnx.helper.make_model(sub, opset_imports=trial.opset_import, ir_version=trial.ir_version)
    model.functions.extend(trial.functions)
    return model, [o.name for o in outs]


def _constant_nodes(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    """The main graph's Constant nodes by the tensor each makes."""
    return {n.output[0]: n for n in model.graph.node if n.op_type == "Constant" and n.output}


class ProbeBudgetExceeded(Exception):
    """The probes would cost more than a caller allowed them (the criterion race)."""


def group_damage(analysis: Analysis, probes: dict, data, device: str = "cpu",
                 mean_replace: bool = True, max_samples: int = PROBE_SAMPLES, memo=None) -> dict[int, float]:
    """Output damage of each probe (a key -> the channels it removes), each tried alone. With a
    memo (memo.CalibMemo) the probe's reference run and each trial are made once per model and data."""
    if memo is None:
        probe = SensitivityProbe(analysis, data, device, mean_replace, max_samples)
        trial = probe.damage
    else:
        from ..memo import data_key, model_fingerprint

        scope = (model_fingerprint(analysis.graph.model), data_key(data), device, mean_replace, max_samples)
        probe = memo.get(("sensitivity-probe", *scope),
                         lambda: SensitivityProbe(analysis, data, device, mean_replace, max_samples)).bind(analysis)

        def trial(removed):
            return memo.get(("sensitivity-trial", *scope, frozenset(removed)), lambda: probe.damage(removed))
    probe.prepare([set(r) for r in probes.values()])
    out = {}
    for k, (key, removed) in enumerate(probes.items()):
        report("sensitivity: pruning each group alone", k, len(probes))
        out[key] = trial(set(removed))
    report("sensitivity: pruning each group alone", len(probes), len(probes))
    return out
