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

from ..config import REPAIR_METHODS, parse_methods  # noqa: F401 (parse_methods re-exported)

METHODS = REPAIR_METHODS
