"""Channel importance criteria, one per file, registered by name. A criterion scores every channel
of the prunable groups, aggregating over all the group's members (coupled convs of a residual
stage, concat parts, consumers)."""

from __future__ import annotations

from typing import Callable

from ..errors import ConfigError

CRITERIA: dict[str, Callable] = {}


def criterion(name: str):
    def deco(fn):
        if name in CRITERIA:
            raise RuntimeError(f"criterion '{name}' registered twice")
        CRITERIA[name] = fn
        return fn

    return deco


def get_criterion(name: str) -> Callable:
    if name not in CRITERIA:
        raise ConfigError(f"unknown criterion '{name}'; choose one of: {', '.join(sorted(CRITERIA))}")
    return CRITERIA[name]


from . import activation, bn_gamma, lamp, magnitude, reconstruction  # noqa: E402,F401
