"""`mnist-edge export`."""

from __future__ import annotations

from pathlib import Path

import click

from mnist_edge.cli import options
from mnist_edge.core.formats import families
from mnist_edge.core.settings import QUANTIZE_MODES, ExportSettings

E = ExportSettings  # the defaults shown below are its own


@click.command()
@click.option("--format", "fmt", type=options.RegistryChoice(lambda: [*families(), "all"]), default=E.format,
              show_default=True,
              help="Which format family to write (all: every one this machine can export).")
@click.option("--quantize", is_flag=True, help="Also write the int8 formats of each family.")
@click.option("--quantize-mode", type=click.Choice(QUANTIZE_MODES), default=E.quantize_mode, show_default=True,
              help="ONNX int8: static QDQ (calibrated) or dynamic (MatMul/Gemm only).")
@click.option("--calibration-samples", type=click.IntRange(min=1), default=E.calibration_samples, show_default=True,
              help="Training images used to calibrate static quantization.")
@click.option("--checkpoint", "checkpoint_path", type=click.Path(), default=str(E.checkpoint), show_default=True,
              help="The trained model.pth to export.")
@click.option("--out", type=click.Path(file_okay=False), default=str(E.out), show_default=True)
@options.data_dir
@options.tolerances
def command(fmt, quantize, quantize_mode, calibration_samples, checkpoint_path, out, data_dir,
            atol, min_agreement_int8, max_acc_drop_int8, min_agreement_reference) -> None:
    """Export to the edge formats (optionally int8); each file is verified before it is kept."""
    from mnist_edge.cli.ui import Terminal
    from mnist_edge.verify.export import export_models

    def report(e) -> None:
        p = e.parity
        click.echo(f"wrote {e.path} ({e.size_bytes / 1024:.0f} KB): max |Δlogit| {p.max_abs_diff:.1e}, "
                   f"top-1 agreement {100 * p.top1_agreement:.2f}%, accuracy {100 * p.accuracy:.2f}% "
                   f"({100 * p.accuracy_delta:+.2f})" + exactness(p.exact))

    def exactness(e: dict | None) -> str:
        if not e:
            return ""
        if e["bit_exact"]:
            return ", bit-exact with its integer reference"
        return f", not exact on this CPU ({e['why']})"

    settings = ExportSettings(
        checkpoint=Path(checkpoint_path), out=Path(out), format=fmt, quantize=quantize, quantize_mode=quantize_mode,
        calibration_samples=calibration_samples, data_dir=data_dir,
        tolerances=options.tolerances_of(atol, min_agreement_int8, max_acc_drop_int8, min_agreement_reference))
    export_models(settings, on_done=report, say=Terminal().log)
