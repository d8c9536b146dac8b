"""Validation and speed with ONNX Runtime: sessions, input data, model comparison, benchmarks.

Importing this package does not import onnxruntime (an optional extra); creating a session does.
"""

from .bench import BenchResult, BenchStat, benchmark
from .compare import ComparisonResult, OutputComparison, compare_models
from .data import Batch, Dataset, InputSpec, input_specs, load_data, parse_shapes, random_data, resolve_batch
from .sessions import Session, create_session

__all__ = [
    "Batch", "BenchResult", "BenchStat", "ComparisonResult", "Dataset", "InputSpec", "OutputComparison", "Session",
    "benchmark", "compare_models", "create_session", "input_specs", "load_data", "parse_shapes", "random_data",
    "resolve_batch",
]
