"""create_session: providers, fallbacks, and one-line errors for what ORT cannot load."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from runtime_models import classifier, make_model, save
from onnx import TensorProto, helper

from onnxprune.errors import ConfigError, ModelLoadError, RuntimeUnavailableError
from onnxprune.runtime import sessions
from onnxprune.runtime.sessions import CPU, CUDA, create_session, explain_ort_error


def _relu(op="Relu", domain="", opsets=(("", 17),)):
    vi = helper.make_tensor_value_info
    return make_model([helper.make_node(op, ["x"], ["y"], domain=domain)], [vi("x", TensorProto.FLOAT, [1, 4])],
                      [vi("y", TensorProto.FLOAT, [1, 4])], opsets=opsets)


def test_cpu_session_from_proto_and_path_runs_the_same(tmp_path, images):
    model = classifier()
    from_proto = create_session(model)
    from_path = create_session(save(model, tmp_path / "m.onnx"), threads=1)
    assert from_proto.provider == CPU and from_proto.fallback is None
    a = from_proto.run({"input": images})["logits"]
    b = from_path.run({"input": images})["logits"]
    assert a.shape == (10, 10)
    np.testing.assert_array_equal(a, b)


def test_inputs_come_from_onnxruntime_without_initializers():
    model = classifier(batch="N")
    model.graph.input.append(helper.make_tensor_value_info("conv_w", TensorProto.FLOAT, [4, 3, 3, 3]))
    spec, = create_session(model).inputs
    assert (spec.name, spec.dtype, spec.shape) == ("input", np.dtype(np.float32), ("N", 3, 8, 8))


def test_missing_onnxruntime_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(RuntimeUnavailableError, match=r"pip install 'onnxprune\[cpu\]'"):
        create_session(classifier())


def test_cuda_on_a_cpu_build_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU])
    with pytest.raises(RuntimeUnavailableError, match="no CUDAExecutionProvider.*onnxprune\\[gpu\\]") as info:
        create_session(classifier(), device="cuda")
    assert "\n" not in str(info.value)


def test_auto_falls_back_to_cpu_and_says_why(monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU])
    session = create_session(classifier(), device="auto")
    assert session.provider == CPU
    assert session.fallback.startswith("CUDA unavailable (") and "running on CPU" in session.fallback


def test_cuda_provider_listed_but_not_used_is_diagnosed(monkeypatch):
    """onnxruntime-gpu without a driver or libraries silently runs on CPU; we must notice and say why."""
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(sessions, "diagnose_cuda", lambda _ort: "no NVIDIA driver found")
    real = ort.InferenceSession

    def cpu_only(source, sess_options=None, providers=None, **kw):
        return real(source, sess_options=sess_options, providers=[CPU], **kw)

    monkeypatch.setattr(ort, "InferenceSession", cpu_only)
    with pytest.raises(RuntimeUnavailableError, match="^device cuda asked for, but no NVIDIA driver found$"):
        create_session(classifier(), device="cuda")
    assert create_session(classifier(), device="auto").fallback == "CUDA unavailable (no NVIDIA driver found); running on CPU"


def test_diagnosis_names_a_reason():
    reason = sessions.diagnose_cuda(ort)
    assert any(key in reason for key in ("NVIDIA driver", "GPU", "CUDA or cuDNN", "placed no node"))


def test_bad_device_and_threads_are_config_errors():
    with pytest.raises(ConfigError, match="device 'tpu'"):
        create_session(classifier(), device="tpu")
    with pytest.raises(ConfigError, match="threads must be at least 1"):
        create_session(classifier(), threads=0)


def test_unknown_domain_op_names_the_op():
    model = _relu("Foo", "my.domain", (("", 17), ("my.domain", 1)))
    with pytest.raises(ModelLoadError, match="op 'Foo' of domain 'my.domain' is not known") as info:
        create_session(model)
    assert "\n" not in str(info.value) and "[ONNXRuntimeError]" not in str(info.value)


def test_unimplemented_op_names_op_and_opset():
    with pytest.raises(ModelLoadError, match=r"op 'Bar' \(domain 'ai.onnx', opset 17\) is not implemented"):
        create_session(_relu("Bar"))


def test_too_new_opset_names_both_opsets():
    with pytest.raises(ModelLoadError, match=r"uses opset 40 of ai.onnx, newer than the opset \d+") as info:
        create_session(_relu(opsets=(("", 40),)))
    assert "onnxruntime::" not in str(info.value)


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(ModelLoadError, match="nope.onnx: no such file"):
        create_session(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_text("hello")
    with pytest.raises(ModelLoadError, match="junk.onnx: onnxruntime .* cannot load the model: Protobuf parsing failed"):
        create_session(junk)


def test_cpp_signature_is_stripped_from_ort_messages():
    raw = ("[ONNXRuntimeError] : 1 : FAIL : /src/onnxruntime/core/graph/model.cc:256 onnxruntime::Model::Model("
           "onnx::ModelProto&&, const std::string&) Unsupported model IR version: 99, max supported IR version: 14\n")
    assert explain_ort_error(raw) == "Unsupported model IR version: 99, max supported IR version: 14"


def test_models_over_the_protobuf_limit_go_to_ort_by_path(monkeypatch, images):
    model = classifier(channels=16)  # a 1.7 kB conv weight: over the external-data threshold
    reference = create_session(model)
    assert reference._tmpdir is None
    monkeypatch.setattr(sessions, "BY_PATH_BYTES", 0)
    session = create_session(model)
    tmpdir = Path(session._tmpdir)
    assert (tmpdir / "model.onnx.data").stat().st_size >= 16 * 27 * 4
    np.testing.assert_array_equal(session.run({"input": images})["logits"],
                                  reference.run({"input": images})["logits"])
    session.close()
    assert not tmpdir.exists()


def test_external_data_proto_is_not_modified(monkeypatch):
    monkeypatch.setattr(sessions, "BY_PATH_BYTES", 0)
    model = classifier(channels=16)
    before = model.SerializeToString()
    create_session(model).close()
    assert model.SerializeToString() == before and onnx.ModelProto.FromString(before) == model
