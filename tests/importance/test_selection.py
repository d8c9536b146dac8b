"""Which channels a lossy run removes, checked independently of the pruner.

Every criterion's score is recomputed here from the model's weights with plain numpy, from the
definitions in the criteria's docstrings; which channels went is read from the pruned model's
weights by value (rows of the original found again), not from the analysis. Then:
- `--ratio`: each group loses exactly its lowest-scored channels. Ties: equal scores go in channel
  order (the earlier position first).
- `--target-flops`: the budget is met (FLOPs counted here), each group loses a lowest-scored
  prefix, and across groups the ranking holds: a kept channel scoring below a removed one of
  another group (scores divided by their group's mean) is kept only because swapping the two
  would break the budget; no removed channel could be given back within the budget.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from tests.helpers.oracle import run

HW, CIN = 8, 3
SIZES = {"res": 8, "b": 6, "d": 10}   # residual stage (convA + convC + Add), convB, convD
CLASSES = 5


def build(seed: int = 0, tie: tuple[int, int] | None = None) -> onnx.ModelProto:
    """x -> convA -> BN_A -> Relu = a; a -> convB -> BN_B -> Relu -> convC; Relu(a + convC) -> convD
    -> Relu -> GAP -> Flatten -> Gemm. Channel scales vary per position so scores are spread.
    `tie=(i, j)`: residual-stage channel j is channel i negated (equal magnitude scores, told apart
    by value)."""
    rng = np.random.default_rng(seed)
    r, b, d = SIZES["res"], SIZES["b"], SIZES["d"]

    def w(*shape, spread_axis=None):
        x = rng.standard_normal(shape).astype(np.float32) * 0.3
        if spread_axis is not None:
            s = rng.uniform(0.2, 2.0, shape[spread_axis]).astype(np.float32)
            x *= s.reshape([-1 if i == spread_axis else 1 for i in range(len(shape))])
        return x

    p = {
        "WA": w(r, CIN, 3, 3, spread_axis=0), "BA": w(r),
        "gA": rng.uniform(0.1, 2.0, r).astype(np.float32), "bA": w(r), "mA": w(r),
        "vA": rng.uniform(0.5, 1.5, r).astype(np.float32),
        "WB": w(b, r, 3, 3, spread_axis=0),
        "gB": rng.uniform(0.1, 2.0, b).astype(np.float32), "bB": w(b), "mB": w(b),
        "vB": rng.uniform(0.5, 1.5, b).astype(np.float32),
        "WC": w(r, b, 3, 3, spread_axis=0), "BC": w(r),
        "WD": w(d, r, 3, 3, spread_axis=0), "BD": w(d),
        "WF": w(CLASSES, d), "BF": w(CLASSES),
    }
    if tie is not None:
        i, j = tie
        for name, axis in (("WA", 0), ("BA", 0), ("gA", 0), ("bA", 0), ("mA", 0), ("vA", 0), ("WC", 0), ("BC", 0),
                           ("WB", 1), ("WD", 1)):
            idx = [slice(None)] * p[name].ndim
            src = list(idx)
            idx[axis], src[axis] = j, i
            p[name][tuple(idx)] = -p[name][tuple(src)] if name not in ("vA",) else p[name][tuple(src)]
    conv = dict(pads=[1, 1, 1, 1], kernel_shape=[3, 3])
    nodes = [
        helper.make_node("Conv", ["x", "WA", "BA"], ["ca"], name="convA", **conv),
        helper.make_node("BatchNormalization", ["ca", "gA", "bA", "mA", "vA"], ["na"], name="bnA"),
        helper.make_node("Relu", ["na"], ["a"], name="reluA"),
        helper.make_node("Conv", ["a", "WB"], ["cb"], name="convB", **conv),
        helper.make_node("BatchNormalization", ["cb", "gB", "bB", "mB", "vB"], ["nb"], name="bnB"),
        helper.make_node("Relu", ["nb"], ["rb"], name="reluB"),
        helper.make_node("Conv", ["rb", "WC", "BC"], ["cc"], name="convC", **conv),
        helper.make_node("Add", ["a", "cc"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["rs"], name="reluS"),
        helper.make_node("Conv", ["rs", "WD", "BD"], ["cd"], name="convD", **conv),
        helper.make_node("Relu", ["cd"], ["rd"], name="reluD"),
        helper.make_node("GlobalAveragePool", ["rd"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "WF", "BF"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(nodes, "selection", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", CIN, HW, HW])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", CLASSES])],
                              [numpy_helper.from_array(v, k) for k, v in p.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def weights(model) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


# -- the criteria, from their definitions ---------------------------------------------------------
# Each group's members: (parameter, channel axis, role). "out": filters and their bias, "in": a
# consumer's input columns, "bn": a BatchNormalization scale the channels pass through.
MEMBERS = {
    "res": [("WA", 0, "out"), ("BA", 0, "out"), ("WC", 0, "out"), ("BC", 0, "out"), ("WB", 1, "in"),
            ("WD", 1, "in"), ("gA", 0, "bn")],
    "b": [("WB", 0, "out"), ("WC", 1, "in"), ("gB", 0, "bn")],
    "d": [("WD", 0, "out"), ("BD", 0, "out"), ("WF", 1, "in")],
}
READERS = {"res": [("WB", "a"), ("WD", "rs")], "b": [("WC", "rb")], "d": [("WF", "f")]}  # (weight, tensor read)


def _per_channel(w: np.ndarray, axis: int) -> np.ndarray:
    w = np.moveaxis(w.astype(np.float64), axis, 0)
    return w.reshape(w.shape[0], -1)


def magnitude(model, p: int) -> dict[str, np.ndarray]:
    """Mean over the group's filters and consumer columns of each one's p-norm, every member
    divided by its mean over the channels."""
    W = weights(model)
    out = {}
    for g, members in MEMBERS.items():
        figures = []
        for name, axis, role in members:
            if role == "bn":
                continue
            m = _per_channel(W[name], axis)
            v = np.abs(m).sum(axis=1) if p == 1 else np.sqrt((m ** 2).sum(axis=1))
            figures.append(v / v.mean())
        out[g] = np.mean(figures, axis=0)
    return out


def bn_gamma(model) -> dict[str, np.ndarray]:
    """|gamma| of the BN the channels pass through; no BN: the L2 score."""
    W, l2 = weights(model), magnitude(model, 2)
    out = {}
    for g, members in MEMBERS.items():
        gammas = [np.abs(W[name].astype(np.float64)) for name, _, role in members if role == "bn"]
        out[g] = np.mean(gammas, axis=0) if gammas else l2[g]
    return out


def lamp(model) -> dict[str, np.ndarray]:
    """LAMP: squared L2 score over the sum of the group's squared scores that are not smaller."""
    out = {}
    for g, v in magnitude(model, 2).items():
        s = v ** 2
        out[g] = np.array([si / s[s >= si].sum() for si in s])
    return out


