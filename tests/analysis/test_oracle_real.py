"""The exactness oracle on the real exports (PyTorch, both exporters) and the trained model."""

from pathlib import Path

import onnx
import pytest

from tests.helpers.oracle import check_oracle

REPO = Path(__file__).resolve().parents[2]
REAL = [REPO / "models" / "digits_cnn.onnx", *sorted((REPO / "tests" / "fixtures").glob("*.onnx"))]


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.stem)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_oracle_on_real_exports(path, seed):
    info = check_oracle(onnx.load(path), seed=seed)
    assert info["prunable"] >= 1 and info["removed"] >= 1


def test_shared_bias_through_identity_is_followed():
    """PyTorch stores equal tensors once and feeds the copy through Identity; the residual stage
    of digits_cnn is still prunable, with the shared bias sliced once."""
    info = check_oracle(onnx.load(REPO / "models" / "digits_cnn.onnx"), seed=0)
    groups = info["analysis"].groups
    stage = next(g for g in groups if "/layer2/downsample/downsample.0/Conv" in g.sources)
    assert stage.prunable
    assert "layer2.bn2.bias" in {m.param for m in stage.members}
