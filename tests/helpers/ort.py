"""ONNX Runtime for tests: a CPU session of a model (proto or path), and one run of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort


def session(model: onnx.ModelProto | str | Path, optimize: bool = False) -> ort.InferenceSession:
    """A CPU session, errors only in the log; graph optimizations off unless asked (tests compare
    the graph as written)."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def run(model: onnx.ModelProto | str | Path, inputs: dict) -> list[np.ndarray]:
    return session(model).run(None, inputs)
