"""Each pass of the pipeline, run one at a time on the shipped digits model (BatchNormalization kept)
and on a fixture with shared parameters: what it needs is there, what it ensures is set after it,
and the model stays valid and runs in ONNX Runtime after every pass, with the original's outputs
while nothing lossy has been chosen (onnx-ir's pass tests do the same)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from onnxprune.config import PruneConfig
from onnxprune.graph import ModelGraph
from onnxprune.passes.base import Pass, PassManager, PassOrderError, PassResult
from onnxprune.passes.pipeline import build_pipeline
from onnxprune.passes.state import PruneState
from onnxprune.passes.untie import untie_shared
from onnxprune.runtime.shapes import resolve_input_shapes
from tests.helpers.oracle import copy, feeds, run

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "models" / "digits_cnn.onnx"
CALIB = REPO / "models" / "digits_calib.npz"
SHARED = REPO / "tests" / "fixtures" / "torch_densenet_tiny_fresh.onnx"  # BN tensors read by many nodes
WEIGHT_INPUTS = REPO / "tests" / "fixtures" / "exporters" / "weights_as_inputs_ir4.onnx"  # weights also inputs

CONFIGS = {
    "exact": (DIGITS, dict()),
    "exact-fold-bn": (DIGITS, dict(fold_bn=True)),
    "lossy-repair-all": (DIGITS, dict(target_flops=0.6, calib=str(CALIB))),
    "lossy-shared-params": (SHARED, dict(ratio=0.5)),
    "lossy-weight-inputs-drop": (WEIGHT_INPUTS, dict(ratio=0.5, fold_bn=True, weight_inputs="drop")),
}


def _state(path: Path, config: PruneConfig) -> PruneState:
    model = onnx.load(str(path))
    shapes = resolve_input_shapes(model, config)
    state = PruneState(model=model, config=config, shapes=shapes)
    state.ties = untie_shared(model)
    state.graph = ModelGraph(model, shapes=shapes.per_sample())
    return state


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_each_pass_leaves_a_valid_model_that_runs(case):
    path, options = CONFIGS[case]
    config = PruneConfig(**options)
    original = onnx.load(str(path))
    inputs = feeds(original, seed=4)
    (expected, *_) = run(original, inputs)
    state = _state(path, config)
    names = []
    for p in build_pipeline(config):
        PassManager([p]).run(state)
        names.append(p.name)
        assert all(getattr(state, f) is not None for f in p.ensures), p.name
        onnx.checker.check_model(state.model)
        (got, *_) = run(copy(state.model), inputs)
        assert got.shape == expected.shape, p.name
        if not config.lossy or not state.removed or p.name in ("fold-bn", "rotate-stream", "analyze", "select",
                                                                          "select-exact"):
            np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-3, err_msg=p.name)
    assert names[-3:] == ["retie-shared", "cleanup", "weight-inputs"] and "prune-channels" in names
    if config.lossy:
        assert state.removed


def test_the_lossy_pipeline_with_repair_runs_every_repair_pass():
    names = [p.name for p in build_pipeline(PruneConfig(target_flops=0.6, calib=str(CALIB)))]
    assert names == ["rotate-stream", "analyze", "select", "measure-bn", "repair-consumers", "prune-channels", "repair-bn",
                     "retie-shared", "cleanup", "weight-inputs"]


def test_a_pass_run_without_what_it_needs_fails_by_name():
    from onnxprune.passes.select import SelectExact

    state = PruneState(model=onnx.load(str(DIGITS)), config=PruneConfig())
    with pytest.raises(PassOrderError, match="pass 'select-exact' needs analysis"):
        PassManager([SelectExact()]).run(state)


def test_a_pass_that_leaves_what_it_ensures_unset_fails_by_name():
    class Forgetful(Pass):
        name = "forgetful"
        ensures = ("analysis",)

        def run(self, state) -> PassResult:
            return PassResult(False)

    state = PruneState(model=onnx.load(str(DIGITS)), config=PruneConfig())
    with pytest.raises(PassOrderError, match="pass 'forgetful' left analysis unset"):
        PassManager([Forgetful()]).run(state)


def test_every_pass_is_in_some_pipeline_and_named_once():
    import importlib
    import pkgutil

    import onnxprune.passes as package

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"onnxprune.passes.{info.name}")
    classes = {c for c in _subclasses(Pass)}
    used = {type(p) for options in ({}, {"fold_bn": True}, {"target_flops": 0.5, "calib": str(CALIB)},
                                    {"target_latency": 0.5}, {"ratio": 0.3})
            for p in build_pipeline(PruneConfig(**options))}
    assert classes == used
    named = [c.name for c in classes]
    assert len(set(named)) == len(named) - 1  # the two select passes share the name "select"


def _subclasses(cls):
    for sub in cls.__subclasses__():
        if sub.__module__.startswith("onnxprune."):
            yield sub
        yield from _subclasses(sub)
