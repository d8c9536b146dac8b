"""onnxprune: structured channel pruning for ONNX models from any framework."""

from .api import PruneReport, PruneResult, analyze_model as analyze, prune
from .config import PruneConfig
from .errors import OnnxPruneError

__all__ = ["OnnxPruneError", "PruneConfig", "PruneReport", "PruneResult", "analyze", "prune"]
__version__ = "0.1.0"
