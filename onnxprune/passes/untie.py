"""Shared constants: one copy per use while channels are chosen, merged back afterwards.

Exporters deduplicate identical tensors: `torch.onnx.export` of a freshly initialised torchvision
DenseNet-121 stores one gamma=1 / beta=0 / mean=0 / var=1 tensor per shape and lets dozens of
BatchNormalization nodes read it. The analysis has to keep the positions of a shared parameter
together, so without this step those BNs would tie the channels of unrelated layers into one group
(the DenseNet above: 18 groups instead of 121, one of them spanning 88 convs).

`untie_shared` gives every further reader of a shared floating-point constant its own copy, so each
use follows its own channels; `retie_shared`, after the rewrite, merges copies whose contents are
still byte-identical (to the original or to each other) back into one tensor, so a model whose
shared tensors were pruned alike, or not at all, comes back with the sharing it had. Uses inside
subgraphs (If/Loop bodies) keep the original tensor, which the analysis then treats as shared.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from .base import Pass, PassResult

_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}


def _constants(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """Stored constants of the main graph: initializers that are not graph inputs, Constant nodes."""
    inputs = {i.name for i in graph.input}
    out = {t.name: t for t in graph.initializer if t.name not in inputs}
    for n in graph.node:
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx") and [a.name for a in n.attribute] == ["value"]:
            out[n.output[0]] = n.attribute[0].t
    return out


def untie_shared(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Give each further node input that reads a shared floating-point constant its own copy.
    Returns original name -> names of the copies made (empty when nothing was shared)."""
    graph = model.graph
    consts = _constants(graph)
    outputs = {o.name for o in graph.output}
    uses: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for n in graph.node:
        for i, name in enumerate(n.input):
            if name in consts:
                uses.setdefault(name, []).append((n, i))
    taken = {t.name for t in graph.initializer} | {i.name for i in graph.input} | outputs
    taken |= {o for n in graph.node for o in n.output}
    ties: dict[str, list[str]] = {}
    for name, readers in uses.items():
        t = consts[name]
        if len(readers) < 2 or name in outputs or t.data_type not in _FLOAT_TYPES or _size(t) < 2:
            continue
        for k, (node, i) in enumerate(readers[1:], start=1):
            copy_name = _fresh(f"{name}.use{k}", taken)
            copy = graph.initializer.add()
            copy.CopyFrom(t)  # the stored bytes as they are: no dtype round trip (bfloat16, float8...)
            copy.name = copy_name
            node.input[i] = copy_name
            ties.setdefault(name, []).append(copy_name)
    return ties


def retie_shared(model: onnx.ModelProto, ties: dict[str, list[str]]) -> int:
    """Merge the copies untie_shared made back where their contents are still identical.
    Returns how many copies remain separate tensors."""
    if not ties:
        return 0
    graph = model.graph
    consts = _constants(graph)
    renames: dict[str, str] = {}
    separate = 0
    for name, copies in ties.items():
        kept: list[tuple[str, tuple]] = []
        if name in consts:
            kept.append((name, _key(consts[name])))
        for c in copies:
            if c not in consts:
                continue
            key = _key(consts[c])
            same = next((k for k, kk in kept if kk == key), None)
            if same is None:
                kept.append((c, key))
                separate += 1
            else:
                renames[c] = same
    if renames:
        for n in graph.node:
            for i, name in enumerate(n.input):
                if name in renames:
                    n.input[i] = renames[name]
        gone = [i for i, t in enumerate(graph.initializer) if t.name in renames]
        for i in reversed(gone):
            del graph.initializer[i]
    return separate


def _key(t: onnx.TensorProto) -> tuple:
    value = numpy_helper.to_array(t)
    return (t.data_type, tuple(value.shape), np.ascontiguousarray(value).tobytes())


def _size(t: onnx.TensorProto) -> int:
    return int(np.prod(t.dims)) if len(t.dims) else 1


def _fresh(hint: str, taken: set[str]) -> str:
    name, k = hint, 0
    while name in taken:
        k += 1
        name = f"{hint}_{k}"
    taken.add(name)
    return name


class RetieShared(Pass):
    name = "retie-shared"

    def run(self, state) -> PassResult:
        ties = state.info.get("ties")
        if not ties:
            return PassResult(False)
        separate = retie_shared(state.model, ties)
        return PassResult(separate > 0, {"copies_kept": separate})
