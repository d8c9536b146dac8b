"""sensitivity: one trial per group and ratio; figures consistent with real pruning."""

import json
from pathlib import Path

import numpy as np
import onnx

from onnxprune.sensitivity import sensitivity
from tests.helpers.cli import invoke

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "models" / "digits_cnn.onnx"
EVAL = REPO / "models" / "digits_eval.npz"


def test_trials_cover_every_group_and_ratio():
    res = sensitivity(onnx.load(DIGITS), str(EVAL), ratios=(0.25, 0.75), max_samples=64)
    assert {(t.group, t.ratio) for t in res.trials} == {(g, r) for g in res.groups for r in (0.25, 0.75)}
    assert res.baseline_accuracy is not None
    for t in res.trials:
        assert -1.0 <= t.cosine <= 1.0 + 1e-9
        assert 0.0 <= t.accuracy <= 1.0
    # Removing more of a group never brings the outputs closer, on average over groups.
    c25 = np.mean([t.cosine for t in res.trials if t.ratio == 0.25])
    c75 = np.mean([t.cosine for t in res.trials if t.ratio == 0.75])
    assert c75 < c25


def test_cli_table_and_json(tmp_path):
    out = tmp_path / "s.json"
    r = invoke("sensitivity", str(DIGITS), "--calib", str(EVAL), "--ratios", "0.5",
                                  "--max-samples", "32", "--json", str(out))
    assert r.exit_code == 0, r.output
    assert "cos@0.5" in r.stdout
    data = json.loads(out.read_text())
    assert len(data["trials"]) == len(data["groups"])


def test_bad_ratios():
    r = invoke("sensitivity", str(DIGITS), "--ratios", "2")
    assert r.exit_code == 1 and "--ratios" in r.stderr
