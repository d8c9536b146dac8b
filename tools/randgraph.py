"""Random but valid CNN-like ONNX graphs, for property tests.

``random_model(seed)`` is deterministic in ``seed`` (hypothesis drives it through
an integer).  The model has opset 17 (default domain only), ``ir_version`` 8,
one float32 input ``input`` of shape ``["N", C, H, W]`` (C in 1..4, H = W in
4..8, N symbolic) and one or two float32 outputs (``output`` and, in about a quarter of
the models, an intermediate tensor that later nodes also consume).

It is built by appending random blocks to a current tensor, keeping earlier
tensors around for skip connections.  Blocks draw from: Conv (1x1 / 3x3,
bias or not, sometimes stride 2), depthwise Conv (channel multiplier 1 or 2),
grouped Conv (group 2), ConvTranspose (stride 2 or 1), BatchNormalization,
InstanceNormalization, activations (Relu, LeakyRelu, Sigmoid, Tanh, Clip,
HardSwish, SiLU as Mul(x, Sigmoid(x)), PRelu with a [C, 1, 1] slope), binary
Add / Sub / Mul / Max / Min of a branch and a skip, Sum of three, channel
Concat (of a tensor with itself, an earlier tensor or a branch), channel Split
into uneven parts processed separately and re-joined, channel Slice,
per-channel / scalar constant Mul / Add, MaxPool / AveragePool /
GlobalAveragePool, Resize (nearest, x2), spatial Pad, Transpose to NHWC and
back (optionally with a channels-last MatMul in between), Identity, Dropout.
About one model in six also gets an op a pruning analysis may not know
(LRN or Softmax(axis=1)).  Most models end in a classifier head (GlobalAveragePool
-> Flatten -> Gemm, or Flatten -> Gemm / MatMul + Add); the others output the
feature map.  ``model.doc_string`` lists the blocks used.

Weights are random normal scaled by 1/sqrt(fan_in), so values stay O(1); every
model passes ``onnx.checker.check_model(full_check=True)`` and runs in ONNX
Runtime (CPU) without NaN / Inf.
"""

from __future__ import annotations

import random

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8

MAX_C = 16  # channel count kept at or below this (after each block)
MAX_HW = 16  # spatial size kept at or below this

Shape = tuple[int, int, int]  # (C, H, W); the batch dimension N is symbolic


class _T:
    """A tensor of the graph being built: its name and static (C, H, W)."""

    __slots__ = ("name", "shape")

    def __init__(self, name: str, shape: Shape) -> None:
        self.name = name
        self.shape = shape

    @property
    def c(self) -> int:
        return self.shape[0]

    @property
    def hw(self) -> tuple[int, int]:
        return self.shape[1], self.shape[2]


