"""Attention heads as channels: tests/fixtures/torch_vit_tiny.onnx is torchvision's VisionTransformer in
small (2 blocks, nn.MultiheadAttention with 4 heads of 8), exported as TorchScript writes it: a packed
in-projection reshaped to [L, N, 3, E], heads merged into the batch axis, run-time Reshape targets."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from onnxprune.api import resolve_input_shapes
from onnxprune.config import PruneConfig
from tests.helpers.oracle import check_oracle, copy, feeds, run

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "torch_vit_tiny.onnx"
HEADS, HEAD_DIM, DIM = 4, 8, 32


@pytest.fixture(scope="module")
def vit():
    return onnx.load(str(FIXTURE))


def in_proj(model, layer):
    """The packed in-projection weight [E, 3E] of a block (MatMul reading its LayerNorm)."""
    node = next(n for n in model.graph.node if n.op_type == "MatMul" and n.name == f"/layers/layers.{layer}/self_attention/MatMul")
    return node.input[1]


def stored(model):
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def head_group(analysis, layer):
    return next(g for g in analysis.groups if f"/layers/layers.{layer}/self_attention/MatMul" in g.sources)


def test_heads_are_exact_channel_groups(vit):
    analysis = onnxprune.analyze(copy(vit))
    for layer in (0, 1):
        g = head_group(analysis, layer)
        assert g.exact and g.size == HEADS, g.reasons
        params = {(m.param, m.axis, m.role, len(m.atoms)) for m in g.members}
        assert (in_proj(vit, layer), 1, "out", 3 * DIM) in params  # q, k and v columns of every head
        assert (f"layers.{layer}.self_attention.out_proj.weight", 1, "in", DIM) in params


@pytest.mark.parametrize("seed, batch", [(0, 2), (1, 3)])
def test_heads_oracle(vit, seed, batch):
    shapes = resolve_input_shapes(vit, PruneConfig())
    info = check_oracle(vit, seed=seed, shapes=shapes, inputs=feeds(vit, batch=batch, seed=seed))
    heads = set(head_group(info["analysis"], 0).channels) | set(head_group(info["analysis"], 1).channels)
    assert info["removed"] >= 1 and heads  # random channels of every exact group, heads included


def test_dead_head_removed_in_exact_mode(vit):
    model = copy(vit)
    w = next(t for t in model.graph.initializer if t.name == "layers.0.self_attention.out_proj.weight")
    value = numpy_helper.to_array(w).copy()
    value[:, 2 * HEAD_DIM:3 * HEAD_DIM] = 0  # nothing reads head 2 of block 0
    w.CopyFrom(numpy_helper.from_array(value, w.name))
    pruned = onnxprune.prune(copy(model)).model
    onnx.checker.check_model(pruned, full_check=True)
    after = stored(pruned)
    assert after[in_proj(model, 0)].shape == (DIM, 3 * (DIM - HEAD_DIM))
    assert after["layers.0.self_attention.out_proj.weight"].shape == (DIM, DIM - HEAD_DIM)
    assert after[in_proj(model, 1)].shape == (DIM, 3 * DIM)
    for batch in (1, 3):
        inputs = feeds(model, batch=batch, seed=batch)
        np.testing.assert_allclose(run(pruned, inputs)[0], run(model, inputs)[0], rtol=1e-5, atol=1e-5)


def test_lossy_ratio_keeps_half_the_heads(vit):
    pruned = onnxprune.prune(copy(vit), ratio=0.5).model  # a head is 24 columns: no alignment to 16
    onnx.checker.check_model(pruned, full_check=True)
    after = stored(pruned)
    for layer in (0, 1):
        assert after[in_proj(vit, layer)].shape == (DIM, 3 * 2 * HEAD_DIM)
        assert after[f"layers.{layer}.self_attention.out_proj.weight"].shape == (DIM, 2 * HEAD_DIM)
    for batch in (1, 2):
        (y,) = run(pruned, feeds(vit, batch=batch))
        assert y.shape == (batch, 10) and np.all(np.isfinite(y))


def test_softmax_across_heads_blocks_them(vit):
    """An attention that mixes heads is not a known pattern: its heads stay, with the reason."""
    model = copy(vit)
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax" and "layers.0" in n.name)
    next(a for a in softmax.attribute if a.name == "axis").i = 1  # [N, heads, L, L]: over the heads
    analysis = onnxprune.analyze(model)
    assert not head_group(analysis, 0).prunable
    assert any("Softmax over the channel axis" in r for r in head_group(analysis, 0).reasons)
    assert head_group(analysis, 1).exact


def test_shape_entry_counted_from_the_end_is_followed():
    """Slice(Shape(x), -3, -2) of an NCHW tensor is the channel count: a Shape read that is not
    frozen into a Reshape target blocks the channels (it once counted as picking another entry)."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 1, 1)).astype(np.float32), "w")
    w2 = numpy_helper.from_array(rng.standard_normal((2, 4)).astype(np.float32), "w2")
    starts = numpy_helper.from_array(np.array([-3], dtype=np.int64), "starts")
    ends = numpy_helper.from_array(np.array([-2], dtype=np.int64), "ends")
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv"),
             helper.make_node("Relu", ["y"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "w2"], ["s"], name="gemm", transB=1),
             helper.make_node("Shape", ["y"], ["shape"], name="shape"),
             helper.make_node("Slice", ["shape", "starts", "ends"], ["c"], name="slice"),
             helper.make_node("Cast", ["c"], ["cf"], name="cast", to=TensorProto.FLOAT),
             helper.make_node("Mul", ["s", "cf"], ["out"], name="mul")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], [w, w2, starts, ends])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    analysis = onnxprune.analyze(model)
    conv = next(g for g in analysis.groups if "conv" in g.sources)
    assert not conv.prunable
    assert any("read by a Shape op" in r for r in conv.reasons), conv.reasons


