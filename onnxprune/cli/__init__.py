"""Command line: `onnxprune IN OUT` prunes; subcommands analyze, check, bench, sensitivity.

A thin layer over the library: each subcommand is one file; every OnnxPruneError becomes one line
on stderr and exit code 1.
"""

from __future__ import annotations

import os
import sys

import click

from ..errors import OnnxPruneError

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

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OnnxPruneError as exc:
            _fail(str(exc))
        except KeyboardInterrupt:
            click.echo("onnxprune: interrupted; no output was written", err=True)
            sys.exit(130)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except MemoryError:
            _fail("out of memory")
        except Exception as exc:  # a bug of ours: still one line, the traceback on request
            if os.environ.get("ONNXPRUNE_DEBUG"):
                raise
            _fail(f"internal error: {type(exc).__name__}: {exc} (set ONNXPRUNE_DEBUG=1 for the traceback, and please report it)")


def _fail(message: str) -> None:
    click.echo(f"onnxprune: error: {message}", err=True)
    sys.exit(1)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]},
             help="Structured channel pruning for ONNX models.\n\n"
                  "  onnxprune IN.onnx OUT.onnx      exact by default; --ratio / --target-flops to go further")
@click.version_option(package_name="onnxprune")
def main():
    pass
