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
    for layer in (0, 1):  # half the heads, and half the residual stream (tests/analysis/test_transformers.py)
        assert after[in_proj(vit, layer)].shape == (DIM // 2, 3 * 2 * HEAD_DIM)
        assert after[f"layers.{layer}.self_attention.out_proj.weight"].shape == (DIM // 2, 2 * HEAD_DIM)
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
        assert after[qkv].shape == (DIM // 2, 3 * 2 * HEAD_DIM) and after[proj].shape == (2 * HEAD_DIM, DIM // 2)
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


# Attention as other exporters write it (tests/fixtures/exporters/, tools/make_fixtures.py): one
# encoder block of 4 heads of 8 on a [N, T, 32] input.
EXPORTERS = Path(__file__).resolve().parents[1] / "fixtures" / "exporters"
FORMS = {
    # fixture: (q, k, v sources, out-projection weight and its head axis, the q/k/v weights and theirs)
    "keras_attention": (["attention/q/MatMul", "attention/k/MatMul", "attention/v/MatMul"],
                        ("attention/output/kernel", 0, DIM), [(f"attention/{p}/kernel", 1, DIM) for p in "qkv"]),
    "einsum_attention": (["attention/q/einsum", "attention/k/einsum", "attention/v/einsum"],
                         ("attention/output/kernel", 0, HEADS), [(f"attention/{p}/kernel", 1, HEADS) for p in "qkv"]),
    # grouped-query: a channel is one K/V head with the 2 query heads that read it
    "gqa_attention": (["/self_attn/q_proj/MatMul", "/self_attn/k_proj/MatMul", "/self_attn/v_proj/MatMul"],
                      ("self_attn.o_proj.weight", 0, DIM), [("self_attn.q_proj.weight", 1, DIM),
                                                             ("self_attn.k_proj.weight", 1, DIM // 2),
                                                             ("self_attn.v_proj.weight", 1, DIM // 2)]),
}


def exporter_heads(analysis, name):
    return next(g for g in analysis.groups if FORMS[name][0][0] in g.sources)


@pytest.mark.parametrize("name", sorted(FORMS))
def test_exporter_heads_are_exact_groups(name):
    model = onnx.load(str(EXPORTERS / f"{name}.onnx"))
    analysis = onnxprune.analyze(copy(model))
    g = exporter_heads(analysis, name)
    sources, out_proj, projections = FORMS[name]
    assert g.exact and g.sources == sources, (g.sources, g.reasons)
    assert g.size == (2 if name == "gqa_attention" else HEADS)
    params = {(m.param, m.axis, len(m.atoms)) for m in g.members}
    assert {out_proj, *projections} <= params, params


@pytest.mark.parametrize("name", sorted(FORMS))
@pytest.mark.parametrize("seed, batch", [(0, 2), (1, 3)])
def test_exporter_heads_oracle(name, seed, batch):
    model = onnx.load(str(EXPORTERS / f"{name}.onnx"))
    shapes = resolve_input_shapes(model, PruneConfig())
    # one head (group) removed, then random channels of every exact group
    one = check_oracle(model, seed=seed, shapes=shapes, inputs=feeds(model, batch=batch, seed=seed),
                       choose=lambda a: {exporter_heads(a, name).channels[(seed + 1) % exporter_heads(a, name).size]})
    assert one["removed"] == 1
    info = check_oracle(model, seed=seed, shapes=shapes, inputs=feeds(model, batch=batch, seed=seed))
    assert info["removed"] >= 1


@pytest.mark.parametrize("name", sorted(FORMS))
def test_exporter_heads_ratio_and_dead_head(name):
    model = onnx.load(str(EXPORTERS / f"{name}.onnx"))
    out_proj, axis, size = FORMS[name][1]
    pruned = onnxprune.prune(copy(model), ratio=0.5).model
    onnx.checker.check_model(pruned, full_check=True)
    assert stored(pruned)[out_proj].shape[axis] == size // 2
    if name == "gqa_attention":  # repeat_kv's Expand now repeats the one K/V head left
        expand = next(n for n in pruned.graph.node if n.op_type == "Expand")
        assert stored(pruned)[expand.input[1]].tolist() == [1, 1, 2, 1, 1]
    for batch in (1, 3):
        (y,) = run(pruned, feeds(model, batch=batch, seed=batch))
        assert y.shape == (batch, 10) and np.all(np.isfinite(y))
    # Exact mode: a head nothing reads (its rows of the out-projection zero) goes, outputs unchanged.
    dead = copy(model)
    w = next(t for t in dead.graph.initializer if t.name == out_proj)
    value = numpy_helper.to_array(w).copy()
    per_channel = size // exporter_heads(onnxprune.analyze(copy(model)), name).size
    np.moveaxis(value, axis, 0)[per_channel:2 * per_channel] = 0  # the second channel
    w.CopyFrom(numpy_helper.from_array(value, w.name))
    result = onnxprune.prune(copy(dead))
    assert result.report.channels_removed == 1
    assert stored(result.model)[out_proj].shape[axis] == size - per_channel
    for batch in (1, 3):
        inputs = feeds(dead, batch=batch, seed=batch)
        np.testing.assert_allclose(run(result.model, inputs)[0], run(dead, inputs)[0], rtol=1e-5, atol=1e-5)


def einsum_model(equation: str, w_shape=None, x_shape=(2, 5, 8), y_shape=None) -> onnx.ModelProto:
    """x -> MatMul (8 channels) -> Einsum(equation) with a weight or a second activation."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((x_shape[-1], 8)).astype(np.float32), "w0")]
    second = "y"
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))]
    if w_shape is not None:
        inits.append(numpy_helper.from_array(rng.standard_normal(w_shape).astype(np.float32), "w1"))
        second = "w1"
    else:
        inputs.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, list(y_shape)))
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["h"], name="proj"),
             helper.make_node("Einsum", ["h", second], ["out"], name="einsum", equation=equation)]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    inferred = onnx.shape_inference.infer_shapes(model)
    model.graph.output[0].CopyFrom(inferred.graph.output[0])  # the output's shape, as an exporter declares it
    return model


@pytest.mark.parametrize("equation, w_shape, y_shape, prunable", [
    ("abc,cd->abd", (8, 3), None, True),             # a dense layer: the channels are its input columns
    ("abc,cde->abde", (8, 2, 3), None, True),        # EinsumDense to [heads, head_dim]
    ("...c,cd->...d", (8, 3), None, False),          # ellipsis: not followed
    ("abc,abd->acd", None, (2, 5, 4), True),         # channels pass through, the other side has no label c
    ("abc,adc->abd", None, (2, 6, 8), False),        # two activations contracted over the channels
    ("abc,abc->ab", None, (2, 5, 8), False),         # summed over the channels
])
def test_einsum_forms(equation, w_shape, y_shape, prunable):
    model = einsum_model(equation, w_shape, y_shape=y_shape)
    onnx.checker.check_model(model, full_check=True)
    analysis = onnxprune.analyze(copy(model))
    g = next(g for g in analysis.groups if "proj" in g.sources)
    if not prunable:
        assert not g.prunable and g.reasons
        return
    if "abd->acd" in equation:  # passed through to the graph output: blocked there
        assert not g.prunable and any("graph output" in r for r in g.reasons), g.reasons
        return
    assert g.exact, g.reasons
    inputs = {"x": np.random.default_rng(1).standard_normal((2, 5, 8)).astype(np.float32)}
    info = check_oracle(model, inputs=inputs, choose=lambda a: {next(
        x for x in a.groups if "proj" in x.sources).channels[2]})
    assert info["removed"] == 1


def test_packed_projection_split_with_a_leading_unit_dim():
    """onnxsim folds TorchScript's unflatten(-1, (3, E)).unsqueeze(0) after the packed in-projection
    into one Reshape [L, N, 3E] -> [1, L, N, 3, E]: the same packed projection (position j of q, k
    and v is one channel), one leading unit axis before it."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    e = 8
    inits = [numpy_helper.from_array(rng.standard_normal((6, 3 * e)).astype(np.float32), "w_in"),
             numpy_helper.from_array(rng.standard_normal(3 * e).astype(np.float32), "b_in"),
             numpy_helper.from_array(np.array([1, 5, -1, 3, e], np.int64), "packed"),
             numpy_helper.from_array(np.array([3], np.int64), "ax3"),
             numpy_helper.from_array(np.array(0, np.int64), "i0"), numpy_helper.from_array(np.array(1, np.int64), "i1"),
             numpy_helper.from_array(np.array(2, np.int64), "i2"),
             numpy_helper.from_array(rng.standard_normal((e, 4)).astype(np.float32), "w_out")]
    nodes = [helper.make_node("MatMul", ["x", "w_in"], ["p0"]), helper.make_node("Add", ["p0", "b_in"], ["p"]),
             helper.make_node("Reshape", ["p", "packed"], ["r"]),
             helper.make_node("Transpose", ["r"], ["t"], perm=[3, 1, 2, 0, 4]),
             helper.make_node("Squeeze", ["t", "ax3"], ["s"])]
    for name, i in (("q", "i0"), ("k", "i1"), ("v", "i2")):
        nodes.append(helper.make_node("Gather", ["s", i], [name], axis=0))
    nodes += [helper.make_node("Mul", ["q", "k"], ["qk"]), helper.make_node("Add", ["qk", "v"], ["h"]),
              helper.make_node("MatMul", ["h", "w_out"], ["y"])]
    graph = helper.make_graph(nodes, "packed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, "N", 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, "N", 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    analysis = onnxprune.analyze(copy(model))
    (group,) = analysis.prunable_groups()
    assert group.size == e
    for seed in range(3):
        assert check_oracle(model, seed=seed)["removed"] > 0
