"""Input data: specs, --shape parsing, random data, .npz and .py loaders, validation, batching."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from runtime_models import classifier

from onnxprune.errors import ConfigError, DataError
from onnxprune.runtime import InputSpec, input_specs, load_data, parse_shapes, random_data, resolve_batch

F32 = np.dtype(np.float32)
SPEC = InputSpec("input", F32, ("N", 3, 8, 8))


def _npz(tmp_path, name="d.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def _loader(tmp_path, body, name="loader.py"):
    path = tmp_path / name
    path.write_text("import numpy as np\n" + body)
    return path


def _sizes(dataset, batch, **kw):
    return [b.size for b in dataset.batches(batch, **kw)]


def test_input_specs_skip_initializers_listed_as_inputs():
    from onnx import TensorProto, helper

    model = classifier(batch="batch_size")
    model.graph.input.append(helper.make_tensor_value_info("fc_b", TensorProto.FLOAT, [10]))
    assert input_specs(model) == [InputSpec("input", F32, ("batch_size", 3, 8, 8))]


def test_parse_shapes_many_forms():
    assert parse_shapes("input:1x3x224x224,mask:1x10") == {"input": (1, 3, 224, 224), "mask": (1, 10)}
    assert parse_shapes(["input_1:0:2x5", "ids:4"]) == {"input_1:0": (2, 5), "ids": (4,)}
    assert parse_shapes(None) == {}


@pytest.mark.parametrize("text, message", [
    ("input", "expected NAME:DIMS"), ("input:1x?x3", "expected NAME:DIMS"), ("input:0x3", "positive"),
    ("a:1,a:2", "twice"),
])
def test_parse_shapes_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_shapes(text)


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_.:/]{0,12}", fullmatch=True),
                       st.lists(st.integers(1, 4096), min_size=1, max_size=5), min_size=1, max_size=4))
def test_parse_shapes_round_trips(shapes):
    text = ",".join(f"{name}:{'x'.join(map(str, dims))}" for name, dims in shapes.items())
    assert parse_shapes(text) == {name: tuple(dims) for name, dims in shapes.items()}


def test_random_data_is_seeded_and_typed():
    specs = [SPEC, InputSpec("ids", np.dtype(np.int64), ("batch", 5)), InputSpec("flag", np.dtype(np.bool_), ())]
    first = list(random_data(specs, batch=3, seed=7, n_batches=2).batches(3))
    again = list(random_data(specs, batch=3, seed=7, n_batches=2).batches(3))
    other = next(random_data(specs, batch=3, seed=8).batches(3))
    assert [b.size for b in first] == [3, 3]
    feeds = first[0].feeds
    assert feeds["input"].shape == (3, 3, 8, 8) and feeds["input"].dtype == np.float32
    assert feeds["ids"].shape == (3, 5) and feeds["ids"].dtype == np.int64 and set(np.unique(feeds["ids"])) <= {0, 1}
    assert feeds["flag"].shape == () and feeds["flag"].dtype == np.bool_
    np.testing.assert_array_equal(first[1].feeds["input"], again[1].feeds["input"])
    assert not np.array_equal(feeds["input"], other.feeds["input"])


def test_random_data_guesses_one_sequence_dim_and_asks_for_more():
    spec = InputSpec("ids", np.dtype(np.int64), ("N", "seq"))
    assert next(random_data([spec], batch=2).batches(2)).feeds["ids"].shape == (2, 128)
    two = InputSpec("x", F32, ("N", "a", "b"))
    with pytest.raises(DataError, match=r"dynamic dims \['a', 'b'\].*--shape x:1xNxN"):
        random_data([two], batch=2)
    data = random_data([spec], shapes=parse_shapes("ids:1x16"), batch=2)
    assert next(data.batches(2)).feeds["ids"].shape == (2, 16)


def test_shape_overrides_are_checked_against_the_model():
    with pytest.raises(ConfigError, match="gives 2 dims"):
        random_data([SPEC], shapes={"input": (1, 3)}, batch=1)
    with pytest.raises(ConfigError, match="dim 1 is 4, but the model fixes it to 3"):
        random_data([SPEC], shapes={"input": (1, 4, 8, 8)}, batch=1)
    with pytest.raises(ConfigError, match=r"--shape names \[other\], but the model inputs are \[input\]"):
        random_data([SPEC], shapes={"other": (1,)}, batch=1)


def test_resolve_batch_rules():
    fixed = InputSpec("input", F32, (1, 3, 8, 8))
    assert resolve_batch([fixed], None) == 1
    with pytest.raises(DataError, match="fixed batch of 1; use batch size 1"):
        resolve_batch([fixed], 8)
    assert resolve_batch([SPEC], 5, {"input": (2, 3, 8, 8)}) == 5
    assert resolve_batch([SPEC], None, {"input": (2, 3, 8, 8)}) == 2
    assert resolve_batch([SPEC], None) == 8


def test_npz_with_labels_batches_and_keeps_labels(tmp_path, images):
    labels = np.arange(10) % 3
    data = load_data(_npz(tmp_path, input=images, labels=labels), [SPEC])
    batches = list(data.batches(4))
    assert [b.size for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b.feeds["input"] for b in batches]), images)
    np.testing.assert_array_equal(np.concatenate([b.labels for b in batches]), labels)
    assert not data.random


def test_drop_last_reports_what_was_left_out(tmp_path, images):
    data = load_data(_npz(tmp_path, input=images), [SPEC])
    assert _sizes(data, 4, drop_last=True) == [4, 4]
    assert data.dropped == 2


def test_py_loader_yields_are_rebatched(tmp_path):
    path = _loader(tmp_path, """
