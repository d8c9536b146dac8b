"""Validation that costs little: the reference's outputs computed once (one session of it at a
time), prune's validation on one small batch, and identical files proven equal without a run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from runtime_models import classifier, save

import onnxprune.runtime.compare as compare
from onnxprune.runtime.compare import Reference, compare_models, identical_files
from tests.helpers.cli import invoke

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "models" / "digits_cnn.onnx"
CALIB = REPO / "models" / "digits_calib.npz"


@pytest.fixture
def sessions(monkeypatch):
    """Every session started, and how many were open at most at one time."""
    log = {"started": 0, "open": 0, "most_open": 0, "optimized": []}
    real = compare.create_session

    def counting(model, device="cpu", threads=None, optimize=True):
        session = real(model, device, threads, optimize)
        log["optimized"].append(optimize)
        log["started"] += 1
        log["open"] += 1
        log["most_open"] = max(log["most_open"], log["open"])
        close = session.close

        def closing():
            if session.inference is not None:
                log["open"] -= 1
            close()

        session.close = closing
        return session

    monkeypatch.setattr(compare, "create_session", counting)
    return log


def test_a_reference_runs_once_for_many_candidates(sessions):
    with Reference(classifier(), n_batches=3) as ref:
        assert ref.complete and ref._session is None and len(ref.held) == 3
        same = compare_models(ref, classifier())
        worse = compare_models(ref, classifier(perturb=0.5))
    assert same and not worse and same.samples == worse.samples == 24
    assert sessions["started"] == 3  # the reference once, then one per candidate
    assert sessions["most_open"] == 1  # the reference was closed before any candidate opened


def test_data_beyond_the_hold_limit_keeps_the_session_and_gives_the_same_figures(monkeypatch, sessions):
    held = compare_models(classifier(), classifier(perturb=0.5), n_batches=5)
    monkeypatch.setattr(compare, "HOLD_BYTES", 1)
    with Reference(classifier(), n_batches=5) as ref:
        assert not ref.complete and ref._session is not None
        streamed = compare_models(ref, classifier(perturb=0.5))
    assert streamed.samples == held.samples == 40
    assert streamed.outputs[0].max_abs_error == held.outputs[0].max_abs_error
    assert streamed.outputs[0].cosine == pytest.approx(held.outputs[0].cosine)


def test_identical_files_run_once(tmp_path, sessions):
    a = save(classifier(), tmp_path / "a.onnx")
    b = tmp_path / "b.onnx"
    b.write_bytes(Path(a).read_bytes())
    c = save(classifier(perturb=0.5), tmp_path / "c.onnx")
    assert identical_files(a, b) and not identical_files(a, c) and not identical_files(classifier(), b)
    result = compare_models(a, b)
    assert result.passed is True and result.samples == 32 and "byte-identical" in " ".join(result.hints)
    assert sessions["started"] == 1
    assert compare_models(a, b, bounds=False).passed is None
    (tmp_path / "b.onnx.data").write_bytes(b"")  # weights elsewhere: bytes alone prove nothing
    assert not identical_files(a, b)


def _prune_json(*args):
    r = invoke(*args, "--json", "-", "-q")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)["validation"]


def test_prune_validates_on_one_sample_unless_data_is_given(tmp_path, sessions):
    v = _prune_json(DIGITS, tmp_path / "a.onnx", "--fold-bn")
    assert (v["samples"], v["batches"], v["batch_size"]) == (1, 1, 1) and v["verdict"] == "PASSED"
    assert sessions["optimized"] == [False, False]  # one small batch: ORT's graph optimizations do not pay
    assert sessions["most_open"] == 1
    v = _prune_json(DIGITS, tmp_path / "b.onnx", "--fold-bn", "--calib", CALIB)
    assert v["samples"] == len(np.load(CALIB)["input"]) and v["verdict"] == "PASSED"
    assert v["batch_size"] == 8  # real data runs in the usual batches
    assert sessions["optimized"][2:] == [True, True]


def test_prune_that_removes_nothing_runs_the_model_once(tmp_path):
    src = save(classifier(), tmp_path / "in.onnx")
    v = _prune_json(src, tmp_path / "out.onnx")
    assert v["verdict"] == "PASSED" and v["samples"] == 1 and "byte-identical" in " ".join(v["hints"])
    assert (tmp_path / "out.onnx").read_bytes() == Path(src).read_bytes()


def test_the_fidelity_guard_runs_the_original_once(sessions):
    from onnxprune import prune
    from onnxprune.strategies.guard import STEPS

    # Sessions are counted in compare.py alone (the reference and each trial's check), so the
    # cheapest trials do: l1 scores, no repair.
    result = prune(onnx.load(DIGITS), calib=str(CALIB), min_cosine=0.5, validate=False, criterion="l1", repair="none")
    assert result.report.guard["check"]["passed"] is True
    trials = STEPS + 1
    assert sessions["started"] <= trials + 2  # one reference + one per trial (was two per trial)
    tries = result.report.guard["tries"]
    assert len(tries) >= 2 and sessions["started"] == 1 + sum(t["flops_kept"] is not None for t in tries)
    assert sessions["most_open"] == 1
