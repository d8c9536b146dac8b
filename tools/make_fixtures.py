"""Generate the exporter-pattern fixtures in tests/fixtures/exporters/ (no torch needed).

Each fixture is a small seeded model in a pattern some real exporter or tool writes, for the
robustness tests in tests/robustness/. What makes each one:

=============================  =====================================================================
fixture                        how it is made
=============================  =====================================================================
tf_keras_cnn                   real tf2onnx (``tf2onnx.convert.from_function``) on a Keras 3 model:
                               NHWC input, residual Add, depthwise conv, GlobalAveragePooling2D +
                               Flatten concatenated, Dense head (MatMul + Add); default optimizers
tf_keras_cnn_noopt             the same Keras model with tf2onnx's transpose optimizer (and every
                               other optimizer but constant folding / identity removal) turned
                               off: Transpose(0,3,1,2) before and Transpose(0,2,3,1) after each
                               Conv, channels-last BN Mul/Add and bias Add, ReduceMean over H,W
tf_keras_layernorm             real tf2onnx on Keras 3: LayerNormalization on [B, L, C] as tf2onnx 1.17
                               writes it (GlobalAveragePool mean, gamma folded into rsqrt(var + eps),
                               which multiplies both x and -mean)
tf_keras_unet_crnn             real tf2onnx on Keras 3, H and W dynamic: UpSampling2D (Unsqueeze ->
                               Tile -> Reshape), Conv2DTranspose (pads computed from the shapes),
                               skip Concatenate, Bidirectional(LSTM), Dense on [B, T, C] (Tensordot:
                               Reshape to [ReduceProd(B, T), ReduceProd(C)] -> MatMul -> Reshape)
paddle_style_cnn               onnx.helper, as paddle2onnx (old releases) writes: every weight a
                               ``Constant`` node, no initializers; Conv-BN-Relu, residual, MatMul+Add
paddle_se_cnn                  onnx.helper, as paddle2onnx writes MobileNetV3/PP-LCNet: Constant-node
                               weights, per-channel scale and shift computed in the graph
                               (Reshape / Unsqueeze / Cast / Mul of Constant nodes), depthwise conv,
                               squeeze-excitation (GlobalAveragePool -> Conv -> Relu -> Conv ->
                               HardSigmoid -> Mul)
paddle_reshape_cnn             onnx.helper, as Paddle 2.0 writes a classifier head: SE block, then the
                               Reshape after the global pool takes its target from
                               Concat(Cast(Slice(Cast(Shape(x)), [0:1])), Cast(Constant [C]))
yolo_reshape_cnn               onnx.helper, an Ultralytics-style raw head at dynamic N, H, W: per level
                               Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [6, -1])), levels
                               concatenated on the anchor axis
layernorm_cnn                  onnx.helper, as PyTorch writes ConvNeXt: conv stem, channels-last
                               LayerNormalization (Transpose, LN over the last axis), MLP blocks
                               (MatMul -> Gelu-as-Erf -> MatMul), layer scale, residual; then the same
                               LayerNorm written out (ReduceMean / Sub / Pow / ReduceMean / Add / Sqrt
                               / Div / Mul / Add), as older exporters and Keras write it
recurrent_cnn                  onnx.helper, as torch.onnx writes a CNN + BiLSTM + GRU tagger: Conv ->
                               Squeeze -> Transpose -> two bidirectional ``LSTM`` layers whose zero
                               initial states are ``ConstantOfShape(Concat([4], batch, [H]))`` sliced
                               per layer -> Transpose/Reshape -> ``GRU`` whose zero state is
                               tf2onnx's ``Unsqueeze(Expand(0, Concat(batch, [H])))`` -> MatMul head
grouped_cnn                    onnx.helper, a RegNetY / ResNeXt bottleneck: 1x1 conv -> 3x3 conv with 3
                               groups of 8 channels -> squeeze-excitation (Sigmoid) -> 1x1 conv,
                               residual
subgraph_if                    onnx.helper: an ``If`` whose then-branch convolves an outer conv
                               output (implicit input); the else-branch scales it
subgraph_if_owned              onnx.helper, as spox / torch.cond write a branch on the input: an ``If``
                               whose two branches each run their own conv net (own weights) on the
                               graph input
subgraph_loop                  onnx.helper: a ``Loop`` carrying an outer conv output (explicit
                               input) and reading another one inside its body (implicit input)
fp16_cnn                       the small conv net converted by onnxconverter-common's
                               ``convert_float_to_float16`` (float16 weights, input and output)
qdq_cnn                        the small conv net quantized by ``onnxruntime.quantization``
                               ``quantize_static`` (QDQ format; uint8 activations per-tensor,
                               int8 weights per-channel, int32 biases)
qdq_bn_cnn, qdq_bn_cnn_pt      a conv net with BatchNormalization not folded (a residual pair of BNs
                               sharing one bias through Identity, as PyTorch writes), quantized by
                               ``quantize_static`` (QDQ) per-channel / per-tensor: BN scale and
                               bias int8 / int32 behind DequantizeLinear, the tie an Identity of a
                               DequantizeLinear output
dynamic_hw_cnn                 onnx.helper: input ["N", 3, "H", "W"], Resize x2 + skip Concat,
                               residual Add, GlobalAveragePool, Gemm
keras_attention                onnx.helper, as tf2onnx writes a Keras MultiHeadAttention encoder block:
                               input [N, T, 32], projections on [N * T, 32] rows (Reshape(x, [-1, 32])
                               -> MatMul -> Add), each split into 4 heads of 8 by a Reshape whose
                               target is Concat(Shape(x)[0:2], [4, 8]), Transposes (0,2,1,3) / (0,2,3,1),
                               batched MatMuls, Softmax, merged back by Reshape(-1, 32); residual
                               Add, LayerNormalization, Gelu MLP, mean over T, MatMul head
einsum_attention               onnx.helper, the same block as Keras' EinsumDense and einsum attention
                               write it: q, k, v = Einsum('abc,cde->abde', x, W[32, 4, 8]) + bias
                               [4, 8], scores Einsum('aecd,abcd->acbe'), context
                               Einsum('acbe,aecd->abcd'), out Einsum('abcd,cde->abe', ctx, W[4, 8, 32])
gqa_attention                  onnx.helper, Hugging Face's grouped-query attention (Llama's
                               repeat_kv): 4 query heads of 8, 2 K/V heads, each repeated by
                               Unsqueeze -> Expand([1, 2, 2, 1, 1]) -> Reshape([0, 4, -1, 8])
svtr_neck                      onnx.helper, as paddle2onnx writes PaddleOCR PP-OCRv4's SVTR neck (opset 12,
                               IR 8): Conv -> BN -> Swish, flattened (Reshape by Concat(Shape(x)[0:2],
                               [-1])) and Transpose(0,2,1) to [N, L, 16]; two pre-norm blocks with
                               every LayerNorm written out (ReduceMean / Sub / Pow / ReduceMean / Add /
                               Sqrt / Div / Mul / Add), packed qkv Reshape([0,-1,3,2,8]) ->
                               Transpose(2,0,3,1,4) -> Slice/Squeeze, Swish MLP; a final LayerNorm, back
                               to NCHW (Reshape, Transpose(0,3,1,2)), a 2x2 Conv (no padding), GAP, Gemm
keras_gap_layernorm            onnx.helper, as tf2onnx 1.9 writes a Keras post-norm encoder block (opset
                               13, IR 7): LayerNorm's means over the trailing axis of [N, T, 32] as
                               GlobalAveragePool (mean, then GlobalAveragePool(Mul(x - mean, x - mean))),
                               Add eps, Sqrt, Reciprocal, Mul, scale and shift; Dense layers as MatMul
                               + Add on [N, T, C], one head; a pre-norm variant
                               (keras_gap_layernorm_prenorm)
weights_as_inputs_ir4          onnx.helper, as PyTorch 1.2 wrote CenterFace (IR 4, opset 9): the small
                               conv net with BN kept, every initializer also listed as a graph input
weights_as_inputs_ir3          the same at IR 3 / opset 8, where the IR requires every initializer
                               to be a graph input
opset{N}_cnn                   onnx.helper: one net at opsets 11..25 (odd) using the ops whose form
                               changed across opsets (Clip bounds, Split sizes / num_outputs,
                               Pad axes, ReduceMean axes, Squeeze axes); ir_version = the lowest
                               that carries the opset (as onnx.helper.make_model stamps it)
=============================  =====================================================================

Every fixture is seeded; the hand-built ones, fp16_cnn and the qdq_* ones come out byte-identical on
every run, the tf2onnx ones identical up to the names tf2onnx gives folded constants.
Every fixture is checked before it is written: ``onnx.checker.check_model(full_check=True)``,
ONNX Runtime runs it at batch 2 and 3 with finite outputs, file size < 300 KB.

Usage::

    python tools/make_fixtures.py                 # every fixture this Python can make
    python tools/make_fixtures.py --only qdq_cnn  # one (or several, comma-separated)
    python tools/make_fixtures.py --list

The tf_* fixtures need tensorflow-cpu and tf2onnx, fp16_cnn needs onnxconverter-common; they are
skipped (with a message) where those are not installed. Everything was generated in a separate
virtual environment so the project's own environment is untouched::

    python -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install tensorflow-cpu tf2onnx onnxconverter-common onnxruntime
    /tmp/tfenv/bin/python tools/make_fixtures.py

(the committed files: tensorflow 2.21.0, tf2onnx 1.17.0, onnxconverter-common 1.16.0,
onnxruntime 1.32.0, onnx 1.23.2, numpy 2.4.6).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "tests" / "fixtures" / "exporters"
MAX_BYTES = 300 * 1024
SEED = 0
OPSETS = (11, 13, 15, 17, 19, 21, 23, 25)


def ir_version_for(opset: int) -> int:
    """The lowest IR version that carries `opset` (what onnx.helper.make_model stamps)."""
    for _release, ir, op, *_ in helper.VERSION_TABLE:
        if op >= opset:
            return ir
    raise ValueError(f"onnx {onnx.__version__} does not know opset {opset}")


class Net:
    """A tiny onnx.helper graph builder: nodes, weights (initializers or Constant nodes), seeded."""

    def __init__(self, seed: int = SEED, opset: int = 17, constants_as_nodes: bool = False, prefix: str = ""):
        self.rng = np.random.default_rng(seed)
        self.opset = opset
        self.constants_as_nodes = constants_as_nodes
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.prefix = prefix
        self._count: dict[str, int] = {}

    def fresh(self, base: str) -> str:
        k = self._count.get(base, 0)
        self._count[base] = k + 1
        return f"{self.prefix}{base}_{k}"

    def const(self, value, name: str | None = None) -> str:
        value = np.asarray(value)
        name = name or self.fresh("const")
        t = numpy_helper.from_array(value, name)
        if self.constants_as_nodes:
            self.nodes.append(helper.make_node("Constant", [], [name], name=f"{name}_const", value=t))
        else:
            self.inits.append(t)
        return name

    def node(self, op: str, inputs, name: str | None = None, n_out: int = 1, **attrs):
        name = name or self.fresh(op.lower())
        outs = [name] if n_out == 1 else [f"{name}:{k}" for k in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=name, **attrs))
        return outs[0] if n_out == 1 else outs

    # -- layers ----------------------------------------------------------------------------
    def conv(self, x, cin, cout, k=3, stride=1, bias=True, group=1, name=None, pad=None):
        name = name or self.fresh("conv")
        w = (self.rng.standard_normal((cout, cin // group, k, k)) * np.sqrt(2.0 / (cin // group * k * k)))
        ins = [x, self.const(w.astype(np.float32), f"{name}.weight")]
        if bias:
            ins.append(self.const((self.rng.standard_normal(cout) * 0.1).astype(np.float32), f"{name}.bias"))
        p = k // 2 if pad is None else pad
        return self.node("Conv", ins, name, kernel_shape=[k, k], strides=[stride, stride], pads=[p] * 4, group=group)

    def bn(self, x, c, name=None):
        name = name or self.fresh("bn")
        gamma = self.rng.uniform(0.5, 1.5, c)
        beta = self.rng.normal(0, 0.1, c)
        mean = self.rng.normal(0, 0.1, c)
        var = self.rng.uniform(0.5, 1.5, c)
        ins = [x] + [self.const(a.astype(np.float32), f"{name}.{s}")
                     for a, s in zip((gamma, beta, mean, var), ("scale", "bias", "mean", "var"))]
        return self.node("BatchNormalization", ins, name, epsilon=1e-5)

    def relu(self, x):
        return self.node("Relu", [x])

    def gemm(self, x, cin, cout, name=None):
        name = name or self.fresh("fc")
        w = (self.rng.standard_normal((cout, cin)) * np.sqrt(1.0 / cin)).astype(np.float32)
        b = (self.rng.standard_normal(cout) * 0.1).astype(np.float32)
        return self.node("Gemm", [x, self.const(w, f"{name}.weight"), self.const(b, f"{name}.bias")], name, transB=1)

    def graph(self, name, inputs, outputs) -> onnx.GraphProto:
        return helper.make_graph(self.nodes, name, inputs, outputs, initializer=self.inits)

    def model(self, name, inputs, outputs, producer="onnxprune-fixtures", ir_version=None) -> onnx.ModelProto:
        m = helper.make_model(self.graph(name, inputs, outputs), producer_name=producer,
                              opset_imports=[helper.make_opsetid("", self.opset)])
        m.ir_version = ir_version or ir_version_for(self.opset)
        return m


def _vi(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


# ------------------------------------------------------------------------------- small CNN
def small_cnn(opset: int = 17, hw=(16, 16), batch="N", bn: bool = False, seed: int = SEED) -> onnx.ModelProto:
    """conv-(bn)-relu, residual block, strided conv, GAP, Flatten, Gemm: the shared base net."""
    g = Net(seed, opset)
    x = g.conv("input", 3, 8, bias=not bn, name="conv1")
    if bn:
        x = g.bn(x, 8, "bn1")
    a = g.relu(x)
    y = g.relu(g.conv(a, 8, 8, name="conv2"))
    y = g.conv(y, 8, 8, name="conv3")
    x = g.relu(g.node("Add", [a, y], "add1"))
    x = g.relu(g.conv(x, 8, 16, stride=2, name="conv4"))
    x = g.node("GlobalAveragePool", [x], "gap")
    x = g.node("Flatten", [x], "flatten", axis=1)
    g.gemm(x, 16, 10, name="fc")
    g.nodes[-1].output[0] = "output"
    return g.model("small_cnn", [_vi("input", [batch, 3, *hw])], [_vi("output", [batch, 10])])


# ------------------------------------------------------------------------------- tf2onnx
def _keras_model():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    k = tf.keras
    k.backend.clear_session()  # layer names restart at functional_1 in every build
    tf.random.set_seed(SEED)
    k.utils.set_random_seed(SEED)
    inp = k.Input((16, 16, 3), name="input")
    x = k.layers.Conv2D(8, 3, padding="same", name="conv1")(inp)
    x = k.layers.BatchNormalization(name="bn1")(x)
    x = k.layers.ReLU(name="relu1")(x)
    y = k.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    y = k.layers.Conv2D(8, 3, padding="same", name="conv3")(y)
    x = k.layers.Add(name="residual")([x, y])
    x = k.layers.ReLU(name="relu2")(x)
    x = k.layers.DepthwiseConv2D(3, padding="same", name="dwconv")(x)
    x = k.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv4")(x)
    a = k.layers.GlobalAveragePooling2D(name="gap")(x)
    b = k.layers.MaxPooling2D(2, name="pool")(x)
    b = k.layers.Flatten(name="flatten")(b)
    x = k.layers.Concatenate(name="concat")([a, b])
    x = k.layers.Dense(32, activation="relu", name="dense1")(x)
    out = k.layers.Dense(10, name="logits")(x)
    model = k.Model(inp, out)
    rng = np.random.default_rng(SEED)
    for w in model.weights:  # Keras initialises biases / BN to identity: make them random
        path = w.path
        if path.endswith(("bias", "beta", "moving_mean")):
            w.assign(rng.normal(0, 0.1, w.shape).astype(np.float32))
        elif path.endswith(("gamma", "moving_variance")):
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype(np.float32))
    return tf, model


def _tf2onnx(optimize: bool) -> onnx.ModelProto:
    tf, model = _keras_model()
    import tf2onnx
    from tf2onnx import optimizer

    spec = (tf.TensorSpec((None, 16, 16, 3), tf.float32, name="input"),)

    @tf.function(input_signature=spec)
    def forward(x):
        return model(x, training=False)

    saved = optimizer._optimizers
    if not optimize:
        optimizer._optimizers = {k: v for k, v in saved.items() if k in ("fold_constants", "remove_identity")}
    try:
        onnx_model, _ = tf2onnx.convert.from_function(forward, input_signature=spec, opset=17)
    finally:
        optimizer._optimizers = saved
    return onnx_model


def tf_keras_cnn() -> onnx.ModelProto:
    return _tf2onnx(optimize=True)


def _from_keras(tf, model, shape, opset: int = 13) -> onnx.ModelProto:
    """tf2onnx's conversion of a Keras model in inference mode, its input named 'input'."""
    import tf2onnx

    spec = (tf.TensorSpec(shape, tf.float32, name="input"),)

    @tf.function(input_signature=spec)
    def forward(x):
        return model(x, training=False)

    onnx_model, _ = tf2onnx.convert.from_function(forward, input_signature=spec, opset=opset)
    return onnx_model


