"""`mnist-edge bench`."""

from __future__ import annotations

import json

import click

from mnist_edge.cli import options
from mnist_edge.core.settings import BenchSettings

B = BenchSettings  # the defaults shown below are its own


@click.command()
@click.option("--artifacts", type=click.Path(file_okay=False), default=str(B.artifacts), show_default=True,
              help="Folder with model.pth and the exported models; bench.json, .md and .png go here.")
@click.option("--formats", default=None,
              help="Comma-separated formats, e.g. onnx,onnx-int8. [default: every one in ARTIFACTS]")
@click.option("--batch-sizes", default=",".join(map(str, B.batch_sizes)), show_default=True,
              help="Comma-separated batch sizes.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads of every format. [default: all cores]")
@click.option("--min-time", type=click.FloatRange(min=0), default=B.min_time_s, show_default=True,
              help="Seconds of timing per format and batch size, over all rounds (after an uncounted warm-up).")
@click.option("--rounds", type=click.IntRange(min=1), default=B.rounds, show_default=True,
              help="Timing windows per point, interleaved across formats (the 95% intervals come from them).")
@click.option("--min-accuracy", type=float, default=None,
              help="Exit 1 if any format's test accuracy is below this fraction (e.g. 0.99).")
@click.option("--baseline", type=click.Path(dir_okay=False), default=None,
              help="An earlier bench.json: exit 1 naming any point that got slower beyond both runs' intervals.")
@click.option("--clock-mhz", type=float, default=None,
              help="Emulated Cortex-M rows: also an estimated ms per inference at this clock (from instructions).")
@click.option("--device-images", type=click.IntRange(min=1), default=B.device_images, show_default=True,
              help="Test images the emulated Cortex-M rows count instructions over.")
@options.data_dir
@options.as_json
def command(artifacts, formats, batch_sizes, threads, min_time, rounds, min_accuracy, baseline, clock_mhz,
            device_images, data_dir, as_json) -> None:
    """Latency, throughput, accuracy, size and memory of every format, in interleaved rounds."""
    from pathlib import Path

    from mnist_edge.cli.ui import Terminal
    from mnist_edge.verify.bench.run import parse_batch_sizes, parse_formats, run_bench

    report = run_bench(BenchSettings(
        artifacts=artifacts, formats=parse_formats(formats), batch_sizes=parse_batch_sizes(batch_sizes),
        threads=threads, data_dir=data_dir, min_time_s=min_time, rounds=rounds, min_accuracy=min_accuracy,
        clock_mhz=clock_mhz, device_images=device_images),
        say=Terminal().log, baseline=Path(baseline) if baseline else None)
    click.echo(json.dumps(report.to_json()) if as_json else report.table())
    report.check_min_accuracy()  # after the report is out: exit 1 with one line
    report.check_baseline()
