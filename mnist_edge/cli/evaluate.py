"""`mnist-edge evaluate`."""

from __future__ import annotations

import json

import click

from mnist_edge.cli import options
from mnist_edge.core.settings import DEFAULT_ARTIFACTS


@click.command()
@click.option("--model", "model_path", type=click.Path(dir_okay=True), default=f"{DEFAULT_ARTIFACTS}/model.pth",
              show_default=True, help="A model.pth checkpoint or any exported model.")
@options.data_dir
@options.as_json
def command(model_path: str, data_dir: str | None, as_json: bool) -> None:
    """Test loss and accuracy of a saved model on its dataset's test split."""
    from mnist_edge.core.data import load_test_split
    from mnist_edge.core.formats import load_runtime
    from mnist_edge.core.scores import score

    rt = load_runtime(model_path)
    split = load_test_split(data_dir, rt.metadata.dataset)
    res = score(rt, split)
    if as_json:
        click.echo(json.dumps({"model": model_path, "format": rt.format, "test_acc": res.accuracy,
                               "test_loss": res.loss, "images": len(split)}))
    else:
        correct = int(round(res.accuracy * len(split)))
        click.echo(f"{model_path} ({rt.format}): test accuracy {100 * res.accuracy:.2f}% "
                   f"({correct}/{len(split)}), loss {res.loss:.4f}")

