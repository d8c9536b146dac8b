"""The lsq ridge's descent against the whole grid: one recon pipeline (70% of the FLOPs) each way on a
model and its calibration data, the number of least-squares solves, the wall time, and whether the
written models are byte-identical.

    python benchmarks/ridge_descent.py MODEL.onnx CALIB.npz
"""
import sys, time, json
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
import onnx, onnxprune
import onnxprune.repair.reconstruct as rc
from onnxprune.repair.reconstruct import RIDGES

def full(error):
    return {("lsq", r): error(r) for r in RIDGES}

descent = rc._ridge_descent
model, calib = sys.argv[1], sys.argv[2]
res = {}
for name, fn in (("grid", full), ("descent", descent)):
    rc._ridge_descent = fn
    calls = [0]
    orig = rc._lsq
    def counted(*a, **k):
        calls[0] += 1
        return orig(*a, **k)
    rc._lsq = counted
    t = time.perf_counter()
    r = onnxprune.prune(onnx.load(model), target_flops=0.7, calib=calib, criterion="recon")
    dt = time.perf_counter() - t
    rc._lsq = orig
    rep = [p for p in r.report.passes if p.name.startswith("repair")]
    per = rep[0].result.details.get("per_layer") if rep else None
    res[name] = (dt, calls[0], per, r.model.SerializeToString())
    print(name, f"{dt:.1f}s", "lsq solves", calls[0], flush=True)
same = [(a["layer"], a["repair"], a["ridge"], b["repair"], b["ridge"]) for a, b in zip(res["grid"][2], res["descent"][2]) if (a["repair"], a["ridge"]) != (b["repair"], b["ridge"])]
print("differing layers:", same, "identical model:", res["grid"][3] == res["descent"][3], "layers", len(res["grid"][2]))
