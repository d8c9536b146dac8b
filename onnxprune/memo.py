"""Calibration statistics kept across the pipeline runs of one strategy.

A strategy that runs the pipeline several times on the same model and data (the criterion race,
the fidelity guard's search over FLOPs targets) would otherwise gather the same statistics in each
run: the channel scores, the Gram matrices of the layers repair refits, the sensitivity probe's
reference outputs and trials. None of them depends on the target or on what a run removes; they
depend on the model as analysed and on the data. A `CalibMemo` keeps them under a key that holds a
fingerprint of the analysed model (its serialized bytes) and the data source, so a run on another
model or other data never reads them. One memo lives as long as the strategy that made it
(config.memo); a plain run has none and computes everything, as before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any


def model_fingerprint(model) -> str:
    """A digest of a ModelProto's bytes: equal for the copies a strategy prunes, different after any edit."""
    return hashlib.blake2b(model.SerializeToString(), digest_size=16).hexdigest()


def data_key(data) -> str:
    """The data source as a key: a path (or an image folder with its preprocessing) by value; a
    Dataset or loader object by identity (it lives as long as the strategy that passes it)."""
    if data is None or isinstance(data, str):
        return repr(data)
    if hasattr(data, "path") and hasattr(data, "preprocess"):
        return repr((data.path, data.preprocess))
    return f"object:{id(data)}"


class CalibMemo:
    """Values computed from (model, data), each made once: `get(key, compute)`."""

    def __init__(self):
        self._store: dict[tuple, Any] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple, compute: Callable[[], Any]):
        if key in self._store:
            self.hits += 1
            return self._store[key]
        self.misses += 1
        value = compute()
        self._store[key] = value
        return value

    def peek(self, key: tuple):
        return self._store.get(key)

    def put(self, key: tuple, value) -> None:
        self._store[key] = value

    def __len__(self) -> int:
        return len(self._store)
