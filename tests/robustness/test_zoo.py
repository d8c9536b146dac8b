"""tools/zoo.py: standard architectures built with onnx.helper + numpy."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from tests.helpers.ort import session

from tools import zoo

TINY = dict(width=0.125, resolution=32, num_classes=10)

# torchvision: sum(p.numel() for p in model.parameters()) (running stats excluded)
TORCHVISION_PARAMS = {
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
    "mobilenet_v2": 3_504_872,
    "vgg16_bn": 138_365_992,
    "densenet121": 7_978_856,
    "inception": 6_624_904,  # googlenet(aux_logits=False, init_weights=False)
}


def _params(m: onnx.ModelProto) -> int:
    return sum(int(np.prod(t.dims)) for t in m.graph.initializer
               if t.name.endswith((".weight", ".bias")))


def _run(m: onnx.ModelProto, batch: int = 2, seed: int = 0) -> np.ndarray:
    sess = session(m, optimize=True)
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim[1:]]
    x = np.random.default_rng(seed).standard_normal((batch, *dims)).astype(np.float32)
    (y,) = sess.run(None, {"input": x})
    return y


_CACHE: dict = {}


def _tiny(name: str, bn: bool) -> onnx.ModelProto:
    key = (name, bn)
    if key not in _CACHE:
        _CACHE[key] = zoo.build(name, bn=bn, **TINY)
    return _CACHE[key]


@pytest.mark.parametrize("bn", [True, False], ids=["bn", "nobn"])
@pytest.mark.parametrize("name", list(zoo.ZOO))
def test_tiny_model_is_valid_and_runs(name, bn):
    m = _tiny(name, bn)
    onnx.checker.check_model(m, full_check=True)
    assert m.ir_version == 8
    assert [(o.domain, o.version) for o in m.opset_import] == [("", 17)]
    (inp,) = m.graph.input
    assert inp.name == "input"
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param == "N"
    assert [d.dim_value for d in dims[1:]] == [3, 32, 32]
    assert [o.name for o in m.graph.output] == ["output"]

    y = _run(m)
    expected = (2, 10, 32, 32) if name == "convtranspose_decoder" else (2, 10)
    assert y.shape == expected
    assert np.isfinite(y).all()
    assert 1e-3 < float(np.abs(y).max()) < 1e3  # activations stay O(1)

    node_names = [n.name for n in m.graph.node]
    assert all(node_names) and len(set(node_names)) == len(node_names)
    init_names = [t.name for t in m.graph.initializer]
    assert len(set(init_names)) == len(init_names)
    used = {i for n in m.graph.node for i in n.input}
    assert set(init_names) <= used
    ops = {n.op_type for n in m.graph.node}
    if bn:
        assert "BatchNormalization" in ops
    else:
        assert "BatchNormalization" not in ops
        assert all(len(n.input) == 3 for n in m.graph.node
                   if n.op_type in ("Conv", "ConvTranspose"))


@pytest.mark.parametrize("name", [n for n in zoo.ZOO if n != "densenet121"])
def test_no_bn_is_the_folded_bn_model(name):
    """bn=False folds every Conv/Gemm-following BN: same function, same seed."""
    a, b = _run(_tiny(name, True)), _run(_tiny(name, False))
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", list(TORCHVISION_PARAMS))
def test_full_size_param_count_matches_torchvision(name):
    assert zoo.param_count(name) == TORCHVISION_PARAMS[name]


def test_resnet18_full_size_built_for_real():
    m = zoo.resnet18()
    assert _params(m) == TORCHVISION_PARAMS["resnet18"] == zoo.param_count("resnet18")
    bn_buffers = sum(int(np.prod(t.dims)) for t in m.graph.initializer
                     if t.name.endswith((".running_mean", ".running_var")))
    assert zoo.param_count("resnet18", include_buffers=True) == _params(m) + bn_buffers
    inits = {t.name: tuple(t.dims) for t in m.graph.initializer}
    assert inits["conv1.weight"] == (64, 3, 7, 7)
    assert inits["layer1.0.conv1.weight"] == (64, 64, 3, 3)
    assert inits["layer2.0.downsample.0.weight"] == (128, 64, 1, 1)
    assert inits["layer2.0.downsample.1.running_var"] == (128,)
    assert inits["fc.weight"] == (1000, 512)
    assert inits["fc.bias"] == (1000,)
    nodes = {n.name: n for n in m.graph.node}
    assert nodes["layer1.0.conv1"].op_type == "Conv"
    assert nodes["layer1.0.bn1"].op_type == "BatchNormalization"
    assert nodes["layer4.1.add"].op_type == "Add"
    assert nodes["maxpool"].op_type == "MaxPool"
    assert nodes["fc"].op_type == "Gemm"
    assert onnx.helper.get_attribute_value(nodes["fc"].attribute[0]) == 1  # transB
    init = {t.name: t for t in m.graph.initializer}
    w = onnx.numpy_helper.to_array(init["layer3.1.conv2.weight"])
    assert w.dtype == np.float32
    assert abs(w.std() - np.sqrt(2 / (256 * 9))) < 0.05 * np.sqrt(2 / (256 * 9))  # He-normal
    g = onnx.numpy_helper.to_array(init["layer3.1.bn2.weight"])
    assert 0.5 <= g.min() and g.max() <= 1.5


def test_bn_and_no_bn_param_counts_differ_by_bn_affine():
    # Without BN each BN's gamma + beta (2 per channel) becomes a conv bias (1 per
    # channel): resnet18 has 4800 BN channels.
    assert zoo.param_count("resnet18") - zoo.param_count("resnet18", bn=False) == 4800
    m = zoo.resnet18(bn=False, **TINY)
    assert all(not t.name.endswith("running_mean") for t in m.graph.initializer)


def test_mobilenet_v2_structure():
    m = _tiny("mobilenet_v2", True)
    inits = {t.name: tuple(t.dims) for t in m.graph.initializer}
    clips = [n for n in m.graph.node if n.op_type == "Clip"]
    assert clips and all(len(n.input) == 3 for n in clips)
    assert all(i in inits for n in clips for i in n.input[1:])
    depthwise = 0
    for n in m.graph.node:
        if n.op_type != "Conv":
            continue
        group = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}.get("group", 1)
        if group > 1:
            depthwise += 1
            assert inits[n.input[1]][0] == group and inits[n.input[1]][1] == 1
    assert depthwise == 17
    # torchvision MobileNetV2 has 10 residual connections
    assert sum(n.op_type == "Add" for n in m.graph.node) == 10


def test_densenet_and_inception_concats():
    d = _tiny("densenet121", True)
    concats = [n for n in d.graph.node if n.op_type == "Concat"]
    assert max(len(n.input) for n in concats) == 25  # denseblock3: input + 24 layers
    assert sum(n.op_type == "AveragePool" for n in d.graph.node) == 3
    g = _tiny("inception", True)
    modules = [n for n in g.graph.node if n.op_type == "Concat"]
    assert len(modules) == 9 and all(len(n.input) == 4 for n in modules)


def test_vgg_classifier_input_follows_resolution():
    m = zoo.vgg16_bn(width=0.125, resolution=64, num_classes=10)
    inits = {t.name: tuple(t.dims) for t in m.graph.initializer}
    assert inits["classifier.0.weight"] == (512, 64 * 2 * 2)
    assert _run(m).shape == (2, 10)


def test_mlp_layouts():
    m = _tiny("mlp", False)
    inits = {t.name for t in m.graph.initializer}
    gemms = [n for n in m.graph.node if n.op_type == "Gemm"]
    trans = {onnx.helper.get_attribute_value(a) for n in gemms for a in n.attribute
             if a.name == "transB"}
    assert trans == {0, 1}
    (mm,) = [n for n in m.graph.node if n.op_type == "MatMul"]
    assert mm.input[1] in inits
    consumers = [n for n in m.graph.node if mm.output[0] in n.input]
    assert [n.op_type for n in consumers] == ["Add"]
    assert m.graph.node[0].op_type == "Flatten"


def test_seed_determinism():
    a = zoo.resnet18(seed=3, **TINY).SerializeToString()
    assert a == zoo.resnet18(seed=3, **TINY).SerializeToString()
    assert a != zoo.resnet18(seed=4, **TINY).SerializeToString()


def test_registry_and_errors():
    assert set(zoo.ZOO) == {"resnet18", "resnet50", "mobilenet_v2", "vgg16_bn", "densenet121",
                            "inception", "convtranspose_decoder", "mlp"}
    with pytest.raises(KeyError):
        zoo.build("alexnet")
    with pytest.raises(ValueError):
        zoo.resnet18(width=0)
    with pytest.raises(ValueError):
        zoo.convtranspose_decoder(resolution=30)


def test_cli(tmp_path, capsys):
    assert zoo.main(["--list"]) == 0
    assert "resnet50" in capsys.readouterr().out.split()
    out = tmp_path / "r.onnx"
    assert zoo.main(["resnet18", str(out), "--width", "0.125", "--resolution", "32",
                     "--num-classes", "7", "--no-bn", "--seed", "1"]) == 0
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    assert not any(n.op_type == "BatchNormalization" for n in m.graph.node)
    assert _run(m).shape == (2, 7)
