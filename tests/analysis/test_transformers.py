"""The residual stream (hidden width) of a transformer as one channel group, lossy only: embeddings
(Gather on a [vocab, hidden] table), position and token-type embeddings, the class token joined by
Concat, every LayerNorm, residual Add and projection reading or writing the stream.

Fixtures: tests/fixtures/transformers/ (Hugging Face BERT and GPT-2, random weights,
tools/export_transformer_fixtures.py) and tests/fixtures/torch_vit_tiny.onnx (torchvision's ViT).
The lossy oracle (analysis/oracle.lossy_reference) checks the rewrite: the pruned model computes
what the original computes with the removed channels' consumer columns zeroed and every LayerNorm
taken over the kept channels."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import onnxprune
from onnxprune.api import resolve_input_shapes
from onnxprune.config import PruneConfig
from tests.helpers.cli import invoke
from tests.helpers.oracle import check_oracle, copy, run

FIX = Path(__file__).resolve().parents[1] / "fixtures"
BERT = FIX / "transformers" / "hf_bert_tiny.onnx"
GPT2 = FIX / "transformers" / "hf_gpt2_tiny.onnx"
VIT = FIX / "torch_vit_tiny.onnx"
VOCAB, HIDDEN = 96, 64


def feeds(model: onnx.ModelProto, batch: int, seq: int, seed: int) -> dict:
    """Token ids in the vocabulary, a padded attention mask; images for the ViT."""
    rng = np.random.default_rng(seed)
    out = {}
    for vi in model.graph.input:
        if vi.name == "input_ids":
            out[vi.name] = rng.integers(0, VOCAB, (batch, seq)).astype(np.int64)
        elif vi.name == "token_type_ids":
            out[vi.name] = rng.integers(0, 2, (batch, seq)).astype(np.int64)
        elif vi.name == "attention_mask":
            mask = np.ones((batch, seq), np.int64)
            mask[0, seq - 3:] = 0
            out[vi.name] = mask
        else:
            dims = [d.dim_value or batch for d in vi.type.tensor_type.shape.dim]
            out[vi.name] = rng.standard_normal(dims).astype(np.float32)
    return out


def stream(analysis):
    """The residual stream's group: the one whose sources include the first embedding or patch conv."""
    return next(g for g in analysis.groups if any(s.endswith(("wte/Gather", "word_embeddings/Gather", "conv_proj/Conv"))
                                                  for s in g.sources))


def members(group, roles=("out", "channel", "in")) -> set[tuple[str, int]]:
    return {(m.param, m.axis) for m in group.members if m.role in roles}


def test_bert_hidden_width_is_one_lossy_group():
    analysis = onnxprune.analyze(onnx.load(str(BERT)))
    g = stream(analysis)
    assert g.prunable and g.inexact and not g.exact and g.size == HIDDEN, g.reasons
    assert all(s in g.sources for s in ("/inner/bert/embeddings/word_embeddings/Gather",
                                        "/inner/bert/embeddings/token_type_embeddings/Gather",
                                        "/inner/bert/embeddings/position_embeddings/Gather",
                                        "/inner/bert/encoder/layer.0/attention/output/dense/MatMul",
                                        "/inner/bert/encoder/layer.1/output/dense/MatMul"))
    assert {("inner.bert.embeddings.word_embeddings.weight", 1), ("inner.bert.embeddings.position_embeddings.weight", 1),
            ("inner.bert.embeddings.token_type_embeddings.weight", 1)} <= members(g, ("out",))
    assert ("inner.bert.pooler.dense.weight", 1) in members(g, ("in",))  # the pooler reads the [CLS] row
    assert any("LayerNormalization over the channel axis" in r for r in g.inexact)
    # Everything else stays as it was: heads and MLPs exact, the classifier blocked at the output.
    assert sum(1 for x in analysis.prunable_groups() if x.exact) == 5


def test_gpt2_hidden_width_is_one_lossy_group():
    analysis = onnxprune.analyze(onnx.load(str(GPT2)))
    g = stream(analysis)
    assert g.prunable and g.inexact and g.size == HIDDEN, g.reasons
    assert {"/inner/wte/Gather", "/inner/wpe/Gather", "/inner/h.0/attn/c_proj/Gemm", "/inner/h.1/mlp/c_proj/Gemm"} <= set(g.sources)
    # every projection reading the stream, and the language-model head
    ins = members(g, ("in",))
    assert {("inner.lm.transformer.h.0.attn.c_attn.weight", 0), ("inner.lm.transformer.h.1.mlp.c_fc.weight", 0)} <= ins
    lm_head = next(n for n in onnx.load(str(GPT2)).graph.node if n.name == "/inner/lm_head/MatMul")
    assert (lm_head.input[1], 0) in ins
    heads = [x for x in analysis.groups if x.sources == ["/inner/h.0/attn/c_attn/Gemm"]]
    assert len(heads) == 1 and heads[0].exact and heads[0].size == 4  # c_attn's packed q, k, v: heads


