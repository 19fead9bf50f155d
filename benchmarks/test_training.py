"""Training throughput: mnist-edge's loop against the seed's torchvision-style loop, same model, same run.

mnist-edge (train.py): the training set lives in memory as one uint8 tensor; a batch is an index
into it, converted, augmented (random_affine) and normalised as a whole. The seed: a Dataset that
does what torchvision.datasets.MNIST.__getitem__ does (a PIL image per item, then ToTensor and
Normalize), batched by a DataLoader of 64. Both train edgenet with train.py's optimizer and train_step
for a fixed number of steps after uncounted warm-up steps, taking turns so that machine noise hits both alike.
Writes ARTIFACTS/bench_train.json.
"""

from __future__ import annotations

import os
import time

import numpy as np

from mnist_edge.core.fileio import write_json

STEPS = int(os.environ.get("MNIST_EDGE_TRAIN_STEPS", "200"))  # timed steps per loop (>= 200: a stable ratio)
WARMUP_STEPS = 2
CHUNK = 5  # the two loops take turns, CHUNK steps at a time
SEED_BATCH = 64  # the seed's DataLoader
GOAL = 2.0  # mnist-edge's loop should train at least this many times as many images/s


def edge_batches(torch, images, labels, recipe, mean: float, std: float):
    """train.py's own batches (mnist_edge.train.epoch_batches), epoch after epoch."""
    from mnist_edge.pytorch.train import epoch_batches

    epoch = 0
    while True:
        yield from epoch_batches(images, labels, recipe, recipe.batch_size, epoch, mean, std)
        epoch += 1


def seed_batches(torch, images: np.ndarray, labels: np.ndarray, mean: float, std: float):
    """The seed's batches: torchvision's MNIST item pipeline over the same arrays, DataLoader of 64."""
    from torchvision import transforms

    try:
        from torchvision.utils import _Image_fromarray as fromarray  # what torchvision's MNIST calls
    except ImportError:
        from PIL.Image import fromarray

    class IdxMNIST(torch.utils.data.Dataset):
        """torchvision.datasets.MNIST without the download: same storage, same __getitem__."""

        def __init__(self, transform):
            self.data = torch.from_numpy(images)  # (N, 28, 28) uint8, as torchvision keeps it
            self.targets = torch.from_numpy(labels.astype(np.int64))
            self.transform = transform

        def __len__(self) -> int:
            return len(self.data)

        def __getitem__(self, index: int):
            img, target = self.data[index], int(self.targets[index])
            img = fromarray(img.numpy(), mode="L")
            return self.transform(img), target

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((mean,), (std,))])
    loader = torch.utils.data.DataLoader(IdxMNIST(tf), batch_size=SEED_BATCH, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    while True:
        yield from loader


def trainer(torch, batches, mnist_edge: bool):
    """A fresh edgenet trained by train.py's own step; step() trains one batch -> (images, data seconds).

    mnist_edge=True: as train.py runs it (channels_last, bf16 autocast where native); False: as the
    seed ran it (torch's default layout, float32).
    """
    from mnist_edge.core.settings import TrainRecipe
    from mnist_edge.pytorch.models import build
    from mnist_edge.pytorch.train import StepPlan, make_optimizer, train_step, use_bf16

    recipe = TrainRecipe()
    torch.manual_seed(0)
    model = build("edgenet").train()
    bf16 = mnist_edge and use_bf16(recipe.precision, "cpu")
    if mnist_edge:
        model = model.to(memory_format=torch.channels_last)
    steps = WARMUP_STEPS + STEPS
    opt, sched = make_optimizer(recipe, model, StepPlan(recipe.batch_size, recipe.lr, steps, steps))

    def step() -> tuple[int, float]:
        t0 = time.perf_counter()
        x, y = next(batches)
        data_s = time.perf_counter() - t0
        train_step(model, opt, sched, x, y, recipe.label_smoothing, bf16)
        return len(y), data_s

    return step


def interleaved(steps_of: dict, steps: int, warmup: int, chunk: int = CHUNK) -> dict:
    """Time each loop for `steps` steps after `warmup`, in alternating chunks, so that a noisy
    neighbour slows both loops alike; -> {name: images/s, step and data ms}."""
    totals = {name: [0, 0.0, 0.0] for name in steps_of}  # images, seconds, data seconds
    for step in steps_of.values():
        for _ in range(warmup):
            step()
    done = 0
    while done < steps:
        n = min(chunk, steps - done)
        for name, step in steps_of.items():
            t0 = time.perf_counter()
            for _ in range(n):
                images, data_s = step()
                totals[name][0] += images
                totals[name][2] += data_s
            totals[name][1] += time.perf_counter() - t0
        done += n
    return {name: {"images_per_s": imgs / secs, "steps": steps, "batch_size": imgs // steps, "seconds": secs,
                   "step_ms": 1e3 * secs / steps, "data_ms_per_step": 1e3 * data_s / steps}
            for name, (imgs, secs, data_s) in totals.items()}


def test_training_throughput_against_the_seed_loop(data_dir, artifacts, threads, summary):
    from mnist_edge.core.data import load_dataset
    from mnist_edge.core.deps import torch as _torch
    from mnist_edge.core.metadata import DATASETS
    from mnist_edge.core.settings import TrainRecipe

    torch = _torch()
    torch.set_num_threads(threads)
    train, _ = load_dataset(data_dir, "mnist", allow_download=False)
    spec = DATASETS["mnist"]
    images = torch.from_numpy(np.ascontiguousarray(train.images)).unsqueeze(1)  # (N, 1, 28, 28) uint8
    labels = torch.from_numpy(train.labels.astype(np.int64))

    recipe = TrainRecipe()
    edge_bs = recipe.batch_size
    res = interleaved({
        "mnist_edge": trainer(torch, edge_batches(torch, images, labels, recipe, spec.mean, spec.std), True),
        "seed": trainer(torch, seed_batches(torch, train.images, train.labels, spec.mean, spec.std), False),
    }, STEPS, WARMUP_STEPS)
    edge, seed = res["mnist_edge"], res["seed"]
    ratio = edge["images_per_s"] / seed["images_per_s"]
    result = {"arch": "edgenet", "threads": threads, "mnist_edge": edge, "seed": seed, "ratio": ratio,
              "goal": GOAL, "goal_met": ratio >= GOAL}
    if artifacts.is_dir():
        write_json(artifacts / "bench_train.json", result)
    for name, r in (("mnist-edge", edge), ("seed", seed)):
        summary(f"training {name:<10} edgenet, batch {r['batch_size']:>3}: {r['images_per_s']:7.0f} img/s  "
                f"(step {r['step_ms']:.0f} ms, of which data {r['data_ms_per_step']:.1f} ms; {r['steps']} steps)")
    verdict = "met" if ratio >= GOAL else "NOT met"
    summary(f"training ratio mnist-edge / seed: {ratio:.2f}x (goal >= {GOAL:g}x: {verdict})")
    assert edge["images_per_s"] > 0 and seed["images_per_s"] > 0
    assert edge["batch_size"] == edge_bs and seed["batch_size"] == SEED_BATCH