def tf_keras_layernorm() -> onnx.ModelProto:
    """Keras 3's LayerNormalization through tf2onnx 1.17 (opset 13) on a [B, L, C] sequence: mean by
    GlobalAveragePool, gamma folded into rsqrt(var + eps) (`mul`), which multiplies both x and -mean,
    the two products added with beta: Dense -> LayerNorm -> Dense -> Dense -> LayerNorm -> Dense."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    k = tf.keras
    k.backend.clear_session()
    tf.random.set_seed(SEED)
    k.utils.set_random_seed(SEED)
    inp = k.Input((16, 12), name="input")
    x = k.layers.Dense(32, activation="relu", name="embed")(inp)
    x = k.layers.LayerNormalization(name="norm1")(x)
    h = k.layers.Dense(48, activation="relu", name="ffn1")(x)
    x = k.layers.LayerNormalization(name="norm2")(k.layers.Dense(32, name="ffn2")(h) + x)
    out = k.layers.Dense(10, name="logits")(x)
    model = k.Model(inp, out)
    rng = np.random.default_rng(SEED)
    for w in model.weights:
        if w.path.endswith(("bias", "beta")):
            w.assign(rng.normal(0, 0.1, w.shape).astype(np.float32))
        elif w.path.endswith("gamma"):
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype(np.float32))
    return _from_keras(tf, model, (None, 16, 12))


def tf_keras_unet_crnn() -> onnx.ModelProto:
    """Keras 3 layers a new user's U-Net and CRNN are made of, H and W dynamic: UpSampling2D
    (Unsqueeze -> Tile -> Reshape per spatial axis), Conv2DTranspose (its output cropped and padded
    by pads computed from the shapes: Split / Concat / Max), a skip Concatenate, then a text head:
    Bidirectional(LSTM) over the width and a Dense on the [B, T, C] sequence (tf2onnx's Tensordot:
    Reshape to [ReduceProd(B, T), ReduceProd(C)], MatMul, Reshape back)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    k = tf.keras
    k.backend.clear_session()
    tf.random.set_seed(SEED)
    k.utils.set_random_seed(SEED)
    inp = k.Input((None, None, 3), name="input")
    c1 = k.layers.Conv2D(8, 3, padding="same", activation="relu", name="enc1")(inp)
    p1 = k.layers.MaxPooling2D(2, name="pool1")(c1)
    c2 = k.layers.Conv2D(12, 3, padding="same", activation="relu", name="enc2")(p1)
    p2 = k.layers.MaxPooling2D(2, name="pool2")(c2)
    c3 = k.layers.Conv2D(16, 3, padding="same", activation="relu", name="mid")(p2)
    u2 = k.layers.UpSampling2D(name="up2")(c3)
    d2 = k.layers.Conv2D(12, 3, padding="same", activation="relu", name="dec2")(k.layers.Concatenate(name="skip2")([u2, c2]))
    u1 = k.layers.Conv2DTranspose(8, 2, strides=2, name="up1")(d2)
    d1 = k.layers.Conv2D(8, 3, padding="same", activation="relu", name="dec1")(k.layers.Concatenate(name="skip1")([u1, c1]))
    f = k.layers.Conv2D(16, 3, strides=(2, 1), padding="same", activation="relu", name="head")(d1)
    f = k.layers.Lambda(lambda t: tf.reduce_mean(t, axis=1), name="collapse")(f)  # [B, W, 16]
    f = k.layers.Bidirectional(k.layers.LSTM(10, return_sequences=True), name="bilstm")(f)
    f = k.layers.Dense(12, activation="relu", name="hidden")(f)
    out = k.layers.Dense(7, name="logits")(f)
    model = k.Model(inp, out)
    rng = np.random.default_rng(SEED)
    for w in model.weights:
        if w.path.endswith("bias"):
            w.assign(rng.normal(0, 0.1, w.shape).astype(np.float32))
    return _from_keras(tf, model, (None, None, None, 3))


