"""Command line: `onnxprune IN OUT` prunes; subcommands analyze, check, bench, sensitivity.

A thin layer over the library: each subcommand is one file. Every failure, click's usage errors
included, becomes one line on stderr and an exit code (errors.py): 0 done, 1 error, 3 FAILED,
130 interrupted.
"""

from __future__ import annotations

import os
import sys

import click

from ..errors import EXIT_ERROR, EXIT_INTERRUPTED, OnnxPruneError

# Subcommands; anything else as first argument means the default `prune` command.
_SUBCOMMANDS = {
    "prune": ("prune", "prune_cmd"),
    "analyze": ("analyze", "analyze_cmd"),
    "check": ("check", "check_cmd"),
    "bench": ("bench", "bench_cmd"),
    "sensitivity": ("sensitivity", "sensitivity_cmd"),
}


class _Main(click.Group):
    """A group whose first argument may be a model path, meaning `prune`."""

    def list_commands(self, ctx):
        return sorted(_SUBCOMMANDS)

    def get_command(self, ctx, name):
        entry = _SUBCOMMANDS.get(name)
        if entry is None:
            return None
        import importlib

        module = importlib.import_module(f".{entry[0]}", __name__)
        return getattr(module, entry[1])

    def parse_args(self, ctx, args):
        if args and args[0] not in _SUBCOMMANDS and args[0] not in ("--help", "-h", "--version"):
            args = ["prune", *args]
        return super().parse_args(ctx, args)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """click's main, with its usage errors (3 lines, exit 2) made one line and exit 1 like every
        other bad input."""
        try:
            code = super().main(args, "onnxprune", complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:  # `onnxprune` alone: the help, as a usage error
            click.echo(exc.ctx.get_help(), err=True)
            sys.exit(EXIT_ERROR)
        except click.ClickException as exc:
            where = getattr(exc, "ctx", None)
            hint = f" (see '{where.command_path} --help')" if where is not None else ""
            _fail(exc.format_message().rstrip(".") + hint)
        except click.exceptions.Abort:
            _interrupted()
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OnnxPruneError as exc:
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _interrupted()
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except MemoryError:
            _fail("out of memory")
        except Exception as exc:  # a bug of ours: still one line, the traceback on request
            if os.environ.get("ONNXPRUNE_DEBUG"):
                raise
            _fail(f"internal error: {type(exc).__name__}: {exc} (set ONNXPRUNE_DEBUG=1 for the traceback, and please report it)")


def _fail(message: str, code: int = EXIT_ERROR) -> None:
    click.echo(f"onnxprune: error: {one_line(message)}", err=True)
    sys.exit(code)


def _interrupted() -> None:
    click.echo("onnxprune: interrupted; no output was written", err=True)
    sys.exit(EXIT_INTERRUPTED)


def one_line(text: str) -> str:
    """Control characters (a newline in a file name) escaped, so an error is always one line."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]},
             help="Structured channel pruning for ONNX models.\n\n"
                  "  onnxprune IN.onnx OUT.onnx      exact by default; --ratio / --target-flops to go further",
             epilog="Exit codes: 0 done; 1 error, nothing done (bad input, option or usage; one line on stderr); "
                    "3 FAILED, the model does not meet its bound; 130 interrupted. "
                    "--json FILE on every command writes the figures ('-': stdout).")
@click.version_option(package_name="onnxprune")
def main():
    pass
