"""The latency model of --target-latency: layers cut out as small models (segments.py), timed on
ONNX Runtime at a grid of kept channel counts and cached on disk (table.py)."""

from .table import LatencyModel, LatencyTable, load_or_build

__all__ = ["LatencyModel", "LatencyTable", "load_or_build"]