def tf_keras_cnn_noopt() -> onnx.ModelProto:
    return _tf2onnx(optimize=False)


# ------------------------------------------------------------------------------- paddle
def paddle_style_cnn() -> onnx.ModelProto:
    """paddle2onnx-style names (conv2d_0.w_0, batch_norm_0.tmp_2, p2o.* nodes), weights as Constant nodes."""
    g = Net(SEED, opset=11, constants_as_nodes=True)
    rng = g.rng

    def conv(x, cin, cout, idx, stride=1, bias=False):
        w = g.const((rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2.0 / (cin * 9))).astype(np.float32),
                    f"conv2d_{idx}.w_0")
        ins = [x, w]
        if bias:
            ins.append(g.const((rng.standard_normal(cout) * 0.1).astype(np.float32), f"conv2d_{idx}.b_0"))
        out = f"conv2d_{idx}.tmp_{1 if bias else 0}"
        g.nodes.append(helper.make_node("Conv", ins, [out], name=f"p2o.Conv.{idx}", dilations=[1, 1], group=1,
                                        kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[stride, stride]))
        return out

    def bn(x, c, idx):
        ins = [x]
        for suffix, value in (("w_0", rng.uniform(0.5, 1.5, c)), ("b_0", rng.normal(0, 0.1, c)),
                              ("w_1", rng.normal(0, 0.1, c)), ("w_2", rng.uniform(0.5, 1.5, c))):
            ins.append(g.const(value.astype(np.float32), f"batch_norm2d_{idx}.{suffix}"))
        out = f"batch_norm_{idx}.tmp_2"
        g.nodes.append(helper.make_node("BatchNormalization", ins, [out], name=f"p2o.BatchNormalization.{idx}",
                                        epsilon=1e-5, momentum=0.9))
        return out

    def relu(x, idx):
        out = f"relu_{idx}.tmp_0"
        g.nodes.append(helper.make_node("Relu", [x], [out], name=f"p2o.Relu.{idx}"))
        return out

    a = relu(bn(conv("x", 3, 8, 0), 8, 0), 0)
    y = relu(bn(conv(a, 8, 8, 1), 8, 1), 1)
    y = bn(conv(y, 8, 8, 2), 8, 2)
    g.nodes.append(helper.make_node("Add", [a, y], ["elementwise_add_0"], name="p2o.Add.0"))
    x = relu("elementwise_add_0", 2)
    x = relu(conv(x, 8, 16, 3, stride=2, bias=True), 3)
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool2d_0.tmp_0"], name="p2o.GlobalAveragePool.0"))
    g.nodes.append(helper.make_node("Flatten", ["pool2d_0.tmp_0"], ["flatten_0.tmp_0"], name="p2o.Flatten.0", axis=1))
    w = g.const((rng.standard_normal((16, 10)) * 0.25).astype(np.float32), "linear_0.w_0")
    b = g.const((rng.standard_normal(10) * 0.1).astype(np.float32), "linear_0.b_0")
    g.nodes.append(helper.make_node("MatMul", ["flatten_0.tmp_0", w], ["linear_0.tmp_0"], name="p2o.MatMul.0"))
    g.nodes.append(helper.make_node("Add", ["linear_0.tmp_0", b], ["linear_0.tmp_1"], name="p2o.Add.1"))
    return g.model("paddle_style_cnn", [_vi("x", ["N", 3, 16, 16])], [_vi("linear_0.tmp_1", ["N", 10])],
                   producer="PaddlePaddle", ir_version=6)


