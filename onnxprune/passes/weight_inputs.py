"""Weights that are also graph inputs (IR 3 lists every initializer as one; PyTorch's
keep_initializers_as_inputs does the same at IR 4+). The analysis treats them as the constants they
hold, as a runtime does when they are not fed; this pass decides how the written model declares them:
kept as inputs at their new shapes (the default: the interface a caller knows), or dropped."""

from __future__ import annotations

import onnx
from onnx import helper

from ..errors import ConfigError
from .base import Pass, PassResult
from .normalize import _remove_where

WEIGHT_INPUT_MODES = ("keep", "drop")


def weight_inputs_note(names: list[str], ir_version: int, mode: str) -> str:
    """The one line a report shows when a model's weights are graph inputs."""
    kept = ("the written model drops them (--weight-inputs drop)" if mode == "drop" else
            "the written model keeps them as inputs, at their new shapes" +
            (" (IR 3 requires it)" if ir_version < 4 else "; --weight-inputs drop removes them"))
    return (f"{len(names)} weight{'s are' if len(names) != 1 else ' is'} also listed as graph input{'s' if len(names) != 1 else ''} "
            f"(an old export: IR {ir_version}{'' if ir_version < 4 else ' with keep_initializers_as_inputs'}); "
            f"treated as the constants stored, as a runtime does when they are not fed; {kept}")


def check_weight_inputs_mode(model: onnx.ModelProto, mode: str) -> None:
    """Before any work: dropping them is impossible where the IR requires them."""
    if mode == "drop" and model.ir_version < 4 and len(model.graph.initializer):
        raise ConfigError(f"--weight-inputs drop: this model is IR {model.ir_version}, which declares every weight "
                          "as a graph input; keep them (the default)")


class DeclareWeightInputs(Pass):
    """After cleanup: weight inputs dropped (--weight-inputs drop), or, in an IR 3 model, every
    initializer a rewrite added declared as an input too. Declared shapes follow the rewrite
    (passes/prune_channels.py)."""

    name = "weight-inputs"

    def run(self, state) -> PassResult:
        g = state.model.graph
        inits = {t.name: t for t in g.initializer}
        if state.config.weight_inputs == "drop":
            n = _remove_where(g.input, lambda i: i.name in inits)
            return PassResult(n > 0, {"dropped": n})
        if state.model.ir_version >= 4:
            return PassResult(False)
        declared = {i.name for i in g.input}
        added = [t for t in g.initializer if t.name not in declared]
        for t in added:
            g.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
        return PassResult(bool(added), {"declared": len(added)})
