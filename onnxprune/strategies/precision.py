"""`--quantize auto`: int8 only where it makes the model faster on the runtime.

As TensorRT's builder picks a precision per layer by timing: every layer (a Conv/Gemm/MatMul with
its fused followers, the segments of the latency table, latency/segments.py) is cut out at the run's
batch and timed interleaved in three forms: float as it is; int8 as `--quantize int8` writes it,
alone among float layers (QuantizeLinear in front, DequantizeLinear after: what a lone int8 layer
costs, layout changes included); and int8 inside an int8 chain (integer tensors in and out). A
layer goes int8 when its lone int8 form takes at most PAYS of its float time: such a layer pays
whatever its neighbours are. Ops outside layers (pools, Concat, residual Add, Reshape...) go int8
when everything they read comes from int8 nodes. Where int8 pays only as a chain (depthwise and
pointwise convs, each slower alone, as in MobileNet/PP-LCNet), two more candidates: the run of
consecutive layers (graph order) whose chain forms save the most, less what its two ends pay to
enter and leave int8 (half of a lone layer's Q/DQ cost, int8_alone_ms - int8_ms, at each end); and
the whole model in int8, when the chain forms add up to less than PAYS of the float layers.
strategies/quantized.py times each candidate against the pruned float model at the measured batch
and writes the fastest if it takes at most KEEP of the float model's time and is smaller; else the
float model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnx
from onnx import helper

from ..analysis import analyze
from ..analysis.analyzer import node_label
from ..graph import ModelGraph
from ..latency.segments import SegmentBuilder, find_segments, fixed_shapes, with_weights
from ..progress import report
from ..shapes import ResolvedShapes

PAYS = 0.97  # a layer goes int8 when its int8 form takes at most this share of its float time
KEEP = 0.98  # the model quantized on the chosen layers is written when it takes at most this share of the float one's
CALIB_FEEDS = 2  # random feeds that calibrate a cut-out layer's ranges (timing does not depend on them)


@dataclass
class LayerTiming:
    nodes: list[str]
    float_ms: float | None = None
    int8_ms: float | None = None        # in an int8 chain: integer tensors in and out
    int8_alone_ms: float | None = None  # among float layers: QuantizeLinear in front, DequantizeLinear after
    int8: bool = False                  # int8_alone_ms <= PAYS * float_ms
    error: str | None = None       # why the layer was not timed (it stays float)

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every node a unique name (nodes_to_quantize goes by name), in place."""
    seen: set[str] = set()
    for k, n in enumerate(model.graph.node):
        if not n.name or n.name in seen:
            base = n.name or f"{n.op_type}_{n.output[0] if n.output else k}"
            name, i = base, 0
            while name in seen:
                i += 1
                name = f"{base}_{i}"
            n.name = name
        seen.add(n.name)


def chain_form(q: onnx.ModelProto) -> onnx.ModelProto:
    """A quantized cut-out as it runs inside an int8 chain: each float input that only a
    QuantizeLinear reads comes in as its integers, each output a DequantizeLinear makes goes out as
    the integers before it."""
    out = onnx.ModelProto()
    out.CopyFrom(q)
    g = out.graph
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    producer = {o: n for n in g.node for o in n.output}
    inits = {t.name: t for t in g.initializer}
    drop = []
    inputs = []
    for value in g.input:
        users = consumers.get(value.name, [])
        if len(users) == 1 and users[0].op_type == "QuantizeLinear":
            quant = users[0]
            zp = inits.get(quant.input[2]) if len(quant.input) > 2 else None
            dtype = zp.data_type if zp is not None else onnx.TensorProto.UINT8
            dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
            inputs.append(helper.make_tensor_value_info(quant.output[0], dtype, dims))
            drop.append(quant)
        else:
            inputs.append(value)
    outputs = []
    for value in g.output:
        deq = producer.get(value.name)
        src = producer.get(deq.input[0]) if deq is not None and deq.op_type == "DequantizeLinear" else None
        if src is not None and src.op_type == "QuantizeLinear" and len(consumers.get(value.name, [])) == 0:
            zp = inits.get(src.input[2]) if len(src.input) > 2 else None
            dtype = zp.data_type if zp is not None else onnx.TensorProto.UINT8
            outputs.append(helper.make_tensor_value_info(deq.input[0], dtype, None))
            drop.append(deq)
        else:
            outputs.append(value)
    keep = [n for n in g.node if all(n is not d for d in drop)]
    del g.node[:]
    g.node.extend(keep)
    del g.input[:]
    g.input.extend(inputs)
    del g.output[:]
    g.output.extend(outputs)
    return out


