"""Op rules: how channels flow through each op family. One family per file, registered by decorator.

A rule is `rule(node, ctx)`; it reads the channels of the node's inputs from `ctx` and declares the
channels of its outputs, the parameters it owns per channel, couplings and blocks. An op without a
rule blocks every channel that reaches it: unknown ops never pass channels through silently.
"""

from __future__ import annotations

from typing import Callable

RULES: dict[tuple[str, str], Callable] = {}


def register(*op_types: str, domain: str = ""):
    def deco(fn):
        for op in op_types:
            key = (domain, op)
            if key in RULES:
                raise RuntimeError(f"a rule for {domain or 'ai.onnx'}::{op} is registered twice")
            RULES[key] = fn
        return fn

    return deco


def rule_for(op_type: str, domain: str):
    return RULES.get(("" if domain == "ai.onnx" else domain, op_type))


from . import (  # noqa: E402,F401  (registration side effects)
    concat_split,
    conv,
    elementwise,
    linear,
    normalization,
    pooling,
    quantize,
    recurrent,
    reduce,
    reshape,
)
