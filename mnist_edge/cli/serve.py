"""`mnist-edge serve`."""

from __future__ import annotations

import click

from mnist_edge.core.settings import ServeSettings

S = ServeSettings  # the defaults shown below are its own


@click.command()
@click.option("--model", "model", default=None,
              help="Any model file. [default: best in artifacts/, else the shipped model]")
@click.option("--host", default=S.host, show_default=True,
              help="Address to listen on (0.0.0.0 exposes the server to the network).")
@click.option("--port", type=click.IntRange(0, 65535), default=S.port, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--workers", type=click.IntRange(min=1), default=S.workers, show_default=True,
              help="Server processes, each with its own copy of the model.")
@click.option("--max-body-bytes", type=click.IntRange(min=1), default=S.max_body_bytes, show_default=True,
              help="Largest request body accepted; a larger one gets 413 before it is read.")
def command(**opts) -> None:
    """Serve predictions over HTTP (POST /predict) and a page to draw digits on (GET /)."""
    from mnist_edge.edge.serve import run

    run(ServeSettings(**opts))
