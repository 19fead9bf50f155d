"""`mnist-edge train`: the training loop, fed from in-memory uint8 tensors, checkpointed every epoch.

Determinism: the initial weights come from `seed`; each epoch's shuffling and augmentation use a
generator seeded with (seed, epoch), and the global RNG (dropout) is reseeded per epoch; BatchNorm's
running statistics are recomputed from a fixed sample after every epoch. So an interrupted run
resumed with --resume ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import copy
import datetime
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mnist_edge.core import data
from mnist_edge.core.archs import ARCH_SPECS
from mnist_edge.core.cpu import cpu_info
from mnist_edge.core.errors import MnistEdgeError
from mnist_edge.core.fileio import MB, ensure_writable, write_json
from mnist_edge.core.malloc import keep_freed_memory
from mnist_edge.core.metadata import DATASETS, DIGITS_AUGMENTATION, Augmentation, ModelMetadata, runtime_versions
from mnist_edge.core.progress import Reporter, Silent
from mnist_edge.core.scores import Scores
from mnist_edge.core.settings import TrainRecipe, TrainSettings
from mnist_edge.core.threads import load_average
from mnist_edge.pytorch import checkpoint
from mnist_edge.pytorch.evaluate import evaluate
from mnist_edge.pytorch.models import build, count_macs, count_params, default_args

CHECKPOINT_NAME = "model.pth"
METRICS_NAME = "metrics.json"
# Test accuracy this far below train accuracy (same final weights, eval mode) is a broken run, not the
# generalisation gap of a small subset: BatchNorm statistics that lag (43% test after 6,000 images x 1
# epoch before recalibration), a run too short to learn, or a test set of another task (near 10%).
FAR_BELOW = 0.15
# Training images that recalibrate BatchNorm and give the final train accuracy: per-channel statistics
# over 4,096 x 7 x 7 positions and more; the forward passes cost about 6 training steps (measured).
CALIBRATION_IMAGES = 4096


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
    train_acc: float  # the final weights on the calibration sample of training images, eval mode
    warning: str | None = None  # far_below_warning's line, if any


def pick_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise MnistEdgeError("--device cuda: no CUDA device is available (use --device cpu)")
    return requested


def random_affine(x: torch.Tensor, g: torch.Generator, aug: Augmentation = DIGITS_AUGMENTATION) -> torch.Tensor:
    """Per-image random rotation/scale/shift (and mirror, if aug.hflip) of a float batch (N, 1, 28, 28),
    using generator g."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=g) * 2 - 1) * math.radians(aug.rotation_deg)
    scale = 1 + (torch.rand(n, generator=g) * 2 - 1) * aug.scale
    shift = (torch.rand(n, 2, generator=g) * 2 - 1) * aug.shift  # in [-1, 1] grid units
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1)  # (N, 2, 3)
    if aug.hflip:  # drawn after the affine numbers, so profiles without it keep their streams
        mirror = torch.rand(n, generator=g) < aug.hflip
        theta[:, :, 0] *= torch.where(mirror, -1.0, 1.0)[:, None]  # x_in = -x_out: a left-right mirror
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


@dataclass(frozen=True)
class StepPlan:
    """How a recipe runs on n images: the batch, the peak lr and the number of optimizer steps."""

    batch_size: int
    lr: float
    steps_per_epoch: int
    total_steps: int


def plan_steps(recipe: TrainRecipe, n: int) -> StepPlan:
    """recipe.batch_size and lr, or, where that gives fewer than recipe.min_steps steps (little data, few
    epochs), the batch halved until it does (not below min_batch) with the lr scaled by sqrt(batch ratio)."""
    batch = recipe.batch_size
    while batch // 2 >= recipe.min_batch and recipe.epochs * math.ceil(n / batch) < recipe.min_steps:
        batch //= 2
    per_epoch = math.ceil(n / batch)
    return StepPlan(batch, recipe.lr * math.sqrt(batch / recipe.batch_size), per_epoch, recipe.epochs * per_epoch)


def to_input(x: torch.Tensor, mean: float, std: float, device: str) -> torch.Tensor:
    """A float batch in [0, 1], normalised and on `device` in the layout training uses."""
    # channels_last: oneDNN's convolutions and BatchNorm train ~1.4x faster in NHWC on CPU (measured)
    return ((x - mean) / std).to(device).contiguous(memory_format=torch.channels_last)


