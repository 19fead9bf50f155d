"""mnist-edge: train a small MNIST CNN, export it, prove parity, benchmark it and predict on the edge."""

__version__ = "0.1.0"
