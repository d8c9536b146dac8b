"""Fuzz run of issue 12: exact mode never changes an output, no input gives an internal error.

    python benchmarks/fuzz.py                      # everything: all node tests, 300 random CNNs, bad inputs, 8 signal runs
    python benchmarks/fuzz.py --nodes conv,relu --random 20 --signals 0   # a slice

Prints one row per class (models run, pruned, clean errors, internal errors, mismatches, seconds)
and every internal error and mismatch; exits 1 if there is any. See docs/FUZZ.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools import fuzz  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", help="comma-separated modules of onnx.backend.test.case.node (default: all)")
    ap.add_argument("--node-limit", type=int, help="at most this many node tests")
    ap.add_argument("--random", type=int, default=300, help="random CNNs (seeds 0..N-1)")
    ap.add_argument("--seed-offset", type=int, default=0)
    ap.add_argument("--no-bad", action="store_true", help="skip the bad inputs and destinations")
    ap.add_argument("--signals", type=int, default=8, help="runs interrupted by SIGTERM/SIGINT at a random moment")
    args = ap.parse_args()
    t0 = time.perf_counter()
    report = fuzz.run(node_modules=args.nodes.split(",") if args.nodes else None, node_limit=args.node_limit,
                      random_seeds=range(args.seed_offset, args.seed_offset + args.random), bad=not args.no_bad,
                      signals=args.signals, progress=lambda s: print(s, file=sys.stderr, flush=True))
    print(report.table())
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    for o in report.failures():
        print(f"{o.kind}: [{o.cls}] {o.name}: {o.detail}")
    return 1 if report.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
