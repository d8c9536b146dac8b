"""Kept channel counts are aligned to blocks (--round-to): misaligned counts cost more time per FLOP
on real runtimes. The selection passes and the latency table both round with this rule."""

from __future__ import annotations


def group_step(size: int, round_to: int) -> int:
    """Alignment used for a group: round_to for every group larger than round_to, so no group is cut
    below one block; a group of at most round_to channels uses the largest power of two below its
    size, so that it can still lose channels.

    Measured on ORT CPU (benchmarks/alignment.py, docs/BENCHMARKS.md): a Conv reading fewer than 16
    channels leaves the NCHWc path for a slow NCHW kernel, and channel counts between blocks are
    padded. An earlier rule aligned groups below 4*round_to to a smaller power of two (MobileNetV2's
    24-channel stream kept 12, DenseNet's 32-channel growth kept 24 at ratio 0.3); this one kept more
    FLOPs and ran faster on both (MobileNetV2 batch 8 at ratio 0.5: 2.26x vs 2.10x, at 0.3: 1.43x vs
    1.28x; DenseNet-121 at 0.3: 1.34x vs 1.28x)."""
    step = max(1, round_to)
    while step > 1 and size <= step:
        step //= 2
    return step
