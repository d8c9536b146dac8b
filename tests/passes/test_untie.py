"""Tensors the exporter stored once for many readers (identical BN parameters of a freshly
initialised network) must not tie unrelated layers into one channel group."""

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

import onnxprune
from onnxprune.analysis import analyze
from onnxprune.graph import ModelGraph
from onnxprune.passes.untie import retie_shared, untie_shared
from tests.analysis.test_oracle_handmade import G, head
from tests.helpers.oracle import check_oracle, copy, feeds, run

FRESH = Path(__file__).resolve().parents[1] / "fixtures" / "torch_densenet_tiny_fresh.onnx"


def two_layers_sharing_bn():
    """conv -> BN -> relu -> conv -> BN -> relu -> head, both BNs reading the same four tensors."""
    g = G(c=3)
    c = 8
    params = [g.w(c), g.w(c), g.w(c), g.const(g.rng.uniform(0.5, 1.5, c).astype(np.float32))]
    x = g.op("Relu", [g.op("BatchNormalization", [g.conv("x", 3, c), *params])])
    x = g.op("Relu", [g.op("BatchNormalization", [g.conv(x, c, c), *params])])
    return g.model(head(g, x, c))


def test_shared_bn_parameters_do_not_merge_groups():
    model = two_layers_sharing_bn()
    tied = analyze(ModelGraph(copy(model)))
    assert len(tied.prunable_groups()) == 1  # what the analysis alone must conclude
    m = copy(model)
    ties = untie_shared(m)
    assert len(ties) == 4 and all(len(c) == 1 for c in ties.values())
    untied = analyze(ModelGraph(m))
    assert len(untied.prunable_groups()) == 2
    assert sorted(len(g.channels) for g in untied.prunable_groups()) == [8, 8]


def test_oracle_prunes_the_layers_differently():
    model = two_layers_sharing_bn()
    # first group loses 3 channels, the second 5: the shared tensors must be sliced two ways
    info = check_oracle(model, choose=lambda a: {g.channels[i] for g, k in zip(a.prunable_groups(), (3, 5))
                                                  for i in range(k)})
    assert info["prunable"] == 2 and info["removed"] == 8


def test_untie_then_retie_restores_the_model_exactly():
    model = onnx.load(FRESH)
    m = copy(model)
    ties = untie_shared(m)
    assert ties, "the fixture shares BN tensors between layers"
    assert retie_shared(m, ties) == 0
    assert m.SerializeToString() == model.SerializeToString()


def test_fresh_densenet_has_one_group_per_layer():
    model = onnx.load(FRESH)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    analysis = onnxprune.analyze(copy(model))
    assert len(analysis.prunable_groups()) == len(convs)
    assert all(len(g.sources) == 1 for g in analysis.prunable_groups())


def test_fresh_densenet_exact_mode_is_byte_identical():
    model = onnx.load(FRESH)
    result = onnxprune.prune(copy(model))
    assert result.model.SerializeToString() == model.SerializeToString()


def test_fresh_densenet_lossy_keeps_sharing_where_slices_agree():
    model = onnx.load(FRESH)
    result = onnxprune.prune(copy(model), ratio=0.5, validate=False)
    pruned = result.model
    onnx.checker.check_model(pruned, full_check=True)
    assert all(k < n for _, n, k in [(g.id, g.size, g.kept) for g in result.report.groups if g.prunable])
    # every BN of a fresh network holds ones/zeros: equal-length slices are equal again and are
    # stored once, so the pruned file has no more tensors than the original
    assert len(pruned.graph.initializer) <= len(model.graph.initializer)
    readers = {}
    for n in pruned.graph.node:
        for name in n.input:
            readers[name] = readers.get(name, 0) + 1
    assert max(readers[t.name] for t in pruned.graph.initializer) > 1
    # the BN tensors are still ones and zeros, and the model runs
    for t in pruned.graph.initializer:
        if t.name.endswith("running_var"):
            assert np.all(numpy_helper.to_array(t) == 1)
    run(pruned, feeds(pruned))
