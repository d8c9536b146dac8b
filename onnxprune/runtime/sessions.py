"""ONNX Runtime sessions: the one place that imports onnxruntime.

onnxruntime is an optional extra, so it is imported when a session is made, never at import time.
Every way a session can fail to start becomes one OnnxPruneError line: ORT missing, CUDA missing
(with the reason we can tell), or a model ORT cannot load (naming the op or opset at fault).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import re
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from ..errors import ConfigError, DataError, ModelLoadError, RuntimeUnavailableError
from ..io import PROTOBUF_LIMIT
from .data import InputSpec, with_batch_axes

DEVICES = ("cpu", "cuda", "auto")
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
# Protos at or above this size cannot be serialized for ORT in one piece; they go by path.
BY_PATH_BYTES = PROTOBUF_LIMIT
# Log errors only: ORT's warnings (unused initializers, provider fallback) are noise to our users.
LOG_ERRORS_ONLY = 4  # fatal only: failures reach the user as our own one-line errors

_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int8)": np.int8, "tensor(int16)": np.int16, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8, "tensor(uint16)": np.uint16, "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64, "tensor(bool)": np.bool_,
}


@dataclass
class Session:
    """A started InferenceSession, the provider it really runs on, and why, if not the one asked."""

    inference: object
    provider: str
    device: str
    fallback: str | None = None
    _tmpdir: str | None = field(default=None, repr=False)

    @property
    def inputs(self) -> list[InputSpec]:
        specs = []
        for arg in self.inference.get_inputs():
            dtype = np.dtype(object) if arg.type == "tensor(string)" else _ORT_TYPES.get(arg.type)
            if dtype is None:
                raise DataError(f"input '{arg.name}' is a {arg.type}; onnxprune feeds tensors only "
                                "(random data cannot make it, and --calib data holds tensors)")
            specs.append(InputSpec(arg.name, np.dtype(dtype), tuple(arg.shape)))
        return with_batch_axes(specs)

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    def __post_init__(self):
        # Read once: bench times run(), which should cost ORT's run and nothing else.
        self._outputs = tuple(o.name for o in self.inference.get_outputs())
        if any(o.type.startswith("seq(map(") for o in self.inference.get_outputs()):
            self.inference = _MapsAsArrays(self.inference)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self._outputs, self.inference.run(None, feeds)))

    def close(self) -> None:
        """Drop the session, then the temp copy of a >2 GB model (ORT may map its data until then)."""
        self.inference = None
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        self.close()


class _MapsAsArrays:
    """An InferenceSession whose sequence-of-maps outputs (skl2onnx's ZipMap: one {class: probability}
    per sample) come back as [N, classes] float arrays, keys in sorted order, so that they are
    compared, scored and repaired as class scores; everything else is the session's own."""

    def __init__(self, session):
        self._session = session

    def __getattr__(self, name):
        return getattr(self._session, name)

    def run(self, output_names, feeds, *args, **kwargs):
        return [maps_as_array(v) for v in self._session.run(output_names, feeds, *args, **kwargs)]


def maps_as_array(value):
    """A list of maps with the same numeric values per key as a float32 [N, K] array (keys sorted);
    anything else as it is."""
    if not isinstance(value, list) or not value or not all(isinstance(d, dict) for d in value):
        return value
    keys = sorted(value[0])
    try:
        return np.array([[float(d[k]) for k in keys] for d in value], dtype=np.float32)
    except (KeyError, TypeError, ValueError):
        return value


def import_ort():
    """onnxruntime, or one line saying how to install it."""
    try:
        import onnxruntime
    except ModuleNotFoundError as exc:
        if exc.name != "onnxruntime":
            raise RuntimeUnavailableError(f"onnxruntime cannot be imported: {exc}") from None
        raise RuntimeUnavailableError(
            "onnxruntime is not installed; pip install 'onnxprune[cpu]' (or [gpu] for CUDA)") from None
    except ImportError as exc:  # installed but broken, e.g. a missing shared library
        raise RuntimeUnavailableError(f"onnxruntime cannot be imported: {exc}") from None
    return onnxruntime


def create_session(model: onnx.ModelProto | str | os.PathLike, device: str = "cpu",
                   threads: int | None = None, optimize: bool = True) -> Session:
    """Start ORT on `device`: "cpu", "cuda" (fail if CUDA does not work) or "auto" (CUDA if it works,
    else CPU with the reason in `Session.fallback`). optimize=False runs the graph as written: for
    one or two runs ORT's graph optimizations (layout changes, prepacking) cost more than they save."""
    if device not in DEVICES:
        raise ConfigError(f"device '{device}' is not one of {', '.join(DEVICES)}")
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be at least 1, got {threads}")
    ort = import_ort()
    ort.set_default_logger_severity(LOG_ERRORS_ONLY)
    source, where, tmpdir = _model_source(model)
    options = ort.SessionOptions()
    options.log_severity_level = LOG_ERRORS_ONLY
    # Idle worker threads of one session must not spin while another runs: benchmarks and
    # comparisons interleave sessions, and spinning threads steal the cores of the next one.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is not None:
        options.intra_op_num_threads = threads
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        if device == "cpu":
            sess = _start(ort, source, options, [CPU], where)
            return Session(sess, CPU, "cpu", None, tmpdir)
        sess, reason = _start_cuda(ort, source, options, where)
        if sess is not None:
            return Session(sess, CUDA, "cuda", None, tmpdir)
        if device == "cuda":
            raise RuntimeUnavailableError(f"device cuda asked for, but {reason}")
        sess = _start(ort, source, options, [CPU], where)
        return Session(sess, CPU, "cpu", f"CUDA unavailable ({reason}); running on CPU", tmpdir)
    except BaseException:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
        raise


