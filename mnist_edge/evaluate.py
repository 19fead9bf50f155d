"""Test loss and accuracy of a PyTorch model being trained, through the same runtime as every format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import Split
from .metadata import ModelMetadata
from .runtimes import TorchRuntime, evaluate_runtime

EVAL_BATCH = 1000  # images per forward pass when evaluating; also the "test batch" of graph2.png


@dataclass
class EvalResult:
    loss: float
    accuracy: float  # fraction 0..1
    predictions: np.ndarray  # (N,) predicted class per image
    logits: np.ndarray  # (N, C) float32

    def mistakes_per_batch(self, labels: np.ndarray, batch: int = EVAL_BATCH) -> list[int]:
        wrong = self.predictions != labels
        return [int(wrong[i:i + batch].sum()) for i in range(0, len(labels), batch)]


def evaluate(model, split: Split, meta: ModelMetadata, device: str = "cpu") -> EvalResult:
    """Run `model` over the whole split in eval mode (restoring its mode); loss is mean cross-entropy."""
    was_training = model.training
    model.eval()
    try:
        scores = evaluate_runtime(TorchRuntime("pytorch", Path("<in memory>"), meta, model, device), split,
                                  batch=EVAL_BATCH)
    finally:
        model.train(was_training)
    return EvalResult(scores.loss, scores.accuracy, scores.logits.argmax(1), scores.logits)
