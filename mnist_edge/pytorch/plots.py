"""The training figures: curves, mistakes per test batch, confusion matrix, samples, filters, feature maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnist_edge.core.data import Split
from mnist_edge.core.deps import require
from mnist_edge.core.fileio import write_with
from mnist_edge.core.metadata import ModelMetadata
from mnist_edge.core.scores import MISTAKES_BATCH, Scores

PLOT_FILES = ("graph.png", "graph2.png", "confusion_matrix.png", "samples.png",
              "filters.png", "feature_maps.png")


def _plt():
    mpl = require("matplotlib")
    mpl.use("Agg")  # files only, no display needed
    return require("matplotlib.pyplot")


def _save(fig, path: Path) -> None:
    plt = _plt()
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


def curves(history: list[dict], path: Path) -> None:
    """graph.png: train vs test loss and accuracy per epoch."""
    plt = _plt()
    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    a.plot(ep, [h["test_loss"] for h in history], "s-", label="test")
    a.set(title="Loss", xlabel="epoch", ylabel="cross-entropy")
    b.plot(ep, [100 * h["train_acc"] for h in history], "o-", label="train")
    b.plot(ep, [100 * h["test_acc"] for h in history], "s-", label="test")
    b.set(title="Accuracy", xlabel="epoch", ylabel="accuracy (%)")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"Training curves (final test accuracy {100 * history[-1]['test_acc']:.2f}%)")
    _save(fig, path)


def mistakes_per_batch(ev: Scores, labels: np.ndarray, path: Path) -> None:
    """graph2.png: misclassified test images in each test batch of MISTAKES_BATCH."""
    plt = _plt()
    counts = ev.mistakes_per_batch(labels)
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.bar(range(1, len(counts) + 1), counts, color="tab:red")
    ax.set(title=f"Misclassified test images per batch of {MISTAKES_BATCH} "
                 f"({sum(counts)} of {len(labels)} in all)",
           xlabel="test batch", ylabel="misclassified")
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def confusion(ev: Scores, labels: np.ndarray, class_names: list[str], path: Path) -> None:
    """confusion_matrix.png: counts of true vs predicted class."""
    plt = _plt()
    k = len(class_names)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (labels.astype(np.int64), ev.predictions.astype(np.int64)), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(np.log1p(cm), cmap="Blues")  # log scale: the diagonal would hide the mistakes
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if i == j else ("tab:red" if cm[i, j] else "gray"))
    ax.set_xticks(range(k), class_names, rotation=45 if len(max(class_names, key=len)) > 2 else 0)
    ax.set_yticks(range(k), class_names)
    ax.set(title="Confusion matrix (test set)", xlabel="predicted", ylabel="true")
    fig.colorbar(im, ax=ax, label="log(1 + count)")
    _save(fig, path)


def samples(split: Split, ev: Scores, class_names: list[str], path: Path, n: int = 36) -> None:
    """samples.png: test images with predicted vs true label; the grid leads with mistakes, in red."""
    plt = _plt()
    wrong = np.flatnonzero(ev.predictions != split.labels)[: n // 3]
    right = np.flatnonzero(ev.predictions == split.labels)[: n - len(wrong)]
    idx = np.concatenate([wrong, right])
    cols = 9
    rows = int(np.ceil(len(idx) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.5))
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for ax, i in zip(np.atleast_1d(axes).ravel(), idx, strict=False):  # the grid has spare axes
        ok = ev.predictions[i] == split.labels[i]
        ax.imshow(split.images[i], cmap="gray")
        ax.set_title(f"pred {class_names[ev.predictions[i]]}\ntrue {class_names[split.labels[i]]}",
                     fontsize=7, color="black" if ok else "red")
    fig.suptitle(f"Test samples: {len(wrong)} mistakes (red) first, then correct ones")
    _save(fig, path)


def filters(model, path: Path) -> None:
    """filters.png: the first conv layer's kernels."""
    from mnist_edge.pytorch.models import conv_layers

    plt = _plt()
    name, conv = conv_layers(model)[0]
    w = conv.weight.detach().cpu().numpy()[:, 0]  # (out_channels, k, k): first input channel
    cols = 8
    rows = int(np.ceil(len(w) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.1))
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for i, (ax, k) in enumerate(zip(np.atleast_1d(axes).ravel(), w, strict=False)):  # spare axes
        lim = np.abs(k).max() or 1.0
        ax.imshow(k, cmap="bwr", vmin=-lim, vmax=lim)
        ax.set_title(str(i), fontsize=6)
    fig.suptitle(f"First-layer filters ({name}: {w.shape[0]} of {w.shape[1]}x{w.shape[2]}; "
                 "red positive, blue negative)")
    _save(fig, path)


def feature_maps(model, image: np.ndarray, meta: ModelMetadata, path: Path, per_layer: int = 8) -> None:
    """feature_maps.png: each conv layer's output for one test image, captured with forward hooks."""
    from mnist_edge.pytorch.models import conv_layers

    torch = require("torch")
    plt = _plt()
    layers = conv_layers(model)
    captured: dict[str, np.ndarray] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, out, n=n: captured.__setitem__(n, out[0].numpy()))
             for n, m in layers]
    model.eval()
    with torch.no_grad():
        model(torch.from_numpy(meta.normalize(image[None])))
    for h in hooks:
        h.remove()
    fig, axes = plt.subplots(len(layers), per_layer + 1,
                             figsize=((per_layer + 1) * 1.2, len(layers) * 1.35))
    axes = np.atleast_2d(axes)
    for r, (name, _) in enumerate(layers):
        fm = captured[name]
        axes[r, 0].imshow(image, cmap="gray")
        axes[r, 0].set_title("input" if r == 0 else "", fontsize=7)
        axes[r, 0].set_ylabel(name, fontsize=7)
        for c in range(per_layer + 1):
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        for c in range(min(per_layer, len(fm))):
            axes[r, c + 1].imshow(fm[c], cmap="viridis")
            axes[r, c + 1].set_title(f"{name} #{c}\n{fm.shape[1]}x{fm.shape[2]}", fontsize=6)
    fig.suptitle("Feature maps of each conv layer for one test image (first channels)")
    _save(fig, path)


def write_all(out: Path, history: list[dict], model, split: Split, ev: Scores,
              meta: ModelMetadata) -> list[Path]:
    """Write every training figure into `out`; returns their paths."""
    out = Path(out)
    names = dict(zip(("curves", "mistakes", "confusion", "samples", "filters", "maps"),
                     (out / f for f in PLOT_FILES), strict=True))
    curves(history, names["curves"])
    mistakes_per_batch(ev, split.labels, names["mistakes"])
    confusion(ev, split.labels, meta.class_names, names["confusion"])
    samples(split, ev, meta.class_names, names["samples"])
    filters(model, names["filters"])
    feature_maps(model, split.images[0], meta, names["maps"])
    return list(names.values())
