"""The oracle on small hand-made graphs covering each rule family."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune.analysis import analyze
from tests.helpers.oracle import check_oracle


class G:
    """Tiny graph builder for tests."""

    def __init__(self, c=3, hw=8, seed=0):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.n = [], [], 0
        self.inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, hw, hw])]

    def name(self, p):
        self.n += 1
        return f"{p}{self.n}"

    def const(self, value, p="c"):
        n = self.name(p)
        self.inits.append(numpy_helper.from_array(np.asarray(value), n))
        return n

    def w(self, *shape, scale=0.4):
        return self.const((self.rng.standard_normal(shape) * scale).astype(np.float32), "w")

    def op(self, op, inputs, n_out=1, **attrs):
        outs = [self.name(op.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=outs[0], **attrs))
        return outs[0] if n_out == 1 else outs

    def conv(self, x, cin, cout, k=3, group=1, bias=True):
        ins = [x, self.w(cout, cin // group, k, k)] + ([self.w(cout)] if bias else [])
        return self.op("Conv", ins, pads=[k // 2] * 4, group=group)

    def bn(self, x, c):
        return self.op("BatchNormalization", [x, self.w(c), self.w(c),
                                              self.w(c), self.const(self.rng.uniform(0.5, 1.5, c).astype(np.float32))])

    def model(self, *outputs, opset=17):
        outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
        g = helper.make_graph(self.nodes, "g", self.inputs, outs, self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
        m = onnx.shape_inference.infer_shapes(m)
        onnx.checker.check_model(m, full_check=True)
        return m


def head(g, x, c, classes=5):
    p = g.op("GlobalAveragePool", [x])
    f = g.op("Flatten", [p])
    return g.op("Gemm", [f, g.w(classes, c), g.w(classes)], transB=1)


def resnet_block():
    g = G()
    a = g.op("Relu", [g.bn(g.conv("x", 3, 8, bias=False), 8)])
    b = g.op("Relu", [g.conv(a, 8, 8)])
    c = g.conv(b, 8, 8)
    d = g.op("Relu", [g.op("Add", [a, c])])
    return g.model(head(g, d, 8))


def concat_split_slice():
    g = G()
    a = g.op("Relu", [g.conv("x", 3, 6)])
    b = g.op("Sigmoid", [g.conv("x", 3, 5)])
    cat = g.op("Concat", [a, b, a], axis=1)  # 17 channels, a twice
    p1, p2 = g.op("Split", [cat, g.const(np.array([7, 10], dtype=np.int64))], n_out=2, axis=1)
    s = g.op("Slice", [p2, g.const(np.array([2], dtype=np.int64)), g.const(np.array([9], dtype=np.int64)),
                       g.const(np.array([1], dtype=np.int64))])
    y = g.conv(g.op("Concat", [p1, s], axis=1), 14, 4)
    return g.model(head(g, y, 4))


def concat_with_plain_input():
    """The graph input (no channels) concatenated on both sides of a conv's channels: its
    positions are fixed, the conv's channels move by an offset and stay prunable."""
    g = G()
    a = g.op("Relu", [g.conv("x", 3, 6)])
    cat = g.op("Concat", ["x", a, "x"], axis=1)  # 3 fixed + 6 + 3 fixed
    return g.model(head(g, g.op("Relu", [g.conv(cat, 12, 5)]), 5))


def depthwise_grouped():
    g = G()
    a = g.op("Relu", [g.conv("x", 3, 8)])
    d = g.conv(a, 8, 16, group=8)       # depthwise, multiplier 2
    e = g.conv(d, 16, 8, k=1, group=4)  # grouped
    f = g.op("Clip", [e, g.const(np.array(0, np.float32)), g.const(np.array(6, np.float32))])
    return g.model(head(g, f, 8))


def flatten_gemm_matmul():
    g = G(hw=4)
    a = g.op("Relu", [g.conv("x", 3, 6)])
    f = g.op("Flatten", [a])                                   # 6*16 features
    h = g.op("Relu", [g.op("Gemm", [f, g.w(96, 12), g.w(12)])])  # transB = 0
    m = g.op("Add", [g.op("MatMul", [h, g.w(12, 7)]), g.w(7)])
    return g.model(g.op("Gemm", [g.op("Tanh", [m]), g.w(3, 7), g.w(3)], transB=1))


def nhwc_transpose():
    g = G()
    a = g.op("Relu", [g.conv("x", 3, 6)])
    t = g.op("Transpose", [a], perm=[0, 2, 3, 1])
    m = g.op("Add", [g.op("MatMul", [t, g.w(6, 5)]), g.w(5)])   # 1x1 conv in channels-last form
    m = g.op("Mul", [g.op("Relu", [m]), g.const(np.ones((1, 1, 1, 5), np.float32) * 0.5)])
    back = g.op("Transpose", [m], perm=[0, 3, 1, 2])
    r = g.op("Reshape", [back, g.const(np.array([0, -1], dtype=np.int64))])
    return g.model(g.op("Gemm", [r, g.w(4, 5 * 64), g.w(4)], transB=1))


