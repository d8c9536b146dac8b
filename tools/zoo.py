"""Standard CNN architectures written directly as ONNX graphs (no torch).

Every builder returns an ``onnx.ModelProto`` (opset 17, default domain only,
``ir_version`` 8) with one input ``input`` of shape ``["N", 3, R, R]`` and one
output ``output``.  At ``width=1.0, resolution=224`` the conv nets have the real
torchvision layer shapes, and their parameter counts (initializers named
``*.weight`` / ``*.bias``; BatchNormalization running statistics are buffers,
as in torchvision) match torchvision's exactly:

=============== ============= ===========================================
builder          parameters    notes
=============== ============= ===========================================
resnet18         11,689,512
resnet50         25,557,032    ~100 MB fp32
mobilenet_v2      3,504,872    ReLU6 written as Clip(x, min, max)
vgg16_bn        138,365,992    ~550 MB fp32
densenet121       7,978,856
inception         6,624,904    torchvision GoogLeNet (aux_logits=False)
=============== ============= ===========================================

``convtranspose_decoder`` (a small U-Net) and ``mlp`` are not torchvision
models; they exist to exercise ConvTranspose / skip-Concat and Gemm / MatMul
layouts.

Initializer and node names follow torchvision's state-dict names
(``layer1.0.conv1.weight``, ``features.denseblock1.denselayer1.norm1``, ...);
each node's output tensor carries the node's name, except the last one, which is
``output``.

Weights are seeded numpy draws (float32): He-normal convolutions / Gemm /
MatMul, biases ~ N(0, 0.01), BatchNormalization (epsilon 1e-5) with
gamma ~ U(0.5, 1.5), beta ~ N(0, 0.1) and running statistics
``running_mean = mu + N(0, 0.1) * sigma``, ``running_var = sigma**2 * U(0.5, 1.5)``
where mu / sigma**2 are the builder's analytic per-channel estimates of the BN
input's mean / variance (for a unit-normal input this is exactly
N(0, 0.1) / U(0.5, 1.5)).  Fitting the running statistics to the data is what
keeps activations O(1) through the depth (eval-mode BN with statistics
unrelated to its input makes a ResNet-50's logits grow into the thousands);
the estimates are rough (independence assumed), so deep layers of full-size
models still drift to a few units.

``bn=True`` gives Conv(no bias) + BatchNormalization as torchvision (VGG's
convs keep their bias).  ``bn=False`` gives the same network with every BN
that directly follows a Conv / ConvTranspose / Gemm / MatMul+Add folded into
that layer's weight and bias -- for the same seed it computes the same
function as ``bn=True`` -- and BNs that cannot be folded (DenseNet's
pre-activation norms) dropped; every Conv then has a bias.

CLI::

    python tools/zoo.py NAME OUT.onnx [--width W] [--resolution R]
                        [--num-classes K] [--no-bn] [--seed S]
    python tools/zoo.py --list
"""

from __future__ import annotations

import argparse
import contextvars
import sys
from typing import Callable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper

OPSET = 17
IR_VERSION = 8
BN_EPSILON = 1e-5

# When set, initializers are created with their dims only (no data): used by
# param_count() to count full-size models without drawing the weights.
_SHAPES_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("_SHAPES_ONLY", default=False)


_Stats = tuple  # (mean [C] float64, var [C] float64, rep): per-channel statistics of a
#                 tensor; ``rep`` > 1 after a Flatten (each channel repeated rep times).

_SQRT2 = np.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)
# Expected max of n iid standard normals (MaxPool windows of n elements).
_MAX_OF_N = {4: 1.029, 9: 1.485}


def _erf(x: np.ndarray) -> np.ndarray:
    """Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7); numpy has no erf."""
    s = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
               + 0.254829592) * t * np.exp(-x * x)
    return s * y