def _random_feeds(model: onnx.ModelProto, n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(n):
        f = {}
        for value in model.graph.input:
            t = value.type.tensor_type
            dims = [d.dim_value for d in t.shape.dim]
            dtype = helper.tensor_dtype_to_np_dtype(t.elem_type)
            f[value.name] = (rng.standard_normal(dims) if dtype.kind == "f" else np.zeros(dims)).astype(dtype)
        feeds.append(f)
    return feeds


def time_layers(model: onnx.ModelProto, shapes: ResolvedShapes, batch: int, timer) -> list[LayerTiming]:
    """Each layer of `model` (named nodes) timed in float and in int8 at `batch`."""
    from ..quantize import quantize_model

    graph = ModelGraph(model, shapes=shapes.per_sample())
    analysis = analyze(graph)
    builder = SegmentBuilder(analysis, fixed_shapes(model, shapes.with_batch(batch).as_dict()))
    layers = [s for s in find_segments(analysis) if s.kind == "layer"]
    out = []
    for k, seg in enumerate(layers):
        report("quantize auto: timing layers", k, len(layers))
        timing = LayerTiming(list(seg.nodes))
        try:
            f = with_weights(builder.model(seg, set()))
            q, _ = quantize_model(f, "int8", feeds=_random_feeds(f, CALIB_FEEDS))
            float_s, int8_s, alone_s = timer.time([f, chain_form(q), q])
        except Exception as exc:  # noqa: BLE001 - a layer that cannot be cut out, quantized or run alone stays float
            if isinstance(exc, MemoryError):
                raise
            timing.error = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"
            out.append(timing)
            continue
        timing.float_ms, timing.int8_ms, timing.int8_alone_ms = float_s * 1000.0, int8_s * 1000.0, alone_s * 1000.0
        timing.int8 = timing.int8_alone_ms <= PAYS * timing.float_ms
        out.append(timing)
    return out


def int8_nodes(model: onnx.ModelProto, layers: list[LayerTiming]) -> set[str]:
    """Names of the nodes to quantize: the nodes of the layers that go int8, and each other node
    (outside every layer) whose non-constant inputs all come from nodes to quantize."""
    chosen = {name for t in layers if t.int8 for name in t.nodes}
    if not chosen:
        return set()
    in_layers = {name for t in layers for name in t.nodes}
    graph = ModelGraph(model, infer=False)
    producer = {o: n for n in model.graph.node for o in n.output}
    for n in graph.topological_nodes():
        label = node_label(n)
        if label in in_layers or label in chosen:
            continue
        sources = [producer.get(i) for i in n.input if i and not graph.is_constant(i)]
        if sources and all(s is not None and node_label(s) in chosen for s in sources):
            chosen.add(label)
    return chosen


def chain_pays(layers: list[LayerTiming]) -> bool:
    """Whether the layers' int8 chain forms add up to at most PAYS of their float times (the layers
    that could not be timed count as float in both sums)."""
    timed = [t for t in layers if t.error is None]
    return bool(timed) and sum(t.int8_ms for t in timed) <= PAYS * sum(t.float_ms for t in timed)


def best_run(layers: list[LayerTiming]) -> tuple[int, int] | None:
    """(first, last) index of the run of consecutive timed layers whose int8 chain saves the most,
    less half a lone layer's quantize/dequantize cost at each end; None when no run saves anything."""
    best, best_score = None, 0.0
    for i, first in enumerate(layers):
        if first.error is not None:
            continue
        saved = 0.0
        for j in range(i, len(layers)):
            t = layers[j]
            if t.error is not None:
                break
            saved += t.float_ms - t.int8_ms
            edges = (max(0.0, first.int8_alone_ms - first.int8_ms) + max(0.0, t.int8_alone_ms - t.int8_ms)) / 2
            if saved - edges > best_score:
                best, best_score = (i, j), saved - edges
    return best


def run_nodes(model: onnx.ModelProto, layers: list[LayerTiming], run: tuple[int, int]) -> set[str]:
    """The nodes to quantize for the layers of `run` (int8_nodes with just those layers int8)."""
    marked = [LayerTiming(t.nodes, int8=run[0] <= k <= run[1]) for k, t in enumerate(layers)]
    return int8_nodes(model, marked)
