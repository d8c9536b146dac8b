"""Repair without training: make a pruned model compute what the original computed, from
calibration data alone. One method per file:

- bias: the removed channels' mean contribution moves into the consumer's bias;
- lsq: the consumer's remaining weights (and bias) are refit by ridge least squares so its output on
  calibration data matches the original's (Channel Pruning / ThiNet);
- bn: BatchNormalization statistics corrected by the shift pruning caused in their inputs.

bias and lsq are kept per layer only where they lower the reconstruction error on held-out
calibration rows (reconstruct.py); `all` is the best of them per layer, and the default for a
lossy run given calibration data.
"""

from __future__ import annotations

from ..errors import ConfigError

METHODS = ("bias", "lsq", "bn")


def parse_methods(text: str | tuple | None) -> tuple[str, ...]:
    if not text:
        return ()
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if items == ["all"]:
        return METHODS
    if items == ["none"]:
        return ()
    unknown = [t for t in items if t not in METHODS]
    if unknown:
        raise ConfigError(f"unknown repair method '{unknown[0]}'; choose from {', '.join(METHODS)}, all or none")
    return tuple(m for m in METHODS if m in items)
