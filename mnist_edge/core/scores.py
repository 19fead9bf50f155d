"""Scoring any runtime on a data split: batched logits, accuracy, cross-entropy (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mnist_edge.core.data import Split
from mnist_edge.core.formats import Runtime

# images per run() when scoring: the batch `check` scores its PyTorch reference at, and small enough that the
# default model's largest activation (12.8 MB) stays under glibc's 32 MB mmap ceiling; at 1,000 (50 MB) it is
# mapped and unmapped on every batch: an evaluation of the 10,000 test images during training took 1.2 s and
# about 200,000 page faults at 1,000, 0.8 s and none at 256 (the same loss and accuracy, bit for bit; measured)
EVAL_BATCH = 256
MISTAKES_BATCH = 1000  # the "test batch" of graph2.png (the seed's test loader)


@dataclass
class Scores:
    """What a model computes on a split, and how well."""

    loss: float  # mean cross-entropy
    accuracy: float  # fraction 0..1
    logits: np.ndarray  # (N, C) float32

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(1)

    def mistakes_per_batch(self, labels: np.ndarray, batch: int = MISTAKES_BATCH) -> list[int]:
        wrong = self.predictions != labels
        return [int(wrong[i:i + batch].sum()) for i in range(0, len(labels), batch)]


def run_batched(rt: Runtime, x: np.ndarray, batch: int = EVAL_BATCH) -> np.ndarray:
    """Logits for a normalised array, in batches of `batch`."""
    return np.concatenate([rt.run(x[i:i + batch]) for i in range(0, len(x), batch)])


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose top-1 class is the label."""
    return float((logits.argmax(1) == labels).mean())


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    z = logits.astype(np.float64)
    z = z - z.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels.astype(np.int64)].mean())


def score(rt: Runtime, split: Split, batch: int = EVAL_BATCH) -> Scores:
    """Loss and accuracy of any runtime on a split (uint8 images, labels)."""
    logits = run_batched(rt, rt.metadata.normalize(split.images), batch)
    return Scores(cross_entropy(logits, split.labels), accuracy(logits, split.labels), logits)
