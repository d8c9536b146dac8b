"""--finetune: distil the pruned model from the original on the unlabelled calibration data, with
torch (the optional extra `onnxprune[finetune]`). torch is imported only when training runs.

- interpreter.py: the ONNX graph as a torch module (weights as parameters), checked against ORT;
- losses.py: what each output is trained to match (classes, CTC frames, boxes, picked tensors);
- train.py: data, augmentation, the loop, the held-out slice that keeps the best weights;
- writeback.py: the trained tensors back into the graph, nothing else changed.
"""

from __future__ import annotations

import importlib.util

from ..errors import ConfigError

INSTALL_HINT = "pip install 'onnxprune[finetune]' (torch for CPU)"


def check_available() -> None:
    """A ConfigError before a long pruning run when torch is not installed."""
    if importlib.util.find_spec("torch") is None:
        raise ConfigError(f"--finetune trains with torch, which is not installed: {INSTALL_HINT}")
