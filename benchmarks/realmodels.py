"""The plain command on real third-party exports, and FLOPs checked against an independent count.

For every model of the real-model corpus (/work/shared/realmodels: 20 trained exports from Paddle,
PyTorch, tf2onnx and keras2onnx, fetched by its fetch.sh into ~/.cache/onnxprune-realmodels/models):

1. `onnxprune IN OUT --json R` exactly as a user types it (no --shape): did it succeed, which input
   shapes did it use and where from, the FLOPs it reports, groups prunable / blocked;
2. an independent FLOP count of the original at those input shapes: ONNX Runtime runs the model
   (graph optimizations off) with every intermediate tensor as an output, and a per-op formula
   written here (not onnxprune.cost) is applied to the shapes it really produced;
3. `onnxprune IN OUT --target-flops 0.5 --no-validate` at the same shapes, and the independent
   count of the written model: the kept share of the real FLOPs;
4. both models at batch 2 and another input size where the model leaves those dims dynamic
   (onnxprune.runtime.shape_check): the written model must run where the original runs, with
   outputs of the same shapes.

    python benchmarks/realmodels.py [--models DIR] [--only a,b] [--markdown]

FLOPs here and in onnxprune: 2 per multiply-add of Conv, ConvTranspose, Gemm, MatMul, two-operand
Einsum and LSTM/GRU/RNN; other ops are not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from math import prod
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DIR = Path(os.environ.get("ONNXPRUNE_REALMODELS", Path.home() / ".cache/onnxprune-realmodels/models"))
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


# -- the independent counter -------------------------------------------------------------------
def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def run_shapes(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    """Shape of every tensor of the main graph as ONNX Runtime computes it on `feeds`."""
    import onnxruntime as ort

    model = onnx.load(str(path))
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    have = {o.name for o in model.graph.output}
    for n in model.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    shapes[n.output[0]] = tuple(a.t.dims)
    wanted = [o for n in model.graph.node for o in n.output if o and o not in have and o not in shapes]
    model.graph.output.extend(onnx.ValueInfoProto(name=o) for o in wanted)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.onnx"
        onnx.save(model, str(probe), save_as_external_data=True, location="probe.data", size_threshold=1 << 20)
        sess = ort.InferenceSession(str(probe), opts, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        outs = sess.run(names, feeds)
    for name, value in zip(names, outs):
        if isinstance(value, np.ndarray):
            shapes[name] = value.shape
    for name, value in feeds.items():
        shapes[name] = value.shape
    return shapes


def independent_flops(path: Path, feeds: dict[str, np.ndarray]) -> int:
    model = onnx.load(str(path), load_external_data=False)
    s = run_shapes(path, feeds)
    total = 0
    for n in model.graph.node:
        op = n.op_type
        if n.domain not in ("", "ai.onnx"):
            continue
        shp = [s.get(i) if i else None for i in n.input]
        out = s.get(n.output[0]) if n.output else None
        if op == "Conv" and out is not None and shp[1] is not None:
            # each output value: Cin/group * kernel multiply-adds
            total += 2 * prod(out) * prod(shp[1][1:])
        elif op == "ConvTranspose" and shp[0] is not None and shp[1] is not None:
            # each input value is scattered to Cout/group * kernel outputs
            total += 2 * prod(shp[0]) * prod(shp[1][1:])
        elif op == "Gemm" and shp[0] is not None and out is not None:
            k = shp[0][0] if _attr(n, "transA", 0) else shp[0][1]
            total += 2 * out[0] * out[1] * k
        elif op == "MatMul" and shp[0] is not None and out is not None:
            total += 2 * prod(out) * shp[0][-1]
        elif op in GATES and shp[0] is not None and shp[1] is not None and shp[2] is not None:
            x = shp[0]
            seq, batch = (x[1], x[0]) if _attr(n, "layout", 0) else (x[0], x[1])
            dirs, gated, inputs = shp[1]
            total += 2 * seq * batch * dirs * gated * (inputs + shp[2][2])
        elif op == "Einsum" and len(n.input) == 2 and None not in shp:
            eq = _attr(n, "equation")
            eq = eq.decode() if isinstance(eq, bytes) else eq
            letters = eq.replace(" ", "").split("->")[0].split(",")
            sizes = {}
            for lt, sh in zip(letters, shp):
                sizes.update({c: max(sizes.get(c, 1), d) for c, d in zip(lt, sh)})
            total += 2 * prod(sizes.values())
    return int(total)


def feeds_for(shapes_text: str, path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Random feeds of the shapes onnxprune reported ("x:1x3x640x640, y:...")."""
    model = onnx.load(str(path), load_external_data=False)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in model.graph.input}
    rng = np.random.default_rng(seed)
    feeds = {}
    for item in shapes_text.split(", "):
        name, _, dims = item.rpartition(":")
        dims = () if dims == "[]" else tuple(int(d) for d in dims.split("x"))
        dtype = onnx.helper.tensor_dtype_to_np_dtype(types[name])
        if np.issubdtype(dtype, np.floating):
            feeds[name] = rng.standard_normal(dims).astype(dtype)
        else:
            feeds[name] = rng.integers(0, 2, dims).astype(dtype)
    return feeds


