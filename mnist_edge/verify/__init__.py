"""Verification: parity of every format against PyTorch, and the benchmark (may load any runtime)."""
