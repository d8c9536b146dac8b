"""Generate tests/fixtures/shapes/: small seeded models in the input-shape patterns of real exports
(issue 11), built with onnx.helper (no framework needed).

=========================  ========================================================================
fixture                    pattern
=========================  ========================================================================
detector_dynamic_hw        images [batch,3,height,width]; strided convs, an FPN-style neck (Resize
                           x2 by scales, Add with the skip), two heads: a dense map and boxes
                           reshaped to [batch, anchors, 6] (anchors depend on H, W)
crnn_dynamic_width         x [batch,1,32,width]; CNN, Transpose + Reshape to [T, batch, 128],
                           bidirectional LSTM, MatMul head: logits [T, batch, 11]
stateful_vad               x [batch,64], state [2,batch,128], sr int64 scalar: the batch is dim 1 of
                           the state; outputs the new state
two_inputs_static          image [1,3,8,8] and features [4,10]: fixed, unrelated leading dims
clip_bounds_1d             Clip whose min/max are shape-[1] tensors (a common export form)
zero_sized_output          a second output Slice(logits)[0:0]: shape [0, 4]
sequence_input             a seq(tensor(float)) input: random data cannot make it
=========================  ========================================================================

Usage: python tools/make_shape_fixtures.py   (every fixture is checked by the ONNX checker and run
once in ONNX Runtime before it is written)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tools.make_fixtures import Net, _vi  # noqa: E402

OUT_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "shapes"


def detector_dynamic_hw() -> onnx.ModelProto:
    g = Net(1, 17)
    c1 = g.relu(g.conv("images", 3, 8, stride=2, name="stem"))
    c2 = g.relu(g.conv(c1, 8, 16, stride=2, name="down1"))
    c3 = g.relu(g.conv(c2, 16, 16, stride=2, name="down2"))
    up = g.node("Resize", [c3, "", g.const(np.array([1, 1, 2, 2], np.float32), "up_scales")], "up", mode="nearest")
    p2 = g.relu(g.node("Add", [up, c2], "fpn_add"))
    lat = g.relu(g.conv(p2, 16, 8, k=1, name="lateral"))
    up2 = g.node("Resize", [lat, "", g.const(np.array([1, 1, 2, 2], np.float32), "up2_scales")], "up2",
                 mode="nearest")
    p1 = g.relu(g.node("Add", [up2, c1], "fpn_add2"))
    g.node("Conv", [p1, g.const((g.rng.standard_normal((2, 8, 1, 1)) * 0.3).astype(np.float32), "seg.weight")],
           "seg_map", kernel_shape=[1, 1])
    box = g.conv(c3, 16, 6, k=1, name="box_head")
    flat = g.node("Reshape", [box, g.const(np.array([0, 6, -1], np.int64), "box_shape")], "box_flat")
    g.node("Transpose", [flat], "boxes", perm=[0, 2, 1])
    return g.model("detector_dynamic_hw", [_vi("images", ["batch", 3, "height", "width"])],
                   [_vi("seg_map", ["batch", 2, None, None]), _vi("boxes", ["batch", None, 6])])


def crnn_dynamic_width() -> onnx.ModelProto:
    g = Net(2, 17)
    x = g.relu(g.conv("x", 1, 8, name="conv1"))
    x = g.node("MaxPool", [x], "pool1", kernel_shape=[2, 2], strides=[2, 2])
    x = g.relu(g.conv(x, 8, 16, name="conv2"))
    x = g.node("MaxPool", [x], "pool2", kernel_shape=[2, 2], strides=[2, 2])  # [N,16,8,W/4]
    x = g.node("Transpose", [x], "to_seq", perm=[3, 0, 1, 2])                   # [T,N,16,8]
    x = g.node("Reshape", [x, g.const(np.array([0, 0, -1], np.int64), "seq_shape")], "seq")  # [T,N,128]
    hidden = 32
    w = (g.rng.standard_normal((2, 4 * hidden, 128)) * 0.1).astype(np.float32)
    r = (g.rng.standard_normal((2, 4 * hidden, hidden)) * 0.1).astype(np.float32)
    b = (g.rng.standard_normal((2, 8 * hidden)) * 0.1).astype(np.float32)
    y = g.node("LSTM", [x, g.const(w, "lstm.W"), g.const(r, "lstm.R"), g.const(b, "lstm.B")], "lstm",
               hidden_size=hidden, direction="bidirectional")                  # [T,2,N,32]
    y = g.node("Transpose", [y], "lstm_t", perm=[0, 2, 1, 3])                   # [T,N,2,32]
    y = g.node("Reshape", [y, g.const(np.array([0, 0, -1], np.int64), "feat_shape")], "feat")  # [T,N,64]
    head = (g.rng.standard_normal((64, 11)) * 0.1).astype(np.float32)
    y = g.node("MatMul", [y, g.const(head, "head.weight")], "head")
    g.node("Add", [y, g.const(np.zeros(11, np.float32), "head.bias")], "logits")
    return g.model("crnn_dynamic_width", [_vi("x", ["batch", 1, 32, "width"])], [_vi("logits", [None, "batch", 11])])


def stateful_vad() -> onnx.ModelProto:
    g = Net(3, 17)
    w1 = (g.rng.standard_normal((64, 128)) * 0.1).astype(np.float32)
    h = g.node("MatMul", ["x", g.const(w1, "enc.weight")], "enc")
    h = g.relu(g.node("Add", [h, g.const(np.zeros(128, np.float32), "enc.bias")], "enc_bias"))
    rate = g.node("Cast", ["sr"], "sr_float", to=TensorProto.FLOAT)
    h = g.node("Mul", [h, g.node("Div", [rate, g.const(np.array(16000.0, np.float32), "sr_ref")], "sr_scale")],
               "scaled")
    lifted = g.node("Unsqueeze", [h, g.const(np.array([0], np.int64), "axis0")], "lifted")
    g.node("Add", ["state", lifted], "stateN")
    mean = g.node("ReduceMean", ["stateN"], "state_mean", axes=[0], keepdims=0)
    w2 = (g.rng.standard_normal((128, 1)) * 0.1).astype(np.float32)
    g.node("Sigmoid", [g.node("MatMul", [mean, g.const(w2, "out.weight")], "out_mm")], "output")
    return g.model("stateful_vad",
                   [_vi("x", ["batch", 64]), _vi("state", [2, "batch", 128]), _vi("sr", [], TensorProto.INT64)],
                   [_vi("output", ["batch", 1]), _vi("stateN", [2, "batch", 128])])


def two_inputs_static() -> onnx.ModelProto:
    g = Net(4, 17)
    x = g.relu(g.conv("image", 3, 4, name="conv"))
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x], "gap")], "flat", axis=1)
    g.gemm(x, 4, 3, name="fc")
    g.nodes[-1].output[0] = "out_a"
    w = (g.rng.standard_normal((10, 6)) * 0.3).astype(np.float32)
    y = g.relu(g.node("MatMul", ["features", g.const(w, "proj.weight")], "proj"))
    w2 = (g.rng.standard_normal((6, 2)) * 0.3).astype(np.float32)
    g.node("MatMul", [y, g.const(w2, "out.weight")], "out_b")
    return g.model("two_inputs_static", [_vi("image", [1, 3, 8, 8]), _vi("features", [4, 10])],
                   [_vi("out_a", [1, 3]), _vi("out_b", [4, 2])])


def clip_bounds_1d() -> onnx.ModelProto:
    g = Net(5, 13)
    x = g.conv("input", 3, 8, name="conv1")
    x = g.node("Clip", [x, g.const(np.array([0.0], np.float32), "clip_min"),
                        g.const(np.array([6.0], np.float32), "clip_max")], "relu6")
    x = g.relu(g.conv(x, 8, 8, name="conv2"))
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x], "gap")], "flat", axis=1)
    g.gemm(x, 8, 4, name="fc")
    g.nodes[-1].output[0] = "output"
    return g.model("clip_bounds_1d", [_vi("input", ["N", 3, 8, 8])], [_vi("output", ["N", 4])])


def zero_sized_output() -> onnx.ModelProto:
    g = Net(6, 17)
    x = g.relu(g.conv("input", 3, 8, name="conv1"))
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x], "gap")], "flat", axis=1)
    g.gemm(x, 8, 4, name="fc")
    g.nodes[-1].output[0] = "logits"
    zero = g.const(np.array([0], np.int64), "zero")
    g.node("Slice", ["logits", zero, zero, zero], "empty")
    return g.model("zero_sized_output", [_vi("input", ["N", 3, 8, 8])],
                   [_vi("logits", ["N", 4]), _vi("empty", [0, 4])])


def sequence_input() -> onnx.ModelProto:
    g = Net(7, 17)
    first = g.node("SequenceAt", ["frames", g.const(np.array(0, np.int64), "first")], "first_frame")
    x = g.relu(g.conv(first, 3, 4, name="conv"))
    g.node("Flatten", [g.node("GlobalAveragePool", [x], "gap")], "output", axis=1)
    seq = helper.make_tensor_sequence_value_info("frames", TensorProto.FLOAT, ["N", 3, 8, 8])
    return g.model("sequence_input", [seq], [_vi("output", ["N", 4])])


FIXTURES = {f.__name__: f for f in (detector_dynamic_hw, crnn_dynamic_width, stateful_vad, two_inputs_static,
                                     clip_bounds_1d, zero_sized_output, sequence_input)}


def _smoke(model: onnx.ModelProto) -> None:
    import onnxruntime as ort

    from onnxprune.runtime.data import input_specs, random_data
    from onnxprune.shapes import resolve_shapes

    if model.graph.name == "sequence_input":
        return
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    shapes = resolve_shapes(model)
    feeds = next(random_data(input_specs(model), shapes, 2).batches(2)).feeds
    for out in sess.run(None, feeds):
        assert np.isfinite(out).all()


def main() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, build in FIXTURES.items():
        model = build()
        onnx.checker.check_model(model, full_check=True)
        _smoke(model)
        onnx.save(model, OUT_DIR / f"{name}.onnx")
        print(f"{name}: {(OUT_DIR / f'{name}.onnx').stat().st_size} bytes")


if __name__ == "__main__":
    main()
