"""The one entry point that decides a run's input shapes (onnxprune/shapes.py holds the rules):
what the user gave, else the first calibration sample, else a guess that ONNX Runtime is seen to
run. prune, analyze, sensitivity, check and bench all come here."""

from __future__ import annotations

from collections.abc import Mapping

import onnx

from ..errors import DataError, OnnxPruneError
from ..shapes import RESIZING_OPS, ResolvedShapes, declared_inputs, resolve_shapes


def resolve_input_shapes(model, config=None, *, given: Mapping[str, tuple[int, ...]] | None = None, data=None,
                         specs=None, calib: bool = True) -> ResolvedShapes:
    """Concrete input dims of `model` (a proto or a path): `given` (--shape) or config.shapes, else
    the first sample of `data` or config's --calib data, else a guess ONNX Runtime runs. `specs`
    (InputSpecs of an open session) stand in for the model's declared inputs where the proto is too
    large to read (check, bench). `calib` False: the command takes no data (bench), so an error
    does not point at --calib."""
    if config is not None:
        given = dict(config.shapes) if given is None else given
        data = config.calib_data if data is None and config.calib else data
    given = dict(given or {})
    if specs is not None:
        return _from_specs(model, given, specs, calib)
    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model), load_external_data=False)
    sample = None
    if data is not None and set(declared_inputs(proto)) - set(given):
        from .data import input_specs, load_data

        sample = load_data(data, input_specs(proto)).first_sample()
    with RunsAt(model) as accept:
        try:
            return resolve_shapes(proto, given, sample, accept=accept)
        except DataError:
            accept.explain()
            raise


def _from_specs(model, given, specs, calib: bool = True) -> ResolvedShapes:
    """Shapes for random data from a session's input specs (the caller has no calibration data)."""
    try:
        proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model), load_external_data=False)
        resizes = any(n.op_type in RESIZING_OPS for n in proto.graph.node)
    except Exception:  # a model too large for one protobuf: no hint, the plain guess
        resizes = False
    with RunsAt(model, calib) as accept:
        try:
            return resolve_shapes(given=given, declared={s.name: s.shape for s in specs}, resizes=resizes,
                                  axes={s.name: s.batch_axis if s.batched else None for s in specs}, accept=accept)
        except DataError:
            accept.explain()
            raise


class RunsAt:
    """Whether ONNX Runtime runs the model on random inputs of some shapes: how a guess is
    checked before anything rests on it (a text recognizer may reject square images)."""

    def __init__(self, model, calib: bool = True):
        self.model, self.calib = model, calib
        self.session = None
        self.failed = None  # the first shapes and feeds it did not run on

    def __call__(self, shapes: ResolvedShapes) -> bool:
        from .data import random_data
        from .sessions import create_session

        try:
            if self.session is None:
                self.session = create_session(self.model, "cpu")
            size = shapes.batch_size() or 1
            feeds = next(random_data(self.session.inputs, shapes, None).batches(size)).feeds
        except OnnxPruneError:
            return True  # ORT cannot load it or random data cannot feed it: later steps say why
        try:
            self.session.run(feeds)
        except Exception:  # ORT's own exception classes: the model does not run at these shapes
            self.failed = self.failed or (shapes, feeds)
            return False
        return True

    def explain(self) -> None:
        """After no guess ran: a DataError naming the input random data cannot guess (an integer
        setting) and the --calib line, where that is why; else nothing (the caller's error stands)."""
        from .diagnose import explain_setting

        if self.failed is None or self.session is None:
            return
        shapes, feeds = self.failed
        found = explain_setting(self.model, self.session, feeds, self.calib)
        if found:
            raise DataError(f"the model does not run on random inputs at the guessed shapes ({shapes.describe()}): "
                            f"{found}") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.session is not None:
            self.session.close()
            self.session = None
