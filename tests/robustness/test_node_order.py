"""Models whose nodes are listed out of topological order: ONNX Runtime runs them, the ONNX checker
and shape inference do not. onnxconverter-common's float16 conversion with keep_io_types (the usual
way to halve a model) appends its input Casts after their readers: every run stopped with `the
model fails the ONNX checker: Nodes in a graph must be topologically sorted`. The nodes are now put
in order when the model is read (io.sort_graph) and the sorted model checked again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import onnxprune
from tests.helpers.cli import assert_one_line_error, invoke
from tests.helpers.oracle import copy, run

FIX = Path(__file__).resolve().parents[1] / "fixtures"


def _out_of_order(name: str = "torch_resnet_tiny") -> onnx.ModelProto:
    """The fixture with its first node moved to the end (as keep_io_types leaves its input Cast)."""
    model = onnx.load(str(FIX / f"{name}.onnx"))
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes[1:] + nodes[:1])
    with pytest.raises(onnx.checker.ValidationError, match="topologically sorted"):
        onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("args", [[], ["--ratio", "0.5"]])
def test_nodes_out_of_order_are_sorted_when_read(args, tmp_path):
    src, out = tmp_path / "unsorted.onnx", tmp_path / "out.onnx"
    onnx.save(_out_of_order(), src)
    r = invoke(src, out, *args)
    assert r.exit_code == 0, r.output
    written = onnx.load(str(out))
    onnx.checker.check_model(written, full_check=True)
    original = onnx.load(str(FIX / "torch_resnet_tiny.onnx"))
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    if not args:
        np.testing.assert_allclose(run(written, {"input": x})[0], run(original, {"input": x})[0], rtol=1e-5, atol=1e-5)
    else:
        assert "channels" in r.output and sum(n.op_type == "Conv" for n in written.graph.node) > 0


def test_the_api_sorts_a_model_given_in_memory():
    """The same groups as the sorted model's (shape inference saw every node)."""
    sorted_groups = [(g.size, g.reasons) for g in onnxprune.analyze(onnx.load(str(FIX / "torch_resnet_tiny.onnx"))).groups]
    result = onnxprune.prune(_out_of_order(), ratio=0.5)
    onnx.checker.check_model(result.model, full_check=True)
    assert [(g.size, g.reasons) for g in result.report.groups] == sorted_groups


def test_a_node_reading_a_tensor_nothing_makes_still_fails(tmp_path):
    """Sorting cannot place a node whose input no node makes: the checker's line, exit 1."""
    model = _out_of_order()
    model.graph.node[0].input[0] = "nowhere"
    src = tmp_path / "broken.onnx"
    onnx.save(model, src)
    assert_one_line_error(invoke(src, tmp_path / "out.onnx"), "fails the ONNX checker")
    assert not (tmp_path / "out.onnx").exists()
