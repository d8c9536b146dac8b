"""onnxprune next to Torch-Pruning on the same torchvision models, timed in ONNX Runtime CPU.

For each model: torchvision's architecture with its own initialisation (seed 0, eval mode), exported
with the TorchScript exporter (opset 17) -> "original". Torch-Pruning (MagnitudePruner, L1,
pruning_ratio R per group, the Linear classifier ignored, round_to as given) prunes the PyTorch
module, which is exported the same way -> "torch-pruning". onnxprune prunes the original .onnx file
with `--ratio R` (L1, its CPU alignment) -> "onnxprune". The three run interleaved in one run
(benchmarks/_ortbench.py, spinning off), median of --runs.

Needs torch, torchvision and torch-pruning, which onnxprune itself does not use:

    pip install torch-pruning torchvision   # matching the installed torch
    python benchmarks/vs_torch_pruning.py [--models densenet121,mobilenet_v2,resnet50] [--ratio 0.5]
                                          [--batches 1,8] [--runs 40] [--threads 1] [--json out.json]

FLOPs are onnxprune's count (Conv/Gemm/MatMul, 2 per multiply-add) on each exported graph, so all
three columns are counted alike.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _ortbench import bench, csv, git_state, log  # noqa: E402


def build(name: str, ratio: float, round_to, workdir: Path) -> dict:
    import onnx
    import torch
    import torch_pruning as tp

    import onnxprune
    from tools.torchvision_sweep import export_onnx as export
    from tools.torchvision_sweep import torchvision_model

    module = torchvision_model(name, realistic_bn=False)
    paths = {"original": workdir / f"{name}.onnx", "torch-pruning": workdir / f"{name}_tp.onnx",
             "onnxprune": workdir / f"{name}_onnxprune.onnx"}
    export(module, paths["original"])
    x = torch.randn(1, 3, 224, 224)
    ignored = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    pruner = tp.pruner.MagnitudePruner(module, x, importance=tp.importance.MagnitudeImportance(p=1),
                                       pruning_ratio=ratio, ignored_layers=ignored, round_to=round_to)
    pruner.step()
    export(module, paths["torch-pruning"])
    result = onnxprune.prune(str(paths["original"]), ratio=ratio, validate=False)
    onnx.save(result.model, str(paths["onnxprune"]))
    return paths


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=csv(str), default="densenet121,mobilenet_v2,resnet50")
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--tp-round-to", type=int, default=None, help="Torch-Pruning's round_to (default: none)")
    ap.add_argument("--batches", type=csv(int), default="1,8")
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    try:
        import torch
        import torch_pruning
        import torchvision
    except ImportError as exc:
        print(f"error: this benchmark needs torch, torchvision and torch-pruning ({exc})", file=sys.stderr)
        return 1
    import onnx
    import onnxruntime

    from onnxprune.cost import count_flops, count_params
    from onnxprune.graph import ModelGraph

    out = {"date": time.strftime("%Y-%m-%d"), "onnxruntime": onnxruntime.__version__, "torch": torch.__version__,
           "torchvision": torchvision.__version__, "torch_pruning": torch_pruning.__version__,
           "ratio": args.ratio, "tp_round_to": args.tp_round_to, "threads": args.threads, "runs": args.runs,
           **git_state(), "models": {}}
    print(f"ONNX Runtime {onnxruntime.__version__} CPU, threads {args.threads}; torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}, Torch-Pruning {torch_pruning.__version__}; ratio {args.ratio}; "
          f"{args.warmup} warm-up + {args.runs} interleaved runs")
    header = f"{'model':<13}{'variant':<15}{'GFLOPs':>8}{'FLOPs x':>9}{'params M':>10}" + "".join(
        f"{'b%d ms' % b:>9}{'b%d x' % b:>7}" for b in args.batches)
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="onnxprune-vs-tp-") as tmp:
        for name in args.models:
            log(f"[{name}] exporting and pruning")
            paths = build(name, args.ratio, args.tp_round_to, Path(tmp))
            models = {k: onnx.load(str(p)) for k, p in paths.items()}
            flops = {k: count_flops(ModelGraph(m)) for k, m in models.items()}
            params = {k: count_params(m) for k, m in models.items()}
            log(f"[{name}] timing")
            res = bench(list(models.values()), list(models), batch_sizes=tuple(args.batches), threads=args.threads,
                        warmup=args.warmup, runs=args.runs)
            rows = {}
            for label in models:
                row = {"gflops": flops[label] / 1e9, "flops_ratio": flops["original"] / flops[label],
                       "params": params[label]}
                line = f"{name:<13}{label:<15}{flops[label] / 1e9:>8.3f}{row['flops_ratio']:>8.2f}x" \
                       f"{params[label] / 1e6:>10.2f}"
                for b in args.batches:
                    stat = next(s for s in res.stats if s.model == label and s.batch == b)
                    base = next(s for s in res.stats if s.model == "original" and s.batch == b)
                    row[f"b{b}_ms"] = stat.median_ms
                    row[f"b{b}_p10_p90"] = [stat.p10_ms, stat.p90_ms]
                    row[f"b{b}_ratio"] = base.median_ms / stat.median_ms
                    line += f"{stat.median_ms:>9.2f}{row[f'b{b}_ratio']:>6.2f}x"
                rows[label] = row
                print(line, flush=True)
            out["models"][name] = rows
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
