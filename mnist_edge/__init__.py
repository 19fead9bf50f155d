"""mnist-edge: train a small MNIST CNN, export it, prove parity, benchmark it and predict on the edge."""

import os as _os

__version__ = "0.1.0"

# torch's C++ deprecation warnings (quantized tensors, TorchScript) bypass Python's warning filters
# and would reach the user's terminal; they are read when torch is first imported, so set it here.
_os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
