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

from ..graph import ModelGraph
from .base import Pass, PassResult

_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}


def untie_shared(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Give each further node input that reads a shared floating-point constant its own copy.
    Returns original name -> names of the copies made (empty when nothing was shared)."""
    index = ModelGraph(model, infer=False)
    uses: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for n in model.graph.node:
        for i, name in enumerate(n.input):
            if name and index.resolve(name) == name and index.is_stored(name):  # aliases read through Identity
                uses.setdefault(name, []).append((n, i))
    taken = set(index.initializers) | set(index.producer) | set(index.graph_inputs) | index.graph_outputs
    ties: dict[str, list[str]] = {}
    for name, readers in uses.items():
        t = index.const_tensor(name)
        if len(readers) < 2 or name in index.graph_outputs or t.data_type not in _FLOAT_TYPES or _size(t) < 2:
            continue
        for k, (node, i) in enumerate(readers[1:], start=1):
            copy = model.graph.initializer.add()
            copy.CopyFrom(t)  # the stored bytes as they are: no dtype round trip (bfloat16, float8...)
            copy.name = _fresh(f"{name}.use{k}", taken)
            node.input[i] = copy.name
            ties.setdefault(name, []).append(copy.name)
    return ties


def retie_shared(model: onnx.ModelProto, ties: dict[str, list[str]]) -> int:
    """Merge the copies untie_shared made back where their contents are still identical.
    Returns how many copies remain separate tensors."""
    if not ties:
        return 0
    index = ModelGraph(model, infer=False)
    renames: dict[str, str] = {}
    separate = 0
    for name, copies in ties.items():
        kept: list[tuple[str, tuple]] = []
        for c in (name, *copies):
            t = index.const_tensor(c) if index.is_stored(c) else None
            if t is None:
                continue  # removed by the rewrite (a folded BN's parameters)
            key = _key(t)
            same = next((k for k, kk in kept if kk == key), None)
            if same is None:
                kept.append((c, key))
                separate += c != name
            else:
                renames[c] = same
    if renames:
        for n in model.graph.node:
            for i, name in enumerate(n.input):
                if name in renames:
                    n.input[i] = renames[name]
        gone = [i for i, t in enumerate(model.graph.initializer) if t.name in renames]
        for i in reversed(gone):
            del model.graph.initializer[i]
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
        ties = state.ties
        if not ties:
            return PassResult(False)
        separate = retie_shared(state.model, ties)
        return PassResult(separate > 0, {"copies_kept": separate})
