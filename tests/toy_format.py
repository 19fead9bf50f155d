"""A format that exists only in the tests: its exporter and loader, the two functions a new format brings.

The file is an ONNX graph under another name; what matters is that nothing outside its registry row and
these two functions had to change for export, check, bench, evaluate and predict to handle it.
"""

from __future__ import annotations

from pathlib import Path

LOADS: list[str] = []  # which paths the loader opened in this process


def export(job, fmt, tmp: Path):
    from mnist_edge.pytorch.exporters.onnx import export_fp32

    return export_fp32(job, fmt, tmp)


def load(path: Path, fmt, threads: int | None = None):
    from mnist_edge.edge.runtimes.onnx import load as load_onnx

    LOADS.append(str(path))
    return load_onnx(path, fmt, threads)
