"""`mnist-edge train`: the training loop, fed from in-memory uint8 tensors, checkpointed every epoch.

Determinism: the initial weights come from `seed`; each epoch's shuffling and augmentation use a
generator seeded with (seed, epoch), and the global RNG (dropout) is reseeded per epoch. So an
interrupted run resumed with --resume ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from . import checkpoint, data
from .deps import torch as _torch
from .errors import MnistEdgeError
from .evaluate import evaluate
from .fileio import write_json
from .metadata import DATASETS, ModelMetadata, runtime_versions
from .models import ARCHS, DEFAULT_ARCH, build, count_macs, count_params, default_args
from .ui import log, progress

CHECKPOINT_NAME = "model.pth"
METRICS_NAME = "metrics.json"


@dataclass
class TrainConfig:
    """Everything that decides a training run. Defaults reach >= 99.6% on MNIST in < 10 min on 2 CPU cores."""

    epochs: int = 20
    lr: float = 0.02  # peak learning rate of the one-cycle schedule
    batch_size: int = 256
    optimizer: str = "adam"  # "adam" (AdamW) or "sgd" (momentum 0.9, nesterov)
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1  # softer targets: better calibrated, slightly more accurate
    arch: str = DEFAULT_ARCH
    seed: int = 0
    device: str = "auto"  # auto|cpu|cuda
    # bf16 autocast for the forward pass where the processor has native bf16 (AVX512-BF16/AMX, or a
    # CUDA GPU): ~1.6x faster training here; weights, optimizer and evaluation stay float32.
    precision: str = "auto"  # auto|bf16|fp32
    augment: bool = True  # random rotation +-10 deg, scale +-10%, shift +-1.7 px, per image
    dataset: str = "mnist"
    data_dir: str | None = None
    out: str = "artifacts"
    resume: bool = False
    subset: int | None = None  # train on the first N training images only (quick runs, tests)
    threads: int | None = None  # torch intra-op threads; None = all cores
    plots: bool = True

    # What must match between a checkpoint and a --resume run for the result to be the same run.
    RESUME_KEYS = ("lr", "batch_size", "optimizer", "weight_decay", "label_smoothing", "arch",
                   "seed", "augment", "dataset", "subset", "precision")


class TrainingInterrupted(MnistEdgeError):
    """Ctrl-C during training: the last completed epoch is on disk."""

    exit_code = 130


@dataclass
class TrainResult:
    checkpoint: Path
    history: list[dict]
    test_acc: float
    test_loss: float
    seconds: float


def _pick_device(torch, requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise MnistEdgeError("--device cuda: no CUDA device is available (use --device cpu)")
    return requested


def random_affine(torch, x, g):
    """Per-image random rotation/scale/shift of a float batch (N, 1, 28, 28), using generator g."""
    F = torch.nn.functional
    n = x.shape[0]
    angle = (torch.rand(n, generator=g) * 2 - 1) * math.radians(10)
    scale = 1 + (torch.rand(n, generator=g) * 2 - 1) * 0.1
    shift = (torch.rand(n, 2, generator=g) * 2 - 1) * 0.12  # in [-1, 1] grid units: +-1.7 px
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1)  # (N, 2, 3)
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def epoch_batches(torch, images, labels, cfg: TrainConfig, epoch: int, mean: float, std: float,
                  device: str = "cpu") -> Iterator[tuple]:
    """One epoch of (x, y) batches from in-memory uint8 images (N, 1, 28, 28): shuffled, augmented and
    normalised a whole batch at a time (no per-image transforms), from a generator seeded by (seed, epoch)."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
    perm = torch.randperm(len(labels), generator=g)
    for i in range(0, len(labels), cfg.batch_size):
        idx = perm[i:i + cfg.batch_size]
        x = images[idx].float().div_(255.0)
        if cfg.augment:
            x = random_affine(torch, x, g)
        # channels_last: oneDNN's convolutions and BatchNorm train ~1.4x faster in NHWC on CPU (measured)
        x = ((x - mean) / std).to(device).contiguous(memory_format=torch.channels_last)
        yield x, labels[idx].to(device)


