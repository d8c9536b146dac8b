"""Write docs/FIXTURES.md: every test fixture, what exported it, what the analysis finds in it.

For each model in tests/fixtures/, tests/fixtures/exporters/ and models/digits_cnn.onnx:
``onnxprune.analyze`` (groups, prunable, blocked and the first reason of each blocked group, node
names left out so equal causes count together) and ``onnxprune.prune(model, ratio=0.5)`` (FLOPs
before / after, from the report).

    python tools/fixture_table.py           # rewrite docs/FIXTURES.md
    python tools/fixture_table.py --check   # exit 1 if the analysis columns of docs/FIXTURES.md are stale
    python tools/fixture_table.py --stdout  # print instead of writing
    python tools/fixture_table.py --no-speed  # rewrite without the timing column (on a loaded machine)
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from collections import Counter
from pathlib import Path

import onnx

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import onnxprune  # noqa: E402
from onnxprune.report import human  # noqa: E402

DOC = REPO / "docs" / "FIXTURES.md"

TORCH = {
    "torch_resnet_tiny": "ResNet (BasicBlock, 1x1 downsample), BN folded",
    "torch_resnet_tiny_bn": "ResNet, BN kept",
    "torch_mobilenet_tiny": "MobileNetV2 (depthwise, ReLU6 as Clip)",
    "torch_densenet_tiny": "DenseNet (concat blocks, pre-activation BN)",
    "torch_densenet_tiny_fresh": "DenseNet, fresh init: BN tensors stored once, read by many nodes",
    "torch_yolo_tiny": "YOLOv8-style (C2f chunk as Slice, SPPF, Upsample, Detect)",
    "torch_unet_tiny": "UNet (ConvTranspose, skip concats)",
    "torch_mlp_tiny": "MLP (Flatten + 3 Gemm)",
    "torch_aspp_tiny": "DeepLabV3-style ASPP (Resize sizes read from Shape at run time), H and W dynamic",
    "torch_mobilevit_tiny_dynamo": "MobileViT block (patches in the batch axis, heads merged into it)",
    "torch_shufflenet_tiny": "ShuffleNetV2 (chunk as Slice, channel shuffle by Reshape-Transpose-Reshape)",
    "torch_shufflenet_tiny_dynhw": "ShuffleNetV2, H and W dynamic (the shuffle reads C // 2 at run time)",
    "torch_vit_tiny": "ViT (nn.MultiheadAttention: packed in-projection, heads merged into the batch axis)",
    "torch_vit_packed_tiny": "ViT with timm's / Swin's attention (qkv as [B, N, 3, heads, hd], per-head logit bias)",
    "torch_resnet_tiny_dynamo": "ResNet, BN folded by onnxscript",
    "torch_mobilenet_tiny_dynamo": "MobileNetV2 (ReduceMean + Reshape head)",
    "torch_groupnorm_tiny": "GroupNorm of 4, 1 and 1-channel groups (Reshape -> InstanceNormalization -> Reshape), H and W dynamic",
    "torch_groupnorm_tiny_dynamo": "GroupNorm as GroupNormalization (opset 21, scale and bias per channel)",
}

TRANSFORMERS = {  # tools/export_transformer_fixtures.py
    "hf_bert_tiny": "BertForSequenceClassification, random weights (2 layers, hidden 64, 4 heads)",
    "hf_gpt2_tiny": "GPT2LMHeadModel, random weights (2 layers, hidden 64, 4 heads)",
}


def fixtures() -> list[tuple[Path, str]]:
    """(path, exporter) of every fixture, in table order."""
    from tools.make_fixtures import FIXTURES

    out = [(REPO / "models" / "digits_cnn.onnx", "PyTorch TorchScript exporter (trained, tools/train_digits.py)")]
    for p in sorted((REPO / "tests" / "fixtures").glob("*.onnx")):
        kind = "dynamo" if p.stem.endswith("_dynamo") else "TorchScript"
        out.append((p, f"PyTorch {kind} exporter: {TORCH.get(p.stem, p.stem)}"))
    for name, (_, how, _) in FIXTURES.items():
        p = REPO / "tests" / "fixtures" / "exporters" / f"{name}.onnx"
        if p.exists():
            out.append((p, how))
    for p in sorted((REPO / "tests" / "fixtures" / "transformers").glob("*.onnx")):
        out.append((p, f"PyTorch TorchScript exporter: Hugging Face {TRANSFORMERS.get(p.stem, p.stem)}"))
    return out


def _kind(reason: str) -> str:
    head, sep, tail = reason.partition(": ")
    return tail if sep else reason


def row(path: Path, exporter: str) -> str:
    model = onnx.load(str(path))
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    analysis = onnxprune.analyze(path)
    groups = analysis.groups
    prunable = [g for g in groups if g.prunable]
    blocked = [g for g in groups if not g.prunable]
    why = Counter(_kind(g.reasons[0]) for g in blocked)
    why_text = "; ".join(f"{n}x {r}" for r, n in why.most_common()) or "-"
    result = onnxprune.prune(onnx.load(str(path)), ratio=0.5, validate=False)
    report = result.report
    before, after = report.flops_before, report.flops_after
    share = f"{(before - after) / before * 100:.0f}%" if before else "-"
    rel = path.relative_to(REPO)
    speed = speedups(model, result.model) if SPEED else "not measured"
    return (f"| `{rel}` | {exporter} | {opset} / {model.ir_version} | {len(groups)} | "
            f"{len(prunable)} ({sum(g.size for g in prunable)} ch) | {len(blocked)} | {why_text.replace('|', '/')} | "
            f"{human(before)} -> {human(after)} (-{share}) | {speed} |")


SPEED = True


def speedups(original: onnx.ModelProto, pruned: onnx.ModelProto) -> str:
    """ONNX Runtime CPU speedup of the --ratio 0.5 model at batch 1 and 8 (interleaved runs,
    one thread, medians of 50 runs)."""
    from onnxprune.runtime import benchmark

    dims = original.graph.input[0].type.tensor_type.shape.dim
    shapes = None
    if any(d.dim_param for d in list(dims)[1:]):
        shapes = {original.graph.input[0].name: tuple([1] + [d.dim_value or 32 for d in list(dims)[1:]])}
    result = benchmark([original, pruned], batch_sizes=(1, 8), threads=1, warmup=5, runs=50, shapes=shapes,
                       names=["original", "pruned"])
    return " / ".join(f"{result.get('pruned', b).speedup:.2f}x" for b in (1, 8))


def _commit() -> str:
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip() or "unknown"


def render() -> str:
    import numpy
    import onnxruntime

    lines = [
        "# Test fixtures",
        "",
        "Every model the tests prune, what exported it, and what `onnxprune.analyze` finds in it.",
        "Generated by `python tools/fixture_table.py` (refresh after changing the analysis; `--check` tells",
        "whether this file is current). The models themselves are made by `tools/export_torch_fixtures.py`",
        "(`tests/fixtures/torch_*`), `tools/train_digits.py` (`models/digits_cnn.onnx`) and",
        "`tools/make_fixtures.py` (`tests/fixtures/exporters/`, see its docstring and",
        "`tests/fixtures/README.md`); the tests are `tests/analysis/test_oracle_real.py`, `tests/passes/test_exact_mode.py`",
        "and `tests/robustness/`.",
        "",
        "Columns: groups = channel groups found; prunable = groups a lossy run may shrink (their channel",
        "count); blocked = the other groups, with the first reason of each (node names left out, equal",
        "causes counted together); FLOPs = per sample (dynamic dims count as 1, so `dynamic_hw_cnn` counts",
        "a 1x1 image) before -> after `onnxprune.prune(model, ratio=0.5)` (l1 criterion, default rounding);",
        "ORT speedup = latency of the original over the pruned model, ONNX Runtime CPU, one thread,",
        "interleaved runs, median of 50, at batch 1 and 8 (32x32 images where H, W are dynamic). These",
        "models are tiny: their latencies are tens of microseconds, dominated by per-op overhead, so the",
        "speedups say little about full-size models (docs/BENCHMARKS.md has those).",
        "",
        "| fixture | exporter | opset / IR | groups | prunable | blocked | blocked: why | FLOPs at --ratio 0.5 | ORT speedup b1 / b8 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [row(p, how) for p, how in fixtures()]
    lines += [
        "",
        "Notes on what the table shows:",
        "",
        "- `reaches graph output`: the last layer's channels are the model's outputs; never prunable.",
        "- `tf_keras_cnn*`: the Keras `Flatten` after the last conv is `Shape -> Gather/Slice -> Concat ->",
        "  Reshape` on the NHWC tensor; the analysis follows it (the batch entry stays dynamic, the constant",
        "  C*H*W piece is rewritten). The transposes tf2onnx leaves when its optimizer is off (`_noopt`) give",
        "  the same groups.",
        "- `subgraph_if` / `subgraph_loop`: channels read inside a branch or loop body are blocked. After a",
        "  `Loop` (or a custom op) ONNX shape inference gives no shape, so the conv after it is blocked too",
        "  (`shape ... is not known statically`) although its channel count is known from its weight.",
        "- `qdq_cnn`: the conv weights are int8 initializers behind DequantizeLinear (per-channel scales);",
        "  they are read through it and pruned with their scales and zero points, and the graph stays QDQ",
        "  (tests/analysis/test_qdq.py). Its speedup is that of a QDQ model run by ORT's quantized kernels.",
        "- `qdq_bn_cnn` / `qdq_bn_cnn_pt`: quantized with BatchNormalization not folded, as `quantize_static`",
        "  writes a model whose BN nobody folded: BN scale (int8) and bias (int32, scale [1], zero point [])",
        "  behind DequantizeLinear are read through it like the conv weights, and the residual pair's tied",
        "  bias (`Identity` of a DequantizeLinear output) is that parameter under another name",
        "  (tests/analysis/test_qdq_bn.py).",
        "",
        f"Versions: onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}, numpy {numpy.__version__}, "
        f"onnxprune {onnxprune.__version__}.",
        "",
        f"Figures: `python tools/fixture_table.py` at onnxprune {_commit()}, machine: {platform.machine()}, "
        f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}. The analysis and FLOPs columns are "
        "seeded (`--check` compares them exactly); the ORT speedup column is timing: it varies by CPU and load "
        "and is not expected to reproduce" + ("." if SPEED else "; this run left it out (`--no-speed`)."),
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/FIXTURES.md differs")
    ap.add_argument("--stdout", action="store_true", help="print the table instead of writing it")
    ap.add_argument("--no-speed", action="store_true", help="leave the ORT speedup column out (a loaded machine)")
    args = ap.parse_args(argv)
    global SPEED
    SPEED = not (args.check or args.no_speed)  # timings differ run to run; --check compares the rest
    text = render()
    if args.stdout:
        print(text)
        return 0
    if args.check:
        current = DOC.read_text() if DOC.exists() else ""
        strip = lambda t: [line.rsplit("|", 2)[0] if line.startswith("| `") else line for line in t.splitlines()
                           if not line.startswith("Figures:")]
        old, new = strip(current), strip(text)
        if old != new:
            import difflib

            changed = [d for d in difflib.unified_diff(old, new, "docs (was)", "now", n=0, lineterm="")]
            print(f"{DOC.relative_to(REPO)} is out of date: run python tools/fixture_table.py; figures that changed:\n"
                  + "\n".join(changed), file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    print(f"wrote {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
