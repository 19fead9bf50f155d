"""Test loss and accuracy of a PyTorch model being trained, through the same scoring as every format."""

from __future__ import annotations

from pathlib import Path

from mnist_edge.core.data import Split
from mnist_edge.core.formats import CHECKPOINT
from mnist_edge.core.metadata import ModelMetadata
from mnist_edge.core.scores import Scores, score
from mnist_edge.pytorch.runtimes.eager import TorchRuntime


def evaluate(model, split: Split, meta: ModelMetadata, device: str = "cpu") -> Scores:
    """Score `model` over the whole split in eval mode (restoring its mode); loss is mean cross-entropy."""
    was_training = model.training
    model.eval()
    try:
        return score(TorchRuntime(CHECKPOINT, Path("<in memory>"), meta, model, device), split)
    finally:
        model.train(was_training)
