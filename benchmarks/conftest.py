"""Shared settings of the pytest-benchmark suite (`make bench`): where the models are, threads, data.

MNIST_EDGE_ARTIFACTS  folder with model.pth and the exported models (default: artifacts)
MNIST_EDGE_DATA       the real MNIST files (the training-loop and harness benchmarks need them)
MNIST_EDGE_BENCH_THREADS  threads of every runtime (default: every core, as `mnist-edge bench`)
OMP_WAIT_POLICY       PASSIVE unless set (before torch loads), as the CLI sets it on a busy machine: the busy-core
                      row then shows what the CLI does there (mnist_edge/core/threads.py; MNIST_EDGE_BUSY=0 to
                      time the quiet machine's spinning instead)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mnist_edge.core.data import has_any_data, resolve_data_dir
from mnist_edge.core.threads import BUSY, prefer_passive_waits
from mnist_edge.verify.bench.run import default_threads

os.environ.setdefault(BUSY, "1")  # one process times quiet and busy chunks: the CLI's busy-machine policy
prefer_passive_waits()

ARTIFACTS = Path(os.environ.get("MNIST_EDGE_ARTIFACTS", "artifacts"))
THREADS = int(os.environ.get("MNIST_EDGE_BENCH_THREADS") or default_threads())

_SUMMARY: list[str] = []  # lines printed after the run, whatever pytest's output capture did


@pytest.fixture(scope="session")
def artifacts() -> Path:
    return ARTIFACTS


@pytest.fixture(scope="session")
def threads() -> int:
    return THREADS


@pytest.fixture(scope="session")
def data_dir() -> str:
    """The real dataset's folder ($MNIST_EDGE_DATA, else data/); skips when it holds no MNIST."""
    root = resolve_data_dir(None)
    if not has_any_data(root, "mnist"):
        pytest.skip(f"needs the real MNIST files: set MNIST_EDGE_DATA (nothing in {root}/)")
    return str(root)


@pytest.fixture(scope="session")
def summary():
    """say(line): a line for the 'mnist-edge benchmarks' section at the end of the run."""
    return _SUMMARY.append


def pytest_terminal_summary(terminalreporter) -> None:
    if _SUMMARY:
        terminalreporter.section("mnist-edge benchmarks")
        for line in _SUMMARY:
            terminalreporter.write_line(line)
