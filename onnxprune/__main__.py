import signal
import sys


def _interrupted_while_starting(signum, frame):
    """Ctrl-C while the command line is still being imported (click, under load a second or
    more): the same one line as later, not an import traceback."""
    sys.stderr.write("onnxprune: interrupted; no output was written\n")
    raise SystemExit(130)


if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_while_starting)
from .cli import main  # noqa: E402

if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
    signal.signal(signal.SIGINT, signal.default_int_handler)
main()
