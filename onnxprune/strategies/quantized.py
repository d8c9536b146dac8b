"""Prune (and repair, guard) in float, then quantize the result with the same calibration data
(onnxprune/quantize.py does the quantizing)."""

from __future__ import annotations

import time

import onnx

from ..config import PruneConfig
from ..graph import ModelGraph
from ..passes.normalize import FoldBatchNorm
from ..passes.state import PruneState
from ..progress import report
from ..report import PruneResult


def quantize_result(result: PruneResult, config: PruneConfig) -> PruneResult:
    """The pruned float `result` quantized as config.quantize asks; the float model is kept beside it
    (PruneResult.float_model), validation checks both."""
    from ..quantize import quantize_model

    pruned = onnx.ModelProto()
    pruned.CopyFrom(result.model)
    report("quantize")
    start = time.perf_counter()
    to_quantize = result.model
    if config.quantize != "dynamic":
        # BatchNormalization left between QDQ pairs runs in float: fold it into the convs first.
        to_quantize = onnx.ModelProto()
        to_quantize.CopyFrom(result.model)
        fold = FoldBatchNorm().run(PruneState(model=to_quantize, config=config, graph=ModelGraph(to_quantize)))
        if fold.modified:
            result.report.notes.append(f"folded {fold.details['folded']} BatchNormalization into convs before "
                                       "quantizing")
    quantized, info = quantize_model(to_quantize, config.quantize, config.calib_data)
    info["seconds"] = round(time.perf_counter() - start, 4)
    result.report.notes.extend(info.pop("notes"))
    result.report.quantize = info
    return PruneResult(quantized, result.report, result.shapes, float_model=pruned)
