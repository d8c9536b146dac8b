"""Every failure a user can cause is an OnnxPruneError: the CLI prints its message as one line
and exits with the error's `exit_code`, never a traceback.

Exit codes (a public interface, documented in README.md and docs/JSON.md):
0 done; 1 error, nothing was done (bad input, bad option or usage, unwritable output, no runtime);
3 FAILED, a check ran and the model does not meet its bound; 130 interrupted. 2 is never used, so
that a usage error of click or argparse in a wrapper never reads as FAILED.
"""

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_FAILED = 3
EXIT_INTERRUPTED = 130


class OnnxPruneError(Exception):
    """Base of all user-facing errors; the message says what is wrong and what to do.

    The message is kept to one line: line breaks in it (a file name with a newline, a message
    quoted from another library) are shown escaped."""

    def __init__(self, message: str = "", *args):
        message = str(message).replace("\r", "\\r").replace("\n", "\\n")
        super().__init__(message, *args)

    exit_code = EXIT_ERROR


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
    """The pruned model does not match the original within the given bounds, or does not run."""

    exit_code = EXIT_FAILED


class QuantizationError(OnnxPruneError):
    """onnxruntime.quantization could not quantize the model (--quantize)."""
