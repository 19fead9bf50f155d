"""mnist-edge: train a small MNIST CNN, export it, prove parity, benchmark it and predict on the edge."""

__version__ = "0.1.0"

from mnist_edge.core.quiet import hide_cpp_logs  # noqa: E402  stdlib only; before anything imports torch

hide_cpp_logs()