def split_tensors(split: data.Split) -> tuple[torch.Tensor, torch.Tensor]:
    """A split as epoch_batches takes it: images (N, 1, 28, 28) uint8 and labels int64, sharing its memory."""
    return (torch.from_numpy(np.ascontiguousarray(split.images)).unsqueeze(1),
            torch.from_numpy(split.labels.astype(np.int64)))


def epoch_batches(images: torch.Tensor, labels: torch.Tensor, recipe: TrainRecipe, batch_size: int, epoch: int,
                  mean: float, std: float, device: str = "cpu") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of (x, y) batches from in-memory uint8 images (N, 1, 28, 28): shuffled, augmented and
    normalised a whole batch at a time (no per-image transforms), from a generator seeded by (seed, epoch)."""
    aug = DATASETS[recipe.dataset].augmentation
    augment = recipe.augment and not aug.is_identity
    g = torch.Generator().manual_seed(recipe.seed * 1_000_003 + epoch)
    perm = torch.randperm(len(labels), generator=g)
    for i in range(0, len(labels), batch_size):
        idx = perm[i:i + batch_size]
        x = images[idx].float().div_(255.0)
        if augment:
            x = random_affine(x, g, aug)
        yield to_input(x, mean, std, device), labels[idx].to(device)


def calibration_indices(n: int, count: int, seed: int) -> torch.Tensor:
    """A fixed random sample of `count` of n training images (all of them if fewer): BatchNorm's
    statistics come from these, and the final train accuracy that the far-below warning compares."""
    if count >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:count]


def far_below_warning(train_acc: float, test_acc: float) -> str | None:
    """One line when the test accuracy ends far below the train accuracy of the same weights."""
    if train_acc - test_acc < FAR_BELOW:
        return None
    return (f"warning: test accuracy {100 * test_acc:.1f}% is far below train accuracy {100 * train_acc:.1f}% "
            f"of the same model (a too-short run, a tiny --subset it memorised, or the wrong --dataset?)")


@torch.no_grad()
def recalibrate_bn(model: torch.nn.Module, sample: torch.Tensor, mean: float, std: float, device: str,
                   batch: int = 512) -> None:
    """Recompute every BatchNorm's running mean and variance over `sample` (uint8 images) with the
    model's current weights: an exact average over the sample instead of a lagging momentum average."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    was_training = model.training
    model.eval()  # dropout off; only the BatchNorm layers gather statistics
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.train()
    for i in range(0, len(sample), batch):
        x = sample[i:i + batch]
        for bn in bns:  # running = the mean over all images so far, each batch weighted by its size
            bn.momentum = len(x) / (i + len(x))
        model(to_input(x.float().div_(255.0), mean, std, device))
    for bn, momentum in zip(bns, momenta, strict=True):
        bn.momentum = momentum
    model.train(was_training)


class WeightAverage:
    """An exponential moving average of a model's weights and BatchNorm buffers, updated after each step
    (timm's ModelEmaV2): the averaged model is the one evaluated, saved and exported.

    Warmed up as TensorFlow's ExponentialMovingAverage is (num_updates): update t uses the decay
    min(decay, (1 + t) / (10 + t)), an average over about the last tenth of the steps so far, so the
    early epochs' curves show the weights, not the random ones they started from (the default run's
    epoch 1, seeds 0 and 1: 97.5% and 97.7% with it, 21.6% and 18.9% without).
    """

    def __init__(self, model: torch.nn.Module, decay: float, updates: int = 0):
        self.decay = decay
        self.updates = updates  # steps averaged so far: a resumed run sets it from its epochs done
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        pairs = list(zip(self.model.state_dict().values(), model.state_dict().values(), strict=True))
        # state_dict() tensors share storage with the modules', so these lists follow every in-place update
        self._avg = [a for a, _ in pairs if a.is_floating_point()]
        self._src = [b for a, b in pairs if a.is_floating_point()]
        self._counts = [(a, b) for a, b in pairs if not a.is_floating_point()]  # BatchNorm's batch counters

    @torch.no_grad()
    def update(self) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self._avg, self._src, 1 - decay)  # avg += (1 - decay) * (model - avg)
        self.updates += 1
        for a, b in self._counts:
            a.copy_(b)


def ema_decay(recipe: TrainRecipe, plan: StepPlan) -> float | None:
    """The weight average's decay for this run, or None for none: see TrainRecipe.ema_steps."""
    if not recipe.ema_steps or plan.total_steps < recipe.ema_min_steps:
        return None
    return 1 - 1 / recipe.ema_steps


