"""Every failure a user can cause is an OnnxPruneError: the CLI prints its message as one line
and exits with code 1, never a traceback."""


class OnnxPruneError(Exception):
    """Base of all user-facing errors; the message says what is wrong and what to do."""


class ModelLoadError(OnnxPruneError):
    """The input file is missing, unreadable, not ONNX, truncated or fails the checker."""


class ModelSaveError(OnnxPruneError):
    """The output cannot be written where asked (missing folder, same path as the input...)."""


class ConfigError(OnnxPruneError):
    """An option value is out of range or options contradict each other."""


class DataError(OnnxPruneError):
    """Calibration or evaluation data does not match the model (names, shapes, dtypes, values)."""


class RuntimeUnavailableError(OnnxPruneError):
    """ONNX Runtime, or the requested execution provider, cannot be used here."""


class TargetUnreachableError(OnnxPruneError):
    """A pruning target cannot be met, typically because too many channel groups are blocked."""


class ValidationFailedError(OnnxPruneError):
    """The written model does not match the original within the given tolerances."""
