"""compare_models: pass/fail from thresholds, the FAILED line, classifier figures, accumulation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from runtime_models import classifier, make_model, save, two_outputs
from onnx import TensorProto, helper, numpy_helper

from onnxprune.errors import ConfigError, DataError, ValidationFailedError
from onnxprune.runtime import ComparisonResult, compare_models, input_specs, random_data
from onnxprune.runtime.compare import _Accumulator


def _scaled(weights, k):
    """y = x * weights over [N, k] scores: a 'pruned' classifier whose ranking we control exactly."""
    vi = helper.make_tensor_value_info
    w = numpy_helper.from_array(np.asarray(weights, np.float32), "w")
    return make_model([helper.make_node("Mul", ["x", "w"], ["y"])], [vi("x", TensorProto.FLOAT, ["N", k])],
                      [vi("y", TensorProto.FLOAT, ["N", k])], [w])


def test_identical_models_pass():
    result = compare_models(classifier(), classifier())
    assert result and isinstance(result, ComparisonResult)
    out, = result.outputs
    assert out.max_abs_error == 0 and out.cosine == pytest.approx(1.0) and out.top1_agreement == 1.0
    assert result.samples == 32 and result.batches == 4
    assert str(result).splitlines()[-1] == "PASSED"
    assert any("random" in w for w in result.warnings)


def test_one_perturbed_weight_fails_naming_the_output():
    result = compare_models(classifier(), classifier(perturb=0.5))
    assert not result
    last = result.format_table().splitlines()[-1]
    assert last.startswith("FAILED: output 'logits': max abs error ")
    assert "> atol 0.0001" in last


def test_only_the_broken_output_is_named():
    result = compare_models(two_outputs(), two_outputs(scale_b=1.01))
    a, b = result.outputs
    assert a and not b
    assert result.verdict().startswith("FAILED: output 'b': ") and "'a'" not in result.verdict()


def test_min_cosine_alone_turns_off_the_default_atol():
    result = compare_models(two_outputs(), two_outputs(scale_b=1.01), min_cosine=0.999)
    assert result and result.thresholds["atol"] is None
    failed = compare_models(two_outputs(), two_outputs(scale_b=-1.0), min_cosine=0.5)
    assert failed.verdict() == "FAILED: output 'b': cosine -1.000000 < min_cosine 0.5"


def test_rtol_widens_the_tolerance_relative_to_the_reference():
    assert not compare_models(two_outputs(), two_outputs(scale_b=1.001), atol=0.0)
    assert compare_models(two_outputs(), two_outputs(scale_b=1.001), atol=0.0, rtol=2e-3)


def test_different_input_names_are_an_error():
    with pytest.raises(DataError, match=r"different inputs: original has \['input'\], pruned has \['image'\]"):
        compare_models(classifier(), classifier(input_name="image"))


def test_inputs_with_clashing_fixed_dims_are_an_error():
    with pytest.raises(DataError, match=r"input 'x' is float32\[N,3\] in original but float32\[N,4\] in pruned"):
        compare_models(_scaled([1, 1, 1], 3), _scaled([1, 1, 1, 1], 4))


def test_a_batch_fixed_in_the_pruned_model_sets_the_batch_for_both():
    result = compare_models(classifier(batch="N"), classifier(batch=2))
    assert result and result.batch_size == 2 and result.samples == 8


def test_different_output_names_are_an_error():
    with pytest.raises(ValidationFailedError, match=r"different outputs: original has \['logits'\], pruned has \['scores'\]"):
        compare_models(classifier(), classifier(output_name="scores"))


def test_different_output_shapes_fail():
    result = compare_models(classifier(classes=10), classifier(classes=9))
    assert result.verdict() == "FAILED: output 'logits': shape [8,10] in one model, [8,9] in the other"
    assert result.to_dict()["outputs"][0]["shapes_match"] is False


def test_top1_agreement_and_accuracy_on_a_hand_made_example(tmp_path):
    # argmax of x: 0, 2, 1, 2; of x * [1, 1, -1]: 0, 1, 1, 0 -> agree on samples 0 and 2.
    x = np.array([[3, 1, 0], [0, 1, 2], [1, 5, 0], [0, 0, 9]], np.float32)
    path = tmp_path / "d.npz"
    np.savez(path, x=x, labels=np.array([0, 2, 1, 1]))
    result = compare_models(_scaled([1, 1, 1], 3), _scaled([1, 1, -1], 3), data=path, min_agreement=0.5)
    out, = result.outputs
    assert out.top1_agreement == 0.5 and out.top5_agreement is None
    assert (out.accuracy_a, out.accuracy_b) == (0.75, 0.5)
    assert result and result.warnings == []
    strict = compare_models(_scaled([1, 1, 1], 3), _scaled([1, 1, -1], 3), data=path, min_agreement=0.6)
    assert strict.verdict() == "FAILED: output 'y': top-1 agreement 50.00% < min_agreement 60.00%"


def test_top5_agreement_counts_the_original_top1_within_the_pruned_top5(tmp_path):
    x = np.array([[0, 0, 0, 0, 0, 2, 3],                # top-1 6 -> 5, but 6 stays in the top 5
                  [9, 0, 0, 0, 0, 0, 0],                # agree
                  [5, 4, 3.5, 3.2, 3.1, 0, 6]], np.float32)  # 6 drops to sixth place
    path = tmp_path / "d.npz"
    np.savez(path, x=x)
    out, = compare_models(_scaled([1] * 7, 7), _scaled([1] * 6 + [0.5], 7), data=path).outputs
    assert out.top1_agreement == pytest.approx(1 / 3)
    assert out.top5_agreement == pytest.approx(2 / 3)


def test_metrics_accumulate_the_same_over_any_batch_size(tmp_path, images):
    path = tmp_path / "d.npz"
    np.savez(path, input=images)
    one = compare_models(classifier(), classifier(perturb=0.3), data=path, batch=10).outputs[0]
    many = compare_models(classifier(), classifier(perturb=0.3), data=path, batch=3).outputs[0]
    assert many.max_abs_error == one.max_abs_error
    assert many.mean_rel_error == pytest.approx(one.mean_rel_error)
    assert many.cosine == pytest.approx(one.cosine)
    assert many.values == one.values == 100


def test_npz_and_py_loader_give_the_same_result(tmp_path, images):
    np.save(tmp_path / "images.npy", images)
    (tmp_path / "loader.py").write_text(
        "import numpy as np, pathlib\n"
        "def load_data():\n"
        "    x = np.load(pathlib.Path(__file__).with_name('images.npy'))\n"
        "    for i in range(0, 10, 4):\n"
        "        yield {'input': x[i:i + 4], 'labels': np.arange(i, min(i + 4, 10)) % 10}\n")
    np.savez(tmp_path / "d.npz", input=images, labels=np.arange(10))
    a = compare_models(classifier(), classifier(perturb=0.3), data=tmp_path / "loader.py", batch=5)
    b = compare_models(classifier(), classifier(perturb=0.3), data=str(tmp_path / "d.npz"), batch=5)
    assert a.samples == b.samples == 10 and a.data.endswith("loader.py") and not a.warnings
    assert a.outputs[0].max_abs_error == b.outputs[0].max_abs_error
    assert a.outputs[0].accuracy_a == b.outputs[0].accuracy_a is not None


def test_dataset_objects_are_accepted():
    data = random_data(input_specs(classifier()), batch=3, seed=5, n_batches=2)
    result = compare_models(classifier(), classifier(), data=data, batch=2)
    assert result and (result.samples, result.batches, result.data) == (6, 3, "random inputs (seed 5)")


def test_fixed_batch_model_drops_the_remainder_and_warns(tmp_path, images):
    np.savez(tmp_path / "d.npz", input=images)
    result = compare_models(classifier(batch=4), classifier(batch=4), data=tmp_path / "d.npz")
    assert result.samples == 8 and result.batch_size == 4
    assert any("2 samples left out" in w for w in result.warnings)


def test_nan_in_the_pruned_output_fails():
    vi = helper.make_tensor_value_info
    nan = numpy_helper.from_array(np.array(np.nan, np.float32), "w")
    broken = make_model([helper.make_node("Mul", ["x", "w"], ["y"])], [vi("x", TensorProto.FLOAT, ["N", 3])],
                        [vi("y", TensorProto.FLOAT, ["N", 3])], [nan])
    result = compare_models(_scaled([1, 1, 1], 3), broken)
    assert not result and "max abs error inf" in result.verdict()
    assert json.loads(json.dumps(result.to_dict(), allow_nan=False))["outputs"][0]["max_abs_error"] is None


@pytest.mark.parametrize("ref, got, passes", [
    ([np.nan, 1, 1], [0, 1, 1], False),         # NaN in the original became finite
    ([np.inf, 1, 1], [1e30, 1, 1], False),      # Inf in the original became finite
    ([np.inf, 1, 1], [-np.inf, 1, 1], False),   # the sign of an Inf changed
    ([np.inf, 1, 1], [np.nan, 1, 1], False),
    ([np.nan, -np.inf, 1], [np.nan, -np.inf, 1], True),  # matching NaN and Inf positions agree
])
def test_non_finite_reference_values_must_match(ref, got, passes):
    """|b - a| <= atol + rtol*|a| is never false where a is NaN or Inf: those positions must match."""
    result = compare_models(_scaled(ref, 3), _scaled(got, 3), atol=1e-4, rtol=1e-3)
    assert bool(result) is passes, result.verdict()


def test_a_pruned_model_that_fails_at_run_time_is_a_validation_failure():
    vi = helper.make_tensor_value_info
    shape = numpy_helper.from_array(np.array([-1, 7], np.int64), "shape")
    bad = make_model([helper.make_node("Reshape", ["x", "shape"], ["y"])], [vi("x", TensorProto.FLOAT, ["N", 3])],
                     [vi("y", TensorProto.FLOAT, None)], [shape])
    with pytest.raises(ValidationFailedError, match="^pruned: onnxruntime failed to run it: "):
        compare_models(_scaled([1, 1, 1], 3), bad)


def test_min_agreement_without_a_classifier_output():
    vi = helper.make_tensor_value_info
    flat = make_model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", TensorProto.FLOAT, ["N"])],
                      [vi("y", TensorProto.FLOAT, ["N"])])
    with pytest.raises(ConfigError, match="min_agreement needs a classifier output"):
        compare_models(flat, flat, min_agreement=0.9)


@pytest.mark.parametrize("kw, message", [
    ({"atol": -1.0}, "atol must be >= 0"), ({"min_cosine": 2.0}, "between -1 and 1"),
    ({"min_agreement": 99.0}, "fraction between 0 and 1"),
])
def test_bad_thresholds(kw, message):
    with pytest.raises(ConfigError, match=message):
        compare_models(classifier(), classifier(), **kw)


def test_to_dict_is_plain_json(tmp_path):
    m = save(classifier(), tmp_path / "m.onnx")
    data = compare_models(m, m, min_cosine=0.99).to_dict()
    back = json.loads(json.dumps(data, allow_nan=False))
    assert back["passed"] is True and back["verdict"] == "PASSED"
    assert back["thresholds"] == {"atol": None, "rtol": None, "min_cosine": 0.99, "min_agreement": None}
    assert back["outputs"][0]["name"] == "logits" and back["outputs"][0]["shape_a"] == [8, 10]


def test_without_bounds_there_is_no_verdict():
    result = compare_models(classifier(), classifier(perturb=0.5), bounds=False, atol=1e-9, min_cosine=0.99)
    assert result.passed is None and result.status == "NOT CHECKED" and bool(result)  # stops nothing
    assert not result.checked and result.failures == [] and result.hints == []
    assert result.outputs[0].max_abs_error > 0.01  # the figures are still measured
    assert result.format_table().splitlines()[-1].startswith("NOT CHECKED")
    data = result.to_dict()
    assert data["passed"] is None and data["verdict"] == "NOT CHECKED"
    assert set(data["thresholds"].values()) == {None}


def test_failing_the_default_atol_hints_at_lossy_bounds():
    failed = compare_models(classifier(), classifier(perturb=0.5))
    assert failed.passed is False and failed.status == "FAILED"
    assert len(failed.hints) == 1 and "--min-agreement" in failed.hints[0]
    assert failed.format_table().splitlines()[-2] == "hint: " + failed.hints[0]
    assert compare_models(classifier(), classifier()).hints == []
    assert compare_models(classifier(), classifier(perturb=0.5), atol=1e-4).hints == []


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.lists(st.integers(1, 5), min_size=1, max_size=6), st.integers(0, 2**16))
def test_accumulated_figures_do_not_depend_on_how_samples_are_split(n, cuts, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, 6)).astype(np.float32)
    b = (a + rng.standard_normal((n, 6)) * 0.1).astype(np.float32)
    labels = rng.integers(0, 6, n)
    whole, parts = _Accumulator("y"), _Accumulator("y")
    whole.update(a, b, labels, 1e-2, 0.0)
    edges = sorted({min(sum(cuts[:i + 1]), n) for i in range(len(cuts))} | {0, n})
    for lo, hi in zip(edges, edges[1:]):
        parts.update(a[lo:hi], b[lo:hi], labels[lo:hi], 1e-2, 0.0)
    x, y = whole.finish(1e-2, 0.0, None, None), parts.finish(1e-2, 0.0, None, None)
    assert y.max_abs_error == x.max_abs_error and y.out_of_tolerance == x.out_of_tolerance
    assert y.mean_rel_error == pytest.approx(x.mean_rel_error)
    assert y.cosine == pytest.approx(x.cosine) and y.worst_cosine == pytest.approx(x.worst_cosine)
    assert (y.top1_agreement, y.top5_agreement, y.accuracy_a, y.accuracy_b) == \
           (x.top1_agreement, x.top5_agreement, x.accuracy_a, x.accuracy_b)


def test_sequence_and_empty_outputs_are_compared_without_an_internal_error():
    vi = helper.make_tensor_value_info
    seq = helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, None)
    split = make_model([helper.make_node("SplitToSequence", ["x"], ["s"], axis=1)],
                       [vi("x", TensorProto.FLOAT, ["N", 3])], [seq])
    assert compare_models(split, split)
    empty = numpy_helper.from_array(np.array([0, 3], np.int64), "shape")
    zero = make_model([helper.make_node("Slice", ["x", "z", "z"], ["y"])], [vi("x", TensorProto.FLOAT, ["N", 3])],
                      [vi("y", TensorProto.FLOAT, [0, 3])], [numpy_helper.from_array(np.array([0], np.int64), "z")])
    assert compare_models(zero, zero)


def test_class_scores_with_trailing_unit_dims_are_compared_as_classes(tmp_path):
    """[N, K, 1, 1]: a classifier ending in a 1 x 1 conv and a global pool (the model zoo's SqueezeNet
    and DenseNet-121): top-1 agreement, not cosine, as for [N, K]."""
    vi = helper.make_tensor_value_info

    def scaled4(weights):
        w = numpy_helper.from_array(np.asarray(weights, np.float32).reshape(1, 3, 1, 1), "w")
        return make_model([helper.make_node("Mul", ["x", "w"], ["y"])], [vi("x", TensorProto.FLOAT, ["N", 3, 1, 1])],
                          [vi("y", TensorProto.FLOAT, ["N", 3, 1, 1])], [w])

    x = np.array([[3, 1, 0], [0, 1, 2], [1, 5, 0], [0, 0, 9]], np.float32).reshape(4, 3, 1, 1)
    path = tmp_path / "d.npz"
    np.savez(path, x=x)
    result = compare_models(scaled4([1, 1, 1]), scaled4([1, 1, -1]), data=path, min_agreement=0.5)
    out, = result.outputs
    assert out.top1_agreement == 0.5
    assert out.metric == "top1", out.to_dict() if hasattr(out, "to_dict") else out


def _rows_model(largest: int = 1, topk: bool = True, shift: float = 0.0):
    """x [N, 6, 4] -> scores (row sums) -> TopK over all six rows (descending, or ascending: the same
    rows reversed) -> Gather of those rows -> [N, 6, 4]; topk=False reverses the rows by a constant
    index instead; shift adds a constant to the output."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array([-1], np.int64), "axes"),
             numpy_helper.from_array(np.array([6], np.int64), "k"),
             numpy_helper.from_array(np.array([[5, 4, 3, 2, 1, 0]], np.int64), "rev"),
             numpy_helper.from_array(np.array(shift, np.float32), "shift")]
    if topk:
        pick = [helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=0),
                helper.make_node("TopK", ["s", "k"], ["v", "i"], axis=1, largest=largest)]
    else:
        pick = [helper.make_node("Shape", ["x"], ["shape"]),
                helper.make_node("Identity", ["rev"], ["i0"]),
                helper.make_node("Expand", ["i0", "batch_rows"], ["i"])]
        inits.append(numpy_helper.from_array(np.array([2, 6], np.int64), "batch_rows"))
    nodes = pick + [helper.make_node("Unsqueeze", ["i", "axes"], ["i3"]),
                    helper.make_node("Expand", ["i3", "shape4"], ["idx"]),
                    helper.make_node("GatherElements", ["x", "idx"], ["g"], axis=1),
                    helper.make_node("Add", ["g", "shift"], ["y"])]
    inits.append(numpy_helper.from_array(np.array([2, 6, 4], np.int64), "shape4"))
    graph = helper.make_graph(nodes, "rows", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 6, 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_rows_a_topk_picks_may_come_in_another_order():
    """DETR-style heads select their queries with a TopK: exact pruning's rounding may swap two of
    near-equal score (timm's RT-DETR: 33 swapped rows of 300, the same rows sorted to 1.2e-7), which
    failed exact mode's check. After a TopK the same rows in another order pass, with a hint;
    other values, or rows reordered without a TopK, still fail."""
    base = _rows_model()
    swapped = compare_models(base, _rows_model(largest=0))
    assert swapped.passed and swapped.outputs[0].rows_reordered
    assert any("come in another order" in h for h in swapped.hints)
    assert not compare_models(base, _rows_model(largest=0, shift=0.5)).passed
    assert not compare_models(_rows_model(topk=False), _rows_model(largest=0)).passed  # the reference has no TopK
