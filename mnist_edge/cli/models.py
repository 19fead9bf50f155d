"""`mnist-edge models` (torch-free: sizes pinned in core.archs, footprints and accuracies recorded beside it)."""

from __future__ import annotations

import json

import click

from mnist_edge.cli.options import as_json


def _limits(ctx, param, value):
    if value is None:
        return None
    from mnist_edge.core.archs import parse_limits

    try:
        return parse_limits(value)
    except ValueError as e:
        raise click.BadParameter(str(e), ctx, param) from None


@click.command()
@click.option("--fits", "limits", metavar="flash=SIZE,ram=SIZE", callback=_limits,
              help="Only the architectures whose measured int8 C firmware fits a part with this much memory "
                   "(units B, K, M; either key), best accuracy first. E.g. --fits flash=32K,ram=8K")
@as_json
def command(limits, as_json: bool) -> None:
    """List the architectures: size, cost per image, int8 C footprint on Cortex-M, recorded accuracy."""
    from mnist_edge.core.archs import MeasuredFileError, load_measured, rows, table

    try:
        measured = load_measured()
    except MeasuredFileError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        limits_json = None if limits is None else {"flash_bytes": limits.flash, "ram_bytes": limits.ram}
        click.echo(json.dumps({"fits": limits_json, "archs": rows(measured, limits)}, indent=2))
    else:
        click.echo(table(measured, limits))