def paddle_se_cnn() -> onnx.ModelProto:
    """Per-channel constants computed from Constant nodes, and a squeeze-excitation block."""
    g = Net(SEED, opset=11, constants_as_nodes=True, prefix="p2o.")
    rng = g.rng

    def affine(x, c):
        # scale: Reshape(Constant[c], [1, c, 1, 1]); shift: Unsqueeze(Cast(Constant[c] float64)) * 1
        scale = g.node("Reshape", [g.const(rng.uniform(0.5, 1.5, c).astype(np.float32)),
                                   g.const(np.array([1, c, 1, 1], np.int64))])
        shift64 = g.const(rng.normal(0, 0.1, c).astype(np.float64))
        shift = g.node("Unsqueeze", [g.node("Cast", [shift64], to=TensorProto.FLOAT)], axes=[0, 2, 3])
        shift = g.node("Mul", [shift, g.const(np.ones((1, c, 1, 1), np.float32))])
        return g.node("Add", [g.node("Mul", [x, scale]), shift])

    def se(x, c):
        s = g.node("GlobalAveragePool", [x])
        s = g.relu(g.conv(s, c, c // 4, k=1))
        s = g.node("HardSigmoid", [g.conv(s, c // 4, c, k=1)], alpha=0.2, beta=0.5)
        return g.node("Mul", [x, s])

    a = g.relu(affine(g.conv("x", 3, 16, bias=False), 16))
    y = g.relu(affine(g.conv(a, 16, 16, k=3, group=16, bias=False), 16))  # depthwise
    y = se(y, 16)
    y = affine(g.conv(y, 16, 16, k=1, bias=False), 16)
    x = g.relu(g.node("Add", [a, y]))
    x = g.relu(affine(g.conv(x, 16, 24, stride=2, bias=False), 24))
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x])], axis=1)
    w = g.const((rng.standard_normal((24, 10)) * 0.25).astype(np.float32))
    x = g.node("MatMul", [x, w])
    g.node("Add", [x, g.const((rng.standard_normal(10) * 0.1).astype(np.float32))], "output")
    return g.model("paddle_se_cnn", [_vi("x", ["N", 3, 16, 16])], [_vi("output", ["N", 10])],
                   producer="PaddlePaddle", ir_version=6)


def paddle_reshape_cnn() -> onnx.ModelProto:
    """Paddle 2.0's classifier head: the Reshape after the global pool takes its target from
    Concat(Cast(Slice(Cast(Shape(x)), [0:1])), Cast(Constant [C])), the batch read at run time."""
    g = Net(SEED, opset=11, constants_as_nodes=True, prefix="p2o.")
    a = g.relu(g.conv("x", 3, 16, bias=True))
    s = g.node("GlobalAveragePool", [a])
    s = g.relu(g.conv(s, 16, 4, k=1))
    s = g.node("HardSigmoid", [g.conv(s, 4, 16, k=1)], alpha=0.2, beta=0.5)
    x = g.relu(g.conv(g.node("Mul", [a, s]), 16, 24, stride=2))
    pooled = g.node("GlobalAveragePool", [x])
    shape = g.node("Cast", [g.node("Shape", [pooled])], to=TensorProto.INT32)
    batch = g.node("Slice", [shape, g.const(np.array([0], np.int64)), g.const(np.array([1], np.int64)),
                             g.const(np.array([0], np.int64))])
    target = g.node("Concat", [g.node("Cast", [batch], to=TensorProto.INT64),
                               g.node("Cast", [g.const(np.array([24], np.int32))], to=TensorProto.INT64)], axis=0)
    x = g.node("Reshape", [pooled, target])
    w = g.const((g.rng.standard_normal((24, 10)) * 0.25).astype(np.float32))
    x = g.node("MatMul", [x, w])
    g.node("Add", [x, g.const((g.rng.standard_normal(10) * 0.1).astype(np.float32))], "output")
    # paddle2onnx of that time writes a dynamic dim as dim_value -1, not as a symbol
    return g.model("paddle_reshape_cnn", [_vi("x", [-1, 3, 16, 16])], [_vi("output", [-1, 10])],
                   producer="PaddlePaddle", ir_version=6)


def yolo_reshape_cnn() -> onnx.ModelProto:
    """An Ultralytics-style raw head: per level view(b, no, -1) with b from Shape -> Gather, levels
    concatenated on the anchor axis; dynamic N, H, W."""
    g = Net(SEED, opset=13)
    x = g.node("Mul", [g.conv("images", 3, 16, stride=2), g.node("Sigmoid", [g.conv("images", 3, 16, stride=2)])])
    x = g.relu(g.conv(x, 16, 16))
    p3 = g.relu(g.conv(x, 16, 24, stride=2))
    p4 = g.relu(g.conv(p3, 24, 32, stride=2))
    levels = []
    for p, c in ((p3, 24), (p4, 32)):
        head = g.conv(g.relu(g.conv(p, c, 16)), 16, 6, k=1)
        b = g.node("Unsqueeze", [g.node("Gather", [g.node("Shape", [head]), g.const(np.array(0, np.int64))], axis=0),
                                 g.const(np.array([0], np.int64))])
        target = g.node("Concat", [b, g.const(np.array([6, -1], np.int64))], axis=0)
        levels.append(g.node("Reshape", [head, target]))
    g.node("Concat", levels, "output0", axis=2)
    return g.model("yolo_reshape_cnn", [_vi("images", ["N", 3, "H", "W"])], [_vi("output0", ["N", 6, "A"])])


def layernorm_cnn() -> onnx.ModelProto:
    """Residual streams normalized over their channels: lossy-only groups."""
    g = Net(SEED, opset=17)
    rng = g.rng
    c = 16

    def ln_op(x):
        return g.node("LayerNormalization", [x, g.const(rng.uniform(0.5, 1.5, c).astype(np.float32)),
                                             g.const(rng.normal(0, 0.1, c).astype(np.float32))], axis=-1, epsilon=1e-6)

    def ln_written_out(x):
        mean = g.node("ReduceMean", [x], axes=[-1], keepdims=1)
        d = g.node("Sub", [x, mean])
        var = g.node("ReduceMean", [g.node("Pow", [d, g.const(np.array(2.0, np.float32))])], axes=[-1], keepdims=1)
        std = g.node("Sqrt", [g.node("Add", [var, g.const(np.array(1e-6, np.float32))])])
        y = g.node("Div", [d, std])
        y = g.node("Mul", [y, g.const(rng.uniform(0.5, 1.5, c).astype(np.float32))])
        return g.node("Add", [y, g.const(rng.normal(0, 0.1, c).astype(np.float32))])

    def gelu(x):
        e = g.node("Erf", [g.node("Div", [x, g.const(np.array(1.4142135, np.float32))])])
        return g.node("Mul", [g.node("Mul", [x, g.node("Add", [e, g.const(np.array(1.0, np.float32))])]),
                              g.const(np.array(0.5, np.float32))])

    def block(x, norm):
        """x: NCHW. depthwise 3x3 -> NHWC -> LN -> MatMul 4c -> Gelu -> MatMul c -> NCHW -> scale -> + x"""
        y = g.conv(x, c, c, k=3, group=c)
        y = norm(g.node("Transpose", [y], perm=[0, 2, 3, 1]))
        y = g.node("Add", [g.node("MatMul", [y, g.const((rng.standard_normal((c, 4 * c)) * 0.25).astype(np.float32))]),
                          g.const((rng.standard_normal(4 * c) * 0.1).astype(np.float32))])
        y = gelu(y)
        y = g.node("Add", [g.node("MatMul", [y, g.const((rng.standard_normal((4 * c, c)) * 0.12).astype(np.float32))]),
                          g.const((rng.standard_normal(c) * 0.1).astype(np.float32))])
        y = g.node("Transpose", [y], perm=[0, 3, 1, 2])
        y = g.node("Mul", [y, g.const(rng.uniform(0.5, 1.0, (c, 1, 1)).astype(np.float32))])
        return g.node("Add", [x, y])

    x = g.conv("input", 3, c, k=2, stride=2, pad=0)  # stem, then LayerNorm2d
    x = g.node("Transpose", [ln_op(g.node("Transpose", [x], perm=[0, 2, 3, 1]))], perm=[0, 3, 1, 2])
    x = block(block(x, ln_op), ln_op)
    x = g.conv(x, c, c, k=2, stride=2, pad=0)  # a second stage normalized the written-out way
    x = block(x, ln_written_out)
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x])])
    g.gemm(x, c, 10, name="fc")
    g.nodes[-1].output[0] = "output"
    return g.model("layernorm_cnn", [_vi("input", ["N", 3, 16, 16])], [_vi("output", ["N", 10])])


def recurrent_cnn() -> onnx.ModelProto:
    """Conv features over time, two stacked bidirectional LSTMs with run-time zero states, a GRU."""
    g = Net(SEED, opset=17)
    rng = g.rng
    h, feat, t = 12, 8, 10

    def weights(gates, dirs, inp):
        w = (rng.standard_normal((dirs, gates * h, inp)) * 0.3).astype(np.float32)
        r = (rng.standard_normal((dirs, gates * h, h)) * 0.3).astype(np.float32)
        b = (rng.standard_normal((dirs, 2 * gates * h)) * 0.1).astype(np.float32)
        return g.const(w), g.const(r), g.const(b)

    x = g.relu(g.conv("input", 1, feat, k=3))  # [N, feat, t, 3] -> pool the last axis
    x = g.node("ReduceMean", [x], axes=[3], keepdims=0)  # [N, feat, t]
    x = g.node("Transpose", [x], perm=[2, 0, 1])  # [t, N, feat]
    batch = g.node("Unsqueeze", [g.node("Gather", [g.node("Shape", [x]), g.const(np.array(1, np.int64))], axis=0),
                                 g.const(np.array([0], np.int64))])
    shape = g.node("Concat", [g.const(np.array([4], np.int64)), batch, g.const(np.array([h], np.int64))], axis=0)
    zeros = g.node("ConstantOfShape", [shape], value=numpy_helper.from_array(np.zeros(1, np.float32)))
    for layer, inp in enumerate((feat, 2 * h)):
        bounds = [g.const(np.array([v], np.int64)) for v in (2 * layer, 2 * layer + 2, 0)]
        state = g.node("Slice", [zeros, *bounds])
        y = g.node("LSTM", [x, *weights(4, 2, inp), "", state, state], n_out=3, direction="bidirectional",
                   hidden_size=h)[0]  # [t, 2, N, h]
        y = g.node("Transpose", [y], perm=[0, 2, 1, 3])
        x = g.node("Reshape", [y, g.const(np.array([0, 0, -1], np.int64))])  # [t, N, 2h]
    # The GRU's zero state as tf2onnx writes it: Unsqueeze(Expand(0., Cast(Concat(batch, [h])))).
    size = g.node("Cast", [g.node("Concat", [batch, g.const(np.array([h], np.int64))], axis=0)], to=TensorProto.INT64)
    state = g.node("Unsqueeze", [g.node("Expand", [g.const(np.array(0.0, np.float32)), size]),
                                 g.const(np.array([0], np.int64))])
    y = g.node("GRU", [x, *weights(3, 1, 2 * h), "", state], n_out=2, hidden_size=h,
               linear_before_reset=1)[0]  # [t, 1, N, h]
    y = g.node("Squeeze", [y, g.const(np.array([1], np.int64))])
    y = g.node("ReduceMax", [y], axes=[0], keepdims=0)  # [N, h]
    w = g.const((rng.standard_normal((h, 10)) * 0.3).astype(np.float32))
    g.node("Add", [g.node("MatMul", [y, w]), g.const((rng.standard_normal(10) * 0.1).astype(np.float32))], "output")
    return g.model("recurrent_cnn", [_vi("input", ["N", 1, t, 3])], [_vi("output", ["N", 10])])


