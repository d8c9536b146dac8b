"""The one place where ONNX files are read and written.

Loading turns every way a file can be wrong into one ModelLoadError; saving is atomic (a temp file
in the target folder, then a rename), never replaces the input, and switches to external data when
the model would not fit in a single protobuf (2 GB).
"""

from __future__ import annotations

import heapq
import os
import secrets
import shutil
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from .errors import ModelLoadError, ModelSaveError

PROTOBUF_LIMIT = 2**31 - 1
# Tensors at or above this many bytes are written as external data when the model is too big.
EXTERNAL_THRESHOLD = 1024


def load_model(path: str | os.PathLike, check: bool = True) -> onnx.ModelProto:
    """Read a model and its external data; raise ModelLoadError with a one-line reason."""
    p = Path(path)
    try:
        if not p.exists():
            raise ModelLoadError(f"{p}: no such file")
        if p.is_dir():
            raise ModelLoadError(f"{p}: is a folder, expected an .onnx file")
        if p.stat().st_size == 0:
            raise ModelLoadError(f"{p}: file is empty")
    except OSError as exc:  # a name too long, no permission to look...
        raise ModelLoadError(f"{p}: cannot read ({exc.strerror or exc})") from None
    # The checker runs first, on the file (it reads it itself): its copy of the model is freed
    # before ours is parsed, so the two never sit in memory together.
    checked: Exception | None = None
    if check:
        try:
            onnx.checker.check_model(str(p))
        except Exception as exc:  # reported below, after the more specific reasons
            checked = exc
    try:
        model = onnx.load_model(str(p), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{p}: not a readable ONNX model (protobuf parse failed: {exc})") from None
    except OSError as exc:
        raise ModelLoadError(f"{p}: cannot read ({exc.strerror or exc})") from None
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        raise ModelLoadError(f"{p}: not an ONNX model (no graph found); is the file truncated or of another format?")
    if not model.opset_import:
        raise ModelLoadError(f"{p}: the model declares no opset; it is not a valid ONNX model")
    _load_external(model, p)
    if checked is not None and "topologically sorted" in str(checked) and sort_graph(model):
        # ONNX Runtime runs nodes listed out of order (onnxconverter-common's float16 conversion
        # with keep_io_types appends its input Casts last); the checker and shape inference read
        # them in order. Sorted, the model is checked again as it is.
        try:
            onnx.checker.check_model(model)
            checked = None
        except Exception as exc:  # noqa: BLE001 (reported below like any checker failure)
            checked = exc
    if checked is not None:
        first = str(checked).strip().splitlines()[0] if str(checked).strip() else type(checked).__name__
        raise ModelLoadError(f"{p}: the model fails the ONNX checker: {first}")
    check_tensors(model, str(p))
    return model


def sort_graph(model: onnx.ModelProto) -> int:
    """Put the main graph's nodes in topological order where they are not (ONNX's checker and shape
    inference read them in order; ONNX Runtime does not need it); returns how many moved (0, the nodes
    as they were, where no order exists: a cycle, left for the checker to name)."""
    g = model.graph
    known = {i.name for i in g.input} | {t.name for t in g.initializer} | {t.name for t in g.sparse_initializer} | {""}
    for n in g.node:
        if not _reads(n) <= known:
            break
        known.update(n.output)
    else:
        return 0
    made = {o: k for k, n in enumerate(g.node) for o in n.output if o}
    needs = [{made[i] for i in _reads(n) if i in made and made[i] != k} for k, n in enumerate(g.node)]
    readers = [[] for _ in g.node]
    for k, ns in enumerate(needs):
        for j in ns:
            readers[j].append(k)
    waiting = [len(ns) for ns in needs]
    ready = [k for k, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order = []
    while ready:  # the lowest-listed ready node first: a graph in order stays as it is, others move least
        k = heapq.heappop(ready)
        order.append(k)
        for r in readers[k]:
            waiting[r] -= 1
            if waiting[r] == 0:
                heapq.heappush(ready, r)
    if len(order) != len(g.node):
        return 0
    moved = sum(k != i for i, k in enumerate(order))
    nodes = [onnx.NodeProto.FromString(g.node[k].SerializeToString()) for k in order]
    del g.node[:]
    g.node.extend(nodes)
    return moved


def _reads(node: onnx.NodeProto) -> set[str]:
    """Names a node reads: its inputs and, for If/Loop/Scan, what its bodies read from outside."""
    names = {i for i in node.input if i}
    for a in node.attribute:
        for body in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
            own = ({i.name for i in body.input} | {t.name for t in body.initializer}
                   | {o for inner in body.node for o in inner.output})
            for inner in body.node:
                names |= _reads(inner) - own
    return names


def check_tensors(model: onnx.ModelProto, where: str = "model") -> None:
    """Every stored tensor has a known type and as many bytes as its dims say (the checker does
    not look); raise ModelLoadError naming the first that does not."""
    from onnx.external_data_helper import _get_all_tensors

    for t in _get_all_tensors(model):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            continue
        try:
            np_dtype = onnx.helper.tensor_dtype_to_np_dtype(t.data_type)
        except (KeyError, ValueError, TypeError):
            raise ModelLoadError(f"{where}: tensor '{t.name}' has an unknown data type ({t.data_type})") from None
        count = 1
        for d in t.dims:
            count *= d
        if t.HasField("raw_data"):
            if t.data_type in (onnx.TensorProto.STRING,):
                continue
            expected = count * np_dtype.itemsize
            if t.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4) if hasattr(onnx.TensorProto, "INT4") else False:
                expected = (count + 1) // 2
            if len(t.raw_data) != expected and np_dtype.itemsize:
                raise ModelLoadError(f"{where}: tensor '{t.name}' holds {len(t.raw_data)} bytes for dims "
                                     f"{list(t.dims)}, expected {expected}; the file is damaged")


def check_proto(model: onnx.ModelProto, where: str = "model") -> None:
    """What the library checks of a model given in memory: its stored tensors, and that every graph
    output has a producer (exact mode would otherwise remove every node as unused). Not the whole
    ONNX checker, which load_model runs: it also rejects models ONNX Runtime takes (value_info
    without a shape, for one)."""
    check_tensors(model, where)
    graph = model.graph
    made = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {
        t.name for t in graph.sparse_initializer} | {o for n in graph.node for o in n.output if o}
    for out in graph.output:
        if out.name not in made:
            raise ModelLoadError(f"{where}: graph output '{out.name}' is produced by no node, input or "
                                 f"initializer; the model is incomplete (the ONNX checker rejects it too)")


def _load_external(model: onnx.ModelProto, path: Path) -> None:
    from onnx.external_data_helper import _get_all_tensors, load_external_data_for_tensor, uses_external_data

    base = str(path.parent)
    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        target = (path.parent / location).resolve()
        if not location or not target.is_file():
            raise ModelLoadError(
                f"{path}: external data file '{location}' for tensor '{tensor.name}' is missing; "
                f"keep it beside the model"
            )
        try:
            load_external_data_for_tensor(tensor, base)
        except (OSError, ValueError, onnx.checker.ValidationError) as exc:
            raise ModelLoadError(f"{path}: cannot read external data file '{location}' for '{tensor.name}' "
                                 f"({exc}); is it truncated?") from None
        expected = _expected_nbytes(tensor)
        if expected is not None and len(tensor.raw_data) != expected:
            raise ModelLoadError(
                f"{path}: external data for '{tensor.name}' holds {len(tensor.raw_data)} bytes, "
                f"expected {expected}; the data file '{location}' is truncated or does not belong to this model"
            )
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT


def _expected_nbytes(tensor: onnx.TensorProto) -> int | None:
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except (KeyError, ValueError, TypeError):
        return None
    n = 1
    for d in tensor.dims:
        n *= d
    return n * itemsize


def check_model(model: onnx.ModelProto | str, where: str = "model") -> None:
    """Run the ONNX checker (on a path when given one: no re-serialization, external data allowed);
    raise ModelLoadError with its first line."""
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{where}: the model fails the ONNX checker: {first}") from None


def resolve_output(input_path: str | os.PathLike | None, output_path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Validate an output path before any work is done, so a bad path fails fast."""
    out = Path(output_path)
    try:
        if out.exists() and out.is_dir():
            raise ModelSaveError(f"{out}: is a folder; give a file path for the output model")
        if not out.parent.exists():
            raise ModelSaveError(f"{out}: the folder '{out.parent}' does not exist")
        if not out.parent.is_dir():
            raise ModelSaveError(f"{out}: '{out.parent}' is not a folder")
        if not os.access(out.parent, os.W_OK | os.X_OK):
            raise ModelSaveError(f"{out}: the folder '{out.parent}' is not writable")
        if input_path is not None and not overwrite:
            inp = Path(input_path)
            if inp.exists() and (out.resolve() == inp.resolve() or (out.exists() and os.path.samefile(out, inp))):
                raise ModelSaveError(f"{out}: is the input model; choose another output path (the input is never overwritten)")
    except OSError as exc:  # a name too long, a loop of links...
        raise ModelSaveError(f"{out}: cannot write there ({exc.strerror or exc})") from None
    return out


def save_model(model: onnx.ModelProto, output_path: str | os.PathLike, input_path: str | os.PathLike | None = None,
               overwrite: bool = False, before_commit=None) -> Path:
    """Write atomically: nothing appears at output_path unless the whole model was written.

    `before_commit(tmp_path)` runs on the fully written temp file (validation); if it raises, the
    output is not created. The temp folder is removed on every way out, SIGTERM included."""
    out = resolve_output(input_path, output_path, overwrite)
    large = approximate_size(model) >= PROTOBUF_LIMIT
    # The temp folder's name is chosen first and made inside the try: an interrupt arriving just
    # after it is made (as with mkdtemp, before its name is returned) still removes it.
    tmpdir = out.parent / f".{out.name}.{os.getpid()}{secrets.token_hex(4)}"
    with _cleanup_on_terminate():
        try:
            os.mkdir(tmpdir, 0o700)
            tmp_model = Path(tmpdir) / out.name
            if large:
                data_name = out.name + ".data"
                onnx.save_model(model, str(tmp_model), save_as_external_data=True, all_tensors_to_one_file=True,
                                location=data_name, size_threshold=EXTERNAL_THRESHOLD)
                # save_model with external data rewrites the tensors in place; bring the data back.
                _load_external(model, tmp_model)
            else:
                with open(tmp_model, "wb") as f:
                    write_serialized(model, f)
            if before_commit is not None:
                before_commit(tmp_model)
            if large:
                os.replace(Path(tmpdir) / data_name, out.parent / data_name)
            os.replace(tmp_model, out)
        except OSError as exc:
            raise ModelSaveError(f"{out}: cannot write ({exc.strerror or exc})") from None
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
    return out


class _Terminated(BaseException):
    """SIGTERM arrived while a temp file was open: unwinds like KeyboardInterrupt, so it is cleaned up."""


@contextmanager
def _cleanup_on_terminate():
    """While the body runs, SIGTERM unwinds the stack (its `finally` blocks remove temp files) and
    then terminates the process as SIGTERM would have: the exit status is the signal's, as before."""
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or previous is signal.SIG_IGN:
        yield
        return
    previous = signal.SIG_DFL if previous is None else previous

    def unwind(signum, frame):
        raise _Terminated(signum)

    signal.signal(signal.SIGTERM, unwind)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, previous)
        os.kill(os.getpid(), signal.SIGTERM)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(message, keep) -> bytes:
    """Encoding of the message's fields whose number passes `keep` (big ones are not copied:
    callers exclude them)."""
    out = type(message)()
    for fd, value in message.ListFields():
        if not keep(fd.number):
            continue
        target = getattr(out, fd.name)
        if fd.is_repeated if hasattr(fd, "is_repeated") else fd.label == fd.LABEL_REPEATED:
            target.extend(value)
        elif fd.type == fd.TYPE_MESSAGE:
            target.CopyFrom(value)
        else:
            setattr(out, fd.name, value)
    return out.SerializeToString()


MODEL_GRAPH, GRAPH_INITIALIZER = 7, 5  # field numbers in onnx.proto


def write_serialized(model: onnx.ModelProto, f) -> None:
    """Write the model's protobuf encoding one initializer at a time, byte for byte what
    SerializeToString gives (fields in number order), without holding that whole encoding: its
    peak holds it twice (upb's buffer, then the bytes object)."""
    graph = model.graph
    tensors = [t.SerializeToString() for t in graph.initializer]
    tag = bytes([(GRAPH_INITIALIZER << 3) | 2])
    graph_before = _fields(graph, lambda n: n < GRAPH_INITIALIZER)
    graph_after = _fields(graph, lambda n: n > GRAPH_INITIALIZER)
    graph_len = len(graph_before) + len(graph_after) + sum(len(tag) + len(_varint(len(t))) + len(t) for t in tensors)
    f.write(_fields(model, lambda n: n < MODEL_GRAPH))
    if model.HasField("graph"):
        f.write(bytes([(MODEL_GRAPH << 3) | 2]) + _varint(graph_len))
        f.write(graph_before)
        for t in tensors:
            f.write(tag + _varint(len(t)))
            f.write(t)
        f.write(graph_after)
    f.write(_fields(model, lambda n: n > MODEL_GRAPH))


def approximate_size(model: onnx.ModelProto) -> int:
    """Bytes of tensor data in the model, plus its graph without them: close to the serialized
    size, without serializing (upb's ByteSize encodes the whole message to count it)."""
    data = sum(len(t.raw_data) for t in model.graph.initializer
               if t.HasField("raw_data") and len(t.raw_data) >= WEIGHTLESS_MIN_BYTES)
    return data + weightless_copy(model).ByteSize()


WEIGHTLESS_MIN_BYTES = 4096


def weightless_copy(model: onnx.ModelProto, max_bytes: int = WEIGHTLESS_MIN_BYTES) -> onnx.ModelProto:
    """A copy of the model whose large initializers keep name, type and dims but no data: what
    whole-graph tools (shape inference) need, at a fraction of the size. The model is not touched."""
    skeleton = onnx.ModelProto()
    skeleton.ir_version = model.ir_version
    skeleton.opset_import.extend(model.opset_import)
    skeleton.functions.extend(model.functions)
    src, dst = model.graph, skeleton.graph
    dst.name = src.name
    dst.node.extend(src.node)
    dst.input.extend(src.input)
    dst.output.extend(src.output)
    dst.value_info.extend(src.value_info)
    dst.sparse_initializer.extend(src.sparse_initializer)
    for t in src.initializer:
        if t.HasField("raw_data") and len(t.raw_data) >= max_bytes:
            dst.initializer.add(name=t.name, data_type=t.data_type, dims=t.dims)
        else:
            dst.initializer.append(t)
    return skeleton