class _Gen:
    def __init__(self, seed: int, max_blocks: int, fuzz: bool = False) -> None:
        self.seed = seed
        self.fuzz = fuzz
        self.r = random.Random(seed)
        self.rng = np.random.default_rng(seed)
        self.max_blocks = max(1, int(max_blocks))
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []
        self.count = 0
        self.pool: list[_T] = []  # earlier tensors, for skips / concats
        self.used: list[str] = []
        self.unknown = self.r.random() < 1 / 6

    # -- helpers --------------------------------------------------------
    def fresh(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}_{self.count}"

    def const(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def fconst(self, name: str, arr) -> str:
        return self.const(name, np.asarray(arr, dtype=np.float32))

    def iconst(self, name: str, values) -> str:
        return self.const(name, np.asarray(values, dtype=np.int64))

    def normal(self, shape, std: float = 1.0, mean: float = 0.0) -> np.ndarray:
        return (self.rng.standard_normal(shape) * std + mean).astype(np.float32)

    def node(self, op: str, inputs: list[str], name: str, n_out: int = 1, **attrs) -> list[str]:
        outs = [name] if n_out == 1 else [f"{name}:{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs

    def op(self, op: str, inputs: list[str], shape: Shape, prefix: str | None = None,
           **attrs) -> _T:
        name = self.fresh(prefix or op.lower())
        self.node(op, inputs, name, **attrs)
        return _T(name, shape)

    def choose_c(self, lo: int = 1, hi: int = 12, even: bool = False) -> int:
        c = self.r.randint(lo, hi)
        if even:
            c = max(2, c - c % 2)
        return c

    # -- layers ---------------------------------------------------------
    def conv(self, x: _T, cout: int | None = None, *, k: int | None = None, stride: int = 1,
             group: int = 1, bias: bool | None = None) -> _T:
        c, h, w = x.shape
        if cout is None:
            cout = self.choose_c()
        if k is None:
            k = self.r.choice((1, 3))
        if bias is None:
            bias = self.r.random() < 0.5
        pad = k // 2
        name = self.fresh("conv")
        cig = c // group
        ins = [x.name, self.fconst(f"{name}.weight",
                                   self.normal((cout, cig, k, k), 1 / np.sqrt(cig * k * k)))]
        if bias:
            ins.append(self.fconst(f"{name}.bias", self.normal((cout,), 0.1)))
        attrs = dict(kernel_shape=[k, k], pads=[pad] * 4, strides=[stride, stride])
        if group != 1:
            attrs["group"] = group
        self.node("Conv", ins, name, **attrs)
        ho = (h + 2 * pad - k) // stride + 1
        wo = (w + 2 * pad - k) // stride + 1
        return _T(name, (cout, ho, wo))

    def act(self, x: _T, kind: str | None = None) -> _T:
        kinds = ("Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "HardSwish", "SiLU", "PRelu")
        kind = kind or self.r.choice(kinds)
        if kind == "LeakyRelu":
            return self.op("LeakyRelu", [x.name], x.shape, alpha=self.r.choice((0.01, 0.1, 0.2)))
        if kind == "Clip":
            name = self.fresh("clip")
            variant = self.r.randrange(3)  # both bounds / min only / max only
            lo = hi = ""
            if variant in (0, 1):
                lo = self.fconst(f"{name}.min", np.float32(self.r.choice((0.0, -1.0))))
            if variant in (0, 2):
                hi = self.fconst(f"{name}.max", np.float32(self.r.choice((6.0, 1.0))))
            ins = [x.name, lo, hi] if hi else [x.name, lo]
            self.node("Clip", ins, name)
            return _T(name, x.shape)
        if kind == "SiLU":
            s = self.op("Sigmoid", [x.name], x.shape, "silu_sigmoid")
            return self.op("Mul", [x.name, s.name], x.shape, "silu_mul")
        if kind == "PRelu":
            name = self.fresh("prelu")
            slope = self.fconst(f"{name}.slope", self.rng.uniform(0.0, 0.3, (x.c, 1, 1)))
            self.node("PRelu", [x.name, slope], name)
            return _T(name, x.shape)
        return self.op(kind, [x.name], x.shape)

    def same_shape_branch(self, x: _T) -> _T:
        """1-2 shape-preserving ops (convs with C out channels, activations)."""
        y = x
        for _ in range(self.r.randint(1, 2)):
            if self.r.random() < 0.7:
                y = self.conv(y, x.c, k=self.r.choice((1, 3)))
            else:
                y = self.act(y)
        return y

    # -- blocks ---------------------------------------------------------
    def b_conv(self, x: _T) -> _T:
        stride = 2 if (min(x.hw) >= 4 and self.r.random() < 0.2) else 1
        y = self.conv(x, stride=stride)
        return self.act(y) if self.r.random() < 0.5 else y

    def b_dwconv(self, x: _T) -> _T:
        mult = self.r.choice((1, 2)) if 2 * x.c <= MAX_C else 1
        return self.conv(x, x.c * mult, k=3, group=x.c)

    def b_gconv(self, x: _T) -> _T:
        if x.c % 2:
            x = self.conv(x, self.choose_c(2, 12, even=True), k=1)
        return self.conv(x, self.choose_c(2, 12, even=True), k=self.r.choice((1, 3)), group=2)

    def b_convtranspose(self, x: _T) -> _T:
        c, h, w = x.shape
        cout = self.choose_c()
        name = self.fresh("convtranspose")
        if max(h, w) * 2 <= MAX_HW and self.r.random() < 0.7:
            k, s, p, op = self.r.choice(((2, 2, 0, 0), (3, 2, 1, 1), (4, 2, 1, 0)))
        else:
            k, s, p, op = 3, 1, 1, 0
        fan_in = max(1, c * k * k // (s * s))
        ins = [x.name, self.fconst(f"{name}.weight", self.normal((c, cout, k, k), 1 / np.sqrt(fan_in)))]
        if self.r.random() < 0.5:
            ins.append(self.fconst(f"{name}.bias", self.normal((cout,), 0.1)))
        attrs = dict(kernel_shape=[k, k], strides=[s, s], pads=[p] * 4)
        if op:
            attrs["output_padding"] = [op, op]
        self.node("ConvTranspose", ins, name, **attrs)
        ho = (h - 1) * s - 2 * p + k + op
        wo = (w - 1) * s - 2 * p + k + op
        return _T(name, (cout, ho, wo))

    def b_batchnorm(self, x: _T) -> _T:
        c = x.c
        name = self.fresh("batchnorm")
        ins = [x.name,
               self.fconst(f"{name}.weight", self.rng.uniform(0.5, 1.5, c)),
               self.fconst(f"{name}.bias", self.normal((c,), 0.1)),
               self.fconst(f"{name}.running_mean", self.normal((c,), 0.1)),
               self.fconst(f"{name}.running_var", self.rng.uniform(0.5, 1.5, c))]
        self.node("BatchNormalization", ins, name, epsilon=1e-5)
        return _T(name, x.shape)

    def b_instancenorm(self, x: _T) -> _T:
        name = self.fresh("instancenorm")
        ins = [x.name, self.fconst(f"{name}.scale", self.rng.uniform(0.5, 1.5, x.c)),
               self.fconst(f"{name}.bias", self.normal((x.c,), 0.1))]
        self.node("InstanceNormalization", ins, name, epsilon=1e-5)
        return _T(name, x.shape)

    def b_act(self, x: _T) -> _T:
        return self.act(x)

    def b_binary(self, x: _T) -> _T:
        op = self.r.choice(("Add", "Sub", "Mul", "Max", "Min"))
        same = [t for t in self.pool if t.shape == x.shape and t.name != x.name]
        if same and self.r.random() < 0.4:
            other = self.r.choice(same)
        else:
            other = self.same_shape_branch(x)
        a, b = (x, other) if self.r.random() < 0.5 else (other, x)
        return self.op(op, [a.name, b.name], x.shape)

    def b_sum3(self, x: _T) -> _T:
        b1 = self.same_shape_branch(x)
        b2 = self.same_shape_branch(x)
        ins = [x.name, b1.name, b2.name]
        self.r.shuffle(ins)
        return self.op("Sum", ins, x.shape)

    def b_concat(self, x: _T) -> _T:
        same_hw = [t for t in self.pool if t.hw == x.hw and t.name != x.name
                   and t.c + x.c <= MAX_C]
        choice = self.r.random()
        if 2 * x.c <= MAX_C and choice < 0.3:
            parts = [x, x]
        elif same_hw and choice < 0.65:
            parts = [x, self.r.choice(same_hw)]
        else:
            parts = [x, self.conv(x, self.choose_c(1, max(1, min(8, MAX_C - x.c))))]
        self.r.shuffle(parts)
        c = sum(t.c for t in parts)
        return self.op("Concat", [t.name for t in parts], (c, *x.hw), axis=1)

    def b_split(self, x: _T) -> _T:
        if x.c < 2:
            x = self.conv(x, self.choose_c(2, 8), k=1)
        c = x.c
        n = self.r.randint(2, min(3, c))
        cuts = sorted(self.r.sample(range(1, c), n - 1))
        sizes = [b - a for a, b in zip([0, *cuts], [*cuts, c])]
        name = self.fresh("split")
        outs = self.node("Split", [x.name, self.iconst(f"{name}.split", sizes)], name,
                         n_out=n, axis=1)
        parts = []
        for o, s in zip(outs, sizes):
            t = _T(o, (s, *x.hw))
            kind = self.r.randrange(3)
            if kind == 0:
                t = self.conv(t, self.choose_c(1, 6), k=self.r.choice((1, 3)))
            elif kind == 1:
                t = self.act(t)
            parts.append(t)
        if self.r.random() < 0.5:
            self.r.shuffle(parts)
        c = sum(t.c for t in parts)
        return self.op("Concat", [t.name for t in parts], (c, *x.hw), axis=1)

    def b_slice(self, x: _T) -> _T:
        if x.c < 2:
            x = self.conv(x, self.choose_c(2, 8), k=1)
        c = x.c
        start = self.r.randrange(0, c - 1)
        end = self.r.randint(start + 1, c)
        name = self.fresh("slice")
        end_v = end
        if end == c and self.r.random() < 0.5:
            end_v = np.iinfo(np.int64).max  # "to the end", clamped
        ins = [x.name, self.iconst(f"{name}.starts", [start]), self.iconst(f"{name}.ends", [end_v]),
               self.iconst(f"{name}.axes", [1])]
        if self.r.random() < 0.5:
            ins.append(self.iconst(f"{name}.steps", [1]))
        self.node("Slice", ins, name)
        return _T(name, (end - start, *x.hw))

    def b_affine(self, x: _T) -> _T:
        op = self.r.choice(("Mul", "Add"))
        form = self.r.choice(("c11", "1c11", "scalar", "one"))
        shape = {"c11": (x.c, 1, 1), "1c11": (1, x.c, 1, 1), "scalar": (), "one": (1,)}[form]
        if op == "Mul":
            val = self.rng.uniform(0.5, 1.5, shape) * self.rng.choice((-1.0, 1.0), shape)
        else:
            val = self.rng.standard_normal(shape) * 0.5
        name = self.fresh(f"const_{op.lower()}")
        cst = self.fconst(f"{name}.value", val)
        ins = [x.name, cst] if self.r.random() < 0.7 else [cst, x.name]
        self.node(op, ins, name)
        return _T(name, x.shape)

    def b_pool(self, x: _T) -> _T:
        c, h, w = x.shape
        kind = self.r.choice(("max2", "max3", "avg3", "avg2", "gap"))
        if kind in ("max2", "avg2") and min(h, w) >= 2:
            op = "MaxPool" if kind == "max2" else "AveragePool"
            return self.op(op, [x.name], (c, h // 2, w // 2), kernel_shape=[2, 2], strides=[2, 2])
        if kind == "gap" and self.r.random() < 0.5:
            return self.op("GlobalAveragePool", [x.name], (c, 1, 1))
        if kind == "avg3":
            return self.op("AveragePool", [x.name], x.shape, kernel_shape=[3, 3], strides=[1, 1],
                           pads=[1, 1, 1, 1], count_include_pad=self.r.randrange(2))
        return self.op("MaxPool", [x.name], x.shape, kernel_shape=[3, 3], strides=[1, 1],
                       pads=[1, 1, 1, 1])

    def b_resize(self, x: _T) -> _T:
        c, h, w = x.shape
        if max(h, w) * 2 > MAX_HW:
            return self.b_pool(x)
        name = self.fresh("resize")
        scales = self.fconst(f"{name}.scales", [1.0, 1.0, 2.0, 2.0])
        self.node("Resize", [x.name, "", scales], name, mode="nearest")
        return _T(name, (c, 2 * h, 2 * w))

    def b_pad(self, x: _T) -> _T:
        c, h, w = x.shape
        t, l, b, rr = (self.r.randint(0, 2) for _ in range(4))
        if h + t + b > MAX_HW or w + l + rr > MAX_HW:
            return self.b_pool(x)
        name = self.fresh("pad")
        mode = self.r.choice(("constant", "constant", "edge"))
        ins = [x.name, self.iconst(f"{name}.pads", [0, 0, t, l, 0, 0, b, rr])]
        if mode == "constant" and self.r.random() < 0.5:
            ins.append(self.fconst(f"{name}.value", np.float32(self.r.choice((0.0, 0.5)))))
        self.node("Pad", ins, name, mode=mode)
        return _T(name, (c, h + t + b, w + l + rr))

    def b_nhwc(self, x: _T) -> _T:
        c, h, w = x.shape
        name = self.fresh("to_nhwc")
        self.node("Transpose", [x.name], name, perm=[0, 2, 3, 1])
        cur = name
        if self.r.random() < 0.7:
            k = self.choose_c()
            mm = self.fresh("nhwc_matmul")
            wt = self.fconst(f"{mm}.weight", self.normal((c, k), 1 / np.sqrt(c)))
            self.node("MatMul", [cur, wt], mm)
            cur = mm
            if self.r.random() < 0.5:
                ad = self.fresh("nhwc_bias")
                self.node("Add", [cur, self.fconst(f"{ad}.bias", self.normal((k,), 0.1))], ad)
                cur = ad
            c = k
        back = self.fresh("to_nchw")
        self.node("Transpose", [cur], back, perm=[0, 3, 1, 2])
        return _T(back, (c, h, w))

    def b_identity(self, x: _T) -> _T:
        if self.r.random() < 0.5:
            return self.op("Identity", [x.name], x.shape)
        return self.op("Dropout", [x.name], x.shape)

    def b_unknown(self, x: _T) -> _T:
        if self.r.random() < 0.5:
            return self.op("LRN", [x.name], x.shape, size=self.r.choice((3, 5)))
        return self.op("Softmax", [x.name], x.shape, axis=1)

    # -- fuzz-only blocks (fuzz=True) -------------------------------------
    def b_cast(self, x: _T) -> _T:
        """Cast away and back: to an integer type or bool (values change) or float16."""
        to = self.r.choice((TensorProto.INT32, TensorProto.INT64, TensorProto.BOOL, TensorProto.FLOAT16,
                            TensorProto.UINT8, TensorProto.INT8))
        mid = self.op("Cast", [x.name], x.shape, "cast_to", to=to)
        return self.op("Cast", [mid.name], x.shape, "cast_back", to=TensorProto.FLOAT)

    def b_squeeze(self, x: _T) -> _T:
        """Unsqueeze a new axis and squeeze it again, or pool to 1x1 and squeeze the spatial axes
        (without axes when the batch is static: every dim of size 1 goes)."""
        c, h, w = x.shape
        if self.r.random() < 0.5:
            name = self.fresh("unsqueeze")
            self.node("Unsqueeze", [x.name, self.iconst(f"{name}.axes", [2])], name)
            back = self.fresh("squeeze")
            self.node("Squeeze", [name, self.iconst(f"{back}.axes", [2])], back)
            return _T(back, x.shape)
        pooled = self.op("GlobalMaxPool", [x.name], (c, 1, 1))
        sq = self.fresh("squeeze")
        if self.static_batch and c >= 2 and self.r.random() < 0.5:
            self.node("Squeeze", [pooled.name], sq)  # [1, C, 1, 1] -> [C]
            un = self.fresh("unsqueeze")
            self.node("Unsqueeze", [sq, self.iconst(f"{un}.axes", [0, 2, 3])], un)
        else:
            self.node("Squeeze", [pooled.name, self.iconst(f"{sq}.axes", [2, 3])], sq)
            un = self.fresh("unsqueeze")
            self.node("Unsqueeze", [sq, self.iconst(f"{un}.axes", [2, 3])], un)
        return _T(un, (c, 1, 1))

    def b_reshape(self, x: _T) -> _T:
        """Fold H*W into one axis and unfold it again."""
        c, h, w = x.shape
        name = self.fresh("reshape")
        self.node("Reshape", [x.name, self.iconst(f"{name}.shape", [0, c, h * w])], name)
        if self.r.random() < 0.5:
            mid = self.op("Relu", [name], x.shape)
            name = mid.name
        back = self.fresh("reshape_back")
        self.node("Reshape", [name, self.iconst(f"{back}.shape", [0, c, h, w])], back)
        return _T(back, x.shape)

    def b_zero_mul(self, x: _T) -> _T:
        """Mul by a per-channel constant with zeros: the zeroed channels are constant 0."""
        scale = self.rng.uniform(0.5, 1.5, (x.c, 1, 1)).astype(np.float32)
        scale[self.rng.random(x.c) < 0.4] = 0.0
        name = self.fresh("zero_mul")
        self.node("Mul", [x.name, self.fconst(f"{name}.scale", scale)], name)
        return _T(name, x.shape)

    FUZZ_BLOCKS: dict[str, float] = {"cast": 1.2, "squeeze": 1, "reshape": 0.8, "zero_mul": 1}

    def damage(self) -> None:
        """Zero some channels (filters, input columns, BN scale and shift) and, in some models,
        put Inf or NaN into a weight: what exact mode must see through without changing outputs."""
        for t in self.inits:
            arr = numpy_helper.to_array(t)
            if arr.dtype != np.float32 or arr.ndim < 1 or arr.size < 2:
                continue
            changed = False
            if t.name.endswith(".weight") and arr.ndim >= 2 and self.r.random() < 0.4:
                axis = self.r.choice((0, 1))
                if arr.shape[axis] > 1:
                    k = self.r.randrange(arr.shape[axis])
                    index = [slice(None)] * arr.ndim
                    index[axis] = k
                    arr = arr.copy()
                    arr[tuple(index)] = 0.0
                    changed = True
            if t.name.endswith(".bias") and self.r.random() < 0.2:
                arr = arr.copy()
                arr[self.r.randrange(arr.shape[0])] = 0.0
                changed = True
            if changed:
                t.CopyFrom(numpy_helper.from_array(arr, t.name))
        if self.r.random() < 0.25:
            weights = [t for t in self.inits if t.name.endswith(".weight") and t.data_type == TensorProto.FLOAT]
            if weights:
                t = self.r.choice(weights)
                arr = numpy_helper.to_array(t).copy()
                arr.reshape(-1)[self.r.randrange(arr.size)] = self.r.choice((np.inf, -np.inf, np.nan))
                t.CopyFrom(numpy_helper.from_array(arr, t.name))
                self.used.append("nonfinite")

    # -- model ----------------------------------------------------------
    BLOCKS: dict[str, float] = {
        "conv": 3, "dwconv": 1.5, "gconv": 1, "convtranspose": 1, "batchnorm": 1.5,
        "instancenorm": 0.7, "act": 2, "binary": 2, "sum3": 1, "concat": 1.5, "split": 1.2,
        "slice": 1, "affine": 1.2, "pool": 1, "resize": 0.6, "pad": 0.6, "nhwc": 1,
        "identity": 0.6,
    }

    def fit(self, x: _T) -> _T:
        """Bring the channel count back to <= MAX_C (1x1 conv)."""
        if x.c > MAX_C:
            x = self.conv(x, self.choose_c(4, 12), k=1)
        return x

    def head(self, x: _T) -> tuple[_T, list]:
        kind = self.r.choice(("gap_gemm", "flat_gemm", "flat_matmul"))
        c, h, w = x.shape
        k = self.r.randint(2, 10)
        if kind == "gap_gemm":
            x = self.op("GlobalAveragePool", [x.name], (c, 1, 1))
            fin = c
        else:
            fin = c * h * w
        flat = self.fresh("flatten")
        self.node("Flatten", [x.name], flat, axis=1)
        name = self.fresh("fc")
        if kind == "flat_matmul":
            wt = self.fconst(f"{name}.weight", self.normal((fin, k), 1 / np.sqrt(fin)))
            self.node("MatMul", [flat, wt], name)
            out = self.fresh("fc_bias")
            self.node("Add", [name, self.fconst(f"{out}.bias", self.normal((k,), 0.1))], out)
        else:
            trans_b = self.r.random() < 0.5
            shape = (k, fin) if trans_b else (fin, k)
            wt = self.fconst(f"{name}.weight", self.normal(shape, 1 / np.sqrt(fin)))
            ins = [flat, wt]
            if self.r.random() < 0.8:
                ins.append(self.fconst(f"{name}.bias", self.normal((k,), 0.1)))
            self.node("Gemm", ins, name, transB=int(trans_b))
            out = name
        return _T(out, (k, 0, 0)), ["N", k]

    def build(self) -> onnx.ModelProto:
        c = self.r.randint(1, 4)
        hw = self.r.randint(4, 8)
        self.static_batch = self.fuzz and self.r.random() < 0.5
        x = _T("input", (c, hw, hw))
        n_blocks = self.r.randint(1, self.max_blocks)
        unknown_at = self.r.randrange(n_blocks) if self.unknown else -1
        aux_at = self.r.randrange(n_blocks) if (n_blocks > 1 and self.r.random() < 0.3) else -1
        blocks = {**self.BLOCKS, **(self.FUZZ_BLOCKS if self.fuzz else {})}
        names, weights = zip(*blocks.items())
        aux: _T | None = None
        for i in range(n_blocks):
            kind = self.r.choices(names, weights)[0]
            before = len(self.nodes)
            x = getattr(self, f"b_{kind}")(x)
            self.used.append(kind)
            if i == unknown_at:
                x = self.b_unknown(x)
                self.used.append("unknown")
            x = self.fit(x)
            if len(self.nodes) == before:  # a block must add something
                x = self.op("Identity", [x.name], x.shape)
            self.pool.append(x)
            if i == aux_at and i != n_blocks - 1:
                aux = x
        if self.r.random() < 0.7:
            out, out_shape = self.head(x)
            self.used.append("head")
        else:
            out, out_shape = x, ["N", *x.shape]
        if self.fuzz:
            self.damage()
        # The final tensor (produced by the last node, so nothing consumes it)
        # is renamed "output".
        final = self.nodes[-1]
        assert final.output[0] == out.name
        final.output[0] = "output"
        outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, out_shape)]
        if aux is not None and aux.name not in (out.name, "input"):
            # An intermediate tensor that later nodes also consume.
            outputs.append(helper.make_tensor_value_info(aux.name, TensorProto.FLOAT,
                                                         ["N", *aux.shape]))
            self.used.append("aux_output")
        batch = 1 if self.static_batch else "N"
        outputs = [o for o in outputs]
        for o in outputs:
            o.type.tensor_type.shape.dim[0].Clear()
            if self.static_batch:
                o.type.tensor_type.shape.dim[0].dim_value = 1
            else:
                o.type.tensor_type.shape.dim[0].dim_param = "N"
        inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, c, hw, hw])
        graph = helper.make_graph(self.nodes, f"randgraph_{self.seed}", [inp], outputs,
                                  initializer=self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="onnxprune.tools.randgraph")
        m.ir_version = IR_VERSION
        m.doc_string = f"seed={self.seed} blocks={','.join(self.used)}"
        return m


def random_model(seed: int, max_blocks: int = 6, fuzz: bool = False) -> onnx.ModelProto:
    """A random, valid CNN-like model, deterministic in ``seed``.

    ``max_blocks``: the number of random blocks is drawn from 1..max_blocks
    (a block is one or a few nodes).
    ``fuzz``: also Cast round trips, Squeeze/Unsqueeze (without axes when the batch is a
    static 1, in half the models), Reshape, Mul by constants with zeros; some filters, input
    columns and biases zeroed; in a quarter of the models one weight is Inf or NaN (the outputs
    may then be non-finite). The default models are unchanged by this option.
    """
    return _Gen(int(seed), max_blocks, fuzz).build()


def random_input(model: onnx.ModelProto, batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """A standard-normal feed for ``model``'s input with the given batch size."""
    vi = model.graph.input[0]
    dims = [batch if (d.dim_param or not d.dim_value) else d.dim_value
            for d in vi.type.tensor_type.shape.dim]
    return {vi.name: np.random.default_rng(seed).standard_normal(dims).astype(np.float32)}


BLOCK_KINDS: tuple[str, ...] = tuple(_Gen.BLOCKS)