def native_bf16(device: str) -> bool:
    """Whether this device computes bfloat16 natively (CPU: AVX512-BF16 or AMX, as oneDNN sees it)."""
    if device == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def choose_precision(precision: str, device: str) -> tuple[bool, str]:
    """(bf16 autocast or not, the line `train` prints saying which and why): 'auto' only where bf16 is native."""
    if precision == "fp32":
        return False, "precision: fp32 (set by --precision or the architecture: float32 on every CPU)"
    native = native_bf16(device)
    what = "this GPU" if device == "cuda" else "this CPU"
    if precision == "bf16":
        if not native:
            raise MnistEdgeError(f"--precision bf16: this {device.upper()} has no native bfloat16 (use fp32)")
        return True, "precision: bf16 autocast (--precision bf16)"
    if native:
        return True, (f"precision: bf16 autocast (auto: {what} has native bf16; --precision fp32 trains as CPUs "
                      f"without it do, to other weights)")
    return False, f"precision: fp32 (auto: {what} has no native bf16, and emulating it is slow)"


def use_bf16(precision: str, device: str) -> bool:
    """Whether to train with bf16 autocast: 'auto' only where bf16 is native, never emulated (slow)."""
    return choose_precision(precision, device)[0]


@dataclass(frozen=True)
class Teacher:
    """A trained model whose softened predictions a student learns (TrainRecipe.teacher)."""

    model: torch.nn.Module
    weight: float
    temperature: float

    def loss(self, x: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
        """KL(teacher || student) at the temperature, times T^2 (so its gradients keep their scale)."""
        with torch.no_grad():
            target = F.softmax(self.model(x).float() / self.temperature, dim=1)
        log_p = F.log_softmax(student_logits / self.temperature, dim=1)
        return F.kl_div(log_p, target, reduction="batchmean") * self.temperature ** 2


def load_teacher(recipe: TrainRecipe, meta: ModelMetadata, device: str) -> Teacher | None:
    """The recipe's teacher, checked against the student's classes and input normalisation."""
    if not recipe.teacher:
        return None
    model, tmeta = checkpoint.load_model(recipe.teacher)
    if list(tmeta.class_names) != list(meta.class_names) or (tmeta.mean, tmeta.std) != (meta.mean, meta.std):
        raise MnistEdgeError(f"{recipe.teacher}: the teacher was trained on other classes or another "
                             f"normalisation (dataset {tmeta.dataset!r}, student {meta.dataset!r})")
    for p in model.parameters():
        p.requires_grad_(False)
    model = model.to(device, memory_format=torch.channels_last).eval()
    return Teacher(model, recipe.distill_weight, recipe.distill_temperature)


def train_step(model, opt, sched, x, y, label_smoothing: float, bf16: bool = False,
               teacher: Teacher | None = None) -> tuple[float, int]:
    """One optimisation step; returns (mean loss, correct predictions) of the batch."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
    if teacher:
        loss = (1 - teacher.weight) * loss + teacher.weight * teacher.loss(x, logits.float())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    return loss.item(), int((logits.argmax(1) == y).sum())


def make_optimizer(recipe: TrainRecipe, model, plan: StepPlan):
    if recipe.optimizer == "adam":
        opt = torch.optim.AdamW(model.parameters(), lr=plan.lr, weight_decay=recipe.weight_decay)
    elif recipe.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=plan.lr, momentum=0.9, nesterov=True,
                              weight_decay=recipe.weight_decay)
    else:
        raise MnistEdgeError(f"unknown optimizer {recipe.optimizer!r} (adam or sgd)")
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=plan.lr, total_steps=max(plan.total_steps, 1))
    return opt, sched


def check_recipe(recipe: TrainRecipe) -> None:
    if recipe.arch not in ARCH_SPECS:
        raise MnistEdgeError(f"unknown architecture {recipe.arch!r} (known: {', '.join(ARCH_SPECS)})")
    if recipe.dataset not in DATASETS:
        raise MnistEdgeError(f"unknown dataset {recipe.dataset!r} (known: {', '.join(DATASETS)})")
    for name in ("epochs", "batch_size"):
        if getattr(recipe, name) < 1:
            raise MnistEdgeError(f"--{name.replace('_', '-')} must be at least 1")
    if not recipe.lr > 0:
        raise MnistEdgeError("--lr must be positive")
    if not 0 <= recipe.distill_weight <= 1 or not recipe.distill_temperature > 0:
        raise MnistEdgeError("--distill-weight must be in [0, 1] and --distill-temperature positive")


def _room_needed(recipe: TrainRecipe, out: Path) -> int:
    """Bytes a run writes: its checkpoint (weights + optimizer state), twice while replacing, and figures."""
    ckpt = out / CHECKPOINT_NAME
    if ckpt.is_file():
        return 2 * ckpt.stat().st_size + 4 * MB
    return 2 * 4 * 5 * ARCH_SPECS[recipe.arch].params + 4 * MB  # weights, their average, 2 Adam moments, a copy


def train(settings: TrainSettings, on_epoch: Callable[[dict], None] | None = None,
          reporter: Reporter | None = None) -> TrainResult:
    """Train per `settings`, writing model.pth and metrics.json each epoch and the plots at the end."""
    recipe, place = settings.recipe, settings.place
    say = reporter or Silent()
    check_recipe(recipe)
    out = ensure_writable(place.out, _room_needed(recipe, Path(place.out)), "the checkpoint")  # before any work
    if place.threads:
        torch.set_num_threads(place.threads)
    device = pick_device(place.device)
    ckpt_path, metrics_path = out / CHECKPOINT_NAME, out / METRICS_NAME

    train_split, test_split = data.load_dataset(place.data_dir, recipe.dataset)
    if recipe.subset:
        train_split = data.Split(train_split.images[:recipe.subset], train_split.labels[:recipe.subset],
                                 train_split.source)
    images, labels = split_tensors(train_split)
    n = len(labels)
    plan = plan_steps(recipe, n)
    sample_idx = calibration_indices(n, CALIBRATION_IMAGES, recipe.seed)
    bn_sample = images[sample_idx]  # (k, 1, 28, 28) uint8

    meta = ModelMetadata.for_dataset(recipe.arch, default_args(recipe.arch), recipe.dataset)
    torch.manual_seed(recipe.seed)
    model = build(recipe.arch, meta.arch_args, num_classes=len(meta.class_names)).to(
        device, memory_format=torch.channels_last)  # see epoch_batches
    teacher = load_teacher(recipe, meta, device)
    opt, sched = make_optimizer(recipe, model, plan)
    decay = ema_decay(recipe, plan)
    ema = WeightAverage(model, decay) if decay else None
    kept = ema.model if ema else model  # what is evaluated, saved as "state_dict" and exported

    history: list[dict] = []
    start_epoch = 0
    if place.resume:
        start_epoch, history = _restore(recipe, ckpt_path, model, ema, opt, sched, say)
        if ema:
            ema.updates = start_epoch * plan.steps_per_epoch
        if start_epoch >= recipe.epochs:
            say.log(f"{ckpt_path}: already trained {start_epoch} of {recipe.epochs} epochs; nothing to do")
    bf16, why = choose_precision(recipe.precision, device)
    run = {"precision": "bf16 autocast" if bf16 else "fp32", "device": device, "threads": torch.get_num_threads(),
           "cpu": cpu_info(),  # what this run trained with, beside the settings asked for: see _save
           "keeps_freed_memory": keep_freed_memory()}  # no page faults for each step's activations (core/malloc)
    say.log(why)
    say.log(f"{recipe.arch}: {count_params(model):,} parameters, {count_macs(model) / 1e6:.2f} M MACs/image; "
            f"{n:,} training images, {len(test_split):,} test images, device {device}; "
            f"{plan.total_steps:,} steps of batch {plan.batch_size}, "
            f"peak lr {plan.lr:.3g}{f', weight average decay {decay:.4g}' if decay else ''}, "
            f"label smoothing {recipe.label_smoothing:g}"
            f"{f', distilled from {recipe.teacher}' if recipe.teacher else ''}")

    epoch = start_epoch
    ev: Scores | None = None  # the last evaluation: the figures reuse it
    try:
        for epoch in range(start_epoch, recipe.epochs):
            t0 = time.perf_counter()
            torch.manual_seed(recipe.seed * 100_003 + epoch)  # dropout stream of this epoch
            model.train()
            loss_sum, correct = 0.0, 0
            batches = epoch_batches(images, labels, recipe, plan.batch_size, epoch, meta.mean, meta.std, device)
            with say.steps(batches, f"epoch {epoch + 1}/{recipe.epochs}", length=plan.steps_per_epoch) as bar:
                for x, y in bar:
                    loss, right = train_step(model, opt, sched, x, y, recipe.label_smoothing, bf16, teacher)
                    if ema:
                        ema.update()
                    loss_sum += loss * len(y)
                    correct += right
            if recipe.bn_recalibration and plan.total_steps <= recipe.bn_recalibration_max_steps:
                recalibrate_bn(kept, bn_sample, meta.mean, meta.std, device)
            ev = evaluate(kept, test_split, meta, device)
            row = {"epoch": epoch + 1, "train_loss": loss_sum / n, "train_acc": correct / n,
                   "test_loss": ev.loss, "test_acc": ev.accuracy, "seconds": round(time.perf_counter() - t0, 2),
                   "load_avg_1m": load_average()}  # how busy the machine was: other work slows an epoch
            history.append(row)
            meta.test_acc, meta.test_loss, meta.epochs = ev.accuracy, ev.loss, epoch + 1
            _save(settings, run, ckpt_path, metrics_path, model, kept, meta, opt, sched, history)
            say.log(f"epoch {epoch + 1:>3}/{recipe.epochs}  train loss {row['train_loss']:.4f} "
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
    seconds = sum(row["seconds"] for row in history)  # every epoch's, also those of a run this one resumed
    sample = data.Split(train_split.images[sample_idx.numpy()], train_split.labels[sample_idx.numpy()],
                        f"{len(sample_idx)} training images")
    train_acc = evaluate(kept, sample, meta, device).accuracy
    warning = far_below_warning(train_acc, history[-1]["test_acc"])
    if warning:
        say.log(warning)
    if place.plots:
        from mnist_edge.pytorch.plots import write_all

        ev = ev or evaluate(kept, test_split, meta, device)  # a --resume with nothing left to train
        write_all(out, history, kept.cpu(), test_split, ev, meta)
    final = history[-1]
    return TrainResult(ckpt_path, history, final["test_acc"], final["test_loss"], seconds, train_acc, warning)


def _config(settings: TrainSettings) -> dict:
    """The run's settings as saved in the checkpoint and metrics.json (flat, as the CLI names them)."""
    return {**asdict(settings.recipe), **{k: v for k, v in asdict(settings.place).items() if k != "resume"}}


def _weights(model: torch.nn.Module) -> dict:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def _save(settings: TrainSettings, run: dict, ckpt_path, metrics_path, model, kept, meta, opt, sched,
          history) -> None:
    """The checkpoint and metrics.json; `run`: the precision, device, threads and CPU this process trained with."""
    meta.seed = settings.recipe.seed
    meta.versions = runtime_versions()
    checkpoint.save(ckpt_path, {
        # the weights to use (the average, where there is one); --resume also needs the trained ones
        "state_dict": _weights(kept),
        **({"trained_state_dict": _weights(model)} if kept is not model else {}),
        "metadata": meta.to_dict(),
        "config": _config(settings),
        "run": run,
        "history": history,
        "epochs_done": len(history),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
    })
    final = history[-1]
    write_json(metrics_path, {
        "arch": settings.recipe.arch,
        "dataset": settings.recipe.dataset,
        "epochs": history,
        "test_acc": final["test_acc"],
        "test_loss": final["test_loss"],
        "config": _config(settings),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": meta.versions,
        **run,
    })


def _restore(recipe: TrainRecipe, ckpt_path: Path, model, ema: WeightAverage | None, opt, sched,
             say: Reporter) -> tuple[int, list[dict]]:
    """Load weights (and their average), optimizer and schedule from a previous run of the same recipe."""
    ckpt = checkpoint.load(ckpt_path)
    saved = ckpt.get("config", {})
    now = asdict(recipe)  # every part of the recipe; the one-cycle schedule spans all epochs
    diffs = [k for k, v in now.items() if k in saved and saved[k] != v]
    if diffs:
        what = ", ".join(f"{k} ({saved.get(k)!r} there, {now[k]!r} now)" for k in diffs)
        raise MnistEdgeError(f"{ckpt_path}: cannot resume, the run differs in {what}")
    try:
        if ema:
            ema.model.load_state_dict(ckpt["state_dict"])
            model.load_state_dict(ckpt["trained_state_dict"])
        else:
            model.load_state_dict(ckpt["state_dict"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
    except (KeyError, RuntimeError, ValueError) as e:
        raise MnistEdgeError(f"{ckpt_path}: cannot resume from this checkpoint ({e})") from None
    history = list(ckpt.get("history", []))
    say.log(f"resuming from {ckpt_path}: {len(history)} epoch(s) done")
    return int(ckpt.get("epochs_done", len(history))), history