def grouped_cnn() -> onnx.ModelProto:
    """A bottleneck whose 3x3 conv has 3 groups of 8 inputs and 8 outputs each."""
    g = Net(SEED, opset=17)
    x = g.relu(g.bn(g.conv("input", 3, 16, name="stem"), 16, name="stem_bn"))
    y = g.relu(g.bn(g.conv(x, 16, 24, k=1, name="reduce"), 24, name="reduce_bn"))
    y = g.relu(g.bn(g.conv(y, 24, 24, k=3, group=3, name="grouped"), 24, name="grouped_bn"))
    s = g.node("GlobalAveragePool", [y], "se_pool")
    s = g.relu(g.conv(s, 24, 6, k=1, name="se_squeeze"))
    s = g.node("Sigmoid", [g.conv(s, 6, 24, k=1, name="se_expand")], "se_gate")
    y = g.node("Mul", [y, s], "se_scale")
    y = g.bn(g.conv(y, 24, 16, k=1, name="expand"), 16, name="expand_bn")
    x = g.relu(g.node("Add", [x, y], "residual"))
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x], "gap")], "flatten")
    g.gemm(x, 16, 10, name="fc")
    g.nodes[-1].output[0] = "output"
    return g.model("grouped_cnn", [_vi("input", ["N", 3, 16, 16])], [_vi("output", ["N", 10])])


# ------------------------------------------------------------------------------- subgraphs
def subgraph_if() -> onnx.ModelProto:
    """conv_a -> If(then: Conv(conv_a out) with its own weight; else: 0.5 * conv_a out) + conv_b -> ..."""
    g = Net(SEED, opset=17)
    a = g.relu(g.conv("input", 3, 8, name="conv_a"))
    b = g.relu(g.conv(a, 8, 8, name="conv_b"))
    mean = g.node("ReduceMean", ["input"], "mean", keepdims=0)
    cond = g.node("Greater", [mean, g.const(np.array(0.0, np.float32), "zero")], "cond")

    then = Net(SEED + 1, opset=17, prefix="then_")
    then.conv(a, 8, 8, name="then_conv")
    then_graph = then.graph("then_branch", [], [_vi("then_conv", ["N", 8, 16, 16])])
    other = Net(SEED + 2, opset=17, prefix="else_")
    other.node("Mul", [a, other.const(np.array(0.5, np.float32), "else_half")], "else_mul")
    else_graph = other.graph("else_branch", [], [_vi("else_mul", ["N", 8, 16, 16])])
    branch = g.node("If", [cond], "if", then_branch=then_graph, else_branch=else_graph)

    x = g.relu(g.node("Add", [branch, b], "add"))
    x = g.relu(g.conv(x, 8, 16, stride=2, name="conv_c"))
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x], "gap")], "flatten")
    g.gemm(x, 16, 10, name="fc")
    g.nodes[-1].output[0] = "output"
    return g.model("subgraph_if", [_vi("input", ["N", 3, 16, 16])], [_vi("output", ["N", 10])])


def subgraph_if_owned() -> onnx.ModelProto:
    """If(mean(input) > 0) then net_a(input) else net_b(input); each branch holds its own weights."""
    g = Net(SEED, opset=17)
    mean = g.node("ReduceMean", ["input"], "mean", keepdims=0)
    cond = g.node("Greater", [mean, g.const(np.array(0.0, np.float32), "zero")], "cond")
    branches = {}
    for k, (branch, width) in enumerate((("then", 8), ("else", 12))):
        b = Net(SEED + 1 + k, opset=17, prefix=f"{branch}_")
        x = b.relu(b.bn(b.conv("input", 3, width, name=f"{branch}_conv1"), width, name=f"{branch}_bn1"))
        y = b.relu(b.conv(x, width, width, name=f"{branch}_conv2"))
        x = b.relu(b.node("Add", [x, b.conv(y, width, width, name=f"{branch}_conv3")], f"{branch}_add"))
        x = b.relu(b.conv(x, width, 16, stride=2, name=f"{branch}_conv4"))
        x = b.node("Flatten", [b.node("GlobalAveragePool", [x], f"{branch}_gap")], f"{branch}_flatten")
        b.gemm(x, 16, 10, name=f"{branch}_fc")
        branches[f"{branch}_branch"] = b.graph(f"{branch}_net", [], [_vi(f"{branch}_fc", ["N", 10])])
    g.node("If", [cond], "output", **branches)
    return g.model("subgraph_if_owned", [_vi("input", ["N", 3, 16, 16])], [_vi("output", ["N", 10])])


def subgraph_loop() -> onnx.ModelProto:
    """conv_a out is the Loop's carried value (explicit input); conv_b out is read inside the body."""
    g = Net(SEED, opset=17)
    a = g.relu(g.conv("input", 3, 8, name="conv_a"))
    b = g.relu(g.conv(a, 8, 8, name="conv_b"))
    trips = g.const(np.array(3, np.int64), "trip_count")
    keep_going = g.const(np.array(True), "loop_cond")

    body = Net(SEED + 1, opset=17, prefix="body_")
    scaled = body.node("Mul", ["body_v_in", body.const(np.array(0.5, np.float32), "body_half")], "body_mul")
    body.node("Add", [scaled, b], "body_v_out")
    body.node("Identity", ["body_cond_in"], "body_cond_out")
    body_graph = body.graph("loop_body",
                            [_vi("body_iter", [], TensorProto.INT64), _vi("body_cond_in", [], TensorProto.BOOL),
                             _vi("body_v_in", ["N", 8, 16, 16])],
                            [_vi("body_cond_out", [], TensorProto.BOOL), _vi("body_v_out", ["N", 8, 16, 16])])
    v = g.node("Loop", [trips, keep_going, a], "loop", body=body_graph)
    x = g.relu(g.conv(v, 8, 16, stride=2, name="conv_c"))
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x], "gap")], "flatten")
    g.gemm(x, 16, 10, name="fc")
    g.nodes[-1].output[0] = "output"
    return g.model("subgraph_loop", [_vi("input", ["N", 3, 16, 16])], [_vi("output", ["N", 10])])


# ------------------------------------------------------------------------------- fp16 / QDQ
def fp16_cnn() -> onnx.ModelProto:
    from onnxconverter_common import float16

    model = small_cnn(bn=True, seed=SEED + 3)
    return float16.convert_float_to_float16(model, keep_io_types=False)


class _Reader:
    def __init__(self, n=16):
        rng = np.random.default_rng(SEED)
        self.items = iter([{"input": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)} for _ in range(n)])

    def get_next(self):
        return next(self.items, None)

    def rewind(self):  # newer onnxruntime calls it between calibration passes
        pass


