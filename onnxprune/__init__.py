"""onnxprune: structured channel pruning for ONNX models from any framework."""

from .errors import OnnxPruneError

__all__ = ["OnnxPruneError", "PruneConfig", "PruneReport", "PruneResult", "analyze", "prune", "validate",
           "validate_result"]
__version__ = "0.1.0"

_LAZY = {"prune": ("api", "prune"), "analyze": ("api", "analyze_model"), "PruneReport": ("report", "PruneReport"),
         "PruneResult": ("report", "PruneResult"), "PruneConfig": ("config", "PruneConfig"),
         "validate": ("runtime.compare", "compare_models"), "validate_result": ("validation", "validate_result")}


def __getattr__(name):
    """Heavy modules (onnx, numpy) load on first use, so `onnxprune --help` and Ctrl-C stay quick."""
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'onnxprune' has no attribute '{name}'")
