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


@pytest.mark.parametrize("figures, kept", [
    ({"recon": (0.90, 0.99), "l1": (0.95, 0.98)}, "l1"),     # the task metric decides
    ({"recon": (0.95, 0.97), "l1": (0.90, 0.99)}, "recon"),
    ({"recon": (1.00, 0.97), "l1": (1.00, 0.99)}, "recon"),  # saturated: the default stays
    ({"recon": (0.95, 0.97), "l1": (0.97, 0.99)}, "recon"),  # one held-out sample (of 64) is noise
])
def test_the_candidate_with_the_best_held_out_figure_is_kept(figures, kept, monkeypatch):
    runs = []
    real = race.prune_once

    def counting(model, config, timer=None):
        runs.append(config.criterion)
        return real(model, config, timer)

    def fake_compare(reference, model, **kwargs):
        return _fake_check(*figures[runs[-1]])

    monkeypatch.setattr(race, "prune_once", counting)
    monkeypatch.setattr("onnxprune.runtime.compare.compare_models", fake_compare)
    result = prune(onnx.load(DIGITS), target_flops=0.6, calib=str(CALIB))
    assert runs == ["recon", "l1"]  # two pipeline runs: at most twice one run's cost
    assert result.report.race["kept"] == kept
    assert [c["criterion"] for c in result.report.race["candidates"]] == ["recon", "l1"]
    assert [c["score"] for c in result.report.race["candidates"]] == [figures["recon"][0], figures["l1"][0]]
    assert any("criterion chosen on" in n for n in result.report.notes)


def test_the_kept_model_is_that_candidates_model(monkeypatch):
    models = {}
    real = race.prune_once

    def keep(model, config, timer=None):
        models[config.criterion] = result = real(model, config, timer)
        return result

    monkeypatch.setattr(race, "prune_once", keep)
    result = prune(onnx.load(DIGITS), target_flops=0.6, calib=str(CALIB))
    assert result is models[result.report.race["kept"]]


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
    assert report["race"]["kept"] in ("recon", "l1") and len(report["race"]["candidates"]) == 2
