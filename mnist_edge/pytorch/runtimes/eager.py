"""Eager PyTorch from a model.pth checkpoint: the reference every other format is held to."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mnist_edge.core.formats import Format, Runtime
from mnist_edge.core.metadata import ModelMetadata


@dataclass
class TorchRuntime(Runtime):
    """A torch module in eval mode behind the runtime interface."""

    format: str
    path: Path
    metadata: ModelMetadata
    model: torch.nn.Module
    device: str = "cpu"

    def run(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
            return self.model(x).float().cpu().numpy()


def load_checkpoint(path: Path, fmt: Format, threads: int | None = None) -> TorchRuntime:
    from mnist_edge.pytorch.checkpoint import load_model

    set_threads(threads)
    model, meta = load_model(path)
    return TorchRuntime(fmt.name, path, meta, model)


def set_threads(threads: int | None) -> None:
    """torch's intra-op threads, when given."""
    if threads:
        torch.set_num_threads(threads)