def test_vit_hidden_width_takes_the_class_token_and_position_embedding():
    analysis = onnxprune.analyze(onnx.load(str(VIT)))
    g = stream(analysis)
    assert g.prunable and g.inexact and g.size == 32, g.reasons
    assert {("class_token", 2), ("pos_embedding", 2), ("conv_proj.weight", 0)} <= members(g)
    assert ("head.weight", 1) in members(g, ("in",))


@pytest.mark.parametrize("path", [BERT, GPT2, VIT], ids=lambda p: p.stem)
@pytest.mark.parametrize("seed", [0, 1])
def test_lossy_oracle(path, seed):
    """Random channels of every prunable group, the residual stream included."""
    model = onnx.load(str(path))
    shapes = resolve_input_shapes(model, PruneConfig())
    info = check_oracle(model, seed=seed, shapes=shapes, inputs=feeds(model, 3, 11 + seed, seed), lossy=True)
    removed = info["removed"]
    g = stream(info["analysis"])
    assert removed >= len(g.channels) // 10


@pytest.mark.parametrize("path", [BERT, GPT2, VIT], ids=lambda p: p.stem)
def test_exact_mode_leaves_the_stream(path):
    """Exact mode never takes a lossy-only group: a dense export comes back byte for byte, and the
    exactness oracle (exact groups only) holds."""
    model = onnx.load(str(path))
    assert onnxprune.prune(copy(model)).model.SerializeToString() == model.SerializeToString()
    shapes = resolve_input_shapes(model, PruneConfig())
    assert check_oracle(model, seed=3, shapes=shapes, inputs=feeds(model, 2, 9, 3))["removed"] >= 1


@pytest.mark.parametrize("path", [BERT, GPT2, VIT], ids=lambda p: p.stem)
def test_ratio_halves_the_hidden_width(path, tmp_path):
    out = tmp_path / "half.onnx"
    r = invoke(path, out, "--ratio", "0.5", "--no-validate", "-q")
    assert r.exit_code == 0, r.output
    model, pruned = onnx.load(str(path)), onnx.load(str(out))
    onnx.checker.check_model(pruned, full_check=True)
    before = {t.name: numpy_helper.to_array(t).shape for t in model.graph.initializer}
    after = {t.name: numpy_helper.to_array(t).shape for t in pruned.graph.initializer}
    table = {BERT: "inner.bert.embeddings.word_embeddings.weight", GPT2: "inner.lm.transformer.wte.weight",
             VIT: "class_token"}[path]
    assert after[table][-1] == before[table][-1] // 2
    for batch, seq in ((1, 7), (3, 16)):  # the written model keeps its dynamic batch and sequence
        for a, b in zip(run(model, feeds(model, batch, seq, 1)), run(pruned, feeds(model, batch, seq, 1))):
            assert a.shape == b.shape and np.all(np.isfinite(b))


def test_gpt2_view_of_its_own_width_stays_computed():
    """GPT-2's Conv1D reshapes the merged heads with x.view(-1, x.size(-1)), a width that shape
    inference leaves open in the model: the target reads the heads' width at run time, which is the
    kept width after the rewrite, so it stays computed (no constant) and the heads stay prunable."""
    model = onnx.load(str(GPT2))
    pruned = onnxprune.prune(copy(model), ratio=0.5).model
    for layer in (0, 1):
        reshape = next(n for n in pruned.graph.node if n.name == f"/inner/h.{layer}/attn/c_proj/Reshape")
        assert reshape.input[1] == f"/inner/h.{layer}/attn/c_proj/Concat_output_0"
    weights = {t.name: t.dims for t in pruned.graph.initializer}
    assert list(weights["inner.lm.transformer.h.0.attn.c_proj.weight"]) == [32, 32]  # 2 heads of 16, 32 wide


def test_analyze_shows_the_stream_as_lossy():
    r = invoke("analyze", BERT)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    row = next(i for i, line in enumerate(lines) if "word_embeddings/Gather" in line)
    assert " lossy " in lines[row] and "lossy only: " in lines[row + 1] and "LayerNormalization" in lines[row + 1]