def use_bf16(torch, precision: str, device: str) -> bool:
    """Whether to train with bf16 autocast: 'auto' only where bf16 is native, never emulated (slow)."""
    if precision == "fp32":
        return False
    if device == "cuda":
        native = torch.cuda.is_bf16_supported()
    else:
        native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if precision == "bf16" and not native:
        raise MnistEdgeError(f"--precision bf16: this {device.upper()} has no native bfloat16 (use fp32)")
    return native


def train_step(torch, model, opt, sched, x, y, label_smoothing: float, bf16: bool = False) -> tuple[float, int]:
    """One optimisation step; returns (mean loss, correct predictions) of the batch."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    return loss.item(), int((logits.argmax(1) == y).sum())


def _make_optimizer(torch, cfg: TrainConfig, model, steps: int):
    if cfg.optimizer == "adam":
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True,
                              weight_decay=cfg.weight_decay)
    else:
        raise MnistEdgeError(f"unknown optimizer {cfg.optimizer!r} (adam or sgd)")
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(steps, 1))
    return opt, sched


def _check_config(cfg: TrainConfig) -> None:
    if cfg.arch not in ARCHS:
        raise MnistEdgeError(f"unknown architecture {cfg.arch!r} (known: {', '.join(ARCHS)})")
    if cfg.dataset not in DATASETS:
        raise MnistEdgeError(f"unknown dataset {cfg.dataset!r} (known: {', '.join(DATASETS)})")
    for name in ("epochs", "batch_size"):
        if getattr(cfg, name) < 1:
            raise MnistEdgeError(f"--{name.replace('_', '-')} must be at least 1")
    if not cfg.lr > 0:
        raise MnistEdgeError("--lr must be positive")


def train(cfg: TrainConfig, on_epoch: Callable[[dict], None] | None = None) -> TrainResult:
    """Train per `cfg`, writing model.pth and metrics.json each epoch and the plots at the end."""
    _check_config(cfg)
    torch = _torch()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = _pick_device(torch, cfg.device)
    out = Path(cfg.out)
    ckpt_path, metrics_path = out / CHECKPOINT_NAME, out / METRICS_NAME

    train_split, test_split = data.load_dataset(cfg.data_dir, cfg.dataset)
    if cfg.subset:
        train_split = data.Split(train_split.images[:cfg.subset], train_split.labels[:cfg.subset],
                                 train_split.source)
    images = torch.from_numpy(np.ascontiguousarray(train_split.images)).unsqueeze(1)  # (N,1,28,28) uint8
    labels = torch.from_numpy(train_split.labels.astype(np.int64))
    n = len(labels)
    steps_per_epoch = math.ceil(n / cfg.batch_size)

    spec = DATASETS[cfg.dataset]
    meta = ModelMetadata.for_dataset(cfg.arch, default_args(cfg.arch), cfg.dataset)
    mean, std = meta.mean, meta.std
    torch.manual_seed(cfg.seed)
    model = build(cfg.arch, meta.arch_args, num_classes=len(spec.class_names)).to(
        device, memory_format=torch.channels_last)  # see epoch_batches
    opt, sched = _make_optimizer(torch, cfg, model, cfg.epochs * steps_per_epoch)

    history: list[dict] = []
    start_epoch = 0
    if cfg.resume:
        start_epoch, history = _restore(cfg, ckpt_path, model, opt, sched)
        if start_epoch >= cfg.epochs:
            log(f"{ckpt_path}: already trained {start_epoch} of {cfg.epochs} epochs; nothing to do")
    bf16 = use_bf16(torch, cfg.precision, device)
    log(f"{cfg.arch}: {count_params(model):,} parameters, {count_macs(model) / 1e6:.2f} M MACs/image; "
        f"{n:,} training images, {len(test_split):,} test images, device {device}, "
        f"{'bf16 autocast' if bf16 else 'fp32'}")

    t_start = time.perf_counter()
    epoch = start_epoch
    ev = None  # the last evaluation: the figures reuse it
    try:
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout stream of this epoch
            model.train()
            loss_sum, correct = 0.0, 0
            batches = epoch_batches(torch, images, labels, cfg, epoch, mean, std, device)
            with progress(batches, f"epoch {epoch + 1}/{cfg.epochs}", length=steps_per_epoch) as bar:
                for x, y in bar:
                    loss, right = train_step(torch, model, opt, sched, x, y, cfg.label_smoothing, bf16)
                    loss_sum += loss * len(y)
                    correct += right
            ev = evaluate(model, test_split, meta, device)
            row = {
                "epoch": epoch + 1,
                "train_loss": loss_sum / n,
                "train_acc": correct / n,
                "test_loss": ev.loss,
                "test_acc": ev.accuracy,
                "seconds": round(time.perf_counter() - t0, 2),
            }
            history.append(row)
            meta.test_acc, meta.test_loss, meta.epochs = ev.accuracy, ev.loss, epoch + 1
            _save(cfg, ckpt_path, metrics_path, model, meta, opt, sched, history)
            log(f"epoch {epoch + 1:>3}/{cfg.epochs}  train loss {row['train_loss']:.4f} "
                f"acc {row['train_acc']:.4f}  test loss {row['test_loss']:.4f} "
                f"acc {row['test_acc']:.4f}  {row['seconds']:.1f}s")
            if on_epoch:
                on_epoch(row)
    except KeyboardInterrupt:
        done = len(history)
        where = f"{ckpt_path} holds epoch {done}" if done else "no epoch was completed"
        raise TrainingInterrupted(
            f"interrupted during epoch {epoch + 1}: {where}; continue with `mnist-edge train --resume`"
        ) from None

    if not history:
        raise MnistEdgeError(f"{ckpt_path}: no epochs to report")
    seconds = time.perf_counter() - t_start
    if cfg.plots:
        from .plots import write_all

        ev = ev or evaluate(model, test_split, meta, device)  # a --resume with nothing left to train
        write_all(out, history, model.cpu(), test_split, ev, meta)
    final = history[-1]
    return TrainResult(ckpt_path, history, final["test_acc"], final["test_loss"], seconds)


def _save(cfg, ckpt_path, metrics_path, model, meta, opt, sched, history) -> None:
    meta.seed = cfg.seed
    meta.versions = runtime_versions()
    checkpoint.save(ckpt_path, {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": meta.to_dict(),
        "config": {f.name: getattr(cfg, f.name) for f in fields(cfg)},
        "history": history,
        "epochs_done": len(history),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
    })
    final = history[-1]
    write_json(metrics_path, {
        "arch": cfg.arch,
        "dataset": cfg.dataset,
        "epochs": history,
        "test_acc": final["test_acc"],
        "test_loss": final["test_loss"],
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("resume",)},
    })


def _restore(cfg: TrainConfig, ckpt_path: Path, model, opt, sched) -> tuple[int, list[dict]]:
    """Load weights, optimizer and schedule from a previous run of the same configuration."""
    ckpt = checkpoint.load(ckpt_path)
    saved = ckpt.get("config", {})
    diffs = [k for k in TrainConfig.RESUME_KEYS if k in saved and saved[k] != getattr(cfg, k)]
    if saved.get("epochs", cfg.epochs) != cfg.epochs:
        diffs.append("epochs")  # the one-cycle schedule spans all epochs
    if diffs:
        what = ", ".join(f"{k} ({saved.get(k)!r} there, {getattr(cfg, k)!r} now)" for k in diffs)
        raise MnistEdgeError(f"{ckpt_path}: cannot resume, the run differs in {what}")
    try:
        model.load_state_dict(ckpt["state_dict"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
    except (KeyError, RuntimeError, ValueError) as e:
        raise MnistEdgeError(f"{ckpt_path}: cannot resume from this checkpoint ({e})") from None
    history = list(ckpt.get("history", []))
    log(f"resuming from {ckpt_path}: {len(history)} epoch(s) done")
    return int(ckpt.get("epochs_done", len(history))), history
