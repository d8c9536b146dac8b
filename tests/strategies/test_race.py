"""With --calib and no --criterion the criterion is raced on held-out calibration data
(strategies/race.py): the one whose repaired model agrees best with the original there is kept."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import onnx
import pytest

import onnxprune.strategies.race as race
from onnxprune import prune
from tests.helpers.cli import invoke

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "models" / "digits_cnn.onnx"
CALIB = REPO / "models" / "digits_calib.npz"


def _fake_check(agreement: float, cosine: float):
    return SimpleNamespace(outputs=[SimpleNamespace(agreement=agreement, cosine=cosine, metric="top1")])


def _record_runs(monkeypatch) -> list:
    """(criterion, allocation) of each pipeline run the race makes, in order."""
    runs = []
    real = race.prune_once

    def counting(model, config, timer=None):
        runs.append((config.criterion, config.allocation))
        return real(model, config, timer)

    monkeypatch.setattr(race, "prune_once", counting)
    return runs



@pytest.mark.parametrize("figures, kept", [
    ({"recon": (0.90, 0.99), "l1": (0.95, 0.98), "sens": (0.90, 0.99)}, ("l1", "score")),  # the task metric decides
    ({"recon": (0.95, 0.97), "l1": (0.90, 0.99), "sens": (0.90, 0.99)}, ("recon", "score")),
    ({"recon": (0.90, 0.97), "l1": (0.90, 0.99), "sens": (0.95, 0.98)}, ("recon", "sensitivity")),
    ({"recon": (0.90, 0.97), "l1": (0.96, 0.99), "sens": (0.95, 0.99)}, ("l1", "score")),  # the best challenger
    ({"recon": (1.00, 0.97), "l1": (1.00, 0.99), "sens": (1.00, 0.99)}, ("recon", "score")),  # saturated: default
    ({"recon": (0.95, 0.97), "l1": (0.97, 0.99), "sens": (0.97, 0.99)}, ("recon", "score")),  # one sample: noise
])
def test_the_candidate_with_the_best_held_out_figure_is_kept(figures, kept, monkeypatch):
    runs, budgets = [], []
    real = race.prune_once

    def counting(model, config, timer=None):
        runs.append((config.criterion, config.allocation))
        budgets.append(config.sensitivity_budget)
        return real(model, config, timer)

    def fake_compare(reference, model, **kwargs):
        return _fake_check(*figures["sens" if runs[-1][1] == "sensitivity" else runs[-1][0]])

    monkeypatch.setattr(race, "prune_once", counting)
    monkeypatch.setattr(race, "SENSITIVITY_BUDGET", 1e9)
    monkeypatch.setattr("onnxprune.runtime.compare.compare_models", fake_compare)
    result = prune(onnx.load(DIGITS), target_flops=0.6, calib=str(CALIB))
    assert runs == [("recon", "score"), ("l1", "score"), ("recon", "sensitivity")]
    assert budgets[:2] == [None, None] and budgets[2] > 0
    assert (result.report.race["kept"], result.report.race["allocation"]) == kept
    assert [(c["criterion"], c["allocation"]) for c in result.report.race["candidates"]] == runs
    assert [c["score"] for c in result.report.race["candidates"]] == [figures[k][0] for k in ("recon", "l1", "sens")]
    assert any("criterion chosen on" in n for n in result.report.notes)
    assert result.report.race["skipped"] is None


def test_sensitivity_is_dropped_where_its_probes_overrun(monkeypatch):
    runs = _record_runs(monkeypatch)
    monkeypatch.setattr(race, "SENSITIVITY_BUDGET", 1e-9)
    monkeypatch.setattr(race, "SENSITIVITY_FLOOR_S", 1e-9)
    result = prune(onnx.load(DIGITS), target_flops=0.6, calib=str(CALIB))
    assert runs == [("recon", "score"), ("l1", "score"), ("recon", "sensitivity")]
    assert [(c["criterion"], c["allocation"]) for c in result.report.race["candidates"]] == runs[:2]
    assert "more than the 0 s allowed" in result.report.race["skipped"]
    assert any(n.startswith("sensitivity allocation not raced: its probes") for n in result.report.notes)


@pytest.mark.parametrize("allocation", ["score", "sensitivity"])
def test_a_given_allocation_is_not_raced(allocation, monkeypatch):
    runs = _record_runs(monkeypatch)
    prune(onnx.load(DIGITS), target_flops=0.6, calib=str(CALIB), allocation=allocation)
    assert runs == [("recon", allocation), ("l1", allocation)]


def test_the_candidates_share_calibration_statistics(monkeypatch):
    # Scores, Grams and probes are gathered once per model and data (memo.py): the later candidates
    # measure only what the first did not.
    import onnxprune.repair.reconstruct as reconstruct

    scored, grams = [], []
    real_grams = reconstruct.gram_matrices

    def counting_grams(analysis, layers, *a, **k):
        grams.extend(layer.member.node for layer in layers)
        return real_grams(analysis, layers, *a, **k)

    import onnxprune.runtime.activations as activations
    real_run = activations.run_probe

    def counting_run(model, names, *a, **k):
        scored.append(tuple(names))
        return real_run(model, names, *a, **k)

    monkeypatch.setattr(reconstruct, "gram_matrices", counting_grams)
    monkeypatch.setattr(activations, "run_probe", counting_run)
    monkeypatch.setattr(race, "SENSITIVITY_BUDGET", 1e9)
    result = prune(onnx.load(DIGITS), target_flops=0.6, calib=str(CALIB))
    assert len(result.report.race["candidates"]) == 3
    assert len(grams) == len(set(grams)) > 0       # no layer's Grams gathered twice
    assert len(scored) == len(set(scored))         # recon scores' probe run once


def test_the_kept_model_is_that_candidates_model(monkeypatch):
    models = {}
    real = race.prune_once

    def keep(model, config, timer=None):
        models[(config.criterion, config.allocation)] = result = real(model, config, timer)
        return result

    monkeypatch.setattr(race, "prune_once", keep)
    result = prune(onnx.load(DIGITS), target_flops=0.6, calib=str(CALIB))
    assert result is models[(result.report.race["kept"], result.report.race["allocation"])]


@pytest.mark.parametrize("options", [dict(criterion="recon"), dict(criterion="l1"), dict()])
def test_no_race_when_the_criterion_is_given_or_nothing_is_lossy(options):
    extra = {} if options else {"calib": str(CALIB)}
    result = prune(onnx.load(DIGITS), **({"target_flops": 0.6, "calib": str(CALIB)} if options else extra), **options)
    assert result.report.race is None


def test_cli_report_shows_the_race(tmp_path):
    r = invoke(DIGITS, tmp_path / "out.onnx", "--ratio", "0.4", "--calib", CALIB, "--report", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    assert "criterion   " in r.stdout and " kept, on 64 held-out samples: recon " in r.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["race"]["kept"] in ("recon", "l1") and len(report["race"]["candidates"]) in (2, 3)
    assert report["race"]["allocation"] in ("score", "sensitivity")


@pytest.mark.parametrize("first, so_far, budget", [
    (7.0, 12.0, 48.0),    # a small model: what the race has left of the floor
    (30.0, 42.0, 30.0),   # a 30 s pipeline: one run's worth, not the floor on top of the race
    (125.0, 175.0, 125.0),
])
def test_the_probe_budget_keeps_the_race_near_its_floor(first, so_far, budget, monkeypatch):
    monkeypatch.setattr(race, "SENSITIVITY_BUDGET", 1.0)
    monkeypatch.setattr(race, "SENSITIVITY_FLOOR_S", 60.0)
    assert race.probe_budget(first, so_far) == pytest.approx(budget)