# timm's ViT / torchvision's Swin: qkv reshaped to [B, N, 3, heads, hd], q, k, v by Split, a per-head
# bias [heads, N, N] added to the logits.
PACKED = Path(__file__).resolve().parents[1] / "fixtures" / "torch_vit_packed_tiny.onnx"


def packed_weights(model, layer):
    nodes = {n.name: n for n in model.graph.node}
    qkv = nodes[f"/layers/layers.{layer}/self_attention/qkv/MatMul"].input[1]
    proj = nodes[f"/layers/layers.{layer}/self_attention/proj/MatMul"].input[1]
    return qkv, proj, f"layers.{layer}.self_attention.bias"


def test_packed_heads_are_exact_groups_with_their_logit_bias():
    model = onnx.load(str(PACKED))
    analysis = onnxprune.analyze(copy(model))
    for layer in (0, 1):
        g = next(g for g in analysis.groups if f"/layers/layers.{layer}/self_attention/qkv/MatMul" in g.sources)
        assert g.exact and g.size == HEADS, g.reasons
        qkv, proj, bias = packed_weights(model, layer)
        params = {(m.param, m.axis, len(m.atoms)) for m in g.members}
        assert {(qkv, 1, 3 * DIM), (proj, 0, DIM), (bias, 0, HEADS)} <= params


def test_packed_heads_oracle_and_ratio():
    model = onnx.load(str(PACKED))
    shapes = resolve_input_shapes(model, PruneConfig())
    info = check_oracle(model, seed=3, shapes=shapes, inputs=feeds(model, batch=3, seed=3))
    assert info["removed"] >= 1
    pruned = onnxprune.prune(copy(model), ratio=0.5).model
    onnx.checker.check_model(pruned, full_check=True)
    after = stored(pruned)
    for layer in (0, 1):
        qkv, proj, bias = packed_weights(model, layer)
        assert after[qkv].shape == (DIM, 3 * 2 * HEAD_DIM) and after[proj].shape == (2 * HEAD_DIM, DIM)
        assert after[bias].shape == (2, 17, 17)
    (y,) = run(pruned, feeds(model, batch=2))
    assert y.shape == (2, 10) and np.all(np.isfinite(y))


def hf_attention() -> onnx.ModelProto:
    """Hugging Face's layout: separate q, k, v projections, x.view(B, L, heads, hd).transpose(1, 2),
    a [B, 1, 1, L] mask added to the logits, the merged heads read by the out-projection."""
    rng = np.random.default_rng(0)
    c, heads, hd = 8, 2, 4
    inits, nodes = [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op, ins, out, **kw):
        nodes.append(helper.make_node(op, ins, [out], name=out, **kw))
        return out

    split = const("split_shape", np.array([0, 0, heads, hd], dtype=np.int64))
    merge = const("merge_shape", np.array([0, 0, c], dtype=np.int64))
    proj = {}
    for p in "qkv":
        y = node("MatMul", ["x", const(f"w{p}", rng.standard_normal((c, c)).astype(np.float32))], f"{p}_mm")
        y = node("Add", [y, const(f"b{p}", rng.standard_normal(c).astype(np.float32))], f"{p}_add")
        y = node("Reshape", [y, split], f"{p}_heads")
        proj[p] = node("Transpose", [y], f"{p}_t", perm=[0, 2, 3, 1] if p == "k" else [0, 2, 1, 3])
    logits = node("MatMul", [proj["q"], proj["k"]], "logits")
    logits = node("Add", [logits, "mask"], "masked")
    attn = node("Softmax", [logits], "attn", axis=-1)
    y = node("MatMul", [attn, proj["v"]], "ctx")
    y = node("Reshape", [node("Transpose", [y], "ctx_t", perm=[0, 2, 1, 3]), merge], "merged")
    node("MatMul", [y, const("wo", rng.standard_normal((c, c)).astype(np.float32))], "out")
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "L", c]),
              helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["B", 1, 1, "L"])]
    graph = helper.make_graph(nodes, "hf", inputs, [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["B", "L", c])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def test_hf_layout_heads_are_one_group_over_q_k_v():
    model = hf_attention()
    analysis = onnxprune.analyze(copy(model), shapes={"x": (1, 5, 8), "mask": (1, 1, 1, 5)})
    g = next(g for g in analysis.groups if "q_mm" in g.sources)
    assert g.exact and g.size == 2 and g.sources == ["q_mm", "k_mm", "v_mm"], (g.sources, g.reasons)
    rng = np.random.default_rng(1)
    inputs = {"x": rng.standard_normal((3, 5, 8)).astype(np.float32),
              "mask": rng.standard_normal((3, 1, 1, 5)).astype(np.float32)}
    shapes = resolve_input_shapes(model, PruneConfig(shapes={"x": (1, 5, 8), "mask": (1, 1, 1, 5)}))
    info = check_oracle(model, shapes=shapes, inputs=inputs, choose=lambda a: {next(
        g for g in a.groups if "q_mm" in g.sources).channels[1]})
    assert info["removed"] == 1
