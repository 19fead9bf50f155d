"""`mnist-edge predict`."""

from __future__ import annotations

import json
import sys

import click

from mnist_edge.cli import options


@click.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--model", "model_path", default=None,
              help="Any model file (.onnx, .tflite, .pte, .ts, .pth, ...). "
                   "[default: best in artifacts/, else the shipped model]")
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True, help="Also show the next guesses.")
@options.as_json
def command(images: tuple[str, ...], model_path: str | None, top_k: int, as_json: bool) -> None:
    """Predict the digit in each IMAGE (any format and size; - reads one image from stdin)."""
    from mnist_edge.core.errors import MnistEdgeError
    from mnist_edge.edge.predict import model_for, predict_sources

    rt = model_for(model_path)
    stdin = getattr(sys.stdin, "buffer", sys.stdin)  # bytes: an image, not text
    failed = 0
    for res in predict_sources(rt, images, stdin=stdin):
        if isinstance(res, MnistEdgeError):
            failed += 1
            click.echo(f"Error: {res}", err=True)
        elif as_json:
            click.echo(json.dumps(res.to_json()))
        else:
            top = res.top(top_k, rt.metadata.class_names)
            line = f"{res.path}: {res.label} ({100 * res.confidence:.1f}%)"
            if top_k > 1:
                line += "  next: " + ", ".join(f"{lbl} ({100 * p:.1f}%)" for lbl, p in top[1:])
            click.echo(line)
    if failed:
        sys.exit(1)
