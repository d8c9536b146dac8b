"""Check onnxprune on torchvision's own architectures, exported the way users export them.

For each model: torchvision's architecture (seed 0; BatchNorm given non-trivial statistics, as a
trained model has), exported with the TorchScript exporter at opset 17 (dynamic batch). Then
`onnxprune.analyze` (groups, prunable, why the others are blocked), `onnxprune.prune(ratio=0.5)`
(FLOPs kept) and the exactness oracle of tests/oracle.py on random channels of every prunable group.
Needs torch and torchvision, which onnxprune does not depend on:

    python tools/torchvision_sweep.py [--models squeezenet1_0,efficientnet_b0,...] [--rtol 1e-3]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# One architecture of every torchvision classification family (the smallest where a family has
# several sizes): what this machine can export and check in one run.
DEFAULT = ("alexnet,convnext_tiny,densenet121,efficientnet_b0,efficientnet_v2_s,googlenet,inception_v3,maxvit_t,"
           "mnasnet0_5,mobilenet_v2,mobilenet_v3_small,regnet_x_400mf,regnet_y_400mf,resnet18,resnext50_32x4d,"
           "shufflenet_v2_x0_5,squeezenet1_0,swin_t,swin_v2_t,vgg11,vit_b_16,wide_resnet50_2")


def torchvision_model(name: str, realistic_bn: bool):
    """torchvision's architecture `name` (seed 0, eval mode); with realistic_bn the BatchNorms get
    non-trivial parameters and statistics (tools/export_torch_fixtures.randomize_bn), as a trained
    model has, instead of a fresh network's gamma=1, beta=0, mean=0, var=1."""
    import torch
    import torchvision

    torch.manual_seed(0)
    kw = {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
    model = getattr(torchvision.models, name)(**kw).eval()
    if realistic_bn:
        from tools.export_torch_fixtures import randomize_bn

        randomize_bn(model, torch.Generator().manual_seed(1))
    return model


def export_onnx(model, path: Path, resolution: int = 224) -> None:
    """TorchScript exporter, opset 17, dynamic batch: how most users export a torchvision model."""
    import torch

    torch.onnx.export(model, (torch.randn(1, 3, resolution, resolution),), str(path), input_names=["input"],
                      output_names=["output"], opset_version=17, dynamic_axes={"input": {0: "N"}, "output": {0: "N"}},
                      dynamo=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=DEFAULT)
    ap.add_argument("--rtol", type=float, default=1e-3)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    try:
        import torchvision  # noqa: F401
    except ImportError as exc:
        print(f"error: needs torch and torchvision ({exc})", file=sys.stderr)
        return 1
    import onnx

    import onnxprune
    from onnxprune.api import resolve_input_shapes
    from onnxprune.config import PruneConfig
    from tests.helpers.oracle import check_oracle

    failed = 0
    print("| model | groups | prunable (lossy only) | FLOPs kept at --ratio 0.5 | oracle (random channels of exact "
          "groups, seed 0) | blocked: why |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="onnxprune-tv-") as tmp:
        for name in args.models.split(","):
            path = Path(tmp) / f"{name}.onnx"
            try:
                export_onnx(torchvision_model(name, realistic_bn=True), path, 299 if name == "inception_v3" else 224)
            except Exception as exc:  # noqa: BLE001 - an architecture the exporter cannot write is reported
                print(f"| {name} | - | - | - | - | does not export: {' '.join(str(exc).split())[:100]} |", flush=True)
                continue
            analysis = onnxprune.analyze(str(path))
            why: dict[str, int] = {}
            for g in analysis.groups:
                if not g.prunable:
                    r = g.reasons[0].split(": ", 1)[-1] if g.reasons else "?"
                    r = re.sub(r"'[^']*'", "'...'", r)  # node and tensor names out, so equal causes count together
                    why[r] = why.get(r, 0) + 1
            result = onnxprune.prune(str(path), ratio=0.5, validate=False)
            kept = result.report.flops_after / result.report.flops_before
            try:
                model = onnx.load(str(path))
                # at the input shapes prune() resolves, as the groups above are (attention heads need them)
                info = check_oracle(model, seed=0, rtol=args.rtol, shapes=resolve_input_shapes(model, PruneConfig()))
                oracle = f"holds ({info['removed']} channels removed)"
            except AssertionError as exc:
                failed += 1
                oracle = "FAILED: " + " ".join(str(exc).split())[:120]
            blocked = "; ".join(f"{n}x {r}" for r, n in sorted(why.items(), key=lambda kv: -kv[1]))
            lossy = sum(1 for g in analysis.prunable_groups() if g.inexact)
            print(f"| {name} | {len(analysis.groups)} | {len(analysis.prunable_groups())} ({lossy}) | {kept:.1%} | {oracle} | "
                  f"{blocked} |", flush=True)
            path.unlink()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
