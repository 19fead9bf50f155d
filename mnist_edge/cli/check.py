"""`mnist-edge check`."""

from __future__ import annotations

import json
import sys

import click

from mnist_edge.cli import options
from mnist_edge.core.settings import TUNE_FORMATS, TuneSettings

PER_LAYER_IMAGES = TuneSettings.layer_images  # training images (export's seeded pick), as tune measures
RESULT_FILE = "check.json"  # in the artifacts folder: what --json prints, with the machine it ran on


def table_of_layers(rows: list[dict]) -> str:
    from mnist_edge.verify.tune.layers import LayerError, table

    return table([LayerError(**r) for r in rows])


def _per_layer(artifacts, meta, data_dir) -> dict:
    """{int8 file: its layers' SQNR rows, or one line on why not}: ONNX int8 files only."""
    from mnist_edge.core.formats import FORMATS, exported_present
    from mnist_edge.core.settings import ExportSettings
    from mnist_edge.verify.export import calibration_images
    from mnist_edge.verify.tune.layers import layer_errors

    out: dict = {}
    images = None
    for fmt, path in exported_present(artifacts):
        if not fmt.int8:
            continue
        if not fmt.tunable:
            out[str(path)] = f"per-layer error is measured for {', '.join(TUNE_FORMATS)} only, not {fmt.name}"
            continue
        fp32 = artifacts / FORMATS[fmt.source].filename
        if not fp32.is_file():
            out[str(path)] = f"{fp32}: not found (per-layer error compares against the fp32 ONNX model)"
            continue
        if images is None:
            settings = ExportSettings(calibration_samples=PER_LAYER_IMAGES, data_dir=data_dir)
            images = calibration_images(settings, meta)[0]
        out[str(path)] = [r.to_json() for r in layer_errors(path, fp32, images)]
    return out


def _cores(ctx, param, cpus: tuple[str, ...]) -> tuple[str, ...]:
    """Each --cpu a core QEMU knows: an unknown name is one line before anything slow runs."""
    from mnist_edge.core.errors import MnistEdgeError
    from mnist_edge.edge.arm64.emulator import Unavailable, check_cpu

    try:
        return tuple(check_cpu(c) for c in cpus)
    except Unavailable:
        return cpus  # no QEMU here: the rows are skipped with that reason
    except MnistEdgeError as e:
        raise click.BadParameter(str(e)) from None


def _emulated(ref, artifacts, cpus, tol, limit) -> dict:
    """The ARM64 formats on each emulated core: rows, skip lines, the table and whether all passed."""
    from mnist_edge.verify import arm64

    rows, skipped = arm64.check_cores(ref, artifacts, list(cpus), tol, limit, log=lambda s: click.echo(s, err=True))
    return {"passed": all(r.passed for r in rows), "results": [r.to_json() for r in rows], "skipped": skipped,
            "table": arm64.table(rows, skipped)}


@click.command()
@options.artifacts
@click.option("--checkpoint", "checkpoint_path", type=click.Path(), default=None,
              help="The reference checkpoint. [default: ARTIFACTS/model.pth]")
@click.option("--per-layer", is_flag=True,
              help="Also each int8 ONNX layer's SQNR against model.onnx on calibration images, most harmful first.")
@click.option("--devices/--no-devices", default=True, show_default=True,
              help="Also run the C model on the emulated Cortex-M boards (QEMU; minutes per board).")
@click.option("--cpu", "cpus", multiple=True, metavar="CORE", callback=_cores,
              help="Also run the ARM64 formats (ONNX, LiteRT) on this ARM core emulated by QEMU (cortex-a53, "
                   "cortex-a72, cortex-a76, ...; repeatable); `make arm64` sets the emulation up.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Emulated rows only: the first N test images (all 10,000 take minutes per model). [default: all]")
@options.data_dir
@options.as_json
@options.tolerances
def command(artifacts, checkpoint_path, per_layer, devices, cpus, limit, data_dir, as_json, atol, min_agreement_int8,
            max_acc_drop_int8, min_agreement_reference) -> None:
    """Parity of every exported model with PyTorch on the whole test set (exit 1 if any fails)."""
    from pathlib import Path

    from mnist_edge.core.data import load_test_split
    from mnist_edge.core.errors import MnistEdgeError
    from mnist_edge.core.fileio import WriteError, write_json
    from mnist_edge.core.formats import CHECKPOINT, FORMATS, exported_present, load_checkpoint
    from mnist_edge.verify.bench.report import machine_info
    from mnist_edge.verify.parity import check_folder, reference, table

    artifacts = Path(artifacts)
    machine = machine_info(threads=None)  # at the start: the run's date, and the load others put on the machine
    if not exported_present(artifacts):
        raise MnistEdgeError(f"{artifacts}: no exported models to check (run `mnist-edge export`)")
    ref_rt = load_checkpoint(checkpoint_path or artifacts / FORMATS[CHECKPOINT].filename)
    ref = reference(ref_rt, load_test_split(data_dir, ref_rt.metadata.dataset))
    tol = options.tolerances_of(atol, min_agreement_int8, max_acc_drop_int8, min_agreement_reference)
    report = check_folder(ref, artifacts, tol, devices)
    layers = _per_layer(artifacts, ref_rt.metadata, data_dir) if per_layer else {}
    arm = _emulated(ref, artifacts, cpus, tol, limit) if cpus else None
    result = {**report.to_json(), **({"per_layer": layers} if per_layer else {}),
              **({"emulated": {k: v for k, v in arm.items() if k != "table"}} if arm else {})}
    try:  # the record `mnist-edge report` reads; a read-only folder is still checked
        write_json(artifacts / RESULT_FILE, {**result, "machine": machine})
    except WriteError as e:
        click.echo(f"warning: {e}", err=True)
    if as_json:
        click.echo(json.dumps(result))
    else:
        from mnist_edge.core.cpu import describe

        sizes = sorted({b for r in report.results for b in r.batch_sizes})
        click.echo(f"parity against {ref_rt.path} on {len(ref.labels):,} test images "
                   f"(batches of {', '.join(map(str, sizes))}, as each format takes) and 4 edge inputs, "
                   f"on {describe()}")
        click.echo(table(report.results, report.reference_accuracy))
        click.echo("all formats pass" if report.passed else "some formats FAIL")
        for name, rows in layers.items():
            click.echo(f"\nper-layer int8 error of {name}" + (f" against {artifacts / 'model.onnx'} on "
                       f"{PER_LAYER_IMAGES} calibration images, most harmful first:" if isinstance(rows, list) else ""))
            click.echo(table_of_layers(rows) if isinstance(rows, list) else f"  {rows}")
        if arm:
            click.echo("\n" + arm["table"])
    if not report.passed or (arm and not arm["passed"]):
        sys.exit(1)