def _quantize_static(model: onnx.ModelProto, per_channel: bool) -> onnx.ModelProto:
    """The model as onnxruntime's quantize_static writes it: QDQ, uint8 activations, int8 weights."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(_Reader, CalibrationDataReader):
        pass

    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "fp32.onnx", Path(d) / "qdq.onnx"
        onnx.save(model, src)
        quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return onnx.load(dst)


def qdq_cnn() -> onnx.ModelProto:
    return _quantize_static(small_cnn(seed=SEED + 4), per_channel=True)


def bn_cnn(seed: int) -> onnx.ModelProto:
    """Conv-BN-Relu everywhere, BN not folded (as PyTorch writes with training=PRESERVE), a residual
    Add whose two BNs share one bias tensor through Identity (PyTorch stores equal tensors once),
    a strided conv, GAP, Flatten, Gemm."""
    g = Net(seed, opset=17)
    a = g.relu(g.bn(g.conv("input", 3, 8, bias=False, name="conv1"), 8, "bn1"))
    y = g.relu(g.bn(g.conv(a, 8, 8, bias=False, name="conv2"), 8, "bn2"))
    y = g.bn(g.conv(y, 8, 8, bias=False, name="conv3"), 8, "bn3")
    s = g.bn(g.conv(a, 8, 8, k=1, bias=False, name="shortcut"), 8, "bn_short")
    bn_short = g.nodes[-1]
    bn_short.input[2] = g.node("Identity", ["bn3.bias"], "bn_short.bias")  # the tie PyTorch writes
    g.inits = [t for t in g.inits if t.name != "bn_short.bias"]
    x = g.relu(g.node("Add", [y, s], "add1"))
    x = g.relu(g.bn(g.conv(x, 8, 16, stride=2, bias=False, name="conv4"), 16, "bn4"))
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x], "gap")], "flatten", axis=1)
    g.gemm(x, 16, 10, name="fc")
    g.nodes[-1].output[0] = "output"
    return g.model("bn_cnn", [_vi("input", ["N", 3, 16, 16])], [_vi("output", ["N", 10])])


def qdq_bn_cnn(per_channel: bool) -> onnx.ModelProto:
    """bn_cnn quantized by quantize_static without folding BN first: BN scale and bias become
    int8 / int32 behind DequantizeLinear (the bias's scale [1], its zero point []), the tied bias
    an Identity of a DequantizeLinear output."""
    return _quantize_static(bn_cnn(seed=SEED + 6), per_channel)


# ------------------------------------------------------------------------------- dynamic dims
def dynamic_hw_cnn() -> onnx.ModelProto:
    g = Net(SEED + 5, opset=17)
    a = g.relu(g.conv("input", 3, 8, name="conv1"))
    d = g.relu(g.conv(a, 8, 8, stride=2, name="conv2"))
    up = g.node("Resize", [d, "", g.const(np.array([1, 1, 2, 2], np.float32), "up_scales")], "up", mode="nearest")
    x = g.node("Concat", [a, up], "concat", axis=1)
    x = g.relu(g.conv(x, 16, 16, name="conv3"))
    y = g.conv(g.relu(g.conv(x, 16, 16, name="conv4")), 16, 16, name="conv5")
    x = g.relu(g.node("Add", [x, y], "residual"))
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x], "gap")], "flatten")
    g.gemm(x, 16, 10, name="fc")
    g.nodes[-1].output[0] = "output"
    return g.model("dynamic_hw_cnn", [_vi("input", ["N", 3, "H", "W"])], [_vi("output", ["N", 10])])


# ------------------------------------------------------------------------------- attention
ATT_C, ATT_HEADS, ATT_HD = 32, 4, 8


def _gelu(g: Net, x):
    e = g.node("Erf", [g.node("Div", [x, g.const(np.array(1.4142135, np.float32))])])
    return g.node("Mul", [g.node("Mul", [x, g.node("Add", [e, g.const(np.array(1.0, np.float32))])]),
                          g.const(np.array(0.5, np.float32))])


def _encoder_tail(g: Net, x, attn, name: str) -> onnx.ModelProto:
    """residual + LayerNorm + Gelu MLP (on [N * T, C] rows) + residual + LayerNorm, mean over T, head."""
    c, rng = ATT_C, g.rng

    def ln(v):
        return g.node("LayerNormalization", [v, g.const(rng.uniform(0.5, 1.5, c).astype(np.float32)),
                                             g.const(rng.normal(0, 0.1, c).astype(np.float32))], axis=-1, epsilon=1e-6)

    x = ln(g.node("Add", [x, attn]))
    rows = g.node("Reshape", [x, g.const(np.array([-1, c], np.int64))])
    h = g.node("Add", [g.node("MatMul", [rows, g.const((rng.standard_normal((c, 2 * c)) / np.sqrt(c)).astype(np.float32))]),
                       g.const((rng.standard_normal(2 * c) * 0.1).astype(np.float32))])
    h = g.node("Add", [g.node("MatMul", [_gelu(g, h), g.const((rng.standard_normal((2 * c, c)) / np.sqrt(2 * c)).astype(np.float32))]),
                       g.const((rng.standard_normal(c) * 0.1).astype(np.float32))])
    h = g.node("Reshape", [h, g.node("Shape", [x])])
    x = ln(g.node("Add", [x, h]))
    x = g.node("ReduceMean", [x], axes=[1], keepdims=0)
    g.node("MatMul", [x, g.const((rng.standard_normal((c, 10)) / np.sqrt(c)).astype(np.float32))], "output")
    return g.model(name, [_vi("input", ["N", "T", c])], [_vi("output", ["N", 10])])


def keras_attention() -> onnx.ModelProto:
    g = Net(SEED, opset=17)
    c, heads, hd, rng = ATT_C, ATT_HEADS, ATT_HD, g.rng
    x = "input"
    rows = g.node("Reshape", [x, g.const(np.array([-1, c], np.int64), "to_rows")], "attention/to_rows")
    lead = g.node("Slice", [g.node("Shape", [x], "attention/shape"), g.const(np.array([0], np.int64)),
                            g.const(np.array([2], np.int64))], "attention/lead")
    split = g.node("Concat", [lead, g.const(np.array([heads, hd], np.int64), "heads_hd")], "attention/split_shape", axis=0)
    proj = {}
    for p in "qkv":
        y = g.node("MatMul", [rows, g.const((rng.standard_normal((c, c)) / np.sqrt(c)).astype(np.float32),
                                             f"attention/{p}/kernel")], f"attention/{p}/MatMul")
        y = g.node("Add", [y, g.const((rng.standard_normal(c) * 0.1).astype(np.float32), f"attention/{p}/bias")])
        proj[p] = g.node("Reshape", [y, split], f"attention/{p}/Reshape")
    q = g.node("Mul", [g.node("Transpose", [proj["q"]], perm=[0, 2, 1, 3]), g.const(np.array(hd ** -0.5, np.float32))])
    k = g.node("Transpose", [proj["k"]], perm=[0, 2, 3, 1])
    v = g.node("Transpose", [proj["v"]], perm=[0, 2, 1, 3])
    a = g.node("Softmax", [g.node("MatMul", [q, k], "attention/scores")], axis=-1)
    ctx = g.node("Transpose", [g.node("MatMul", [a, v], "attention/context")], perm=[0, 2, 1, 3])
    ctx = g.node("Reshape", [ctx, g.const(np.array([-1, c], np.int64), "merge_heads")], "attention/merge")
    y = g.node("MatMul", [ctx, g.const((rng.standard_normal((c, c)) / np.sqrt(c)).astype(np.float32),
                                       "attention/output/kernel")], "attention/output/MatMul")
    y = g.node("Add", [y, g.const((rng.standard_normal(c) * 0.1).astype(np.float32), "attention/output/bias")])
    attn = g.node("Reshape", [y, g.node("Shape", [x])], "attention/to_sequence")
    return _encoder_tail(g, x, attn, "keras_attention")


def einsum_attention() -> onnx.ModelProto:
    g = Net(SEED + 1, opset=17)
    c, heads, hd, rng = ATT_C, ATT_HEADS, ATT_HD, g.rng
    x = "input"
    proj = {}
    for p in "qkv":
        y = g.node("Einsum", [x, g.const((rng.standard_normal((c, heads, hd)) / np.sqrt(c)).astype(np.float32),
                                         f"attention/{p}/kernel")], f"attention/{p}/einsum", equation="abc,cde->abde")
        proj[p] = g.node("Add", [y, g.const((rng.standard_normal((heads, hd)) * 0.1).astype(np.float32),
                                            f"attention/{p}/bias")])
    q = g.node("Mul", [proj["q"], g.const(np.array(hd ** -0.5, np.float32))])
    scores = g.node("Einsum", [proj["k"], q], "attention/scores", equation="aecd,abcd->acbe")
    a = g.node("Softmax", [scores], axis=-1)
    ctx = g.node("Einsum", [a, proj["v"]], "attention/context", equation="acbe,aecd->abcd")
    y = g.node("Einsum", [ctx, g.const((rng.standard_normal((heads, hd, c)) / np.sqrt(c)).astype(np.float32),
                                       "attention/output/kernel")], "attention/output/einsum", equation="abcd,cde->abe")
    attn = g.node("Add", [y, g.const((rng.standard_normal(c) * 0.1).astype(np.float32), "attention/output/bias")])
    return _encoder_tail(g, x, attn, "einsum_attention")


def gqa_attention() -> onnx.ModelProto:
    g = Net(SEED + 2, opset=17)
    c, heads, hd, rng = ATT_C, ATT_HEADS, ATT_HD, g.rng
    kv_heads = 2
    x = "input"
    proj = {}
    for p, n in (("q", heads), ("k", kv_heads), ("v", kv_heads)):
        y = g.node("MatMul", [x, g.const((rng.standard_normal((c, n * hd)) / np.sqrt(c)).astype(np.float32),
                                         f"self_attn.{p}_proj.weight")], f"/self_attn/{p}_proj/MatMul")
        y = g.node("Reshape", [y, g.const(np.array([0, 0, n, hd], np.int64))], f"/self_attn/{p}_view")
        y = g.node("Transpose", [y], f"/self_attn/{p}_t", perm=[0, 2, 1, 3])
        if p != "q":  # repeat_kv: [N, G, T, hd] -> [N, G, heads/G, T, hd] -> [N, heads, T, hd]
            y = g.node("Unsqueeze", [y, g.const(np.array([2], np.int64))], f"/self_attn/{p}_unsqueeze")
            y = g.node("Expand", [y, g.const(np.array([1, kv_heads, heads // kv_heads, 1, 1], np.int64))],
                       f"/self_attn/{p}_expand")
            y = g.node("Reshape", [y, g.const(np.array([0, heads, -1, hd], np.int64))], f"/self_attn/{p}_repeat")
        proj[p] = y
    k = g.node("Transpose", [proj["k"]], perm=[0, 1, 3, 2])
    s = g.node("Mul", [g.node("MatMul", [proj["q"], k], "/self_attn/scores"), g.const(np.array(hd ** -0.5, np.float32))])
    ctx = g.node("MatMul", [g.node("Softmax", [s], axis=-1), proj["v"]], "/self_attn/context")
    ctx = g.node("Reshape", [g.node("Transpose", [ctx], perm=[0, 2, 1, 3]), g.const(np.array([0, 0, c], np.int64))])
    attn = g.node("MatMul", [ctx, g.const((rng.standard_normal((c, c)) / np.sqrt(c)).astype(np.float32),
                                          "self_attn.o_proj.weight")], "/self_attn/o_proj/MatMul")
    return _encoder_tail(g, x, attn, "gqa_attention")


# ------------------------------------------------------------------------------- LayerNorm written out
def _swish(g: Net, x):
    return g.node("Mul", [x, g.node("Sigmoid", [x])])


def _ln_reduce_mean(g: Net, x, c: int):
    """paddle2onnx's LayerNorm over the last axis: ReduceMean / Sub / Pow / ReduceMean / Add / Sqrt /
    Div / Mul / Add."""
    rng = g.rng
    mean = g.node("ReduceMean", [x], axes=[-1])
    d = g.node("Sub", [x, mean])
    var = g.node("ReduceMean", [g.node("Pow", [d, g.const(np.array(2.0, np.float32))])], axes=[-1])
    y = g.node("Div", [d, g.node("Sqrt", [g.node("Add", [var, g.const(np.array(1e-5, np.float32))])])])
    y = g.node("Mul", [y, g.const(rng.uniform(0.5, 1.5, c).astype(np.float32))])
    return g.node("Add", [y, g.const(rng.normal(0, 0.3, c).astype(np.float32))])


def _dense(g: Net, x, cin: int, cout: int, name: str):
    rng = g.rng
    y = g.node("MatMul", [x, g.const((rng.standard_normal((cin, cout)) / np.sqrt(cin)).astype(np.float32),
                                      f"{name}.w_0")], f"{name}/MatMul")
    return g.node("Add", [y, g.const((rng.standard_normal(cout) * 0.3).astype(np.float32), f"{name}.b_0")])


def svtr_neck() -> onnx.ModelProto:
    g = Net(SEED + 7, opset=12)
    c, heads, hd, rng = 16, 2, 8, g.rng
    x = _swish(g, g.bn(g.conv("x", 3, c, k=3, stride=2, bias=False, name="conv2d_0"), c, "batch_norm_0"))
    lead = g.node("Slice", [g.node("Shape", [x]), g.const(np.array([0], np.int64)), g.const(np.array([2], np.int64)),
                            g.const(np.array([0], np.int64))])
    flat = g.node("Reshape", [x, g.node("Concat", [lead, g.const(np.array([-1], np.int64))], axis=0)], "neck_flatten")
    h = g.node("Transpose", [flat], "neck_transpose", perm=[0, 2, 1])
    for b in range(2):
        qkv = _dense(g, _ln_reduce_mean(g, h, c), c, 3 * c, f"block{b}.qkv")
        qkv = g.node("Transpose", [g.node("Reshape", [qkv, g.const(np.array([0, -1, 3, heads, hd], np.int64))])],
                     perm=[2, 0, 3, 1, 4])
        qkv_parts = []
        for k in range(3):
            part = g.node("Slice", [qkv, g.const(np.array([k], np.int64)), g.const(np.array([k + 1], np.int64)),
                                    g.const(np.array([0], np.int64))])
            qkv_parts.append(g.node("Squeeze", [part], axes=[0]))
        q = g.node("Mul", [qkv_parts[0], g.const(np.array(hd ** -0.5, np.float32))])
        a = g.node("Softmax", [g.node("MatMul", [q, g.node("Transpose", [qkv_parts[1]], perm=[0, 1, 3, 2])])], axis=3)
        ctx = g.node("Transpose", [g.node("MatMul", [a, qkv_parts[2]])], perm=[0, 2, 1, 3])
        ctx = g.node("Reshape", [ctx, g.const(np.array([0, -1, c], np.int64))])
        h = g.node("Add", [h, _dense(g, ctx, c, c, f"block{b}.proj")])
        m = _swish(g, _dense(g, _ln_reduce_mean(g, h, c), c, 2 * c, f"block{b}.fc1"))
        h = g.node("Add", [h, _dense(g, m, 2 * c, c, f"block{b}.fc2")])
    h = _ln_reduce_mean(g, h, c)
    h = g.node("Reshape", [h, g.const(np.array([0, 4, 8, c], np.int64))], "reshape_back")
    h = g.node("Transpose", [h], "to_nchw", perm=[0, 3, 1, 2])
    y = _swish(g, g.bn(g.conv(h, c, 12, k=2, pad=0, bias=False, name="conv2d_1"), 12, "batch_norm_1"))
    y = g.node("Flatten", [g.node("GlobalAveragePool", [y])])
    g.gemm(y, 12, 10, name="fc")
    g.nodes[-1].output[0] = "output"
    return g.model("svtr_neck", [_vi("x", ["N", 3, 8, 16])], [_vi("output", ["N", 10])], ir_version=8)


def keras_gap_layernorm(pre_norm: bool = False) -> onnx.ModelProto:
    """tf2onnx 1.9's Keras LayerNormalization on [N, T, C]: GlobalAveragePool takes the mean over
    the trailing axis (the only non-batch, non-"channel" axis it sees), then the variance the same
    way; one-head attention on [N * T, C] rows; post-norm as in BERT (or pre-norm)."""
    g = Net(SEED + 8, opset=13)
    c, rng = ATT_C, g.rng

    def ln(x):
        mean = g.node("GlobalAveragePool", [x])
        d = g.node("Sub", [x, mean])
        var = g.node("GlobalAveragePool", [g.node("Mul", [d, d])])
        r = g.node("Reciprocal", [g.node("Sqrt", [g.node("Add", [var, g.const(np.array(1e-3, np.float32))])])])
        y = g.node("Mul", [d, r])
        y = g.node("Mul", [y, g.const(rng.uniform(0.5, 1.5, c).astype(np.float32))])
        return g.node("Add", [y, g.const(rng.normal(0, 0.3, c).astype(np.float32))])

    def rows_dense(x, cin, cout, name):
        return _dense(g, x, cin, cout, name)

    x = _dense(g, "input", c, c, "embeddings")  # a Dense writes the stream
    for b in range(2):
        h = ln(x) if pre_norm else x
        q, k, v = (rows_dense(h, c, c, f"layer{b}/attention/{p}") for p in "qkv")
        s = g.node("Mul", [g.node("MatMul", [q, g.node("Transpose", [k], perm=[0, 2, 1])]),
                           g.const(np.array(c ** -0.5, np.float32))])
        ctx = g.node("MatMul", [g.node("Softmax", [s], axis=-1), v])
        x = g.node("Add", [x, rows_dense(ctx, c, c, f"layer{b}/attention/output")])
        x = x if pre_norm else ln(x)
        h = ln(x) if pre_norm else x
        m = g.node("Relu", [rows_dense(h, c, 2 * c, f"layer{b}/intermediate")])
        x = g.node("Add", [x, rows_dense(m, 2 * c, c, f"layer{b}/output")])
        x = x if pre_norm else ln(x)
    if pre_norm:
        x = ln(x)
    x = g.node("ReduceMean", [x], axes=[1], keepdims=0)
    g.node("MatMul", [x, g.const((rng.standard_normal((c, 10)) / np.sqrt(c)).astype(np.float32), "head")], "output")
    name = "keras_gap_layernorm" + ("_prenorm" if pre_norm else "")
    return g.model(name, [_vi("input", ["N", "T", c])], [_vi("output", ["N", 10])], producer="tf2onnx",
                   ir_version=7)


# ------------------------------------------------------------------------------- old exports
def weights_as_inputs(ir_version: int, opset: int) -> onnx.ModelProto:
    """small_cnn with BN, every weight also declared as a graph input (after the data input), as
    IR 3 requires and PyTorch < 1.3 (keep_initializers_as_inputs) wrote at IR 4."""
    m = small_cnn(opset=opset, bn=True, seed=SEED + ir_version)
    m.graph.input.extend(_vi(t.name, list(t.dims), t.data_type) for t in m.graph.initializer)
    m.ir_version = ir_version
    m.producer_name, m.producer_version = "pytorch", "1.2"
    return m


# ------------------------------------------------------------------------------- opsets
def opset_cnn(opset: int) -> onnx.ModelProto:
    """Conv-BN-Clip, Split + two convs + Concat + residual Add, Pad + depthwise conv,
    ReduceMean(H, W) + Squeeze, MatMul + Add; each op in the form its opset defines."""
    g = Net(SEED + opset, opset=opset)
    c1 = g.bn(g.conv("input", 3, 16, name="conv1"), 16, "bn1")
    lo, hi = g.const(np.array(0.0, np.float32), "clip_min"), g.const(np.array(6.0, np.float32), "clip_max")
    x = g.node("Clip", [c1, lo, hi], "clip")
    if opset < 13:
        parts = g.node("Split", [x], "split", n_out=2, axis=1, split=[8, 8])
    elif opset < 18:
        parts = g.node("Split", [x, g.const(np.array([8, 8], np.int64), "split_sizes")], "split", n_out=2, axis=1)
    else:
        parts = g.node("Split", [x], "split", n_out=2, axis=1, num_outputs=2)
    p0 = g.relu(g.conv(parts[0], 8, 8, name="conv2a"))
    p1 = g.relu(g.conv(parts[1], 8, 8, name="conv2b"))
    x = g.node("Add", [g.node("Concat", [p0, p1], "concat", axis=1), x], "residual")
    if opset < 18:
        x = g.node("Pad", [x, g.const(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")], "pad")
    else:
        x = g.node("Pad", [x, g.const(np.array([1, 1, 1, 1], np.int64), "pads"), "",
                           g.const(np.array([2, 3], np.int64), "pad_axes")], "pad")
    x = g.relu(g.conv(x, 16, 16, group=16, pad=0, name="dwconv"))
    if opset < 18:
        x = g.node("ReduceMean", [x], "mean", axes=[2, 3], keepdims=1)
    else:
        x = g.node("ReduceMean", [x, g.const(np.array([2, 3], np.int64), "mean_axes")], "mean", keepdims=1)
    if opset < 13:
        x = g.node("Squeeze", [x], "squeeze", axes=[2, 3])
    else:
        x = g.node("Squeeze", [x, g.const(np.array([2, 3], np.int64), "squeeze_axes")], "squeeze")
    w = g.const((g.rng.standard_normal((16, 10)) * 0.25).astype(np.float32), "fc.weight")
    b = g.const((g.rng.standard_normal(10) * 0.1).astype(np.float32), "fc.bias")
    x = g.node("MatMul", [x, w], "fc_matmul")
    g.node("Add", [x, b], "output")
    return g.model(f"opset{opset}_cnn", [_vi("input", ["N", 3, 16, 16])], [_vi("output", ["N", 10])])


# ------------------------------------------------------------------------------- registry
FIXTURES: dict[str, tuple[Callable[[], onnx.ModelProto], str, tuple[str, ...]]] = {
    "tf_keras_cnn": (tf_keras_cnn, "tf2onnx 1.17 (default optimizers) from Keras 3 / TF 2.21",
                     ("tensorflow", "tf2onnx")),
    "tf_keras_cnn_noopt": (tf_keras_cnn_noopt, "tf2onnx 1.17, transpose optimizer off, from Keras 3 / TF 2.21",
                           ("tensorflow", "tf2onnx")),
    "tf_keras_layernorm": (tf_keras_layernorm, "tf2onnx 1.17 (opset 13) from Keras 3 / TF 2.21: LayerNormalization on [B, L, C]",
                           ("tensorflow", "tf2onnx")),
    "tf_keras_unet_crnn": (tf_keras_unet_crnn, "tf2onnx 1.17 (opset 13) from Keras 3 / TF 2.21, H and W dynamic",
                           ("tensorflow", "tf2onnx")),
    "paddle_style_cnn": (paddle_style_cnn, "onnx.helper, paddle2onnx style (Constant-node weights)", ()),
    "paddle_se_cnn": (paddle_se_cnn, "onnx.helper, paddle2onnx style (computed per-channel constants, SE)", ()),
    "paddle_reshape_cnn": (paddle_reshape_cnn, "onnx.helper, Paddle 2.0 style (Reshape target from Shape -> Cast -> "
                           "Slice -> Cast -> Concat)", ()),
    "yolo_reshape_cnn": (yolo_reshape_cnn, "onnx.helper, Ultralytics-style head (Reshape target from Shape -> Gather)",
                         ()),
    "layernorm_cnn": (layernorm_cnn, "onnx.helper, ConvNeXt style (LayerNormalization and written out)", ()),
    "recurrent_cnn": (recurrent_cnn, "onnx.helper, torch.onnx style CNN + BiLSTM + GRU", ()),
    "grouped_cnn": (grouped_cnn, "onnx.helper, RegNetY / ResNeXt bottleneck (grouped 3x3 conv, SE)", ()),
    "subgraph_if": (subgraph_if, "onnx.helper (If with outer-scope reads)", ()),
    "subgraph_if_owned": (subgraph_if_owned, "onnx.helper (If branches with their own conv nets)", ()),
    "subgraph_loop": (subgraph_loop, "onnx.helper (Loop, carried + outer-scope reads)", ()),
    "fp16_cnn": (fp16_cnn, "onnxconverter-common float16 converter", ("onnxconverter_common",)),
    "qdq_cnn": (qdq_cnn, "onnxruntime.quantization.quantize_static (QDQ, per-channel weights)", ("onnxruntime",)),
    "qdq_bn_cnn": ((lambda: qdq_bn_cnn(True)), "onnxruntime.quantization.quantize_static (QDQ, per-channel weights, "
                   "BN not folded)", ("onnxruntime",)),
    "qdq_bn_cnn_pt": ((lambda: qdq_bn_cnn(False)), "onnxruntime.quantization.quantize_static (QDQ, per-tensor weights, "
                      "BN not folded)", ("onnxruntime",)),
    "dynamic_hw_cnn": (dynamic_hw_cnn, "onnx.helper (dynamic N, H, W)", ()),
    "keras_attention": (keras_attention, "onnx.helper, tf2onnx Keras MultiHeadAttention style", ()),
    "einsum_attention": (einsum_attention, "onnx.helper, Keras EinsumDense / einsum attention style", ()),
    "gqa_attention": (gqa_attention, "onnx.helper, Hugging Face grouped-query attention (repeat_kv)", ()),
    "svtr_neck": (svtr_neck, "onnx.helper, paddle2onnx PP-OCRv4 SVTR neck (LayerNorm written out, conv in and out)",
                  ()),
    "keras_gap_layernorm": (keras_gap_layernorm, "onnx.helper, tf2onnx 1.9 Keras LayerNorm from GlobalAveragePool", ()),
    "keras_gap_layernorm_prenorm": ((lambda: keras_gap_layernorm(True)), "onnx.helper, the same, pre-norm blocks", ()),
    "weights_as_inputs_ir4": ((lambda: weights_as_inputs(4, 9)), "onnx.helper, weights also graph inputs (IR 4)", ()),
    "weights_as_inputs_ir3": ((lambda: weights_as_inputs(3, 8)), "onnx.helper, weights also graph inputs (IR 3)", ()),
    **{f"opset{n}_cnn": ((lambda n=n: opset_cnn(n)), f"onnx.helper, opset {n}", ()) for n in OPSETS},
}


def _available(modules) -> str | None:
    import importlib.util

    for m in modules:
        if importlib.util.find_spec(m) is None:
            return m
    return None


def check_fixture(model: onnx.ModelProto, data: bytes) -> list[tuple[int, ...]]:
    """checker, size, ONNX Runtime at batch 2 and 3; returns output shapes."""
    import onnxruntime as ort

    onnx.checker.check_model(model, full_check=True)
    if len(data) >= MAX_BYTES:
        raise AssertionError(f"{len(data)} bytes >= {MAX_BYTES}")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    shapes = []
    for batch in (2, 3):
        feeds = {}
        for i in sess.get_inputs():
            shape = [d if isinstance(d, int) else (batch if k == 0 else 16) for k, d in enumerate(i.shape)]
            dtype = np.float16 if "float16" in i.type else np.float32
            feeds[i.name] = rng.standard_normal(shape).astype(dtype)
        outs = sess.run(None, feeds)
        for o in outs:
            if not np.all(np.isfinite(o)):
                raise AssertionError("non-finite output")
        shapes.append(tuple(outs[0].shape))
    return shapes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", help="comma-separated fixture names")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    args = ap.parse_args(argv)
    if args.list:
        for name, (_, how, needs) in FIXTURES.items():
            print(f"{name:<22} {how}" + (f"  [needs {', '.join(needs)}]" if needs else ""))
        return 0
    names = list(FIXTURES) if not args.only else args.only.split(",")
    unknown = [n for n in names if n not in FIXTURES]
    if unknown:
        ap.error(f"unknown fixture(s): {', '.join(unknown)}")
    args.out.mkdir(parents=True, exist_ok=True)
    if len(names) > 1 or os.environ.get("PYTHONHASHSEED") != "0":
        # One fresh interpreter per fixture: tf2onnx and Keras name what they make from
        # process-wide counters, so a fixture does not depend on what was built before it. (The
        # names tf2onnx gives folded constants, const_fold_opt__N / const_axes__N, still vary from
        # run to run; structure and weights do not. The hand-built fixtures are byte-identical.)
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        failed = 0
        for name in names:
            r = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--only", name, "--out", str(args.out)],
                               env=env)
            failed += r.returncode != 0
        return 1 if failed else 0
    (name,) = names
    build, how, needs = FIXTURES[name]
    missing = _available(needs)
    if missing:
        print(f"skipped {name} (needs {missing})", file=sys.stderr)
        return 0
    model = build()
    data = model.SerializeToString()
    shapes = check_fixture(model, data)
    (args.out / f"{name}.onnx").write_bytes(data)
    print(f"{name + '.onnx':<26} {len(data):>8,} bytes  opset {model.opset_import[0].version:<3} "
          f"ir {model.ir_version:<3} out {shapes[0]}  ({how})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
