"""`mnist-edge models` (torch-free: the sizes are pinned in core.archs)."""

from __future__ import annotations

import click


@click.command()
def command() -> None:
    """List the architectures with their size and cost per image."""
    from mnist_edge.core.archs import table

    click.echo(table())
