"""io: the streamed writer encodes exactly the model; external data above the protobuf limit."""

import io
from pathlib import Path

import onnx
import pytest

from onnxprune.io import approximate_size, load_model, save_model, write_serialized

REPO = Path(__file__).resolve().parent.parent
MODELS = [REPO / "models" / "digits_cnn.onnx", *sorted((REPO / "tests" / "fixtures").rglob("*.onnx"))]


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_streamed_encoding_parses_to_the_same_model(path):
    model = onnx.load(path)
    model.metadata_props.add(key="k", value="v")
    buf = io.BytesIO()
    write_serialized(model, buf)
    assert buf.getvalue() == model.SerializeToString()
    assert abs(approximate_size(model) - model.ByteSize()) < 0.01 * model.ByteSize() + 64


def test_save_then_load_round_trip(tmp_path):
    model = load_model(MODELS[0])
    out = save_model(model, tmp_path / "o.onnx", MODELS[0])
    assert load_model(out) == model
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.onnx"]
