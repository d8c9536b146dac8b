"""Scale: analysis time against graph size, and a model above the 2 GB protobuf limit.

    python benchmarks/graph_scale.py              # analysis time at 3 graph sizes
    python benchmarks/graph_scale.py --large DIR  # also build a > 2 GB model in DIR, prune and validate it

The graphs are chains of residual blocks (Conv-BN-Relu-Conv-BN + Add, a 1x1 projection every 4th
block), small channel counts so that only the graph size grows. The large model is an MLP of four
Gemm layers (4096 -> 16384 -> 16384 -> 16384 -> 1000, about 619M parameters, 2.5 GB) written with
external data; it is pruned with `--ratio 0.5` and validated with ONNX Runtime by the CLI.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def residual_chain(blocks: int, channels: int = 16, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def w(name, *shape):
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * 0.2).astype(np.float32), name))
        return name

    def bn(x, c, name):
        for p in ("g", "b", "m"):
            w(f"{name}.{p}", c)
        inits.append(numpy_helper.from_array(rng.uniform(0.5, 1.5, c).astype(np.float32), f"{name}.v"))
        nodes.append(helper.make_node("BatchNormalization", [x, f"{name}.g", f"{name}.b", f"{name}.m", f"{name}.v"],
                                      [name], name=name))
        return name

    def conv(x, cin, cout, name, k=3):
        nodes.append(helper.make_node("Conv", [x, w(name + ".w", cout, cin, k, k)], [name], name=name,
                                      pads=[k // 2] * 4))
        return name

    x = conv("input", 3, channels, "stem")
    for b in range(blocks):
        h = f"b{b}"
        a = helper.make_node("Relu", [bn(conv(x, channels, channels, h + ".c1"), channels, h + ".bn1")], [h + ".r1"])
        nodes.append(a)
        y = bn(conv(h + ".r1", channels, channels, h + ".c2"), channels, h + ".bn2")
        skip = conv(x, channels, channels, h + ".proj", k=1) if b % 4 == 3 else x
        nodes.append(helper.make_node("Add", [y, skip], [h + ".add"], name=h + ".add"))
        nodes.append(helper.make_node("Relu", [h + ".add"], [h + ".out"]))
        x = h + ".out"
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"]))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"]))
    nodes.append(helper.make_node("Gemm", ["flat", w("fc.w", 10, channels), w("fc.b", 10)], ["output"], transB=1))
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def analysis_scale(sizes, reps: int = 3) -> None:
    from onnxprune import analyze, prune

    print("blocks  nodes  groups  analyze s (median)  per node ms  prune --ratio 0.5 s (median)  per node ms")
    for blocks in sizes:
        model = residual_chain(blocks)
        n = len(model.graph.node)
        a_times, p_times = [], []
        for _ in range(reps):
            t0 = time.perf_counter()
            analysis = analyze(model)
            a_times.append(time.perf_counter() - t0)
            m = onnx.ModelProto()
            m.CopyFrom(model)
            t0 = time.perf_counter()
            prune(m, ratio=0.5, validate=False)
            p_times.append(time.perf_counter() - t0)
        a, p = float(np.median(a_times)), float(np.median(p_times))
        print(f"{blocks:6d}  {n:5d}  {len(analysis.groups):6d}  {a:18.3f}  {a / n * 1e3:11.3f}  {p:28.3f}  {p / n * 1e3:11.3f}")


def large_model(folder: Path) -> None:
    rng = np.random.default_rng(0)
    dims = [4096, 16384, 16384, 16384, 1000]
    nodes, inits = [], []
    x = "input"
    for i in range(4):
        w = (rng.standard_normal((dims[i], dims[i + 1]), dtype=np.float32) * (2.0 / dims[i]) ** 0.5)
        inits.append(numpy_helper.from_array(w, f"fc{i}.w"))
        inits.append(numpy_helper.from_array(np.zeros(dims[i + 1], np.float32), f"fc{i}.b"))
        out = f"fc{i}" if i < 3 else "output"
        nodes.append(helper.make_node("Gemm", [x, f"fc{i}.w", f"fc{i}.b"], [out], name=f"fc{i}"))
        if i < 3:
            nodes.append(helper.make_node("Relu", [out], [out + ".r"]))
            x = out + ".r"
    graph = helper.make_graph(nodes, "big_mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4096])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 1000])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "big_mlp.onnx"
    t0 = time.perf_counter()
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="big_mlp.onnx.data")
    del model, inits, graph
    size = path.stat().st_size + (folder / "big_mlp.onnx.data").stat().st_size
    print(f"large model: {size / 2**30:.2f} GiB written in {time.perf_counter() - t0:.1f} s")
    out = folder / "big_mlp_pruned.onnx"
    cmd = [sys.executable, "-c", "import resource, runpy, sys; sys.argv = ['onnxprune'] + sys.argv[1:]; "
           "import onnxprune.cli as c\ntry:\n    c.main()\nfinally:\n"
           "    print(f'peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB', file=sys.stderr)",
           str(path), str(out), "--ratio", "0.5", "--shape", "input:8x4096"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    print(f"onnxprune --ratio 0.5 (validated): exit {p.returncode} in {time.perf_counter() - t0:.1f} s")
    print(p.stdout[-3000:])
    print(p.stderr[-1000:])
    if out.exists():
        data = out.with_name(out.name + ".data")
        print(f"output: {out.stat().st_size} bytes + {data.stat().st_size if data.exists() else 0} bytes external data")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="25,75,250", help="residual blocks per graph (7 nodes per block)")
    ap.add_argument("--large", type=Path, help="folder for the > 2 GB model (about 5 GB of disk with the output)")
    args = ap.parse_args()
    analysis_scale([int(s) for s in args.sizes.split(",")])
    if args.large:
        large_model(args.large)


if __name__ == "__main__":
    main()
