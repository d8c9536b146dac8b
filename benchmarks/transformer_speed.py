"""ViT-B/16 and BERT-base at --ratio 0.5 / --target-flops 0.5: FLOPs removed and ORT CPU speed.

ViT-B/16 is torchvision's VisionTransformer (vit_b_16: patch 16 on 224 x 224, 12 blocks of
nn.MultiheadAttention with 12 heads of 64, MLP 3072, class token, 1000 classes) written here in
plain torch with torchvision's module names, because torchvision from the registry does not import
beside torch+cpu on this machine; seeded random weights, the head random too (torchvision
zero-initialises it: every output would match). BERT-base is a Hugging Face
BertForSequenceClassification export (hidden 768, 12 layers, random weights) made by
tools/export_transformer_fixtures.py --bert-base in its side environment; give its path.

    python benchmarks/transformer_speed.py --vit [--bert PATH] [--runs 5] [--threads 1]

Exports go to ~/.cache/onnxprune-bench/. Every variant of one model is timed interleaved in one run
(benchmarks/_ortbench.py: intra-op spinning off), batch 8 (ViT) or batch 8 at sequence 128 (BERT).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._ortbench import bench, git_state, log, prune_copy  # noqa: E402
from onnxprune.runtime import BenchResult  # noqa: E402

CACHE = Path.home() / ".cache" / "onnxprune-bench"


def vit_b_16_onnx() -> Path:
    path = CACHE / "vit_b_16_replica.onnx"
    if path.exists():
        return path
    import torch
    from torch import nn

    sys.path.insert(0, str(ROOT / "tools"))
    from export_torch_fixtures import ViTBlock as EncoderBlock  # torchvision's block, shared with the fixtures

    class ViT(nn.Module):
        def __init__(self, dim=768, heads=12, mlp=3072, layers=12, patch=16, size=224, classes=1000):
            super().__init__()
            self.conv_proj = nn.Conv2d(3, dim, patch, patch)
            self.class_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
            self.pos_embedding = nn.Parameter(torch.randn(1, (size // patch) ** 2 + 1, dim) * 0.02)
            self.layers = nn.Sequential(*[EncoderBlock(dim, heads, mlp) for _ in range(layers)])
            self.ln = nn.LayerNorm(dim, eps=1e-6)
            self.head = nn.Linear(dim, classes)

        def forward(self, x):
            n = x.shape[0]
            x = self.conv_proj(x).reshape(n, self.conv_proj.out_channels, -1).permute(0, 2, 1)
            x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1) + self.pos_embedding
            return self.head(self.ln(self.layers(x))[:, 0])

    torch.manual_seed(0)
    model = ViT().eval()
    CACHE.mkdir(parents=True, exist_ok=True)
    # Grad left on: nn.MultiheadAttention's fast path (_native_multi_head_attention, which the exporter
    # cannot write) is taken only without it, as torchvision's own export does.
    torch.onnx.export(model, torch.randn(1, 3, 224, 224), str(path), input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "N"}, "output": {0: "N"}}, opset_version=17, dynamo=False)
    return path


def run(name: str, path: Path, batch: int, runs: int, threads: int, shapes=None) -> dict:
    model = onnx.load(str(path))
    variants, labels, figures = [model], ["original"], {}
    for label, options in (("--ratio 0.5", dict(ratio=0.5)), ("--target-flops 0.5", dict(target_flops=0.5))):
        t0 = time.perf_counter()
        result = prune_copy(model, shapes=shapes or (), **options)
        r = result.report
        figures[label] = {"flops_removed": 1 - r.flops_after / r.flops_before, "params_removed":
                          1 - r.params_after / r.params_before, "prune_s": time.perf_counter() - t0}
        log(f"[{name}] {label}: {figures[label]['flops_removed']:.1%} of the FLOPs removed "
            f"({r.flops_before / 1e9:.2f} -> {r.flops_after / 1e9:.2f} GFLOPs per sample), "
            f"{figures[label]['params_removed']:.1%} of the parameters, pruned in {figures[label]['prune_s']:.0f} s")
        variants.append(result.model)
        labels.append(label)
    timing: BenchResult = bench(variants, labels, (batch,), threads=threads, warmup=1, runs=runs, feeds=_feeds(name))
    print(f"\n{name} (batch {batch}, ORT CPU, {threads} thread(s), {runs} interleaved runs, median):")
    for s in timing.stats:
        print(f"  {s.model:<20} {s.median_ms:9.1f} ms (p10 {s.p10_ms:.1f}, p90 {s.p90_ms:.1f})   {s.speedup:.2f}x" + (
            f"   {figures[s.model]['flops_removed']:.1%} of the FLOPs removed" if s.model in figures else ""), flush=True)
    return figures


def _feeds(name):
    if name != "BERT-base":
        return None

    def feed(sess, batch, seed):
        rng = np.random.default_rng(seed)
        seq = 128
        out = {"input_ids": rng.integers(0, 30522, (batch, seq)), "token_type_ids": np.zeros((batch, seq)),
               "attention_mask": np.ones((batch, seq))}
        return {a.name: out[a.name].astype(np.int64) for a in sess.get_inputs()}

    return feed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vit", action="store_true", help="ViT-B/16 (exported here on first use)")
    ap.add_argument("--bert", type=Path, help="a BERT-base BertForSequenceClassification export")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    print(f"onnxprune {git_state()}")
    if args.vit:
        run("ViT-B/16", vit_b_16_onnx(), 8, args.runs, args.threads)
    if args.bert:
        run("BERT-base", args.bert, 8, args.runs, args.threads,
            shapes=(("input_ids", (1, 128)), ("attention_mask", (1, 128)), ("token_type_ids", (1, 128))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