def _model_source(model) -> tuple[str | bytes, str, str | None]:
    """What ORT is given (path or bytes), the name used in messages, and a temp folder to remove."""
    if isinstance(model, onnx.ModelProto):
        if model.ByteSize() < BY_PATH_BYTES:
            return model.SerializeToString(), "model", None
        tmpdir = tempfile.mkdtemp(prefix="onnxprune-session-")
        path = Path(tmpdir) / "model.onnx"
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        try:
            onnx.save_model(copy, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                            location="model.onnx.data", size_threshold=1024)
        except OSError as exc:
            shutil.rmtree(tmpdir, ignore_errors=True)
            raise ModelLoadError(f"model: cannot write a temporary copy for onnxruntime ({exc.strerror or exc})") from None
        return str(path), "model", tmpdir
    path = Path(model)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such file" if not path.exists() else f"{path}: is not a file")
    return str(path), str(path), None


def _start(ort, source, options, providers, where):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ort.InferenceSession(source, sess_options=options, providers=providers, enable_fallback=0)
    except Exception as exc:  # ORT raises its own pybind classes, all plain Exception subclasses
        raise ModelLoadError(f"{where}: onnxruntime {ort.__version__} cannot load the model: "
                             f"{explain_ort_error(str(exc))}") from None


def _start_cuda(ort, source, options, where):
    """(session on CUDA, None) or (None, why CUDA cannot be used)."""
    if CUDA not in ort.get_available_providers():
        return None, (f"this onnxruntime {ort.__version__} build has no CUDAExecutionProvider; "
                      "pip uninstall onnxruntime, then pip install 'onnxprune[gpu]' (onnxruntime-gpu)")
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        with contextlib.suppress(Exception), contextlib.redirect_stdout(io.StringIO()):
            preload()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sess = ort.InferenceSession(source, sess_options=options, providers=[CUDA, CPU], enable_fallback=0)
    except Exception as exc:
        # A model ORT cannot load fails on CPU too: report that, not a CUDA problem.
        _start(ort, source, options, [CPU], where)
        return None, f"the CUDA provider failed to start: {explain_ort_error(str(exc))}"
    if sess.get_providers()[0] == CUDA:
        return sess, None
    return None, diagnose_cuda(ort)


def diagnose_cuda(ort) -> str:
    """Why ORT silently left CUDA out of a session: no driver, no GPU, or missing CUDA/cuDNN libraries."""
    driver_name = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"
    try:
        driver = ctypes.CDLL(driver_name)
    except OSError:
        return f"no NVIDIA driver found ({driver_name} cannot be loaded): no GPU here, or its driver is not installed"
    count = ctypes.c_int(0)
    status = driver.cuInit(0)
    if status != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return f"the NVIDIA driver sees no usable GPU (cuInit status {status}); check CUDA_VISIBLE_DEVICES"
    lib = "onnxruntime_providers_cuda.dll" if sys.platform == "win32" else "libonnxruntime_providers_cuda.so"
    path = Path(ort.__file__).parent / "capi" / lib
    try:
        ctypes.CDLL(str(path))
    except OSError as exc:
        return (f"the CUDA or cuDNN libraries onnxruntime-gpu {ort.__version__} needs cannot be loaded "
                f"({_one_line(str(exc))}); install the versions it was built for")
    return "onnxruntime placed no node on CUDA; see onnxruntime's CUDA requirements for this version"


_PREFIX = re.compile(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*")
_SOURCE_LOCATION = re.compile(r"^\S+\.(?:h|cc|cpp|c):\d+\s+")
_LOAD_PREFIX = re.compile(r"^Load model from .*? failed:\s*")
_UNREGISTERED = re.compile(r"(\S*):(\w+)\((-?\d+)\) is not a registered function/op")
_NO_KERNEL = re.compile(r'In Node, \("[^"]*", (\w+), "([^"]*)", -?\d+\).*No Op registered for \w+ with domain_version of (\d+)')
_OPSET = re.compile(r"Opset (\d+) is under development.*?support for domain (\S+) is till opset (\d+)", re.S)


def explain_ort_error(message: str) -> str:
    """An ORT error reduced to one line; a load error names the op or opset at fault."""
    text = _PREFIX.sub("", message.strip())
    if _SOURCE_LOCATION.match(text):
        text = _drop_signature(_SOURCE_LOCATION.sub("", text))
    text = _LOAD_PREFIX.sub("", text)
    if m := _UNREGISTERED.search(text):
        domain, op, _ = m.groups()
        return f"op '{op}' of domain '{domain or 'ai.onnx'}' is not known (a custom op: load its library or replace it)"
    if m := _NO_KERNEL.search(text):
        op, domain, version = m.groups()
        return f"op '{op}' (domain '{domain or 'ai.onnx'}', opset {version}) is not implemented"
    if m := _OPSET.search(text):
        used, domain, supported = m.groups()
        return f"the model uses opset {used} of {domain}, newer than the opset {supported} this onnxruntime supports"
    return _one_line(text)


def _drop_signature(text: str) -> str:
    """Remove the C++ signature ORT puts before its message: `void ns::f(args) Message`."""
    start = text.find("(")
    if start < 0 or "::" not in text[:start]:
        return text
    depth = 0
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[i + 1:].lstrip()
    return text


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit - 3] + "..."