class _Builder:
    """Accumulates the nodes and initializers of one graph.

    Besides the graph it tracks rough per-channel mean / variance estimates of
    every tensor (inputs ~ N(0, 1), independence assumed), used to draw
    BatchNormalization running statistics that roughly match the data the BN
    sees, so that activations stay O(1) through any depth.
    """

    def __init__(self, *, width: float = 1.0, bn: bool = True, seed: int = 0) -> None:
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width!r}")
        self.width = float(width)
        self.use_bn = bool(bn)
        self.rng = np.random.default_rng(seed)
        self.shapes_only = _SHAPES_ONLY.get()
        self.nodes: list[onnx.NodeProto] = []
        # Initializers are written straight into the final ModelProto: copying
        # ~550 MB of vgg16_bn tensors through make_graph / make_model costs seconds.
        self._model = onnx.ModelProto()
        self.stats: dict[str, _Stats] = {}
        self._node_names: set[str] = set()
        self._init_names: set[str] = set()
        self._clip_bounds: tuple[str, str] | None = None
        if not self.shapes_only:
            self.stats["input"] = (np.zeros(3), np.ones(3), 1)

    # -- parameters -----------------------------------------------------
    def ch(self, c: int) -> int:
        """Channel count ``c`` scaled by the width multiplier."""
        return max(1, int(round(c * self.width)))

    def init(self, name: str, shape: Sequence[int], arr: np.ndarray | None) -> str:
        """Add initializer ``name`` (``arr`` is None in shapes-only mode)."""
        if name in self._init_names:
            raise ValueError(f"duplicate initializer name {name!r}")
        self._init_names.add(name)
        t = self._model.graph.initializer.add()
        t.name = name
        t.data_type = TensorProto.FLOAT
        t.dims.extend(int(d) for d in shape)
        if arr is not None:
            arr = np.asarray(arr, dtype="<f4", order="C")
            if tuple(arr.shape) != tuple(int(d) for d in shape):
                raise AssertionError(f"{name}: shape {arr.shape} != {tuple(shape)}")
            t.raw_data = arr.tobytes()
        return name

    def draw_he(self, shape: Sequence[int], fan_in: int) -> np.ndarray | None:
        if self.shapes_only:
            return None
        a = self.rng.standard_normal(tuple(shape), dtype=np.float32)
        a *= np.float32(np.sqrt(2.0 / max(1, fan_in)))
        return a

    def draw_bias(self, n: int) -> np.ndarray | None:
        if self.shapes_only:
            return None
        return (self.rng.standard_normal(n) * 0.01).astype(np.float32)

    def draw_bn(self, x_stats: _Stats | None, c: int):
        """(gamma, beta, running_mean, running_var) for a BN whose input has ``x_stats``.

        gamma ~ U(0.5, 1.5), beta ~ N(0, 0.1); the running statistics are
        mean + N(0, 0.1) * std and var * U(0.5, 1.5) of the estimated input
        statistics, i.e. N(0, 0.1) / U(0.5, 1.5) for a unit-normal input.
        """
        if self.shapes_only:
            return None
        m, v, _ = x_stats
        gamma = self.rng.uniform(0.5, 1.5, c)
        beta = self.rng.normal(0.0, 0.1, c)
        rmean = m + self.rng.normal(0.0, 0.1, c) * np.sqrt(v)
        rvar = v * self.rng.uniform(0.5, 1.5, c)
        return tuple(a.astype(np.float32) for a in (gamma, beta, rmean, rvar))

    @staticmethod
    def bn_scale(p) -> np.ndarray:
        gamma, _, _, rvar = p
        return (gamma / np.sqrt(rvar.astype(np.float64) + BN_EPSILON)).astype(np.float32)

    def _after_bn(self, x_stats: _Stats | None, p) -> _Stats | None:
        if p is None:
            return None
        m, v, rep = x_stats
        scale = self.bn_scale(p).astype(np.float64)
        return (p[1] + (m - p[2]) * scale, v * scale * scale, rep)

    def const(self, name: str, value: np.ndarray) -> str:
        value = np.asarray(value, dtype=np.float32)
        return self.init(name, value.shape, value)

    # -- nodes ----------------------------------------------------------
    def node(self, op: str, inputs: Sequence[str], name: str, *, output: str | None = None,
             stats: _Stats | None = None, **attrs) -> str:
        if name in self._node_names:
            raise ValueError(f"duplicate node name {name!r}")
        self._node_names.add(name)
        out = output or name
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=name, **attrs))
        if stats is not None:
            self.stats[out] = stats
        return out

    def st(self, x: str) -> _Stats | None:
        return None if self.shapes_only else self.stats[x]

    def _bn_node(self, x: str, c: int, name: str, p, output: str | None = None) -> str:
        names = ("weight", "bias", "running_mean", "running_var")
        ins = [self.init(f"{name}.{n}", [c], None if p is None else p[i])
               for i, n in enumerate(names)]
        return self.node("BatchNormalization", [x, *ins], name, output=output,
                         epsilon=BN_EPSILON, stats=self._after_bn(self.st(x), p))

    def batchnorm(self, x: str, c: int, name: str) -> str:
        """A standalone BN (not after a conv); dropped when ``bn=False``."""
        if not self.use_bn:
            return x
        return self._bn_node(x, c, name, self.draw_bn(self.st(x), c))

    # -- layers ---------------------------------------------------------
    def conv(self, x: str, cin: int, cout: int, k: int, *, name: str, stride: int = 1,
             pad: int | None = None, group: int = 1, bias: bool | None = None,
             bn: str | None = None, output: str | None = None) -> str:
        """Conv, followed by the BatchNormalization named ``bn`` when given.

        ``bias``: whether the conv has a bias of its own (default: not when a
        BN follows, else only in ``bn=False`` builds).  In ``bn=False`` builds
        the BN is folded into the conv's weight and bias instead of emitted.
        """
        if pad is None:
            pad = k // 2
        if cin % group or cout % group:
            raise ValueError(f"{name}: channels {cin}->{cout} not divisible by group {group}")
        if bias is None:
            bias = False if bn else not self.use_bn
        cig = cin // group
        w = self.draw_he([cout, cig, k, k], cig * k * k)
        b = self.draw_bias(cout) if bias else None
        ys = None
        if not self.shapes_only:
            m, v, _ = self.st(x)
            ws = w.sum((2, 3), dtype=np.float64).reshape(group, cout // group, cig)
            w2 = np.square(w, dtype=np.float64).sum((2, 3)).reshape(group, cout // group, cig)
            ym = np.einsum("goi,gi->go", ws, m.reshape(group, cig)).reshape(cout)
            yv = np.einsum("goi,gi->go", w2, v.reshape(group, cig)).reshape(cout)
            ys = (ym + (b if b is not None else 0.0), yv, 1)
        attrs = dict(kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)
        if group != 1:
            attrs["group"] = group
        p = self.draw_bn(ys, cout) if bn else None
        fold = bn is not None and not self.use_bn
        if fold and p is not None:
            scale = self.bn_scale(p)
            w = w * scale[:, None, None, None]
            b = ((b if b is not None else 0.0) - p[2]) * scale + p[1]
        inputs = [x, self.init(f"{name}.weight", [cout, cig, k, k], w)]
        if bias or fold:
            inputs.append(self.init(f"{name}.bias", [cout], b))
        if bn is None or fold:
            return self.node("Conv", inputs, name, output=output,
                             stats=self._after_bn(ys, p) if fold else ys, **attrs)
        y = self.node("Conv", inputs, name, stats=ys, **attrs)
        return self._bn_node(y, cout, bn, p, output=output)

    def conv_transpose(self, x: str, cin: int, cout: int, k: int, *, name: str, stride: int = 2,
                       pad: int = 0, bn: str | None = None) -> str:
        """ConvTranspose (weight [Cin, Cout, k, k]); bias when no BN follows."""
        fan_in = max(1, cin * k * k // (stride * stride))
        w = self.draw_he([cin, cout, k, k], fan_in)
        b = None if bn else self.draw_bias(cout)
        ys = None
        if not self.shapes_only:
            m, v, _ = self.st(x)
            ws = w.sum((2, 3), dtype=np.float64) / (stride * stride)
            w2 = np.square(w, dtype=np.float64).sum((2, 3)) / (stride * stride)
            ys = (m @ ws + (b if b is not None else 0.0), v @ w2, 1)
        p = self.draw_bn(ys, cout) if bn else None
        fold = bn is not None and not self.use_bn
        if fold and p is not None:
            scale = self.bn_scale(p)
            w = w * scale[None, :, None, None]
            b = -p[2] * scale + p[1]
        inputs = [x, self.init(f"{name}.weight", [cin, cout, k, k], w)]
        if bn is None or fold:
            inputs.append(self.init(f"{name}.bias", [cout], b))
        attrs = dict(kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)
        if bn is None or fold:
            return self.node("ConvTranspose", inputs, name,
                             stats=self._after_bn(ys, p) if fold else ys, **attrs)
        y = self.node("ConvTranspose", inputs, name, stats=ys, **attrs)
        return self._bn_node(y, cout, bn, p)

    def _dense_stats(self, x: str, w: np.ndarray, trans_b: bool, b) -> _Stats | None:
        if self.shapes_only:
            return None
        m, v, rep = self.st(x)
        c = m.shape[0]
        if trans_b:  # [out, c*rep]
            w3 = w.reshape(w.shape[0], c, rep)
            ws = w3.sum(-1, dtype=np.float64)
            w2 = np.einsum("ocr,ocr->oc", w3, w3).astype(np.float64)
            ym, yv = ws @ m, w2 @ v
        else:  # [c*rep, out]
            w3 = w.reshape(c, rep, w.shape[1])
            ws = w3.sum(1, dtype=np.float64)
            w2 = np.einsum("cro,cro->co", w3, w3).astype(np.float64)
            ym, yv = m @ ws, v @ w2
        return (ym + (b if b is not None else 0.0), yv, 1)

    def dense(self, x: str, fin: int, fout: int, name: str, *, kind: str = "gemm",
              trans_b: bool = True, bn: str | None = None, output: str | None = None) -> str:
        """Fully connected layer with bias: ``kind`` "gemm" (Gemm, transB as given)
        or "matmul" (MatMul with a [fin, fout] constant + Add bias); an optional
        following BatchNormalization ``bn`` (folded when ``bn=False``)."""
        if kind == "matmul":
            trans_b = False
        shape = [fout, fin] if trans_b else [fin, fout]
        w = self.draw_he(shape, fin)
        b = self.draw_bias(fout)
        ys = self._dense_stats(x, w, trans_b, b)
        p = self.draw_bn(ys, fout) if bn else None
        fold = bn is not None and not self.use_bn
        if fold and p is not None:
            scale = self.bn_scale(p)
            w = w * (scale[:, None] if trans_b else scale[None, :])
            b = (b - p[2]) * scale + p[1]
        last = bn is None or fold
        out_stats = self._after_bn(ys, p) if fold else ys
        wn = self.init(f"{name}.weight", shape, w)
        bname = f"{name}.bias"
        if kind == "gemm":
            y = self.node("Gemm", [x, wn, self.init(bname, [fout], b)], name,
                          output=output if last else None, stats=out_stats, transB=int(trans_b))
        elif kind == "matmul":
            y = self.node("MatMul", [x, wn], f"{name}.matmul")
            y = self.node("Add", [y, self.init(bname, [fout], b)], f"{name}.add",
                          output=output if last else None, stats=out_stats)
        else:
            raise ValueError(f"unknown dense kind {kind!r}")
        return y if last else self._bn_node(y, fout, bn, p, output=output)

    def gemm(self, x: str, fin: int, fout: int, name: str, *, trans_b: bool = True,
             output: str | None = None) -> str:
        return self.dense(x, fin, fout, name, trans_b=trans_b, output=output)

    def _relu_stats(self, x: str) -> _Stats | None:
        if self.shapes_only:
            return None
        m, v, rep = self.st(x)
        s = np.sqrt(np.maximum(v, 1e-12))
        a = m / s
        cdf = 0.5 * (1.0 + _erf(a / _SQRT2))
        pdf = _INV_SQRT_2PI * np.exp(-0.5 * a * a)
        e1 = m * cdf + s * pdf
        e2 = (m * m + v) * cdf + m * s * pdf
        return (e1, np.maximum(e2 - e1 * e1, 1e-12), rep)

    def relu(self, x: str, name: str) -> str:
        return self.node("Relu", [x], name, stats=self._relu_stats(x))

    def relu6(self, x: str, name: str) -> str:
        if self._clip_bounds is None:
            self._clip_bounds = (self.const("relu6.min", np.array(0.0, np.float32)),
                                 self.const("relu6.max", np.array(6.0, np.float32)))
        return self.node("Clip", [x, *self._clip_bounds], name, stats=self._relu_stats(x))

    def add(self, a: str, b: str, name: str) -> str:
        stats = None
        if not self.shapes_only:
            (ma, va, ra), (mb, vb, _) = self.st(a), self.st(b)
            stats = (ma + mb, va + vb, ra)
        return self.node("Add", [a, b], name, stats=stats)

    def concat(self, xs: Sequence[str], name: str, output: str | None = None) -> str:
        stats = None
        if not self.shapes_only:
            ss = [self.st(x) for x in xs]
            stats = (np.concatenate([s[0] for s in ss]), np.concatenate([s[1] for s in ss]), 1)
        return self.node("Concat", list(xs), name, output=output, stats=stats, axis=1)

    def maxpool(self, x: str, name: str, k: int, s: int, p: int = 0, ceil: bool = False) -> str:
        attrs = dict(kernel_shape=[k, k], strides=[s, s], pads=[p] * 4)
        if ceil:
            attrs["ceil_mode"] = 1
        stats = None
        if not self.shapes_only:
            m, v, rep = self.st(x)
            # The mean shifts up; the per-channel variance (over batch and
            # positions) empirically stays about the same for post-ReLU inputs.
            stats = (m + _MAX_OF_N.get(k * k, 1.0) * np.sqrt(v), v, rep)
        return self.node("MaxPool", [x], name, stats=stats, **attrs)

    def avgpool(self, x: str, name: str, k: int, s: int) -> str:
        stats = None
        if not self.shapes_only:
            m, v, rep = self.st(x)
            stats = (m, v / k, rep)  # neighbours are correlated: between v/k^2 and v
        return self.node("AveragePool", [x], name, stats=stats, kernel_shape=[k, k],
                         strides=[s, s])

    def gap(self, x: str, name: str) -> str:
        stats = None
        if not self.shapes_only:
            m, v, rep = self.st(x)
            stats = (m, v / 4.0, rep)
        return self.node("GlobalAveragePool", [x], name, stats=stats)

    def flatten(self, x: str, name: str, hw: int = 1) -> str:
        """Flatten(axis=1) of an [N, C, H, W] tensor with ``hw`` = H * W."""
        stats = None
        if not self.shapes_only:
            m, v, _ = self.st(x)
            stats = (m, v, hw)
        return self.node("Flatten", [x], name, stats=stats, axis=1)

    # -- model ----------------------------------------------------------
    def model(self, graph_name: str, resolution: int, out_shape: Sequence) -> onnx.ModelProto:
        inp = helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                            ["N", 3, resolution, resolution])
        out = helper.make_tensor_value_info("output", TensorProto.FLOAT, list(out_shape))
        m = self._model
        m.graph.name = graph_name
        m.graph.node.extend(self.nodes)
        m.graph.input.append(inp)
        m.graph.output.append(out)
        m.opset_import.append(helper.make_opsetid("", OPSET))
        m.producer_name = "onnxprune.tools.zoo"
        m.ir_version = IR_VERSION
        return m


def _check_resolution(resolution: int, minimum: int, name: str) -> None:
    if int(resolution) < minimum:
        raise ValueError(f"{name}: resolution must be >= {minimum}, got {resolution}")


# ---------------------------------------------------------------------------
# ResNet
# ---------------------------------------------------------------------------

def _basic_block(g: _Builder, x: str, inplanes: int, planes: int, stride: int, p: str):
    out = g.conv(x, inplanes, planes, 3, stride=stride, name=f"{p}.conv1", bn=f"{p}.bn1")
    out = g.relu(out, f"{p}.relu1")
    out = g.conv(out, planes, planes, 3, name=f"{p}.conv2", bn=f"{p}.bn2")
    identity = x
    if stride != 1 or inplanes != planes:
        identity = g.conv(x, inplanes, planes, 1, stride=stride, pad=0,
                             name=f"{p}.downsample.0", bn=f"{p}.downsample.1")
    out = g.add(out, identity, f"{p}.add")
    return g.relu(out, f"{p}.relu2"), planes


def _bottleneck(g: _Builder, x: str, inplanes: int, planes: int, stride: int, p: str):
    outc = planes * 4
    out = g.conv(x, inplanes, planes, 1, pad=0, name=f"{p}.conv1", bn=f"{p}.bn1")
    out = g.relu(out, f"{p}.relu1")
    out = g.conv(out, planes, planes, 3, stride=stride, name=f"{p}.conv2", bn=f"{p}.bn2")
    out = g.relu(out, f"{p}.relu2")
    out = g.conv(out, planes, outc, 1, pad=0, name=f"{p}.conv3", bn=f"{p}.bn3")
    identity = x
    if stride != 1 or inplanes != outc:
        identity = g.conv(x, inplanes, outc, 1, stride=stride, pad=0,
                             name=f"{p}.downsample.0", bn=f"{p}.downsample.1")
    out = g.add(out, identity, f"{p}.add")
    return g.relu(out, f"{p}.relu3"), outc


def _resnet(name, block, layers, *, width, resolution, num_classes, bn, seed):
    _check_resolution(resolution, 1, name)
    g = _Builder(width=width, bn=bn, seed=seed)
    c = g.ch(64)
    x = g.conv("input", 3, c, 7, stride=2, pad=3, name="conv1", bn="bn1")
    x = g.relu(x, "relu")
    x = g.maxpool(x, "maxpool", 3, 2, 1)
    inplanes = c
    for li, (planes, n) in enumerate(zip((64, 128, 256, 512), layers), start=1):
        for bi in range(n):
            stride = 2 if (li > 1 and bi == 0) else 1
            x, inplanes = block(g, x, inplanes, g.ch(planes), stride, f"layer{li}.{bi}")
    x = g.gap(x, "avgpool")
    x = g.flatten(x, "flatten")
    g.gemm(x, inplanes, num_classes, "fc", output="output")
    return g.model(name, resolution, ["N", num_classes])


def resnet18(*, width: float = 1.0, resolution: int = 224, num_classes: int = 1000,
             bn: bool = True, seed: int = 0) -> onnx.ModelProto:
    """torchvision ResNet-18 (BasicBlock, [2, 2, 2, 2])."""
    return _resnet("resnet18", _basic_block, (2, 2, 2, 2), width=width, resolution=resolution,
                   num_classes=num_classes, bn=bn, seed=seed)


def resnet50(*, width: float = 1.0, resolution: int = 224, num_classes: int = 1000,
             bn: bool = True, seed: int = 0) -> onnx.ModelProto:
    """torchvision ResNet-50 v1.5 (Bottleneck, [3, 4, 6, 3], stride on the 3x3)."""
    return _resnet("resnet50", _bottleneck, (3, 4, 6, 3), width=width, resolution=resolution,
                   num_classes=num_classes, bn=bn, seed=seed)


# ---------------------------------------------------------------------------
# MobileNetV2
# ---------------------------------------------------------------------------

_MBV2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                  (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def mobilenet_v2(*, width: float = 1.0, resolution: int = 224, num_classes: int = 1000,
                 bn: bool = True, seed: int = 0) -> onnx.ModelProto:
    """torchvision MobileNetV2 (inverted residuals, depthwise convs, ReLU6 as Clip)."""
    _check_resolution(resolution, 1, "mobilenet_v2")
    g = _Builder(width=width, bn=bn, seed=seed)
    cin = g.ch(32)
    x = g.conv("input", 3, cin, 3, stride=2, name="features.0.0", bn="features.0.1")
    x = g.relu6(x, "features.0.2")
    idx = 1
    for t, c, n, s in _MBV2_SETTINGS:
        cout = g.ch(c)
        for i in range(n):
            stride = s if i == 0 else 1
            p = f"features.{idx}.conv"
            hidden = int(round(cin * t))
            y = x
            j = 0
            if t != 1:
                y = g.conv(y, cin, hidden, 1, pad=0, name=f"{p}.{j}.0", bn=f"{p}.{j}.1")
                y = g.relu6(y, f"{p}.{j}.2")
                j += 1
            y = g.conv(y, hidden, hidden, 3, stride=stride, group=hidden,
                          name=f"{p}.{j}.0", bn=f"{p}.{j}.1")
            y = g.relu6(y, f"{p}.{j}.2")
            y = g.conv(y, hidden, cout, 1, pad=0, name=f"{p}.{j + 1}", bn=f"{p}.{j + 2}")
            if stride == 1 and cin == cout:
                y = g.add(x, y, f"features.{idx}.add")
            x, cin = y, cout
            idx += 1
    last = g.ch(1280)
    x = g.conv(x, cin, last, 1, pad=0, name=f"features.{idx}.0", bn=f"features.{idx}.1")
    x = g.relu6(x, f"features.{idx}.2")
    x = g.gap(x, "avgpool")
    x = g.flatten(x, "flatten")
    g.gemm(x, last, num_classes, "classifier.1", output="output")
    return g.model("mobilenet_v2", resolution, ["N", num_classes])


# ---------------------------------------------------------------------------
# VGG-16-BN
# ---------------------------------------------------------------------------

_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M")


def vgg16_bn(*, width: float = 1.0, resolution: int = 224, num_classes: int = 1000,
             bn: bool = True, seed: int = 0) -> onnx.ModelProto:
    """torchvision VGG-16 with BatchNorm (configuration D).

    torchvision puts an AdaptiveAvgPool2d((7, 7)) before the classifier; here the
    last MaxPool output is flattened directly, so the first Gemm has
    ``512*width * (resolution // 32)**2`` inputs (25088 at 224, as torchvision).
    With ``bn=False`` the layer shapes are plain VGG-16's (torchvision's ``vgg16``,
    138,357,544 parameters), with the BNs folded into the convs.
    """
    _check_resolution(resolution, 32, "vgg16_bn")
    g = _Builder(width=width, bn=bn, seed=seed)
    x, cin, hw, i = "input", 3, int(resolution), 0
    for v in _VGG16_CFG:
        if v == "M":
            x = g.maxpool(x, f"features.{i}", 2, 2)
            hw //= 2
            i += 1
            continue
        cout = g.ch(v)
        # torchvision: Conv(bias) [, BN], ReLU as features.i, i+1[, i+2]
        x = g.conv(x, cin, cout, 3, name=f"features.{i}", bias=True,
                   bn=f"features.{i + 1}")
        i += 2 if g.use_bn else 1
        x = g.relu(x, f"features.{i}")
        i += 1
        cin = cout
    x = g.flatten(x, "flatten", hw=hw * hw)
    hidden = g.ch(4096)
    x = g.gemm(x, cin * hw * hw, hidden, "classifier.0")
    x = g.relu(x, "classifier.1")
    x = g.gemm(x, hidden, hidden, "classifier.3")
    x = g.relu(x, "classifier.4")
    g.gemm(x, hidden, num_classes, "classifier.6", output="output")
    return g.model("vgg16_bn" if bn else "vgg16", resolution, ["N", num_classes])


# ---------------------------------------------------------------------------
# DenseNet-121
# ---------------------------------------------------------------------------

def densenet121(*, width: float = 1.0, resolution: int = 224, num_classes: int = 1000,
                bn: bool = True, seed: int = 0) -> onnx.ModelProto:
    """torchvision DenseNet-121 (growth 32, blocks (6, 12, 24, 16), bn_size 4).

    Each dense layer reads the Concat of all earlier feature maps of its block
    (as torchvision's export does); the layers are pre-activation
    (BN -> ReLU -> Conv).  With ``bn=False`` norm0 and each layer's norm2 are
    folded into the preceding conv; norm1 / the transition norms / norm5 (which
    follow a Concat or pool) are dropped; every conv has a bias.
    """
    _check_resolution(resolution, 1, "densenet121")
    g = _Builder(width=width, bn=bn, seed=seed)
    growth, bn_size = g.ch(32), 4
    c = g.ch(64)
    x = g.conv("input", 3, c, 7, stride=2, pad=3, name="features.conv0", bn="features.norm0")
    x = g.relu(x, "features.relu0")
    x = g.maxpool(x, "features.pool0", 3, 2, 1)
    blocks = (6, 12, 24, 16)
    for bi, n in enumerate(blocks, start=1):
        pb = f"features.denseblock{bi}"
        feats, cf = [x], [c]
        for li in range(1, n + 1):
            p = f"{pb}.denselayer{li}"
            cin = sum(cf)
            y = feats[0] if len(feats) == 1 else g.concat(feats, f"{p}.concat")
            y = g.batchnorm(y, cin, f"{p}.norm1")
            y = g.relu(y, f"{p}.relu1")
            y = g.conv(y, cin, bn_size * growth, 1, pad=0, name=f"{p}.conv1", bn=f"{p}.norm2")
            y = g.relu(y, f"{p}.relu2")
            y = g.conv(y, bn_size * growth, growth, 3, name=f"{p}.conv2")
            feats.append(y)
            cf.append(growth)
        x, c = g.concat(feats, f"{pb}.concat"), sum(cf)
        if bi != len(blocks):
            p = f"features.transition{bi}"
            x = g.batchnorm(x, c, f"{p}.norm")
            x = g.relu(x, f"{p}.relu")
            x = g.conv(x, c, c // 2, 1, pad=0, name=f"{p}.conv")
            c //= 2
            x = g.avgpool(x, f"{p}.pool", 2, 2)
    x = g.batchnorm(x, c, "features.norm5")
    x = g.relu(x, "relu")
    x = g.gap(x, "avgpool")
    x = g.flatten(x, "flatten")
    g.gemm(x, c, num_classes, "classifier", output="output")
    return g.model("densenet121", resolution, ["N", num_classes])


# ---------------------------------------------------------------------------
# Inception v1 (GoogLeNet)
# ---------------------------------------------------------------------------

_INCEPTION_CFG = (  # name, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj
    ("inception3a", 64, 96, 128, 16, 32, 32),
    ("inception3b", 128, 128, 192, 32, 96, 64),
    "maxpool3",
    ("inception4a", 192, 96, 208, 16, 48, 64),
    ("inception4b", 160, 112, 224, 24, 64, 64),
    ("inception4c", 128, 128, 256, 24, 64, 64),
    ("inception4d", 112, 144, 288, 32, 64, 64),
    ("inception4e", 256, 160, 320, 32, 128, 128),
    "maxpool4",
    ("inception5a", 256, 160, 320, 32, 128, 128),
    ("inception5b", 384, 192, 384, 48, 128, 128),
)


def inception(*, width: float = 1.0, resolution: int = 224, num_classes: int = 1000,
              bn: bool = True, seed: int = 0, branch3_kernel: int = 3) -> onnx.ModelProto:
    """torchvision GoogLeNet (Inception v1) without the auxiliary classifiers.

    Each Inception module has four branches joined by a channel Concat:
    1x1 / 1x1 -> 3x3 / 1x1 -> k x k / MaxPool(3, s1, p1) -> 1x1.  torchvision
    uses k = 3 in the third branch (``branch3_kernel=3``, the default);
    ``branch3_kernel=5`` gives the paper's 5x5.  Max pools use ceil_mode as in
    torchvision.  ``bn=False`` gives the layer shapes of the original BN-free
    GoogLeNet (BNs folded into the convs).
    """
    _check_resolution(resolution, 1, "inception")
    if branch3_kernel not in (3, 5):
        raise ValueError("branch3_kernel must be 3 or 5")
    g = _Builder(width=width, bn=bn, seed=seed)

    def basic(x, cin, cout, k, p, stride=1, pad=None):
        y = g.conv(x, cin, cout, k, stride=stride, pad=pad, name=f"{p}.conv", bn=f"{p}.bn")
        return g.relu(y, f"{p}.relu")

    c1, c3 = g.ch(64), g.ch(192)
    x = basic("input", 3, c1, 7, "conv1", stride=2, pad=3)
    x = g.maxpool(x, "maxpool1", 3, 2, ceil=True)
    x = basic(x, c1, c1, 1, "conv2", pad=0)
    x = basic(x, c1, c3, 3, "conv3")
    x = g.maxpool(x, "maxpool2", 3, 2, ceil=True)
    cin = c3
    for entry in _INCEPTION_CFG:
        if entry == "maxpool3":
            x = g.maxpool(x, entry, 3, 2, ceil=True)
            continue
        if entry == "maxpool4":
            x = g.maxpool(x, entry, 2, 2, ceil=True)
            continue
        name, *chs = entry
        b1, b2r, b2, b3r, b3, b4 = (g.ch(v) for v in chs)
        y1 = basic(x, cin, b1, 1, f"{name}.branch1", pad=0)
        y2 = basic(x, cin, b2r, 1, f"{name}.branch2.0", pad=0)
        y2 = basic(y2, b2r, b2, 3, f"{name}.branch2.1")
        y3 = basic(x, cin, b3r, 1, f"{name}.branch3.0", pad=0)
        y3 = basic(y3, b3r, b3, branch3_kernel, f"{name}.branch3.1")
        y4 = g.maxpool(x, f"{name}.branch4.0", 3, 1, 1, ceil=True)
        y4 = basic(y4, cin, b4, 1, f"{name}.branch4.1", pad=0)
        x = g.concat([y1, y2, y3, y4], f"{name}.concat")
        cin = b1 + b2 + b3 + b4
    x = g.gap(x, "avgpool")
    x = g.flatten(x, "flatten")
    g.gemm(x, cin, num_classes, "fc", output="output")
    return g.model("inception", resolution, ["N", num_classes])


# ---------------------------------------------------------------------------
# ConvTranspose decoder (small U-Net)
# ---------------------------------------------------------------------------

def convtranspose_decoder(*, width: float = 1.0, resolution: int = 224, num_classes: int = 1000,
                          bn: bool = True, seed: int = 0,
                          channels: Sequence[int] = (64, 128, 256, 512)) -> onnx.ModelProto:
    """Image-to-image encoder/decoder (U-Net style), output ``[N, num_classes, R, R]``.

    Encoder: per level two 3x3 conv(+BN)+ReLU, MaxPool 2x2 between levels.
    Decoder: per level a stride-2 ConvTranspose (kernel 2 for the deepest
    level, kernel 4 / pad 1 for the others), a channel Concat with the encoder
    skip, then two 3x3 conv(+BN)+ReLU.  Head: 1x1 conv with bias to
    ``num_classes`` channels.  ``resolution`` must be a multiple of
    ``2 ** (len(channels) - 1)``.
    """
    levels = len(channels)
    if levels < 2:
        raise ValueError("channels needs at least two levels")
    f = 2 ** (levels - 1)
    if resolution < f or resolution % f:
        raise ValueError(f"convtranspose_decoder: resolution must be a multiple of {f}")
    g = _Builder(width=width, bn=bn, seed=seed)
    chs = [g.ch(c) for c in channels]

    def double(x, cin, cout, p):
        x = g.conv(x, cin, cout, 3, name=f"{p}.conv1", bn=f"{p}.bn1")
        x = g.relu(x, f"{p}.relu1")
        x = g.conv(x, cout, cout, 3, name=f"{p}.conv2", bn=f"{p}.bn2")
        return g.relu(x, f"{p}.relu2")

    x, cin, skips = "input", 3, []
    for i, c in enumerate(chs):
        if i:
            x = g.maxpool(x, f"down{i}.pool", 2, 2)
        x = double(x, cin, c, f"enc{i + 1}")
        cin = c
        skips.append((x, c))
    skips.pop()
    for i in range(levels - 1, 0, -1):
        skip, cs = skips.pop()
        p = f"dec{i}"
        k, pad = (2, 0) if i == levels - 1 else (4, 1)
        x = g.conv_transpose(x, cin, cs, k, stride=2, pad=pad, name=f"{p}.up", bn=f"{p}.up_bn")
        x = g.relu(x, f"{p}.up_relu")
        x = g.concat([x, skip], f"{p}.concat")
        x = double(x, 2 * cs, cs, p)
        cin = cs
    g.conv(x, cin, num_classes, 1, pad=0, bias=True, name="head", output="output")
    return g.model("convtranspose_decoder", resolution,
                   ["N", num_classes, resolution, resolution])


# ---------------------------------------------------------------------------
# MLP
# ---------------------------------------------------------------------------

def mlp(*, width: float = 1.0, resolution: int = 32, num_classes: int = 10, bn: bool = True,
        seed: int = 0, hidden: Sequence[int] = (1024, 512, 256)) -> onnx.ModelProto:
    """Flatten -> fully connected layers, covering the three dense layouts.

    ``fc1``: Gemm transB=1 (weight [out, in]); ``fc2``: Gemm transB=0 (weight
    [in, out]); ``fc3``: MatMul with a constant [in, out] weight + Add bias;
    each followed by (``bn=True``) a BatchNormalization on the [N, C] tensor and
    a Relu.  ``fc4``: Gemm transB=1 classifier.  Extra hidden sizes beyond three
    cycle through the same three layouts.
    """
    _check_resolution(resolution, 1, "mlp")
    g = _Builder(width=width, bn=bn, seed=seed)
    x = g.flatten("input", "flatten", hw=resolution * resolution)
    fin = 3 * resolution * resolution
    i = 0
    for i, h in enumerate(hidden, start=1):
        fout = g.ch(h)
        p = f"fc{i}"
        kind = (i - 1) % 3
        x = g.dense(x, fin, fout, p, kind="matmul" if kind == 2 else "gemm",
                    trans_b=kind == 0, bn=f"bn{i}")
        x = g.relu(x, f"relu{i}")
        fin = fout
    g.gemm(x, fin, num_classes, f"fc{i + 1}", output="output")
    return g.model("mlp", resolution, ["N", num_classes])


# ---------------------------------------------------------------------------
# Registry / CLI
# ---------------------------------------------------------------------------

ZOO: dict[str, Callable[..., onnx.ModelProto]] = {
    "resnet18": resnet18,
    "resnet50": resnet50,
    "mobilenet_v2": mobilenet_v2,
    "vgg16_bn": vgg16_bn,
    "densenet121": densenet121,
    "inception": inception,
    "convtranspose_decoder": convtranspose_decoder,
    "mlp": mlp,
}


def build(name: str, **kwargs) -> onnx.ModelProto:
    """Build zoo model ``name`` with the builder's keyword arguments."""
    try:
        fn = ZOO[name]
    except KeyError:
        raise KeyError(f"unknown zoo model {name!r}; known: {', '.join(ZOO)}") from None
    return fn(**kwargs)


def param_count(name: str, *, include_buffers: bool = False, **kwargs) -> int:
    """Parameter count of zoo model ``name`` without drawing any weights.

    Counts initializers named ``*.weight`` / ``*.bias`` (torchvision's
    ``sum(p.numel() for p in model.parameters())``); with ``include_buffers``
    BatchNormalization running mean / var are counted too.  The model built
    this way has no tensor data and is only good for counting.
    """
    token = _SHAPES_ONLY.set(True)
    try:
        m = build(name, **kwargs)
    finally:
        _SHAPES_ONLY.reset(token)
    suffixes = (".weight", ".bias") + ((".running_mean", ".running_var") if include_buffers else ())
    return sum(int(np.prod(t.dims, dtype=np.int64)) for t in m.graph.initializer
               if t.name.endswith(suffixes))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="zoo.py", description="Write a zoo model as ONNX.")
    ap.add_argument("name", nargs="?", help="model name (see --list)")
    ap.add_argument("out", nargs="?", help="output .onnx path")
    ap.add_argument("--list", action="store_true", help="list model names and exit")
    ap.add_argument("--width", type=float)
    ap.add_argument("--resolution", type=int)
    ap.add_argument("--num-classes", type=int)
    ap.add_argument("--no-bn", action="store_true")
    ap.add_argument("--seed", type=int)
    args = ap.parse_args(argv)
    if args.list:
        for n in ZOO:
            print(n)
        return 0
    if not args.name or not args.out:
        ap.error("NAME and OUT are required (or --list)")
    if args.name not in ZOO:
        ap.error(f"unknown model {args.name!r}; known: {', '.join(ZOO)}")
    kwargs = {k: v for k, v in (("width", args.width), ("resolution", args.resolution),
                                ("num_classes", args.num_classes), ("seed", args.seed))
              if v is not None}
    if args.no_bn:
        kwargs["bn"] = False
    m = build(args.name, **kwargs)
    onnx.save_model(m, args.out)
    n = sum(int(np.prod(t.dims, dtype=np.int64)) for t in m.graph.initializer)
    print(f"{args.name}: {len(m.graph.node)} nodes, {n:,} initializer values -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
