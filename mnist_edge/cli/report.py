"""`mnist-edge report`."""

from __future__ import annotations

import click

from mnist_edge.core.settings import DEFAULT_ARTIFACTS


@click.command()
@click.option("--artifacts", type=click.Path(file_okay=False), default=DEFAULT_ARTIFACTS, show_default=True,
              help="Folder with the run's result files (metrics.json, check.json, bench.json, tune.json) and "
                   "figures; report.html and report.md are written there.")
@click.option("--readme-table", is_flag=True,
              help="Print only the results table (Markdown) from check.json and bench.json, as the README shows it.")
def command(artifacts, readme_table) -> None:
    """One page of the run's results (report.html, report.md) from the result files in ARTIFACTS."""
    from mnist_edge.verify.report import readme_table as table
    from mnist_edge.verify.report import write_report

    if readme_table:
        click.echo(table(artifacts), nl=False)
        return
    html, md = write_report(artifacts)
    click.echo(f"wrote {html} and {md}")
