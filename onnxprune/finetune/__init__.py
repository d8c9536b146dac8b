"""--finetune: distil the pruned model from the original on the unlabelled calibration data, with
torch (the optional extra `onnxprune[finetune]`). torch is imported only when training runs.

- interpreter.py: the ONNX graph as a torch module (weights as parameters), checked against ORT;
- losses.py: what each output is trained to match (classes, CTC frames, boxes, picked tensors);
- train.py: data, augmentation, the loop, the held-out slice that keeps the best weights;
- writeback.py: the trained tensors back into the graph, nothing else changed.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from ..errors import ConfigError

INSTALL_HINT = "pip install 'onnxprune[finetune]' (torch for CPU)"


def check_available() -> None:
    """A ConfigError before a long pruning run when torch is not installed."""
    if importlib.util.find_spec("torch") is None:
        raise ConfigError(f"--finetune trains with torch, which is not installed: {INSTALL_HINT}")


def passive_openmp() -> None:
    """Let torch's OpenMP threads sleep, not spin, while they wait (OMP_WAIT_POLICY=PASSIVE, unless
    the user set it; only before torch is imported, when OpenMP reads it). With more runnable
    threads than cores (other jobs on the machine) spinning threads wait on a descheduled partner at
    every op: a step of ppocrv6_tiny_rec took 4.4-10.8 s with two busy processes beside it, 1.4 s
    passive (docs/FINETUNE.md). ONNX Runtime's sessions here already do not spin."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


passive_openmp()  # interpreter.py and losses.py import torch at module level, after this
