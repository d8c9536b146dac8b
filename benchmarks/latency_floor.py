"""How far can latency fall with channels? The share of a model's latency that does not depend on
its channel counts, read from the latency table --target-latency builds.

Each layer's time at 0 kept channels is extrapolated from its two lowest measured points (per side;
separable across sides as in the table: T(0, 0) = T(0, full) T(full, 0) / T(full, full)); the floor
is their sum over the sum of the layers' full times. With a floor F and the rest falling in step with
the FLOPs, a model at latency share R keeps (R - F) / (1 - F) of the variable work, so the latency
speedup / FLOPs ratio at R is at most about (R - F) / (R (1 - F)) unless the allocation removes
latency faster than FLOPs (F = 0.077: 0.92 at R = 0.5).

    python benchmarks/latency_floor.py [--models mobilenet_v2,densenet121,resnet50,efficientnet_b0] [--batches 1,8]
        [--threads 1] [--share 0.5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._ortbench import csv  # noqa: E402
from benchmarks.latency_target import load  # noqa: E402
from onnxprune import PruneConfig  # noqa: E402
from onnxprune.api import latency_table  # noqa: E402


def intercept(points, full: float) -> float:
    """A side's time at 0 channels, from its two lowest points (full when the side is not prunable)."""
    if len(points) < 2:
        return full
    (k0, t0), (k1, t1) = sorted(points)[:2]
    slope = (t1 - t0) / (k1 - k0) if k1 > k0 else 0.0
    return max(0.0, t0 - slope * k0)


def floor_share(table: dict) -> float:
    total = floor = 0.0
    for seg in table["segments"]:
        full = seg["full_ms"]
        if full <= 0:
            continue
        total += full
        floor += intercept(seg["in_points"], full) * intercept(seg["out_points"], full) / full
    return floor / total if total else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=csv(str), default=["mobilenet_v2", "densenet121", "resnet50", "efficientnet_b0"])
    ap.add_argument("--batches", type=csv(int), default=[1, 8])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--share", type=float, default=0.5)
    args = ap.parse_args()
    print("| model | batch | floor share F | bound on speedup / FLOPs ratio at R |")
    print("|---|---|---|---|")
    for name in args.models:
        model = load(name)
        for batch in args.batches:
            table = latency_table(model, PruneConfig(target_latency=args.share, batch=batch, threads=args.threads,
                                                     latency_cache="off")).to_dict()
            f = floor_share(table)
            r = args.share
            print(f"| {name} | {batch} | {f:.3f} | {(r - f) / (r * (1 - f)):.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
