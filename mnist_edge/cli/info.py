"""`mnist-edge info`."""

from __future__ import annotations

import json

import click

from mnist_edge.cli import options


@click.command()
@click.option("--model", "model_path", default=None, help="Any model file. [default: the one predict would use]")
@options.as_json
def command(model_path: str | None, as_json: bool) -> None:
    """A model's format, size, accuracy and the metadata it carries."""
    from mnist_edge.edge.info import describe, render
    from mnist_edge.edge.predict import model_for

    d = describe(model_for(model_path))
    click.echo(json.dumps(d) if as_json else render(d))
