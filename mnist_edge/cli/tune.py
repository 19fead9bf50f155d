"""`mnist-edge tune`."""

from __future__ import annotations

import json

import click

from mnist_edge.cli import options
from mnist_edge.core.settings import TUNE_FORMATS, TuneSettings

T = TuneSettings  # the defaults shown below are its own


@click.command()
@options.artifacts
@click.option("--max-drop", type=float, default=T.max_drop, show_default=True,
              help="Largest accuracy drop against the checkpoint, in points (0.1 = 0.1 percentage points).")
@click.option("--batch", type=int, default=T.batch, show_default=True,
              help="The batch size whose p50 latency decides.")
@click.option("--threads", type=int, default=None,
              help="Threads of every session. [default: search 1 thread and all cores]")
@click.option("--formats", default=",".join(T.formats), show_default=True,
              help=f"Comma-separated int8 formats to tune (supported: {', '.join(TUNE_FORMATS)}).")
@click.option("--budget-minutes", type=float, default=T.budget_minutes, show_default=True,
              help="Time for the search; candidates stop being made when most of it is spent.")
@click.option("--recipes", default=None,
              help="Comma-separated recipe names to try, e.g. qoperator,per-tensor (the default recipe always). "
                   "[default: every one, most promising first]")
@options.data_dir
@options.as_json
def command(artifacts, max_drop, batch, threads, formats, budget_minutes, recipes, data_dir, as_json) -> None:
    """The fastest int8 recipe within --max-drop points: searched, verified, timed, then written."""
    from pathlib import Path

    from mnist_edge.cli.ui import Terminal
    from mnist_edge.verify.bench.run import parse_formats
    from mnist_edge.verify.tune.report import summary
    from mnist_edge.verify.tune.search import tune

    result = tune(TuneSettings(artifacts=Path(artifacts), max_drop=max_drop, batch=batch, threads=threads,
                               formats=parse_formats(formats) or (), budget_minutes=budget_minutes,
                               recipes=parse_formats(recipes), data_dir=data_dir), Terminal())
    if as_json:
        click.echo(json.dumps(result.to_json()))
        return
    click.echo(f"wrote {result.written} ({result.chosen.size_bytes / 1024:.0f} KB) in {result.seconds:.0f} s")
    for line in [*summary(result), *result.derived]:
        click.echo(f"  {line}")
    if result.files:
        click.echo(f"reports: {', '.join(p.name for p in result.files)} in {artifacts}/")
