"""The `mnist-edge` command line: the root group; each command is a module of this package.

A command's module is imported only when that command runs (or `--help` lists it), and keeps its own
heavy imports (torch, onnx, matplotlib) inside the command function, so `--help` and the torch-free
commands (predict with ONNX or LiteRT, info, serve) start fast.
"""

from __future__ import annotations

import importlib
import sys

import click

from mnist_edge import __version__
from mnist_edge.core.errors import MnistEdgeError

# Command name -> module in this package: listed here so that the group knows them without importing.
COMMANDS = {name: name for name in
            ("train", "evaluate", "export", "tune", "check", "bench", "report", "predict", "info", "serve", "models")}


class _UserError(click.ClickException):
    """A MnistEdgeError as Click prints it: 'Error: <one line>' on stderr, with its exit code."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class LazyGroup(click.Group):
    """Subcommands resolved by name when used (click's LazyGroup pattern); user errors become one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        return importlib.import_module(f"mnist_edge.cli.{COMMANDS[name]}").command

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MnistEdgeError as e:
            raise _UserError(str(e), e.exit_code) from None
        except ImportError as e:  # a module-level `import torch` of a command whose extra is missing
            from mnist_edge.core.deps import missing_extra

            missing = missing_extra(e)
            if missing is None:
                raise
            raise _UserError(str(missing), missing.exit_code) from None
        except KeyboardInterrupt:
            raise click.Abort() from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mnist-edge")
def cli() -> None:
    """Train a small MNIST CNN, export it to edge formats, prove parity, benchmark, predict."""
    from mnist_edge.core.quiet import quiet_libraries
    from mnist_edge.core.threads import prefer_passive_waits

    prefer_passive_waits()  # before any command imports torch: see core/threads.py
    quiet_libraries()


# This process's command line (the arguments after the program), where it runs as the `mnist-edge` command;
# None where a caller invokes the group itself (a test's CliRunner). `train` runs it again to continue in a new
# process (cli/train.py).
ARGV: list[str] | None = None


def main() -> None:
    global ARGV
    ARGV = sys.argv[1:]
    cli(prog_name="mnist-edge")