def transpose_without_perm():
    """A Transpose without perm reverses the axes: (N, C, H, W) -> (W, H, C, N), channels on axis 2,
    where a (C, 1) constant scales them (broadcast from the right); a second one turns it back."""
    g = G()
    a = g.op("Relu", [g.conv("x", 3, 6)])
    t = g.op("Transpose", [a])
    m = g.op("Mul", [t, g.const(np.linspace(0.5, 1.5, 6, dtype=np.float32).reshape(6, 1))])
    back = g.op("Transpose", [m])
    return g.model(head(g, g.conv(back, 6, 4), 4))


def se_block_and_per_channel():
    g = G()
    a = g.op("Relu", [g.conv("x", 3, 8)])
    s = g.op("Sigmoid", [g.conv(g.op("Relu", [g.conv(g.op("GlobalAveragePool", [a]), 8, 4, k=1)]), 4, 8, k=1)])
    b = g.op("Mul", [a, s])
    c = g.op("Add", [g.op("Mul", [b, g.w(8, 1, 1)]), g.w(1, 8, 1, 1)])
    d = g.op("PRelu", [c, g.w(8, 1, 1)])
    e = g.op("Resize", [d, "", g.const(np.array([1, 1, 2, 2], np.float32))], mode="nearest")
    p = g.op("MaxPool", [e], kernel_shape=[2, 2], strides=[2, 2])
    q = g.op("Pad", [p, g.const(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))])
    r = g.op("Max", [g.conv(q, 8, 8), g.conv(q, 8, 8)])
    return g.model(head(g, r, 8))


def convtranspose_decoder():
    g = G()
    a = g.op("Relu", [g.conv("x", 3, 6)])
    d = g.op("Relu", [g.conv(a, 6, 8)])
    u = g.op("ConvTranspose", [d, g.w(8, 5, 2, 2), g.w(5)], strides=[2, 2])
    p = g.op("MaxPool", [u], kernel_shape=[2, 2], strides=[2, 2])
    cat = g.op("Concat", [p, a], axis=1)
    return g.model(g.conv(cat, 11, 2))


def unknown_ops():
    g = G()
    a = g.op("Relu", [g.conv("x", 3, 6)])
    b = g.op("LRN", [a], size=3)                  # channel mixing: blocks a's group
    c = g.conv(b, 6, 6)
    s = g.op("Softmax", [c], axis=1)              # softmax over channels: blocks c's group
    d = g.op("Relu", [g.conv(s, 6, 7)])           # still prunable
    return g.model(head(g, d, 7))


MODELS = {f.__name__: f for f in (resnet_block, concat_split_slice, concat_with_plain_input, depthwise_grouped, flatten_gemm_matmul,
                                  nhwc_transpose, transpose_without_perm, se_block_and_per_channel, convtranspose_decoder, unknown_ops)}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_oracle_holds(name, seed):
    info = check_oracle(MODELS[name](), seed=seed)
    assert info["prunable"] >= 1
    assert info["removed"] >= 1


@pytest.mark.parametrize("name", ["concat_split_slice", "concat_with_plain_input", "depthwise_grouped"])
def test_oracle_holds_for_every_single_channel(name):
    """Index maps (Concat offsets, Split sizes, Slice bounds, conv groups) are off by one only for
    some positions: remove each channel on its own, and every pair of neighbours."""
    model = MODELS[name]()
    groups = [g.channels for g in analyze(model).prunable_groups()]
    choices = [{c} for chans in groups for c in chans]
    choices += [{a, b} for chans in groups for a, b in zip(chans, chans[1:]) if len(chans) > 2]
    assert choices
    for chosen in choices:
        check_oracle(model, choose=lambda analysis, chosen=chosen: set(chosen))


def test_concat_keeps_inputs_without_channels_fixed():
    info = check_oracle(concat_with_plain_input(), seed=0)
    sizes = sorted(g.size for g in info["analysis"].prunable_groups())
    assert sizes == [5, 6], sizes  # the conv before the concat and the one after it


def test_transpose_without_perm_reverses_the_axes():
    """The channels of the first conv pass both Transposes and scale with the Mul constant, sliced
    along its first axis; a wrong channel axis after the first Transpose blocked them instead."""
    model = transpose_without_perm()
    scale = next(n.input[1] for n in model.graph.node if n.op_type == "Mul")
    info = check_oracle(model, choose=lambda analysis: {g.channels[0] for g in analysis.prunable_groups()})
    group = next(g for g in info["analysis"].prunable_groups() if any(m.param == scale for m in g.members))
    assert group.size == 6 and [m.axis for m in group.members if m.param == scale] == [0]


def test_unknown_ops_block_their_groups_only():
    info = check_oracle(unknown_ops(), seed=0)
    groups = info["analysis"].groups
    blocked = [g for g in groups if not g.prunable]
    reasons = " ".join(r for g in blocked for r in g.reasons)
    assert "LRN" in reasons and "Softmax" in reasons
    assert any(g.prunable and g.size == 7 for g in groups)


def test_depthwise_and_grouped_couple_per_group():
    info = check_oracle(depthwise_grouped(), seed=0)
    a = info["analysis"]
    # The depthwise conv ties stem channel i to its outputs 2i, 2i+1; the group-4 conv reads
    # depthwise outputs 4k..4k+3 together, tying stem channels 2k and 2k+1: 4 channels remain,
    # and its own outputs (2 per conv-group) join them.
    sizes = sorted(g.size for g in a.prunable_groups())
    assert sizes == [4], sizes
