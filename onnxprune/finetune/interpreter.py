"""An ONNX graph as a trainable torch module: nodes evaluated in topological order with torch ops.

Why our own and not onnx2torch: onnx2torch imports torchvision (whose registry wheels fail to import
beside torch+cpu) and fails on Paddle exports that keep their weights in Constant nodes. A pruned
model needs a few dozen ops; each is a few lines here, and `check_against` proves the module
computes what ONNX Runtime computes before a step is trained.

The float weights of weight-bearing nodes (Conv, ConvTranspose, Gemm, MatMul, BatchNormalization's
scale and bias, LayerNormalization, InstanceNormalization, GroupNormalization, PRelu, LSTM, GRU) are `nn.Parameter`s, named
by the initializer (or Constant node output) that stores them, so trained values go back where
they came from (writeback.py). Every other constant is a fixed tensor. BatchNormalization always
uses its stored statistics (inference form): a few dozen calibration samples per batch would give
noisier ones than the model's own.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

from ..errors import OnnxPruneError

# Input positions of the weights each op family owns (trainable when a float constant sits there).
WEIGHT_INPUTS = {
    "Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (0, 1, 2), "MatMul": (0, 1),
    "BatchNormalization": (1, 2), "InstanceNormalization": (1, 2), "LayerNormalization": (1, 2),
    "GroupNormalization": (1, 2),
    "PRelu": (1,), "LSTM": (1, 2, 3), "GRU": (1, 2, 3),
}
FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
               onnx.TensorProto.BFLOAT16)

_DTYPES = {
    onnx.TensorProto.FLOAT: torch.float32, onnx.TensorProto.DOUBLE: torch.float64,
    onnx.TensorProto.FLOAT16: torch.float16, onnx.TensorProto.BFLOAT16: torch.bfloat16,
    onnx.TensorProto.INT8: torch.int8, onnx.TensorProto.UINT8: torch.uint8, onnx.TensorProto.INT16: torch.int16,
    onnx.TensorProto.INT32: torch.int32, onnx.TensorProto.INT64: torch.int64, onnx.TensorProto.BOOL: torch.bool,
}


class ConversionError(OnnxPruneError):
    """The model cannot be run as a torch module (an op or attribute the interpreter does not know,
    or outputs that differ from ONNX Runtime's)."""


def _tensor(array: np.ndarray) -> torch.Tensor:
    if array.dtype == np.uint16 or array.dtype.kind in "US" or array.dtype == object:
        raise ConversionError(f"a constant of type {array.dtype} is not supported")
    return torch.from_numpy(np.array(array, copy=True))


def stored_constants(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """name -> the TensorProto that stores it: initializers and Constant nodes' `value`."""
    out = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    out[node.output[0]] = a.t
    return out


def trainable_names(model: onnx.ModelProto) -> list[str]:
    """Float constants read as weights of a weight-bearing node (directly or through Identity, as
    PyTorch writes tied tensors), in first-use order."""
    graph = model.graph
    stored = stored_constants(graph)
    identity = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity"}
    names: list[str] = []
    for node in graph.node:
        for i in WEIGHT_INPUTS.get(node.op_type, ()):
            if i >= len(node.input) or not node.input[i]:
                continue
            name = node.input[i]
            while name not in stored and name in identity:
                name = identity[name]
            if name in stored and stored[name].data_type in FLOAT_TYPES and name not in names:
                names.append(name)
    return names


class OnnxModule(torch.nn.Module):
    """forward(feeds: {input name: tensor}) -> [outputs in the graph's order]; float weights are parameters."""

    def __init__(self, model: onnx.ModelProto, trainable: list[str] | None = None):
        super().__init__()
        graph = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        self.input_names = [i.name for i in graph.input if i.name not in {t.name for t in graph.initializer}]
        self.output_names = [o.name for o in graph.output]
        trainable = trainable_names(model) if trainable is None else trainable
        self.weights = torch.nn.ParameterList()
        self.param_names: list[str] = []
        self.constants: dict[str, torch.Tensor] = {}
        stored = stored_constants(graph)
        for name, tensor in stored.items():
            array = numpy_helper.to_array(tensor)
            if name in trainable:
                self.param_names.append(name)
                self.weights.append(torch.nn.Parameter(torch.from_numpy(np.array(array, dtype=np.float32))))
            else:
                self.constants[name] = _tensor(array)
        self.dtypes = {name: stored[name].data_type for name in self.param_names}
        self.nodes = []
        for node in graph.node:
            if node.op_type == "Constant":
                if node.output[0] not in stored:
                    raise ConversionError(f"op Constant (node {node.name or node.output[0]}) without a tensor "
                                          "value is not supported")
                continue
            if node.domain not in ("", "ai.onnx") or node.op_type not in OPS:
                raise ConversionError(f"op {node.op_type} (node {node.name or node.output[0]}) is not supported")
            if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
                raise ConversionError(f"op {node.op_type} (node {node.name or node.output[0]}) with a subgraph "
                                      "is not supported")
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
            self.nodes.append((node, attrs))
        self._index = {name: i for i, name in enumerate(self.param_names)}
        self.channels_last = False

    def use_channels_last(self) -> None:
        """4-D weights and inputs in channels-last memory (NHWC strides, the same values and shapes):
        oneDNN's convolutions run faster so on CPU (a pruned YOLO11n at 320, batch 16: forward and
        backward 0.47-0.52 s against 0.61-0.63 s, 2 threads)."""
        self.channels_last = True
        for p in self.weights:
            if p.dim() == 4:
                p.data = p.data.contiguous(memory_format=torch.channels_last)

    def named_weights(self) -> dict[str, torch.Tensor]:
        return {name: self.weights[i] for name, i in self._index.items()}

    def forward(self, feeds: dict[str, torch.Tensor], names: list[str] | None = None) -> list[torch.Tensor]:
        """The graph outputs (or the tensors `names`) for the inputs `feeds`."""
        values: dict[str, torch.Tensor] = dict(self.constants)
        values.update(self.named_weights())
        if self.channels_last:
            feeds = {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 and v.is_floating_point() else v
                     for k, v in feeds.items()}
        values.update(feeds)
        for node, attrs in self.nodes:
            inputs = [values[n] if n else None for n in node.input]
            try:
                out = OPS[node.op_type](self, inputs, attrs, len(node.output))
            except ConversionError:
                raise
            except Exception as exc:  # an attribute or shape this op's torch form does not cover
                raise ConversionError(f"op {node.op_type} (node {node.name or node.output[0]}) failed in torch: "
                                      f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
            if not isinstance(out, (tuple, list)):
                out = (out,)
            for name, value in zip(node.output, out):
                if name:
                    values[name] = value
        return [values[n] for n in (self.output_names if names is None else names)]


# -- ops ----------------------------------------------------------------------------------------
OPS = {}


def op(*names):
    def register(fn):
        for n in names:
            OPS[n] = fn
        return fn
    return register


def _ints(t) -> list[int]:
    return [int(v) for v in t.reshape(-1).tolist()]


def _unsupported(what: str):
    raise ConversionError(what)


def _unary(fn):
    return lambda m, x, a, n: fn(x[0])


for _name, _fn in {
    "Relu": F.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Exp": torch.exp, "Log": torch.log,
    "Sqrt": torch.sqrt, "Abs": torch.abs, "Neg": torch.neg, "Erf": torch.erf, "Floor": torch.floor,
    "Ceil": torch.ceil, "Reciprocal": torch.reciprocal, "Sin": torch.sin, "Cos": torch.cos,
    "Not": torch.logical_not, "Sign": torch.sign, "Round": torch.round, "Softsign": F.softsign,
    "Identity": lambda x: x, "Dropout": lambda x: x,
}.items():
    OPS[_name] = _unary(_fn)


def _binary(fn):
    return lambda m, x, a, n: fn(x[0], x[1])


for _name, _fn in {
    "Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Pow": torch.pow,
    "Equal": torch.eq, "Less": torch.lt, "Greater": torch.gt, "LessOrEqual": torch.le, "GreaterOrEqual": torch.ge,
    "And": torch.logical_and, "Or": torch.logical_or, "Xor": torch.logical_xor,
}.items():
    OPS[_name] = _binary(_fn)


@op("Div")
def _div(m, x, a, n):
    if x[0].is_floating_point() or x[1].is_floating_point():
        return x[0] / x[1]
    return torch.div(x[0], x[1], rounding_mode="trunc")


@op("Mod")
def _mod(m, x, a, n):
    return torch.fmod(x[0], x[1]) if a.get("fmod", 0) else torch.remainder(x[0], x[1])


def _fold(fn, mean=False):
    def run(m, x, a, n):
        out = x[0]
        for y in x[1:]:
            out = fn(out, y)
        return out / len(x) if mean else out
    return run


OPS.update({"Max": _fold(torch.maximum), "Min": _fold(torch.minimum), "Sum": _fold(torch.add),
            "Mean": _fold(torch.add, mean=True)})


@op("Where")
def _where(m, x, a, n):
    return torch.where(x[0], x[1], x[2])


@op("LeakyRelu")
def _leaky(m, x, a, n):
    return F.leaky_relu(x[0], a.get("alpha", 0.01))


@op("Elu")
def _elu(m, x, a, n):
    return F.elu(x[0], a.get("alpha", 1.0))


@op("HardSigmoid")
def _hsig(m, x, a, n):
    return torch.clamp(a.get("alpha", 0.2) * x[0] + a.get("beta", 0.5), 0, 1)


@op("HardSwish")
def _hswish(m, x, a, n):
    return F.hardswish(x[0])


@op("Softplus")
def _softplus(m, x, a, n):
    return F.softplus(x[0])


@op("Gelu")
def _gelu(m, x, a, n):
    return F.gelu(x[0], approximate=a.get("approximate", "none"))


@op("Clip")
def _clip(m, x, a, n):
    lo = x[1] if len(x) > 1 and x[1] is not None else a.get("min")
    hi = x[2] if len(x) > 2 and x[2] is not None else a.get("max")
    out = x[0]
    if lo is not None:
        out = torch.clamp(out, min=float(lo))
    if hi is not None:
        out = torch.clamp(out, max=float(hi))
    return out


@op("PRelu")
def _prelu(m, x, a, n):
    return torch.where(x[0] >= 0, x[0], x[0] * x[1])


@op("Cast")
def _cast(m, x, a, n):
    to = _DTYPES.get(a["to"])
    if to is None:
        _unsupported(f"op Cast to type {a['to']} is not supported")
    return x[0].to(to)


@op("CastLike")
def _castlike(m, x, a, n):
    return x[0].to(x[1].dtype)


def _softmax_op(log: bool):
    def run(m, x, a, n):
        fn = torch.log_softmax if log else torch.softmax
        if m.opset >= 13:
            return fn(x[0], dim=a.get("axis", -1))
        axis = a.get("axis", 1) % x[0].dim()  # before opset 13: over the flattened axes from `axis` on
        shape = x[0].shape
        return fn(x[0].reshape(*shape[:axis], -1), dim=-1).reshape(shape)
    return run


OPS.update({"Softmax": _softmax_op(False), "LogSoftmax": _softmax_op(True)})


# -- shapes and indexing ---------------------------------------------------------------------------
@op("Shape")
def _shape(m, x, a, n):
    dims = list(x[0].shape)
    start, end = a.get("start", 0), a.get("end", None)
    return torch.tensor(dims[start:end], dtype=torch.int64)


@op("Size")
def _size(m, x, a, n):
    return torch.tensor(x[0].numel(), dtype=torch.int64)


@op("Reshape")
def _reshape(m, x, a, n):
    target = _ints(x[1])
    if not a.get("allowzero", 0):
        target = [x[0].shape[i] if d == 0 else d for i, d in enumerate(target)]
    return x[0].reshape(target)


@op("Flatten")
def _flatten(m, x, a, n):
    axis = a.get("axis", 1) % (x[0].dim() or 1) if a.get("axis", 1) < 0 else a.get("axis", 1)
    return x[0].reshape(int(np.prod(x[0].shape[:axis])), -1)


def _axes(m, x, a, pos=1):
    if len(x) > pos and x[pos] is not None:
        return _ints(x[pos])
    return list(a["axes"]) if "axes" in a else None


@op("Squeeze")
def _squeeze(m, x, a, n):
    axes = _axes(m, x, a)
    if axes is None:
        return x[0].squeeze()
    return x[0].squeeze(tuple(ax % x[0].dim() for ax in axes)) if axes else x[0]


@op("Unsqueeze")
def _unsqueeze(m, x, a, n):
    out = x[0]
    rank = out.dim() + len(_axes(m, x, a))
    for ax in sorted(ax % rank for ax in _axes(m, x, a)):
        out = out.unsqueeze(ax)
    return out


@op("Transpose")
def _transpose(m, x, a, n):
    perm = a.get("perm", list(range(x[0].dim()))[::-1])
    return x[0].permute(*perm)


@op("Concat")
def _concat(m, x, a, n):
    parts = [t for t in x if t is not None and not (t.dim() == 1 and t.numel() == 0)] or [x[0]]
    dtype = parts[0].dtype
    return torch.cat([t.to(dtype) for t in parts], dim=a["axis"])


@op("Split")
def _split(m, x, a, n):
    axis = a.get("axis", 0)
    sizes = _ints(x[1]) if len(x) > 1 and x[1] is not None else a.get("split")
    if not sizes:
        length = x[0].shape[axis]
        parts = a.get("num_outputs", n)
        each = -(-length // parts)
        sizes = [min(each, length - i * each) for i in range(parts)]
    return torch.split(x[0], list(sizes), dim=axis)


@op("Slice")
def _slice(m, x, a, n):
    data = x[0]
    if m.opset < 10:
        starts, ends, axes, steps = a["starts"], a["ends"], a.get("axes"), None
    else:
        starts, ends = _ints(x[1]), _ints(x[2])
        axes = _ints(x[3]) if len(x) > 3 and x[3] is not None else None
        steps = _ints(x[4]) if len(x) > 4 and x[4] is not None else None
    axes = list(axes) if axes is not None else list(range(len(starts)))
    steps = list(steps) if steps is not None else [1] * len(starts)
    index = [slice(None)] * data.dim()
    flips = []
    for s, e, ax, st in zip(starts, ends, axes, steps):
        ax %= data.dim()
        dim = data.shape[ax]
        if st > 0:
            s = max(0, min(dim, s + dim if s < 0 else s))
            e = max(0, min(dim, e + dim if e < 0 else e))
            index[ax] = slice(s, max(s, e), st)
        else:  # negative step: torch slices forward only; flip, then slice
            s = max(-1, min(dim - 1, s + dim if s < 0 else s))
            e = max(-1, min(dim - 1, e + dim if e < 0 else e))
            # positions s, s+st, ... > e  ->  in the flipped tensor: dim-1-s, ... < dim-1-e
            index[ax] = slice(dim - 1 - s, dim - 1 - e, -st)
            flips.append(ax)
    if flips:
        data = torch.flip(data, flips)
    return data[tuple(index)]


@op("Gather")
def _gather(m, x, a, n):
    axis = a.get("axis", 0) % x[0].dim()
    idx = x[1].long()
    idx = torch.where(idx < 0, idx + x[0].shape[axis], idx)
    out = torch.index_select(x[0], axis, idx.reshape(-1))
    return out.reshape((*x[0].shape[:axis], *idx.shape, *x[0].shape[axis + 1:]))


@op("GatherElements")
def _gather_elements(m, x, a, n):
    axis = a.get("axis", 0)
    idx = x[1].long()
    idx = torch.where(idx < 0, idx + x[0].shape[axis], idx)
    return torch.gather(x[0], axis, idx)


@op("ScatterElements")
def _scatter_elements(m, x, a, n):
    if a.get("reduction", "none") != "none":
        _unsupported(f"op ScatterElements with reduction {a['reduction']} is not supported")
    axis = a.get("axis", 0)
    idx = x[1].long()
    idx = torch.where(idx < 0, idx + x[0].shape[axis], idx)
    return torch.scatter(x[0], axis, idx, x[2])


@op("Expand")
def _expand(m, x, a, n):
    shape = _ints(x[1])
    rank = max(len(shape), x[0].dim())
    shape = [1] * (rank - len(shape)) + shape
    src = [1] * (rank - x[0].dim()) + list(x[0].shape)
    return x[0].reshape(src).expand([max(s, d) if d != 1 or s != 1 else 1 for s, d in zip(src, shape)])


@op("Tile")
def _tile(m, x, a, n):
    return x[0].repeat(_ints(x[1]))


@op("Range")
def _range(m, x, a, n):
    start, limit, delta = (t.item() for t in x[:3])
    return torch.arange(start, limit, delta, dtype=x[0].dtype)


@op("ConstantOfShape")
def _constant_of_shape(m, x, a, n):
    value = a.get("value")
    array = numpy_helper.to_array(value) if value is not None else np.zeros(1, np.float32)
    return torch.full(_ints(x[0]), array.reshape(-1)[0].item(), dtype=_tensor(array).dtype)


@op("OneHot")
def _one_hot(m, x, a, n):
    depth = int(x[1].reshape(-1)[0].item())
    idx = x[0].long()
    idx = torch.where(idx < 0, idx + depth, idx)
    off, on = x[2][0], x[2][1]
    hot = F.one_hot(idx, depth)
    out = torch.where(hot.bool(), on, off)
    axis = a.get("axis", -1)
    return out if axis == -1 else out.movedim(-1, axis)


@op("TopK")
def _topk(m, x, a, n):
    k = int(x[1].reshape(-1)[0]) if len(x) > 1 else a["k"]
    values, indices = torch.topk(x[0], k, dim=a.get("axis", -1), largest=bool(a.get("largest", 1)),
                                 sorted=bool(a.get("sorted", 1)))
    return values, indices


def _arg_op(fn):
    def run(m, x, a, n):
        if a.get("select_last_index", 0):
            _unsupported("op ArgMax/ArgMin with select_last_index is not supported")
        return fn(x[0], dim=a.get("axis", 0), keepdim=bool(a.get("keepdims", 1)))
    return run


OPS.update({"ArgMax": _arg_op(torch.argmax), "ArgMin": _arg_op(torch.argmin)})


def _reduce(kind):
    def run(m, x, a, n):
        data = x[0]
        from_input = m.opset >= 18 or (kind == "ReduceSum" and m.opset >= 13)
        axes = (_ints(x[1]) if len(x) > 1 and x[1] is not None and x[1].numel() else None) if from_input \
            else a.get("axes")
        keep = bool(a.get("keepdims", 1))
        if not axes:
            if a.get("noop_with_empty_axes", 0):
                return data
            axes = list(range(data.dim()))
        dims = tuple(ax % data.dim() for ax in axes)
        if kind == "ReduceMean":
            return data.mean(dim=dims, keepdim=keep)
        if kind == "ReduceSum":
            return data.sum(dim=dims, keepdim=keep)
        if kind == "ReduceProd":
            out = data
            for d in sorted(dims, reverse=True):
                out = out.prod(dim=d, keepdim=keep)
            return out
        if kind == "ReduceL2":
            return data.pow(2).sum(dim=dims, keepdim=keep).sqrt()
        if kind == "ReduceSumSquare":
            return data.pow(2).sum(dim=dims, keepdim=keep)
        return data.amax(dim=dims, keepdim=keep) if kind == "ReduceMax" else data.amin(dim=dims, keepdim=keep)
    return run


for _name in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2", "ReduceSumSquare"):
    OPS[_name] = _reduce(_name)


@op("CumSum")
def _cumsum(m, x, a, n):
    if a.get("exclusive", 0) or a.get("reverse", 0):
        _unsupported("op CumSum with exclusive or reverse is not supported")
    return torch.cumsum(x[0], dim=int(x[1].reshape(-1)[0]))


@op("DepthToSpace")
def _depth_to_space(m, x, a, n):
    b = a["blocksize"]
    N, C, H, W = x[0].shape
    if a.get("mode", "DCR") == "DCR":
        t = x[0].reshape(N, b, b, C // (b * b), H, W).permute(0, 3, 4, 1, 5, 2)
    else:
        t = x[0].reshape(N, C // (b * b), b, b, H, W).permute(0, 1, 4, 2, 5, 3)
    return t.reshape(N, C // (b * b), H * b, W * b)


@op("SpaceToDepth")
def _space_to_depth(m, x, a, n):
    b = a["blocksize"]
    N, C, H, W = x[0].shape
    t = x[0].reshape(N, C, H // b, b, W // b, b).permute(0, 3, 5, 1, 2, 4)
    return t.reshape(N, C * b * b, H // b, W // b)


@op("Einsum")
def _einsum(m, x, a, n):
    return torch.einsum(a["equation"], *x)


# -- layers ----------------------------------------------------------------------------------------
def _spatial_pads(a, x, kernel, strides, dilations):
    """Per spatial axis (begin, end) padding, auto_pad resolved from the input size."""
    rank = len(kernel)
    auto = a.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for i in range(rank):
            size = x.shape[2 + i]
            out = -(-size // strides[i])
            total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size)
            small, big = total // 2, total - total // 2
            pads.append((small, big) if auto == "SAME_UPPER" else (big, small))
        return pads
    if auto == "VALID":
        return [(0, 0)] * rank
    p = a.get("pads", [0] * (2 * rank))
    return [(p[i], p[i + rank]) for i in range(rank)]


def _pad_input(x, pads, value=0.0):
    """Asymmetric padding as an explicit F.pad; returns the input and symmetric padding for torch."""
    if all(b == e for b, e in pads):
        return x, [b for b, _ in pads]
    flat = []
    for b, e in reversed(pads):
        flat += [b, e]
    return F.pad(x, flat, value=value), [0] * len(pads)


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


@op("Conv")
def _conv(m, x, a, n):
    w = x[1]
    rank = w.dim() - 2
    kernel = a.get("kernel_shape", list(w.shape[2:]))
    strides = a.get("strides", [1] * rank)
    dilations = a.get("dilations", [1] * rank)
    inp, pad = _pad_input(x[0], _spatial_pads(a, x[0], kernel, strides, dilations))
    bias = x[2] if len(x) > 2 else None
    return _CONV[rank](inp, w, bias, strides, pad, dilations, a.get("group", 1))


@op("ConvTranspose")
def _conv_transpose(m, x, a, n):
    w = x[1]
    rank = w.dim() - 2
    strides = a.get("strides", [1] * rank)
    dilations = a.get("dilations", [1] * rank)
    if "output_shape" in a or a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        _unsupported("op ConvTranspose with output_shape or auto_pad SAME is not supported")
    p = a.get("pads", [0] * (2 * rank))
    out_pad = a.get("output_padding", [0] * rank)
    bias = x[2] if len(x) > 2 else None
    y = _CONV_T[rank](x[0], w, bias, strides, 0, out_pad, a.get("group", 1), dilations)
    index = [slice(None), slice(None)] + [slice(p[i], y.shape[2 + i] - p[i + rank]) for i in range(rank)]
    return y[tuple(index)]


@op("Gemm")
def _gemm(m, x, a, n):
    A = x[0].t() if a.get("transA", 0) else x[0]
    B = x[1].t() if a.get("transB", 0) else x[1]
    y = a.get("alpha", 1.0) * (A @ B)
    if len(x) > 2 and x[2] is not None:
        y = y + a.get("beta", 1.0) * x[2]
    return y


@op("MatMul")
def _matmul(m, x, a, n):
    return torch.matmul(x[0], x[1])


def _channel_shape(x, t):
    return t.reshape(1, -1, *([1] * (x.dim() - 2)))


@op("BatchNormalization")
def _batchnorm(m, x, a, n):
    data, scale, bias, mean, var = x[:5]
    eps = a.get("epsilon", 1e-5)
    return (data - _channel_shape(data, mean)) * _channel_shape(data, scale / torch.sqrt(var + eps)) \
        + _channel_shape(data, bias)


def _normalized(data, dims, eps):
    """(data - mean) / sqrt(var + eps) over `dims` (written out: torch's instance_norm refuses one
    spatial element, where ONNX Runtime gives 0)."""
    mean = data.mean(dim=dims, keepdim=True)
    var = (data - mean).pow(2).mean(dim=dims, keepdim=True)
    return (data - mean) / torch.sqrt(var + eps)


@op("InstanceNormalization")
def _instancenorm(m, x, a, n):
    data = x[0]
    y = _normalized(data, tuple(range(2, data.dim())), a.get("epsilon", 1e-5))
    return y * _channel_shape(data, x[1]) + _channel_shape(data, x[2])


@op("GroupNormalization")
def _groupnorm(m, x, a, n):
    """Scale and bias per channel from opset 21, per group in opset 18."""
    data, scale, bias = x[:3]
    groups = a["num_groups"]
    if scale.numel() != data.shape[1]:
        per = data.shape[1] // groups
        scale, bias = scale.repeat_interleave(per), bias.repeat_interleave(per)
    grouped = data.reshape(data.shape[0], groups, -1)
    y = _normalized(grouped, (2,), a.get("epsilon", 1e-5)).reshape(data.shape)
    return y * _channel_shape(data, scale) + _channel_shape(data, bias)


@op("LayerNormalization")
def _layernorm(m, x, a, n):
    axis = a.get("axis", -1) % x[0].dim()
    dims = tuple(range(axis, x[0].dim()))
    mean = x[0].mean(dim=dims, keepdim=True)
    var = (x[0] - mean).pow(2).mean(dim=dims, keepdim=True)
    y = (x[0] - mean) / torch.sqrt(var + a.get("epsilon", 1e-5)) * x[1]
    if len(x) > 2 and x[2] is not None:
        y = y + x[2]
    return y


def _pool_setup(a, x):
    kernel = list(a["kernel_shape"])
    rank = len(kernel)
    strides = a.get("strides", [1] * rank)
    dilations = a.get("dilations", [1] * rank)
    return kernel, strides, dilations, _spatial_pads(a, x, kernel, strides, dilations)


@op("MaxPool")
def _maxpool(m, x, a, n):
    if n > 1:
        _unsupported("op MaxPool with an Indices output is not supported")
    kernel, strides, dilations, pads = _pool_setup(a, x[0])
    if any(b > k // 2 or e > k // 2 for (b, e), k in zip(pads, kernel)) or any(b != e for b, e in pads):
        inp, pad = _pad_input(x[0], pads, value=-math.inf) if any(b != e for b, e in pads) else (x[0], None)
        if pad is None:
            inp, pad = F.pad(x[0], [v for b, e in reversed(pads) for v in (b, e)], value=-math.inf), [0] * len(pads)
    else:
        inp, pad = x[0], [b for b, _ in pads]
    fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[len(kernel)]
    return fn(inp, kernel, strides, pad, dilations, ceil_mode=bool(a.get("ceil_mode", 0)))


@op("AveragePool")
def _avgpool(m, x, a, n):
    kernel, strides, dilations, pads = _pool_setup(a, x[0])
    if any(d != 1 for d in dilations):
        _unsupported("op AveragePool with dilations is not supported")
    include = bool(a.get("count_include_pad", 0))
    if any(b != e or b > k // 2 for (b, e), k in zip(pads, kernel)):
        if not include and any(b or e for b, e in pads):
            _unsupported("op AveragePool with asymmetric padding outside the window is not supported")
        inp, pad = F.pad(x[0], [v for b, e in reversed(pads) for v in (b, e)]), [0] * len(pads)
    else:
        inp, pad = x[0], [b for b, _ in pads]
    fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[len(kernel)]
    return fn(inp, kernel, strides, pad, ceil_mode=bool(a.get("ceil_mode", 0)), count_include_pad=include)


@op("GlobalAveragePool")
def _gap(m, x, a, n):
    return x[0].mean(dim=tuple(range(2, x[0].dim())), keepdim=True)


@op("GlobalMaxPool")
def _gmp(m, x, a, n):
    return x[0].amax(dim=tuple(range(2, x[0].dim())), keepdim=True)


@op("Pad")
def _pad(m, x, a, n):
    if m.opset < 11:
        pads, value = a["pads"], a.get("value", 0.0)
        axes = None
    else:
        pads = _ints(x[1])
        value = x[2].reshape(-1)[0].item() if len(x) > 2 and x[2] is not None and x[2].numel() else 0.0
        axes = _ints(x[3]) if len(x) > 3 and x[3] is not None else None
    rank = x[0].dim()
    axes = [ax % rank for ax in axes] if axes is not None else list(range(rank))
    per = {ax: (pads[i], pads[i + len(axes)]) for i, ax in enumerate(axes)}
    flat = []
    for ax in reversed(range(rank)):
        flat += list(per.get(ax, (0, 0)))
    while flat[-2:] == [0, 0] and len(flat) > 2:
        flat = flat[:-2]
    mode = a.get("mode", "constant")
    if mode == "constant":
        return F.pad(x[0], flat, value=value)
    return F.pad(x[0], flat, mode={"reflect": "reflect", "edge": "replicate"}.get(mode, mode))


@op("Resize", "Upsample")
def _resize(m, x, a, n):
    data = x[0]
    mode = a.get("mode", "nearest")
    spatial = data.shape[2:]
    sizes = None
    if len(x) > 3 and x[3] is not None and x[3].numel():
        sizes = _ints(x[3])[2:]
    else:
        scales = x[2] if len(x) > 2 and x[2] is not None and x[2].numel() else (x[1] if len(x) == 2 else None)
        scales = scales.reshape(-1).tolist() if scales is not None else a.get("scales")
        if scales is None:
            _unsupported("op Resize without scales or sizes is not supported")
        if any(s != 1 for s in scales[:2]):
            _unsupported("op Resize over the batch or channel axis is not supported")
        sizes = [int(math.floor(d * s)) for d, s in zip(spatial, scales[2:])]
    transform = a.get("coordinate_transformation_mode", "half_pixel" if m.opset >= 11 else "asymmetric")
    if mode == "nearest":
        nearest = a.get("nearest_mode", "round_prefer_floor")
        if transform == "asymmetric" and nearest == "floor":
            return F.interpolate(data, size=sizes, mode="nearest")
        if all(s % d == 0 for s, d in zip(sizes, spatial)) and transform in ("asymmetric", "half_pixel",
                                                                               "pytorch_half_pixel"):
            return F.interpolate(data, size=sizes, mode="nearest")  # whole-number upscale: every mode agrees
        if transform in ("half_pixel", "pytorch_half_pixel"):
            return F.interpolate(data, size=sizes, mode="nearest-exact")
        _unsupported(f"op Resize nearest with {transform}/{nearest} is not supported")
    if mode in ("linear", "bilinear", "cubic", "bicubic"):
        kind = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(spatial)] if "linear" in mode else "bicubic"
        if transform == "align_corners":
            return F.interpolate(data, size=sizes, mode=kind, align_corners=True)
        if transform in ("half_pixel", "pytorch_half_pixel"):
            return F.interpolate(data, size=sizes, mode=kind, align_corners=False)
        _unsupported(f"op Resize {mode} with {transform} is not supported")
    _unsupported(f"op Resize mode {mode} is not supported")


@op("LRN")
def _lrn(m, x, a, n):
    return F.local_response_norm(x[0], a["size"], a.get("alpha", 1e-4), a.get("beta", 0.75), a.get("bias", 1.0))


# -- recurrent -----------------------------------------------------------------------------------------
_ACT = {"Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Relu": torch.relu}


def _recurrent_inputs(op_type: str, x, a, default_acts: list[str]):
    """X, W, R, B, initial_h and the activations of an LSTM / GRU, refusing what is not modelled
    (sequence_lens shorter than the sequence, activations without a torch form)."""
    X, W, R = x[0], x[1], x[2]
    B = x[3] if len(x) > 3 and x[3] is not None else None
    if len(x) > 4 and x[4] is not None and not bool((x[4] == X.shape[0]).all()):
        _unsupported(f"op {op_type} with sequence_lens shorter than the sequence is not supported")
    h0 = x[5] if len(x) > 5 and x[5] is not None else None
    acts = a.get("activations", default_acts)
    if any(act not in _ACT for act in acts):
        _unsupported(f"op {op_type} with activations {acts} is not supported")
    return X, W, R, B, h0, acts


@op("LSTM")
def _lstm(m, x, a, n):
    if a.get("layout", 0) or a.get("input_forget", 0) or "clip" in a:
        _unsupported("op LSTM with layout, input_forget or clip is not supported")
    X, W, R, B, h0, acts = _recurrent_inputs("LSTM", x, a, ["Sigmoid", "Tanh", "Tanh"])
    c0 = x[6] if len(x) > 6 and x[6] is not None else None
    if len(x) > 7 and x[7] is not None:
        _unsupported("op LSTM with peepholes is not supported")
    directions = W.shape[0]
    hidden = R.shape[-1]
    T, N = X.shape[0], X.shape[1]
    ys, hs, cs = [], [], []
    for d in range(directions):
        f, g, h = (_ACT[acts[3 * d + k] if len(acts) > 3 * d + k else acts[k]] for k in range(3))
        reverse = a.get("direction", "forward") == "reverse" or d == 1
        hx = h0[d] if h0 is not None else X.new_zeros(N, hidden)
        cx = c0[d] if c0 is not None else X.new_zeros(N, hidden)
        gates_x = X @ W[d].t()
        if B is not None:
            gates_x = gates_x + B[d, :4 * hidden] + B[d, 4 * hidden:]
        out = [None] * T
        for t in (range(T - 1, -1, -1) if reverse else range(T)):
            gates = gates_x[t] + hx @ R[d].t()
            i, o, fg, c = gates.split(hidden, dim=-1)  # ONNX gate order: input, output, forget, cell
            cx = f(fg) * cx + f(i) * g(c)
            hx = f(o) * h(cx)
            out[t] = hx
        ys.append(torch.stack(out))
        hs.append(hx)
        cs.append(cx)
    return torch.stack(ys, dim=1), torch.stack(hs), torch.stack(cs)


@op("GRU")
def _gru(m, x, a, n):
    """ONNX GRU, gates z, r, h; `linear_before_reset` 1 (PyTorch's exports) applies r after R_h."""
    if a.get("layout", 0) or "clip" in a:
        _unsupported("op GRU with layout or clip is not supported")
    X, W, R, B, h0, acts = _recurrent_inputs("GRU", x, a, ["Sigmoid", "Tanh"])
    before_reset = bool(a.get("linear_before_reset", 0))
    directions, hidden = W.shape[0], R.shape[-1]
    T, N = X.shape[0], X.shape[1]
    ys, hs = [], []
    for d in range(directions):
        f, g = (_ACT[acts[2 * d + k] if len(acts) > 2 * d + k else acts[k]] for k in range(2))
        reverse = a.get("direction", "forward") == "reverse" or d == 1
        hx = h0[d] if h0 is not None else X.new_zeros(N, hidden)
        gates_x = X @ W[d].t()
        wb = B[d, :3 * hidden] if B is not None else None
        rb = B[d, 3 * hidden:] if B is not None else None
        if wb is not None:
            gates_x = gates_x + wb
        r_z, r_r, r_h = R[d].split(hidden, dim=0)
        rb_z, rb_r, rb_h = rb.split(hidden) if rb is not None else (0.0, 0.0, 0.0)
        out = [None] * T
        for t in (range(T - 1, -1, -1) if reverse else range(T)):
            x_z, x_r, x_h = gates_x[t].split(hidden, dim=-1)
            z = f(x_z + hx @ r_z.t() + rb_z)
            r = f(x_r + hx @ r_r.t() + rb_r)
            if before_reset:
                h_new = g(x_h + r * (hx @ r_h.t() + rb_h))
            else:
                h_new = g(x_h + (r * hx) @ r_h.t() + rb_h)
            hx = (1 - z) * h_new + z * hx
            out[t] = hx
        ys.append(torch.stack(out))
        hs.append(hx)
    return torch.stack(ys, dim=1), torch.stack(hs)

