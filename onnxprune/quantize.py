"""INT8 quantization after pruning, through onnxruntime.quantization, with the same calibration data.

`int8`: static quantization in QDQ format (QuantizeLinear/DequantizeLinear around float ops, which
ONNX Runtime and OpenVINO read), int8 weights per output channel, uint8 activations calibrated
(MinMax) on the --calib data. `int8-symmetric`: the same with int8 activations and every zero point
0, the only QDQ form TensorRT accepts. `dynamic`: int8 weights, activations quantized at run time
(MatMul/LSTM/Attention-heavy models; no calibration). `auto`: the `int8` form on only the nodes
whose int8 form is faster on the runtime (strategies/precision.py picks them by timing; `nodes`
here). The model's opset and IR version are kept:
per-channel weights need opset 13 (DequantizeLinear's `axis`), so opsets 10-12 get per-tensor
weights, and below 10 there is no QuantizeLinear at all.
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from pathlib import Path

import onnx

from .config import QUANTIZE_MODES
from .errors import ConfigError, OnnxPruneError, QuantizationError, RuntimeUnavailableError

MODES = QUANTIZE_MODES
# Ops `--quantize dynamic` converts: integer MatMul/LSTM/Attention are what pays off on CPU;
# ConvInteger is usually slower than the float conv in ONNX Runtime, so convs stay float.
DYNAMIC_OPS = ["MatMul", "Gemm", "LSTM", "Attention", "EmbedLayerNormalization", "Gather"]
PER_CHANNEL_OPSET = 13
MIN_OPSET = 10


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def check_quantizable(model: onnx.ModelProto, mode: str) -> list[str]:
    """Refuse what cannot be quantized without changing the model's opset; notes for the rest."""
    opset = _opset(model)
    if opset < MIN_OPSET:
        raise ConfigError(f"--quantize {mode}: the model's opset {opset} has no QuantizeLinear (needs opset >= "
                          f"{MIN_OPSET}, >= {PER_CHANNEL_OPSET} for per-channel weights); onnxprune keeps the opset: "
                          f"convert the model first (onnx.version_converter.convert_version(model, {PER_CHANNEL_OPSET}))")
    ops = {n.op_type for n in model.graph.node}
    already = ops & {"QuantizeLinear", "DequantizeLinear", "ConvInteger", "MatMulInteger", "QLinearConv",
                     "QLinearMatMul", "DynamicQuantizeLinear"}
    if already:
        raise ConfigError(f"--quantize {mode}: the model is already quantized ({', '.join(sorted(already))}); "
                          "prune it without --quantize, it stays quantized")
    float_inputs = [i for i in model.graph.input if i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16]
    if float_inputs or any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        raise ConfigError(f"--quantize {mode}: the model is float16; onnxruntime.quantization quantizes float32 "
                          "models")
    notes = []
    if mode != "dynamic" and opset < PER_CHANNEL_OPSET:
        notes.append(f"opset {opset} < {PER_CHANNEL_OPSET}: weights quantized per tensor (per-channel "
                     f"DequantizeLinear needs opset {PER_CHANNEL_OPSET}; the opset is kept)")
    return notes


class _Reader:
    """onnxruntime.quantization's CalibrationDataReader over one of our Datasets."""

    def __init__(self, dataset, batch: int):
        self.dataset, self.batch = dataset, batch
        self.samples = 0
        self._it = None

    def get_next(self):
        if self._it is None:
            self._it = iter(self.dataset.batches(self.batch))
        item = next(self._it, None)
        if item is None:
            return None
        self.samples += item.size
        return dict(item.feeds)

    def rewind(self):
        self._it = None
        self.samples = 0


class _FeedsReader(_Reader):
    """A reader over a list of feeds (random inputs of a cut-out layer: ranges for timing only)."""

    def __init__(self, feeds: list[dict]):
        super().__init__(None, 0)
        self.feeds = feeds

    def get_next(self):
        if self._it is None:
            self._it = iter(self.feeds)
        item = next(self._it, None)
        if item is not None:
            self.samples += 1
        return item