# -- the runs ----------------------------------------------------------------------------------
def onnxprune(*args, timeout=900) -> tuple[int, str, float]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    start = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, "-m", "onnxprune", *map(str, args)], capture_output=True, text=True,
                           env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, "timed out", time.perf_counter() - start
    return p.returncode, (p.stderr.strip().splitlines() or [""])[-1], time.perf_counter() - start


def measure(path: Path, work: Path) -> dict:
    row = {"model": path.stem}
    report = work / f"{path.stem}.json"
    code, err, secs = onnxprune(path, work / f"{path.stem}.exact.onnx", "--json", report)
    row.update(plain_exit=code, plain_seconds=round(secs, 1), plain_error=err if code else "")
    if code not in (0,) or not report.exists():
        return row
    r = json.loads(report.read_text())
    shapes = r["input_shapes"]
    row.update(shapes=shapes["shapes"], source=shapes["source"], flops=r["flops"]["before"],
               groups=len(r["groups"]), prunable=sum(g["prunable"] for g in r["groups"]),
               prunable_share=r.get("prunable_flops_share"))
    feeds = feeds_for(shapes["shapes"], path)
    row["independent"] = independent_flops(path, feeds)
    row["flops_error"] = row["flops"] / row["independent"] - 1 if row["independent"] else None
    half = work / f"{path.stem}.half.onnx"
    shape_args = [a for item in shapes["shapes"].split(", ") for a in ("--shape", item)]
    code, err, secs = onnxprune(path, half, "--target-flops", "0.5", "--no-validate", *shape_args)
    row.update(half_exit=code, half_error=err if code else "", half_seconds=round(secs, 1))
    if code == 0:
        row["half_kept"] = independent_flops(half, feeds) / row["independent"]
        row["other_shapes"] = other_shapes(path, half, shapes["shapes"])
    return row


def other_shapes(original: Path, pruned: Path, shapes_text: str) -> list[dict]:
    """Both models at batch 2 and another input size where the model leaves them dynamic
    (onnxprune.runtime.shape_check): the written model must run wherever the original runs."""
    import onnx

    from onnxprune.api import resolve_input_shapes
    from onnxprune.config import PruneConfig
    from onnxprune.runtime.shape_check import check_other_shapes

    shapes = resolve_input_shapes(onnx.load(str(original), load_external_data=False),
                                  PruneConfig(shapes=shapes_text.replace(", ", " ")))
    return [r.to_dict() for r in check_other_shapes(original, pruned, shapes)]


def _pct(x, signed=False):
    return "-" if x is None else (f"{100 * x:+.2f}%" if signed else f"{100 * x:.1f}%")


def _runs(runs: list[dict] | None) -> str:
    if runs is None:
        return "-"
    if not runs:
        return "static"
    status = {True: "ok", False: "FAILED", None: "original fails"}
    return " / ".join(f"{r['what']}: {status[r['passed']]}" for r in runs)


def markdown(rows: list[dict]) -> str:
    head = ("| model | plain command | input shapes used (source) | FLOPs onnxprune | independent | diff "
            "| prunable groups | --target-flops 0.5 keeps | batch 2 / other size |\n|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        plain = "ok" if r["plain_exit"] == 0 else f"exit {r['plain_exit']}: {r['plain_error'][:90]}"
        if "flops" not in r:
            lines.append(f"| {r['model']} | {plain} | | | | | | | |")
            continue
        half = _pct(r.get("half_kept")) if r.get("half_exit") == 0 else f"exit {r.get('half_exit')}: {r.get('half_error', '')[:90]}"
        lines.append(f"| {r['model']} | {plain} ({r['plain_seconds']} s) | {r['shapes']} ({r['source']}) "
                     f"| {r['flops'] / 1e6:,.1f}M | {r['independent'] / 1e6:,.1f}M | {_pct(r['flops_error'], True)} "
                     f"| {r['prunable']}/{r['groups']} | {half} | {_runs(r.get('other_shapes'))} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--only", help="comma-separated model names")
    ap.add_argument("--json", type=Path, help="write the rows here")
    args = ap.parse_args()
    manifest = json.loads((args.models / "manifest.json").read_text())
    entries = manifest if isinstance(manifest, list) else manifest["models"]
    only = set(args.only.split(",")) if args.only else None
    rows = []
    with tempfile.TemporaryDirectory(prefix="onnxprune-realmodels-") as tmp:
        for e in entries:
            if only and e["name"] not in only:
                continue
            row = measure(args.models / e["file"], Path(tmp))
            row["model"] = e["name"]
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print(markdown(rows))
    ok = [r for r in rows if r["plain_exit"] == 0]
    close = [r for r in ok if r.get("flops_error") is not None and abs(r["flops_error"]) <= 0.02]
    halves = [r for r in ok if r.get("half_exit") == 0]
    landed = [r for r in halves if abs(r["half_kept"] - 0.5) <= 0.03]
    runs = [run for r in halves for run in r.get("other_shapes", [])]
    print(f"\nplain command succeeded on {len(ok)}/{len(rows)}; FLOPs within 2% of the independent count on "
          f"{len(close)}/{len(ok)}; --target-flops 0.5 ran on {len(halves)}/{len(ok)} and landed within 3 points "
          f"of 50% on {len(landed)}/{len(halves)}; at other batch / size the pruned model ran where the original "
          f"did in {sum(run['passed'] is True for run in runs)}/{sum(run['passed'] is not None for run in runs)} runs "
          f"({sum(1 for r in halves if r.get('other_shapes'))} models with dynamic dims)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
