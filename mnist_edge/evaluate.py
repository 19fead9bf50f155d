"""Test loss and accuracy of a PyTorch model on a split held in memory."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import Split
from .deps import torch as _torch
from .metadata import ModelMetadata

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
    """Run `model` over the whole split in eval mode; loss is mean cross-entropy."""
    torch = _torch()
    F = torch.nn.functional
    was_training = model.training
    model.eval()
    images = torch.from_numpy(split.images)
    labels = torch.from_numpy(split.labels.astype(np.int64))
    total_loss, outs = 0.0, []
    with torch.no_grad():
        for i in range(0, len(labels), EVAL_BATCH):
            x = torch.from_numpy(meta.normalize(images[i:i + EVAL_BATCH].numpy())).to(device)
            y = labels[i:i + EVAL_BATCH].to(device)
            out = model(x)
            total_loss += float(F.cross_entropy(out, y, reduction="sum"))
            outs.append(out.float().cpu())
    model.train(was_training)
    logits = torch.cat(outs).numpy()
    preds = logits.argmax(1)
    return EvalResult(
        loss=total_loss / len(labels),
        accuracy=float((preds == split.labels).mean()),
        predictions=preds,
        logits=logits,
    )
