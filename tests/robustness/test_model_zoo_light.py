"""The ONNX model zoo's IR 3, opset-9 classics, as onnx's backend tests ship their graphs ("light"
models: weights made by ConstantOfShape), given seeded random weights here. They are old exports:
every weight a graph input, Caffe2's BN scale as Unsqueeze + Mul, Dropout with its mask output,
[N, 1000, 1, 1] scores. Skipped where the installed onnx has no such folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from tests.helpers.cli import invoke

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def with_weights(name: str) -> onnx.ModelProto:
    """The light model with each ConstantOfShape replaced by a seeded random initializer of its shape
    (He-scaled conv and Gemm weights, BN statistics near 1 and 0), declared as a graph input (IR 3)."""
    path = LIGHT / f"light_{name}.onnx"
    if not path.is_file():
        pytest.skip(f"{path} is not in this onnx")
    m = onnx.load(str(path))
    rng = np.random.default_rng(0)
    users = {}
    for n in m.graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    consts = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    keep, made = [], []
    for n in m.graph.node:
        if n.op_type != "ConstantOfShape":
            keep.append(n)
            continue
        shape = consts[n.input[0]]
        user = users[n.output[0]][0]
        index = list(user.input).index(n.output[0])
        fill = numpy_helper.to_array(n.attribute[0].t)
        if fill.dtype != np.float32:
            value = np.full(shape, fill.reshape(-1)[0], fill.dtype)
        elif user.op_type in ("Conv", "Gemm") and index == 1:
            value = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))
        elif user.op_type == "BatchNormalization":
            value = {1: 1 + 0.1 * rng.standard_normal(shape), 2: 0.1 * rng.standard_normal(shape),
                     3: 0.1 * rng.standard_normal(shape), 4: 0.5 + rng.random(shape)}[index]
        elif user.op_type == "Unsqueeze":
            value = 1 + 0.1 * rng.standard_normal(shape)
        else:
            value = 0.05 * rng.standard_normal(shape)
        made.append(numpy_helper.from_array(np.asarray(value, dtype=fill.dtype), n.output[0]))
    del m.graph.node[:]
    m.graph.node.extend(keep)
    used = {i for n in keep for i in n.input}
    kept = [t for t in m.graph.initializer if t.name in used] + made
    del m.graph.initializer[:]
    m.graph.initializer.extend(kept)
    inputs = [i for i in m.graph.input if i.name in used]
    inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in made]
    del m.graph.input[:]
    m.graph.input.extend(inputs)
    onnx.checker.check_model(m)
    return m


@pytest.mark.parametrize("name, groups, flops", [("squeezenet", 25, 0.7), ("resnet50", 37, 0.7),
                                                 ("bvlc_alexnet", 3, 0.97)])  # its fully connected layers
def test_light_model_prunes_at_half_the_channels(name, groups, flops, tmp_path):
    src, out, report = tmp_path / f"{name}.onnx", tmp_path / "half.onnx", tmp_path / "r.json"
    onnx.save(with_weights(name), src)
    r = invoke(src, out, "--ratio", "0.5", "--json", str(report))
    assert r.exit_code == 0, r.output
    written = onnx.load(str(out))
    onnx.checker.check_model(written, full_check=True)
    assert written.ir_version == 3
    data = json.loads(report.read_text())
    assert sum(1 for g in data["groups"] if g.get("prunable")) == groups, [g.get("reasons") for g in data["groups"]]
    assert data["flops"]["after"] < flops * data["flops"]["before"]
    if name == "bvlc_alexnet":
        assert data["params"]["after"] < 0.5 * data["params"]["before"]


def test_light_squeezenet_with_calibration_reads_top1(tmp_path):
    model = with_weights("squeezenet")
    src, data, out = tmp_path / "sq.onnx", tmp_path / "calib.npz", tmp_path / "out.onnx"
    onnx.save(model, src)
    np.savez(data, data_0=np.random.default_rng(1).random((16, 3, 224, 224), dtype=np.float32))
    r = invoke(src, out, "--target-flops", "0.7", "--calib", str(data))
    assert r.exit_code == 0, r.output
    assert "[1, 1000, 1, 1]: 1000 class scores per sample on axis 1" in r.output
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