def constants_as_initializers(model: onnx.ModelProto) -> int:
    """Move the tensors of top-level Constant nodes (`value` attribute) into initializers of the same
    name, in place: onnxruntime.quantization quantizes only initializer weights, and exporters such as
    paddle2onnx store every weight as a Constant node. Returns how many were moved."""
    g = model.graph
    keep, moved = [], 0
    for n in g.node:
        attrs = {a.name: a for a in n.attribute}
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx") and set(attrs) == {"value"} and len(n.output) == 1:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(attrs["value"].t)
            tensor.name = n.output[0]
            g.initializer.append(tensor)
            moved += 1
        else:
            keep.append(n)
    if moved:
        del g.node[:]
        g.node.extend(keep)
    return moved


def _calibration_reader(model: onnx.ModelProto, data):
    from .runtime.data import Dataset, input_specs, load_data, resolve_batch

    specs = input_specs(model)
    dataset = data if isinstance(data, Dataset) else load_data(data, specs)
    return _Reader(dataset, resolve_batch(specs, None))


def quantize_model(model: onnx.ModelProto, mode: str, calib=None, nodes=None,
                   feeds: list[dict] | None = None) -> tuple[onnx.ModelProto, dict]:
    """The quantized model and what was done (mode, per_channel, quantized op counts, notes).
    `nodes`: quantize only the nodes of these names (static modes; `auto` passes its pick);
    `feeds`: calibrate on these feeds instead of `calib`."""
    if mode not in MODES:
        raise ConfigError(f"--quantize must be one of {', '.join(MODES)}, got {mode}")
    try:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, \
            quantize_static
    except ImportError as exc:
        raise RuntimeUnavailableError(f"--quantize needs onnxruntime (pip install 'onnxprune[cpu]'): {exc}") from None
    notes = check_quantizable(model, mode)
    opset, ir_version = _opset(model), model.ir_version
    static = mode != "dynamic"
    symmetric = mode == "int8-symmetric"
    per_channel = static and opset >= PER_CHANNEL_OPSET
    info = {"mode": mode, "format": "QDQ" if static else "integer ops (dynamic)", "per_channel": per_channel,
            "weights": "int8", "activations": ("int8 symmetric" if symmetric else "uint8") if static else "dynamic"}
    quiet = logging.getLogger()
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the quantizer logs advice on every run
    try:
        with tempfile.TemporaryDirectory(prefix="onnxprune-quant-") as tmp:
            src, dst = Path(tmp) / "float.onnx", Path(tmp) / "quant.onnx"
            if static and model.ir_version >= 4 and any(n.op_type == "Constant" for n in model.graph.node):
                copy = onnx.ModelProto()
                copy.CopyFrom(model)
                if constants_as_initializers(copy):
                    model = copy
            onnx.save(model, src)
            if static:
                if calib is None and feeds is None:
                    raise ConfigError(f"--quantize {mode} calibrates activation ranges: pass --calib data "
                                      "(or --quantize dynamic, which needs none)")
                reader = _FeedsReader(feeds) if feeds is not None else _calibration_reader(model, calib)

                class Reader(CalibrationDataReader):
                    get_next = staticmethod(reader.get_next)
                    rewind = staticmethod(reader.rewind)

                quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                                activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                                weight_type=QuantType.QInt8,
                                nodes_to_quantize=sorted(nodes) if nodes is not None else None,
                                extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True})
                info["calibration_samples"] = reader.samples
            else:
                quantize_dynamic(str(src), str(dst), op_types_to_quantize=DYNAMIC_OPS, per_channel=False,
                                 weight_type=QuantType.QInt8)
            quantized = onnx.load(str(dst))
    except OnnxPruneError:
        raise
    except (ValueError, RuntimeError, KeyError, TypeError, AttributeError, IndexError, onnx.onnx_cpp2py_export.
            checker.ValidationError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise QuantizationError(f"onnxruntime.quantization failed ({mode}): {type(exc).__name__}: {first}") from None
    finally:
        quiet.setLevel(level)
    if _opset(quantized) != opset:
        raise QuantizationError(f"onnxruntime.quantization changed the opset from {opset} to {_opset(quantized)}; "
                                "nothing was written (onnxprune keeps the model's opset)")
    quantized.ir_version = ir_version
    ops = Counter(n.op_type for n in quantized.graph.node)
    info["ops"] = {k: ops[k] for k in ("QuantizeLinear", "DequantizeLinear", "MatMulInteger", "ConvInteger",
                                       "DynamicQuantizeLinear", "DynamicQuantizeLSTM") if ops[k]}
    if not info["ops"]:
        notes.append(f"--quantize {mode}: onnxruntime.quantization found nothing to quantize in this model")
    info["notes"] = notes
    return quantized, info