def activation(model, x: np.ndarray) -> dict[str, np.ndarray]:
    """E|x_c| * ||W[:, c]||_2 per consumer, each consumer divided by its mean; mean over consumers."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    tensors = sorted({t for rs in READERS.values() for _, t in rs})
    for t in tensors:
        probe.graph.output.append(helper.make_tensor_value_info(t, TensorProto.FLOAT, None))
    values = dict(zip(["y", *tensors], run(probe, {"x": x})))
    W = weights(model)
    out = {}
    for g, readers in READERS.items():
        figures = []
        for name, tensor in readers:
            act = np.abs(np.moveaxis(values[tensor].astype(np.float64), 1, 0)).reshape(values[tensor].shape[1], -1).mean(axis=1)
            col = np.sqrt((_per_channel(W[name], 1) ** 2).sum(axis=1))
            v = act * col
            figures.append(v / v.mean())
        out[g] = np.mean(figures, axis=0)
    return out


def scores(model, criterion: str, calib_x=None) -> dict[str, np.ndarray]:
    if criterion in ("l1", "l2"):
        return magnitude(model, int(criterion[1]))
    if criterion == "bn-gamma":
        return bn_gamma(model)
    if criterion == "lamp":
        return lamp(model)
    return activation(model, calib_x)


# -- what went, read from the pruned weights -------------------------------------------------------
SOURCE = {"res": ("BA", 0), "b": ("gB", 0), "d": ("BD", 0)}  # 1-D: they lose only their own group's entries


def kept_rows(original: np.ndarray, pruned: np.ndarray, axis: int) -> list[int]:
    """Positions of `original` along `axis` that `pruned` holds, found by value, in order."""
    o, p = _per_channel(original, axis), _per_channel(pruned, axis)
    kept = []
    for row in p:
        hits = [i for i in range(len(o)) if np.array_equal(o[i], row) and i not in kept]
        assert hits, "a pruned row is not a row of the original"
        kept.append(hits[0])
    assert kept == sorted(kept), "kept channels must stay in order"
    return kept


def removed_positions(model, pruned) -> dict[str, set[int]]:
    before, after = weights(model), weights(pruned)
    out = {}
    for g, (name, axis) in SOURCE.items():
        kept = kept_rows(before[name], after[name], axis)
        out[g] = set(range(SIZES[g])) - set(kept)
    return out


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    x = np.random.default_rng(5).standard_normal((32, CIN, HW, HW)).astype(np.float32)
    path = tmp_path_factory.mktemp("calib") / "calib.npz"
    np.savez(path, x=x)
    return path, x


def prune(model, criterion, calib, **target):
    path, _ = calib
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    extra = {"calib": str(path), "repair": "none"} if criterion == "activation" else {}  # repair would change the rows
    return onnxprune.prune(copy, criterion=criterion, round_to=1, validate=False, **extra, **target)


CRITERIA = ["l1", "l2", "bn-gamma", "lamp", "activation"]


def test_every_group_is_prunable():
    analysis = onnxprune.analyze(build())
    assert sorted(g.size for g in analysis.prunable_groups()) == sorted(SIZES.values())


@pytest.mark.parametrize("criterion", CRITERIA)
@pytest.mark.parametrize("seed", [0, 1])
def test_ratio_removes_the_lowest_scored_channels(criterion, seed, calib):
    model = build(seed)
    want_scores = scores(model, criterion, calib[1])
    result = prune(model, criterion, calib, ratio=0.5)
    got = removed_positions(model, result.model)
    for g, s in want_scores.items():
        n = SIZES[g] // 2
        lowest = set(np.argsort(s, kind="stable")[:n].tolist())
        assert got[g] == lowest, (g, criterion, np.round(s, 4).tolist(), sorted(got[g]))


@pytest.mark.parametrize("criterion", ["l1", "l2", "lamp"])
def test_ties_go_in_channel_order(criterion, calib):
    """A residual channel j made the negation of an earlier one i (equal scores) at the cut of the
    ratio: with only one of the pair leaving, the earlier position i goes."""
    cut = SIZES["res"] // 2
    for i, j in ((i, j) for i in range(SIZES["res"]) for j in range(i + 1, SIZES["res"])):
        model = build(3, tie=(i, j))
        s = scores(model, criterion)["res"]
        lowest = np.argsort(s, kind="stable")[:cut].tolist()
        if i in lowest and j not in lowest:
            break
    else:
        pytest.fail("no pair of channels tied at the cut")
    assert s[i] == s[j]
    got = removed_positions(model, prune(model, criterion, calib, ratio=0.5).model)["res"]
    assert i in got and j not in got, (i, j, sorted(got))
    assert got == set(lowest)


def flops(kept: dict[str, int]) -> int:
    """FLOPs per sample (a multiply-add is 2) for these kept channel counts."""
    r, b, d = kept["res"], kept["b"], kept["d"]
    px, k = HW * HW, 9
    return 2 * (px * r * CIN * k + px * b * r * k + px * r * b * k + px * d * r * k + CLASSES * d)


@pytest.mark.parametrize("criterion", CRITERIA)
@pytest.mark.parametrize("target", [0.3, 0.5, 0.7])
def test_flops_target_follows_the_global_ranking(criterion, target, calib):
    model = build(0)
    s = scores(model, criterion, calib[1])
    norm = {g: v / v.mean() for g, v in s.items()}  # scores compare across groups once divided by the group mean
    result = prune(model, criterion, calib, target_flops=target)
    assert result.report.flops_before == flops(SIZES)
    got = removed_positions(model, result.model)
    kept = {g: SIZES[g] - len(got[g]) for g in SIZES}
    assert result.report.flops_after == flops(kept)
    budget = target * flops(SIZES)
    assert flops(kept) <= budget
    cap = {g: int(np.floor(SIZES[g] * 0.9)) for g in SIZES}  # --max-group-ratio 0.9
    for g in SIZES:
        order = np.argsort(norm[g], kind="stable")
        assert got[g] == set(order[:len(got[g])].tolist()), (g, "not the lowest-scored channels of the group")
        assert len(got[g]) <= cap[g]
    for h in SIZES:   # no removed channel could be given back within the budget
        if got[h]:
            assert flops({**kept, h: kept[h] + 1}) > budget, (h, kept)
    for h in SIZES:   # a cheaper channel of another group is kept only if the swap breaks the budget
        if not got[h]:
            continue
        worst_removed = max(norm[h][c] for c in got[h])
        for g in SIZES:
            if g == h or len(got[g]) >= cap[g]:
                continue
            best_kept = min(norm[g][c] for c in range(SIZES[g]) if c not in got[g])
            if best_kept < worst_removed:
                swapped = {**kept, h: kept[h] + 1, g: kept[g] - 1}
                assert flops(swapped) > budget, (criterion, g, best_kept, h, worst_removed, kept)


def test_lamp_scores_an_all_zero_group_zero():
    """LAMP divides by the sum of the group's scores not smaller: for a group whose weights are all
    zero that is 0 / 0, which must score 0 (a NaN sorts above every score and drops out of the
    global ranking), while the other groups keep theirs."""
    from onnxprune.importance import get_criterion

    model = build(0)
    for t in model.graph.initializer:
        if t.name in ("WD", "BD", "WF"):
            t.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(t)), t.name))
    analysis = onnxprune.analyze(model)
    got = get_criterion("lamp")(analysis)
    by_size = {g.size: [got[c] for c in g.channels] for g in analysis.prunable_groups()}
    assert by_size[SIZES["d"]] == [0.0] * SIZES["d"]
    for g in ("res", "b"):  # each group's top channel scores s / s = 1, the others less
        assert max(by_size[SIZES[g]]) == 1.0 and all(0.0 < v <= 1.0 for v in by_size[SIZES[g]])
