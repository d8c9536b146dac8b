"""The exactness oracle as a test helper: prune random channels of every prunable group and check
that the pruned model computes what the original computes with those channels' consumers zeroed,
and that every pruned parameter holds exactly the original's entries of the channels that stay
(found from the channel of each position, not through the rewrite's own kept_positions).

QDQ models are checked twice: as they are, where an output made by DequantizeLinear may differ by
one quantization step on a minority of its values (a value on a rounding boundary flips when the
pruned conv sums in another order; onnxprune/runtime/quantstep.py), and with every activation
QuantizeLinear -> DequantizeLinear pair taken out (weights still read through DequantizeLinear),
where no rounding hides anything and the float tolerance holds strictly."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx

from onnxprune.analysis import analyze
from onnxprune.analysis.oracle import lossy_reference, zeroed_reference
from onnxprune.cost import count_params
from onnxprune.graph import ModelGraph
from onnxprune.passes.prune_channels import drop_channels
from onnxprune.passes.select import restore_nonempty
from onnxprune.passes.untie import retie_shared, untie_shared
from onnxprune.runtime.quantstep import MAX_STEP_SHARE, output_quant_steps
from tests.helpers.ort import run  # noqa: F401 (re-exported: tests import it from here)


def feeds(model: onnx.ModelProto, batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    inits = {t.name for t in model.graph.initializer}
    out = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else batch for d in tt.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        out[vi.name] = rng.standard_normal(shape).astype(dtype)
    return out




def random_removal(analysis, rng, fraction=None, lossy: bool = False) -> set[int]:
    removed = set()
    # lossy-only groups (LayerNorm over channels) change outputs: only the lossy oracle takes them
    for g in (analysis.prunable_groups() if lossy else analysis.exact_groups()):
        f = fraction if fraction is not None else rng.uniform(0.1, 0.9)
        k = min(len(g.channels) - 1, max(1, int(round(len(g.channels) * f))))
        removed |= {int(c) for c in rng.choice(g.channels, size=k, replace=False)}
    return restore_nonempty(analysis, removed)


def copy(model: onnx.ModelProto) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    return m


def check_kept_slices(analysis, pruned_graph, removed: set[int]) -> None:
    """Each member parameter of the pruned model equals the original with, on every channel axis,
    exactly the positions whose channel was removed taken out (so the neighbour of a chosen
    channel going instead of it fails here even where zeroing and slicing agree)."""
    gone = np.array(sorted(removed), dtype=np.int64)
    axes: dict[str, dict[int, tuple]] = {}
    for m in analysis.members:
        channels = analysis.channel_of(m.atoms)
        axes.setdefault(m.param, {})[m.axis] = (m, np.nonzero(~np.isin(channels, gone))[0])
    for name, kept in axes.items():
        want = analysis.graph.const_value(name)
        for axis, (m, index) in sorted(kept.items(), key=lambda kv: kv[0]):
            # A grouped conv's input axis: each row block keeps its own group's positions.
            want = np.take(want, index, axis=axis) if m.groups == 1 else m.take(want, index)
        got = pruned_graph.const_value(name)
        assert got is not None, f"parameter {name} is gone from the pruned model"
        assert got.shape == want.shape, f"{name}: shape {got.shape}, the kept channels give {want.shape}"
        assert np.array_equal(got, want, equal_nan=True), f"{name}: not the original's entries of the kept channels"


def check_oracle(model: onnx.ModelProto, seed: int = 0, fraction=None, atol=1e-4, rtol=1e-3, choose=None,
                 inputs: dict | None = None, shapes=None, lossy: bool = False) -> dict:
    """Prune random channels (or those `choose(analysis)` picks); assert validity and exactness.
    `lossy`: lossy-only groups too (the residual stream of a transformer), against the reference
    whose statistics over the channels are taken over the kept ones (analysis/oracle.lossy_reference).
    Returns figures for the caller."""
    rng = np.random.default_rng(seed)
    model = copy(model)
    ties = untie_shared(model)  # as prune() does: each reader of a shared tensor follows its own channels
    graph = (lambda m: ModelGraph(m, shapes=shapes.per_sample())) if shapes is not None else (lambda m: m)
    analysis = analyze(graph(copy(model)))
    removed = choose(analysis) if choose else random_removal(analysis, rng, fraction, lossy)
    reference = (lossy_reference if lossy else zeroed_reference)(model, analysis, removed)
    pruned = copy(model)
    pruned_analysis = analyze(graph(pruned))
    drop_channels(pruned_analysis, removed)
    check_kept_slices(analysis, pruned_analysis.graph, removed)
    retie_shared(pruned, ties)
    onnx.checker.check_model(pruned, full_check=True)
    assert pruned.ir_version == model.ir_version
    assert [(o.domain, o.version) for o in pruned.opset_import] == [(o.domain, o.version) for o in model.opset_import]
    # An IR 3 model's folded constants become Constant nodes (it has no undeclared initializers).
    folded = {"Constant"} if model.ir_version < 4 else set()
    assert (Counter(n.op_type for n in pruned.graph.node if n.op_type not in folded) ==
            Counter(n.op_type for n in model.graph.node if n.op_type not in folded)), "the rewrite must not add or remove ops"
    inputs = inputs or feeds(model, seed=seed)
    assert_outputs_match(model, run(reference, inputs), run(pruned, inputs), atol, rtol)
    if has_activation_qdq(model):
        assert_outputs_match(without_activation_qdq(model), run(without_activation_qdq(reference), inputs),
                             run(without_activation_qdq(pruned), inputs), atol, rtol)
    if removed:
        assert count_params(pruned) < count_params(model)
    return {"removed": len(removed), "groups": len(analysis.groups),
            "prunable": len(analysis.prunable_groups()), "analysis": analysis}


def assert_outputs_match(model: onnx.ModelProto, want: list, got: list, atol: float, rtol: float) -> None:
    """Each output within atol + rtol*|want|; an output a per-tensor DequantizeLinear makes may also
    have values exactly one quantization step apart, on at most MAX_STEP_SHARE of them."""
    steps = output_quant_steps(model)
    for w, g, o in zip(want, got, model.graph.output):
        assert w.shape == g.shape, f"output {o.name}: shape {g.shape} != {w.shape}"
        step = steps.get(o.name)
        if step is None:
            np.testing.assert_allclose(g, w, atol=atol, rtol=rtol, err_msg=f"output {o.name}")
            continue
        diff = np.abs(g.astype(np.float64) - w.astype(np.float64))
        off = diff > atol + rtol * np.abs(w)
        steps_apart = diff[off] / step
        assert np.all(np.abs(steps_apart - 1) < 1e-3), \
            f"output {o.name}: values {steps_apart.max():.3g} quantization steps apart (step {step:g})"
        assert off.sum() <= MAX_STEP_SHARE * off.size, \
            f"output {o.name}: {off.sum()} of {off.size} values one quantization step apart"


def has_activation_qdq(model: onnx.ModelProto) -> bool:
    return any(n.op_type == "QuantizeLinear" for n in model.graph.node)


def without_activation_qdq(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with each QuantizeLinear whose readers are all DequantizeLinear taken out together with
    them (DequantizeLinear(QuantizeLinear(x)) becomes Identity(x)): the float computation around the
    quantized weights, where rounding no longer amplifies a last-bit difference."""
    out = copy(model)
    g = out.graph
    readers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}
    drop = set()
    for q in g.node:
        if q.op_type != "QuantizeLinear" or q.output[0] in outputs:
            continue
        dqs = readers.get(q.output[0], [])
        if not dqs or any(d.op_type != "DequantizeLinear" or d.input[0] != q.output[0] for d in dqs):
            continue
        drop.add(id(q))
        for d in dqs:
            x = q.input[0]
            d.op_type, d.domain = "Identity", ""
            del d.input[:]
            d.input.append(x)
            del d.attribute[:]
    kept = [n for n in g.node if id(n) not in drop]
    del g.node[:]
    g.node.extend(kept)
    return out
