"""Shared settings of the pytest-benchmark suite (`make bench`): where the models are, threads, data.

MNIST_EDGE_ARTIFACTS  folder with model.pth and the exported models (default: artifacts)
MNIST_EDGE_DATA       the real MNIST files (the training-loop and harness benchmarks need them)
MNIST_EDGE_BENCH_THREADS  threads of every runtime (default: every core, as `mnist-edge bench`)
OMP_WAIT_POLICY       chosen as the CLI chooses it when a command starts (before torch loads): the runtime's spinning on
                      a quiet machine, PASSIVE where another process holds a core (mnist_edge/core/threads.py;
                      MNIST_EDGE_BUSY=1 or 0, or OMP_WAIT_POLICY itself, to choose); the training benchmark's
                      busy-core row runs its busy steps in a PASSIVE process of its own
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mnist_edge.core.data import has_any_data, resolve_data_dir
from mnist_edge.core.threads import prefer_passive_waits
from mnist_edge.verify.bench.run import default_threads

prefer_passive_waits()  # what `mnist-edge bench` and `train` would run with here, now

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
