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
from ..analysis.oracle import zeroed_reference
from ..graph import ModelGraph
from ..progress import report

PROBE_SAMPLES = 16


def output_damage(ref: list[np.ndarray], out: list[np.ndarray]) -> float:
    """Mean over outputs of the squared error relative to the output's variance on the data. A raw
    detection head counts as two outputs, its box coordinates and its scores: coordinates in pixels
    would otherwise swamp scores in [0, 1] (on YOLO11n the whole head's damage chose a cut with output
    cosine 0.992 and box F1 0; per part, 0.72 at 70% of the FLOPs). Scaling every class on its own
    instead let rare classes' noise decide (a CTC recognizer at 50%: 51% characters against 83%)."""
    figures = []
    for a, b in zip(ref, out):
        a = np.nan_to_num(a.astype(np.float64))
        b = np.nan_to_num(b.astype(np.float64))
        for part in _parts(a):
            x, y = a[part], b[part]
            spread = float(np.sum((x - x.mean()) ** 2))
            figures.append(float(np.sum((y - x) ** 2)) / spread if spread > 0 else float(np.any(x != y)))
    return float(np.mean(figures)) if figures else 0.0


def _parts(a: np.ndarray) -> list[tuple]:
    """Index tuples of an output's parts on different scales: a YOLO-style raw head [N, 4+C, A]
    split into boxes and scores; anything else whole (an end-to-end head [N, D, 6] too: its scores
    and class ids sit beside its boxes already cut by a threshold, and nothing measured asks more)."""
    from ..runtime.metrics import detection_layout

    if a.ndim == 3 and detection_layout(a) == "raw":
        return [(slice(None), slice(0, 4)), (slice(None), slice(4, None))]
    return [(Ellipsis,)]


class SensitivityProbe:
    """Runs trials of removed channel sets on the same calibration samples."""

    def __init__(self, analysis: Analysis, data, device: str = "cpu", mean_replace: bool = True,
                 max_samples: int = PROBE_SAMPLES):
        from ..repair.features import consumers
        from ..runtime.activations import with_outputs
        from ..runtime.data import Dataset, load_data, resolve_batch
        from ..runtime.sessions import create_session

        self.analysis = analysis
        self.model = analysis.graph.model
        self.device = device
        everything = {c for g in analysis.prunable_groups() for c in g.channels}
        self.layers = consumers(analysis, everything, max_features=1 << 30) if mean_replace else []
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
        self.reference = [np.concatenate([o[i] for o in outs]) for i in range(len(self.output_names))]
        self.means = {n: s / c for n, (s, c) in sums.items() if sums[n] is not None}
        graph = analysis.graph
        self._weights = {id(layer): (layer.weight_matrix(graph), layer.bias(graph)) for layer in self.layers}

    def damage(self, removed: set[int]) -> float:
        """Output damage (output_damage) of the model with `removed` zeroed (and mean-replaced)."""
        from ..runtime.sessions import create_session

        trial = zeroed_reference(self.model, self.analysis, removed)
        if self.layers:
            self._replace_means(trial, removed)
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


def group_damage(analysis: Analysis, probes: dict, data, device: str = "cpu",
                 mean_replace: bool = True, max_samples: int = PROBE_SAMPLES) -> dict[int, float]:
    """Output damage of each probe (a key -> the channels it removes), each tried alone."""
    probe = SensitivityProbe(analysis, data, device, mean_replace, max_samples)
    out = {}
    for k, (key, removed) in enumerate(probes.items()):
        report("sensitivity: pruning each group alone", k, len(probes))
        out[key] = probe.damage(set(removed))
    report("sensitivity: pruning each group alone", len(probes), len(probes))
    return out
