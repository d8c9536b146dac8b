"""onnxprune: structured channel pruning for ONNX models from any framework."""

from .errors import OnnxPruneError

__all__ = ["OnnxPruneError"]
__version__ = "0.1.0"
