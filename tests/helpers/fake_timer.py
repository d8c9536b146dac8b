"""A deterministic stand-in for onnxprune.runtime.timing.OrtTimer: latency computed from a model's
shapes, so that tests of the latency table, the allocation and the correction loop time nothing.

Cost of a run: per Conv/Gemm/MatMul, multiply-adds with channel counts padded up to a multiple of
`block` (a blocked layout's steps) times `mac_ns`; per other op, `elem_ns` per output element
(memory-bound work: depthwise convs also pay it per element, so they cost more per FLOP); plus
`whole_overhead` seconds for every model with more than `whole_nodes` nodes (what layers timed
alone do not see, so that the first round of --target-latency misses and must correct).
`whole_depthwise_ns` prices depthwise work in such whole models apart from the layers timed alone:
a latency table that misjudges a kind of layer.

Quantized (QDQ) forms: a Conv/Gemm/MatMul whose weight a DequantizeLinear makes is int8; its
multiply-adds cost `int8_mac` times the float price (`int8_depthwise` for a grouped conv), and a
DequantizeLinear of a stored weight costs nothing (ONNX Runtime folds it). `whole_int8_overhead`
seconds are added to every whole model with int8 nodes (what layers timed alone do not see)."""

from __future__ import annotations

import math

import onnx

from onnxprune.graph import attr
from onnxprune.latency.segments import fixed_shapes
from onnxprune.runtime.data import input_specs


class FakeTimer:
    name = "fake"

    def __init__(self, block: int = 8, mac_ns: float = 0.001, elem_ns: float = 0.02, depthwise_ns: float = 0.2,
                 whole_overhead: float = 0.0, whole_nodes: int = 30, whole_depthwise_ns: float | None = None,
                 int8_mac: float = 1.0, int8_depthwise: float | None = None, whole_int8_overhead: float = 0.0):
        self.block = block
        self.mac_ns = mac_ns
        self.elem_ns = elem_ns
        self.depthwise_ns = depthwise_ns
        self.whole_overhead = whole_overhead
        self.whole_nodes = whole_nodes
        self.whole_depthwise_ns = depthwise_ns if whole_depthwise_ns is None else whole_depthwise_ns
        self.int8_mac = int8_mac
        self.int8_depthwise = int8_mac if int8_depthwise is None else int8_depthwise
        self.whole_int8_overhead = whole_int8_overhead
        self.calls = 0
        self.timed: list[int] = []  # node counts of the models timed

    def latency(self, model: onnx.ModelProto, shapes=None) -> float:
        fixed = {s.name: tuple((shapes or {}).get(s.name, [1 if not isinstance(d, int) or d < 1 else d
                                                          for d in s.shape])) for s in input_specs(model)}
        graph = fixed_shapes(model, fixed)
        ns = 0.0
        whole = len(model.graph.node) > self.whole_nodes
        depthwise_ns = self.whole_depthwise_ns if whole else self.depthwise_ns
        producer = {o: n for n in model.graph.node for o in n.output}
        stored = {t.name for t in model.graph.initializer}
        int8 = False
        for n in model.graph.node:
            out = graph.static_shape(n.output[0]) if n.output else None
            if out is None:
                continue
            elems = math.prod(out)
            weight = producer.get(n.input[1]) if len(n.input) > 1 else None
            quantized = weight is not None and weight.op_type == "DequantizeLinear"
            int8 = int8 or quantized
            if n.op_type == "DequantizeLinear" and n.input[0] in stored:
                continue
            if n.op_type == "Conv":
                w = graph.shape(n.input[1])
                group = attr(n, "group", 1)
                cout = _pad(out[1], self.block)
                cin = _pad(w[1] * group, self.block)
                macs = elems // out[1] * cout * cin // group * math.prod(w[2:])
                factor = (self.int8_depthwise if group > 1 else self.int8_mac) if quantized else 1.0
                ns += macs * self.mac_ns * factor + elems * (depthwise_ns if group > 1 else self.elem_ns)
            elif n.op_type in ("Gemm", "MatMul"):
                a = graph.shape(n.input[0])
                ns += elems * _pad(a[-1], self.block) * self.mac_ns * (self.int8_mac if quantized else 1.0)
            else:
                ns += elems * self.elem_ns
        seconds = ns * 1e-9
        if whole:
            seconds += self.whole_overhead + (self.whole_int8_overhead if int8 else 0.0)
        return seconds

    def time(self, models, shapes=None, runs=None, quantile: float = 0.0) -> list[float]:
        self.calls += 1
        self.timed += [len(m.graph.node) for m in models]
        return [self.latency(m, shapes) for m in models]

    def compare(self, base, other, shapes=None, runs: int = 10, **_):
        a, b = self.time([base, other], shapes)
        return a, b, b / a


def _pad(c: int, block: int) -> int:
    return int(math.ceil(c / block) * block)
