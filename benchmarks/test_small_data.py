"""Accuracy on little data and few epochs: mnist-edge's training against a seed-style loop, same data, same run.

mnist-edge: `train()` with the default recipe (what `mnist-edge train --subset N --epochs E` does). The
seed: what the systems this tool grew from ran: Adam at a constant 1e-3, batch 64, shuffled, no
augmentation, float32, plain cross-entropy, on edgenet (only the recipe differs) and on the seed's own
small CNN without BatchNorm (conv2pool-fc2, which short runs do not hurt through lagging statistics).
Its batches are cut from the same in-memory arrays (the per-image PIL pipeline changes the speed,
measured in test_training.py, not the accuracy). All score the same test split.

Rows: subsets of 1,000 / 6,000 / 60,000 training images x 1 / 3 epochs (and 1,000 x 5); the
60,000 x 3 row is about 4 of the ~6 minutes here. `make bench-training` runs this file (and
test_training.py) when the training code changed, not on every `make bench`.
Fashion-MNIST rows where its IDX files are found: MNIST_EDGE_FASHION_DATA, else the folder Debian's
`dataset-fashion-mnist` package installs. Writes ARTIFACTS/bench_small_data.json.
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path

import pytest

from mnist_edge.core.cpu import cpu_info
from mnist_edge.core.fileio import write_json

FASHION_DIR = Path(os.environ.get("MNIST_EDGE_FASHION_DATA") or "/usr/share/datasets/fashion-mnist")
SEED_LR, SEED_BATCH = 1e-3, 64
SEED_ARCHS = ("edgenet", "conv2pool-fc2")
ROWS = [("mnist", 1_000, 1), ("mnist", 1_000, 3), ("mnist", 1_000, 5), ("mnist", 6_000, 1), ("mnist", 6_000, 3),
        ("mnist", 60_000, 1), ("mnist", 60_000, 3), ("fashion-mnist", 6_000, 1), ("fashion-mnist", 6_000, 3)]
# What must hold with the default recipe (issue 10); every row also: mnist-edge >= the seed loop.
FLOORS = {("mnist", 6_000, 1): 0.90, ("mnist", 1_000, 5): 0.85}

_RESULTS: list[dict] = []


@functools.cache
def _splits(data_dir: str, dataset: str):
    """(train, test) of a dataset, loaded once for all the seed loops."""
    from mnist_edge.core.data import load_dataset

    return load_dataset(data_dir, dataset, allow_download=False)


def seed_loop(arch: str, dataset: str, data_dir: str, subset: int, epochs: int, threads: int) -> float:
    """Test accuracy of `arch` trained the seed's way on the first `subset` training images."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from mnist_edge.core.metadata import ModelMetadata
    from mnist_edge.pytorch.evaluate import evaluate
    from mnist_edge.pytorch.models import build, default_args

    torch.set_num_threads(threads)
    train, test = _splits(data_dir, dataset)
    meta = ModelMetadata.for_dataset(arch, default_args(arch), dataset)
    x_all = (torch.from_numpy(train.images[:subset]).unsqueeze(1).float() / 255 - meta.mean) / meta.std
    y_all = torch.from_numpy(train.labels[:subset].astype(np.int64))
    torch.manual_seed(0)
    model = build(arch, num_classes=len(meta.class_names)).train()
    opt = torch.optim.Adam(model.parameters(), lr=SEED_LR)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        perm = torch.randperm(len(y_all), generator=g)
        for i in range(0, len(perm), SEED_BATCH):
            idx = perm[i:i + SEED_BATCH]
            loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return evaluate(model, test, meta).accuracy


def edge_loop(dataset: str, data_dir: str, subset: int, epochs: int, threads: int, out: Path) -> tuple[float, str]:
    """Test accuracy of mnist-edge's default recipe on the same images, and its plan (and precision) in words."""
    from mnist_edge.core.settings import TrainSettings
    from mnist_edge.pytorch.train import plan_steps, train

    settings = TrainSettings.of(dataset=dataset, data_dir=data_dir, subset=subset, epochs=epochs, threads=threads,
                                out=str(out), plots=False)
    plan = plan_steps(settings.recipe, subset)
    res = train(settings)
    precision = json.loads((out / "metrics.json").read_text())["precision"]  # what auto chose on this CPU
    return res.test_acc, f"{plan.total_steps} steps of {plan.batch_size}, peak lr {plan.lr:.3g}, {precision}"


def _data_for(dataset: str, mnist_dir: str) -> str:
    if dataset == "mnist":
        return mnist_dir
    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST not found in {FASHION_DIR} (set MNIST_EDGE_FASHION_DATA, or "
                    f"`apt-get install dataset-fashion-mnist`)")
    return str(FASHION_DIR)


# Rows where mnist-edge is known to lose to a seed loop, and why (reported as XFAIL, not hidden).
KNOWN_GAPS: dict[tuple[str, int, int], str] = {}  # none now: Fashion-MNIST has its own augmentation


@pytest.mark.parametrize("dataset, subset, epochs", ROWS, ids=[f"{d}-{n}x{e}" for d, n, e in ROWS])
def test_small_data_accuracy_against_the_seed_loop(dataset, subset, epochs, data_dir, artifacts, threads, summary,
                                                   tmp_path):
    folder = _data_for(dataset, data_dir)
    t0 = time.perf_counter()
    edge, plan = edge_loop(dataset, folder, subset, epochs, threads, tmp_path)
    t1 = time.perf_counter()
    seed = {arch: seed_loop(arch, dataset, folder, subset, epochs, threads) for arch in SEED_ARCHS}
    t2 = time.perf_counter()
    row = {"dataset": dataset, "subset": subset, "epochs": epochs, "mnist_edge_acc": edge, "seed_acc": seed,
           "mnist_edge_plan": plan, "mnist_edge_s": round(t1 - t0, 1), "seed_s": round(t2 - t1, 1),
           "floor": FLOORS.get((dataset, subset, epochs))}
    _RESULTS.append(row)
    if artifacts.is_dir():
        write_json(artifacts / "bench_small_data.json", {"seed_loop": f"Adam {SEED_LR:g}, batch {SEED_BATCH}",
                                                         "threads": threads, "cpu": cpu_info(), "rows": _RESULTS})
    seeds = "  ".join(f"seed {arch} {100 * acc:6.2f}%" for arch, acc in seed.items())
    summary(f"small data {dataset:<13} {subset:>6,} x {epochs}: mnist-edge {100 * edge:6.2f}%  {seeds}"
            f"  ({plan}; {t1 - t0:.0f} s and {t2 - t1:.0f} s)")
    best = max(seed.values())
    if edge < best and (dataset, subset, epochs) in KNOWN_GAPS:
        pytest.xfail(f"mnist-edge {100 * edge:.2f}% below the seed loop's {100 * best:.2f}%: "
                     f"{KNOWN_GAPS[(dataset, subset, epochs)]}")
    assert edge >= best, f"mnist-edge {edge:.4f} below the seed loop's {best:.4f}"
    if row["floor"]:
        assert edge >= row["floor"], f"{edge:.4f} below the floor {row['floor']}"