def load_data():
    for i in range(3):
        yield {"input": np.full((3, 3, 8, 8), i, np.float32), "labels": np.array([i, i, i])}
""")
    data = load_data(path, [SPEC])
    batches = list(data.batches(4))
    assert [b.size for b in batches] == [4, 4, 1]
    assert batches[1].feeds["input"][:, 0, 0, 0].tolist() == [1, 1, 2, 2]
    assert batches[1].labels.tolist() == [1, 1, 2, 2]


def test_py_loader_may_return_one_dict(tmp_path):
    path = _loader(tmp_path, "def load_data():\n    return {'input': np.zeros((2, 3, 8, 8), np.float32)}\n")
    assert _sizes(load_data(path, [SPEC]), 8) == [2]


@pytest.mark.parametrize("body, message", [
    ("x = 1\n", "defines no load_data"),
    ("raise RuntimeError('boom')\n", "importing it raised RuntimeError: boom"),
    ("def load_data():\n    raise KeyError('k')\n", "load_data\\(\\) raised KeyError"),
    ("def load_data():\n    yield [1, 2]\n", "got a list; each item must be a dict"),
    ("def load_data():\n    return 3\n", "returned a int"),
    ("def load_data():\n    return iter([])\n", "no samples"),
])
def test_py_loader_errors(tmp_path, body, message):
    with pytest.raises(DataError, match=message):
        list(load_data(_loader(tmp_path, body), [SPEC]).batches(2))


def test_wrong_input_names_say_expected_and_given(tmp_path, images):
    with pytest.raises(DataError) as info:
        load_data(_npz(tmp_path, image=images), [SPEC])
    assert str(info.value).endswith("data has inputs [image] but the model expects [input] "
                                    "(missing [input]; unexpected [image]); name the array after the input: "
                                    "np.savez(path, **{'input': array})")


@pytest.mark.parametrize("array, message", [
    (np.zeros((2, 3, 8), np.float32), r"shape \(2, 3, 8\) \(rank 3\), the model expects rank 4"),
    (np.zeros((2, 4, 8, 8), np.float32), r"dim 1 must be 3"),
    (np.zeros((2, 3, 8, 8), np.float64), r"is float64, the model expects float32"),
    (np.zeros((0, 3, 8, 8), np.float32), r"holds no samples"),
])
def test_arrays_that_do_not_fit(tmp_path, array, message):
    with pytest.raises(DataError, match=message):
        load_data(_npz(tmp_path, input=array), [SPEC])


def test_a_state_stacked_samples_first_is_told_its_sample_axis(tmp_path):
    """A recurrent state [layers, batch, H] (Silero VAD's) takes its samples along dim 1; stacked
    along dim 0 the error says how to lay them out, and that layout loads."""
    specs = [InputSpec("x", F32, ("batch", 512)), InputSpec("state", F32, (2, "batch", 128), batch_axis=1)]
    x = np.zeros((5, 512), np.float32)
    with pytest.raises(DataError, match=r"dim 0 must be 2 .*takes its samples along dim 1: "
                                         r"np.moveaxis\(a, 0, 1\) gives shape \(2, 5, 128\)$"):
        load_data(_npz(tmp_path, x=x, state=np.zeros((5, 2, 128), np.float32)), specs)
    with pytest.raises(DataError) as info:  # a wrong fixed dim elsewhere: no such hint
        load_data(_npz(tmp_path, x=x, state=np.zeros((2, 5, 64), np.float32)), specs)
    assert "moveaxis" not in str(info.value)
    batches = list(load_data(_npz(tmp_path, x=x, state=np.zeros((2, 5, 128), np.float32)), specs).batches(2))
    assert [b.feeds["state"].shape for b in batches] == [(2, 2, 128), (2, 2, 128), (2, 1, 128)]


def test_nan_and_inf_are_rejected_with_counts(tmp_path, images):
    images[3, 0, 0, 0] = np.nan
    images[5, 1, 2, 3] = np.inf
    with pytest.raises(DataError, match=r"contains 1 NaN and 1 Inf values \(first in sample 3\)"):
        load_data(_npz(tmp_path, input=images), [SPEC])


def test_inputs_with_different_sample_counts(tmp_path):
    specs = [SPEC, InputSpec("mask", F32, ("N", 2))]
    with pytest.raises(DataError, match=r"different numbers of samples \(\[input=2, mask=3\]\)"):
        load_data(_npz(tmp_path, input=np.zeros((2, 3, 8, 8), np.float32), mask=np.zeros((3, 2), np.float32)), specs)


def test_bad_labels(tmp_path, images):
    with pytest.raises(DataError, match="'labels' is float64; expected integer class indices"):
        load_data(_npz(tmp_path, input=images, labels=np.zeros(10)), [SPEC])
    with pytest.raises(DataError, match=r"'labels' has shape \(9,\)"):
        load_data(_npz(tmp_path, input=images, labels=np.zeros(9, np.int64)), [SPEC])


def test_missing_empty_and_unknown_files(tmp_path):
    with pytest.raises(DataError, match="calib.npz: no such file"):
        load_data(tmp_path / "calib.npz", [SPEC])
    with pytest.raises(DataError, match="holds no arrays"):
        load_data(_npz(tmp_path), [SPEC])
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(DataError, match="unknown data format '.csv'"):
        load_data(tmp_path / "x.csv", [SPEC])
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_data(tmp_path / "bad.npz", [SPEC])


def test_an_npy_feeds_a_model_with_one_input(tmp_path):
    """A new user's `np.save('calib.npy', x)` for a one-input model: its samples. With two inputs, or an
    .npz whose one array is named otherwise, one line says what to give."""
    from onnx import TensorProto, helper

    from onnxprune.runtime import input_specs, load_data
    vi = helper.make_tensor_value_info

    def model(names):
        nodes = [helper.make_node("Identity", [n], [f"{n}_out"]) for n in names]
        graph = helper.make_graph(nodes, "g", [vi(n, TensorProto.FLOAT, ["N", 4]) for n in names],
                                  [vi(f"{n}_out", TensorProto.FLOAT, None) for n in names])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)

    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    np.save(tmp_path / "x.npy", x)
    dataset = load_data(tmp_path / "x.npy", input_specs(model(["features"])))
    got = np.concatenate([item.feeds["features"] for item in dataset.batches(4)])
    np.testing.assert_array_equal(got, x)
    with pytest.raises(DataError, match=r"an \.npy holds one array, and this model has 2 inputs \(a, b\)"):
        load_data(tmp_path / "x.npy", input_specs(model(["a", "b"])))
    np.savez(tmp_path / "unnamed.npz", x)
    with pytest.raises(DataError, match=r"name the array after the input: np\.savez\(path, \*\*\{'features': array\}\)"):
        load_data(tmp_path / "unnamed.npz", input_specs(model(["features"])))
