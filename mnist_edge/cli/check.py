"""`mnist-edge check`."""

from __future__ import annotations

import json
import sys

import click

from mnist_edge.cli import options


@click.command()
@options.artifacts
@click.option("--checkpoint", "checkpoint_path", type=click.Path(), default=None,
              help="The reference checkpoint. [default: ARTIFACTS/model.pth]")
@options.data_dir
@options.as_json
@options.tolerances
def command(artifacts, checkpoint_path, data_dir, as_json, atol, min_agreement_int8, max_acc_drop_int8,
            min_agreement_reference) -> None:
    """Parity of every exported model with PyTorch on the whole test set (exit 1 if any fails)."""
    from pathlib import Path

    from mnist_edge.core.data import load_test_split
    from mnist_edge.core.errors import MnistEdgeError
    from mnist_edge.core.formats import exported_present, load_runtime
    from mnist_edge.verify.parity import check_folder, reference, table

    artifacts = Path(artifacts)
    if not exported_present(artifacts):
        raise MnistEdgeError(f"{artifacts}: no exported models to check (run `mnist-edge export`)")
    ref_rt = load_runtime(checkpoint_path or artifacts / "model.pth")
    ref = reference(ref_rt, load_test_split(data_dir, ref_rt.metadata.dataset))
    tol = options.tolerances_of(atol, min_agreement_int8, max_acc_drop_int8, min_agreement_reference)
    report = check_folder(ref, artifacts, tol)
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        sizes = sorted({b for r in report.results for b in r.batch_sizes})
        click.echo(f"parity against {ref_rt.path} on {len(ref.labels):,} test images "
                   f"(batches of {', '.join(map(str, sizes))}, as each format takes) and 4 edge inputs")
        click.echo(table(report.results, report.reference_accuracy))
        click.echo("all formats pass" if report.passed else "some formats FAIL")
    if not report.passed:
        sys.exit(1)
