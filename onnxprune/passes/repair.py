"""Repair after a lossy selection, from calibration data: the consumers of removed channels refitted
(bias compensation, least squares; repair/reconstruct.py) before the rewrite, BatchNormalization
statistics re-estimated after it (repair/batchnorm.py)."""

from __future__ import annotations

from .base import Pass, PassResult

SMALL_CALIBRATION = 64


class RepairConsumers(Pass):
    name = "repair-consumers"
    needs = ("analysis",)

    def run(self, state) -> PassResult:
        from ..repair.reconstruct import repair_consumers

        if not state.removed:
            return PassResult(False)
        methods = tuple(m for m in state.config.repair if m in ("bias", "lsq"))
        info = repair_consumers(state.analysis, state.removed, state.config.calib_data, methods,
                                device=state.config.device, memo=state.config.memo)
        state.notes.extend(info.pop("notes", []))
        samples = info.get("samples", 0)
        if 0 < samples < SMALL_CALIBRATION:
            state.notes.append(f"only {samples} calibration samples: repair figures are fitted on little "
                               f"data; a few hundred samples are better")
        return PassResult(info.get("layers", 0) > 0, info)


class MeasureBN(Pass):
    """Before anything is rewritten: the input statistics of the BNs pruning will shift (repair/batchnorm.py)."""

    name = "measure-bn"
    needs = ("analysis",)

    def run(self, state) -> PassResult:
        from ..repair.batchnorm import pruning_reference

        if not state.removed:
            return PassResult(False)
        state.bn_reference = pruning_reference(state.analysis, state.removed, state.config.calib_data,
                                               device=state.config.device)
        return PassResult(False, {"batchnorms": len(state.bn_reference)})


class RecalibrateBN(Pass):
    name = "repair-bn"

    def run(self, state) -> PassResult:
        from ..repair.batchnorm import recalibrate_bn

        reference, state.bn_reference = state.bn_reference, None
        if not state.removed or not reference:
            return PassResult(False, {"batchnorms": 0})
        n = recalibrate_bn(state.model, state.config.calib_data, device=state.config.device, reference=reference)
        return PassResult(n > 0, {"batchnorms": n})
