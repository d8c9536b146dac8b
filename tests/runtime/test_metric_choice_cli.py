"""--metric on whole models from the command line: the summary and the JSON say which output got
which metric and why; --metric boxes with a fidelity guard on a YOLOX-style detector [1, A, 5+C]."""

from __future__ import annotations

import json

import numpy as np
import onnx

from tests.helpers.cli import assert_one_line_error, invoke
from tests.helpers.models import recurrent_state_model, yolox_style_detector

YOLOX_REASON = "[1, 64, 8]: YOLOv5/YOLOX [N, A, 5+C] (cx, cy, w, h, objectness, class scores) detection head"


def test_recurrent_state_gets_cosine_and_the_report_says_why(tmp_path):
    model = tmp_path / "vad.onnx"
    onnx.save(recurrent_state_model(), model)
    js = tmp_path / "r.json"
    res = invoke("check", model, model, "--json", js)
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if ln.startswith("metrics: "))
    assert line == ("metrics: 'prob' cosine ([8, 1]: one value per sample, compared as 1 - |a - b| / max(|a|, |b|) "
                    "(no direction to take a cosine of)); "
                    "'state' cosine ([1, 8, 32]: 1 frame is too few for a CTC head (a recurrent state "
                    "[layers, N, H] looks like this))")
    outs = {o["name"]: o for o in json.loads(js.read_text())["outputs"]}
    assert outs["state"]["metric"] == "cosine"
    assert outs["state"]["metric_reason"].startswith("[1, 8, 32]: 1 frame is too few for a CTC head")
    err = assert_one_line_error(invoke("check", model, model, "--min-agreement", "0.9"))
    assert err == ("onnxprune: error: min_agreement needs a classifier output ([N, K] scores), a detection or a CTC "
                   "output; none of the outputs is one ('prob' [8, 1]: one value per sample, compared as 1 - |a - b| / "
                   "max(|a|, |b|) (no direction to take a cosine of); "
                   "'state' [1, 8, 32]: 1 frame is too few for a CTC head (a recurrent state [layers, N, H] looks like "
                   "this)); choose a metric with --metric, e.g. --metric cosine")


def test_min_agreement_with_metric_boxes_on_a_yolox_head(tmp_path):
    model = tmp_path / "yolox.onnx"
    onnx.save(yolox_style_detector(), model)
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.random.default_rng(0).standard_normal((32, 3, 32, 32)).astype(np.float32))
    js = tmp_path / "r.json"
    res = invoke("prune", model, tmp_path / "out.onnx", "--calib", calib, "--min-agreement", "0.95", "--metric", "boxes",
                 "--json", js)
    assert res.exit_code == 0, res.output
    assert f"metrics: 'output' box F1 ({YOLOX_REASON})" in res.output
    report = json.loads(js.read_text())
    (out,) = report["validation"]["outputs"]
    assert out["metric"] == "boxes" and out["metric_reason"] == YOLOX_REASON and out["agreement"] >= 0.95


def test_a_box_bound_read_on_few_boxes_is_said_to_be_coarse(tmp_path):
    """One box that crosses the score threshold moves box F1 by 1/boxes: the COCO detector's guard
    read 92.3% on 24 held-out images holding 35 boxes. A bound on fewer than FEW_BOXES of
    the original's boxes gets a warning with the count; without --min-agreement there is none."""
    from onnxprune.runtime import compare_models
    from onnxprune.runtime.compare import FEW_BOXES

    model = yolox_style_detector()
    images = np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32)
    few, more = tmp_path / "few.npz", tmp_path / "more.npz"
    np.savez(few, x=images[:2])
    np.savez(more, x=images)  # 85 boxes
    bounded = compare_models(model, model, data=few, min_agreement=0.9, metric="boxes")
    (out,) = bounded.outputs
    assert out.metric == "boxes"
    boxes = next(w for w in bounded.warnings if "box F1 is read on" in w)
    count = int(boxes.split("box F1 is read on ")[1].split(" ")[0])
    assert 0 < count < FEW_BOXES and f"'{out.name}': box F1 is read on {count} boxes of the original" in boxes
    assert f"one box moves it about {100 / count:.0f} points" in boxes
    assert not any("box F1 is read on" in w for w in compare_models(model, model, data=few, metric="boxes").warnings)
    assert not any("box F1 is read on" in w
                   for w in compare_models(model, model, data=more, min_agreement=0.9, metric="boxes").warnings)
