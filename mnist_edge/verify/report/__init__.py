"""`mnist-edge report`: one page from a run's own result files and figures (report.html and report.md).

sources.py reads and checks the files (metrics.json, check.json, bench.json, tune.json, the PNG figures);
page.py lays them out once and renders HTML, Markdown and the README's results table from the same blocks.
Torch-free: it reads files only.
"""

from __future__ import annotations

from pathlib import Path

from mnist_edge.core.fileio import write_text
from mnist_edge.verify.report.page import build, markdown, readme_table, render_html
from mnist_edge.verify.report.sources import ReportError

REPORT_FILES = ("report.html", "report.md")

__all__ = ["REPORT_FILES", "ReportError", "readme_table", "write_report"]


def write_report(folder: str | Path) -> list[Path]:
    """Write report.html and report.md into `folder`; both are rendered before either is written."""
    folder = Path(folder)
    doc = build(folder)
    texts = (render_html(doc), markdown(doc))
    paths = [folder / name for name in REPORT_FILES]
    for path, text in zip(paths, texts, strict=True):
        write_text(path, text)
    return paths
