"""Shared fixtures: tiny synthetic IDX/CSV datasets made in the test, a CLI runner, a tiny trained model."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

REAL_DATA = os.environ.get("MNIST_EDGE_DATA")
needs_real_data = pytest.mark.skipif(
    not REAL_DATA or not Path(REAL_DATA).is_dir(),
    reason="real-MNIST test: set MNIST_EDGE_DATA to a folder holding the MNIST IDX files "
           "(e.g. MNIST_EDGE_DATA=../shared/data/mnist)",
)


def synthetic_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n easy 28x28 'digits': class k is a bright bar k+1 rows thick at a random height, on faint noise.

    The class is in the bar's thickness, not its position, so it is learnable by any architecture
    (global average pooling included) in a few steps.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 30, (n, 28, 28)).astype(np.uint8)
    for i, k in enumerate(labels):
        top = rng.integers(3, 25 - k)
        images[i, top:top + k + 1, 5:23] = 255
    return images, labels


def idx_bytes(arr: np.ndarray) -> bytes:
    magic = 0x800 + arr.ndim  # unsigned bytes
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in arr.shape) + arr.tobytes()


def write_idx_dataset(folder: Path, n_train: int = 512, n_test: int = 128, gz: bool = True,
                      layout: str = "flat") -> Path:
    """The four IDX files, gzip or raw, flat in `folder` or in torchvision's MNIST/raw layout."""
    target = folder if layout == "flat" else folder / "MNIST" / "raw"
    target.mkdir(parents=True, exist_ok=True)
    for stem, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        x, y = synthetic_digits(n, seed)
        for kind, arr, dims in (("images", x, 3), ("labels", y, 1)):
            name = f"{stem}-{kind}-idx{dims}-ubyte"
            data = idx_bytes(arr)
            if gz:
                (target / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (target / name).write_bytes(data)
    return folder


def write_csv_dataset(folder: Path, n_train: int = 64, n_test: int = 32) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    header = "label," + ",".join(f"{r}x{c}" for r in range(1, 29) for c in range(1, 29))
    for name, n, seed in (("mnist_train.csv", n_train, 0), ("mnist_test.csv", n_test, 1)):
        x, y = synthetic_digits(n, seed)
        rows = [",".join([str(int(lbl))] + [str(int(p)) for p in img.ravel()]) for img, lbl in zip(x, y, strict=True)]
        (folder / name).write_text(header + "\n" + "\n".join(rows) + "\n")
    return folder


def save_random_checkpoint(path: Path, arch: str = "edgenet", seed: int = 0):
    """A model.pth of a randomly initialised model, with mnist-edge metadata: export and bench tests use it."""
    import torch

    from mnist_edge.core.metadata import ModelMetadata
    from mnist_edge.pytorch import checkpoint
    from mnist_edge.pytorch.models import build, default_args

    torch.manual_seed(seed)
    model = build(arch).eval()
    meta = ModelMetadata.for_dataset(arch, default_args(arch), "mnist")
    meta.test_acc, meta.epochs = 0.1, 0
    checkpoint.save(path, {"state_dict": model.state_dict(), "metadata": meta.to_dict()})
    return meta


def random_onnx_run(root: Path, n_test: int = 64) -> tuple[Path, Path]:
    """(root/art holding a random edgenet model.pth and its verified model.onnx, root/data synthetic data)."""
    from mnist_edge.core.settings import ExportSettings
    from mnist_edge.verify.export import export_models

    data = write_idx_dataset(root / "data", n_train=64, n_test=n_test)
    art = root / "art"
    art.mkdir()
    save_random_checkpoint(art / "model.pth")
    export_models(ExportSettings(checkpoint=art / "model.pth", out=art, format="onnx", data_dir=str(data)))
    return art, data


def make_int8(arch: str, out: Path, args: dict | None = None, seed: int = 0, calib: int = 16, recipe=None) -> Path:
    """out/model.onnx and out/model.int8.onnx of a random `arch` (non-trivial BatchNorm) by `recipe` (None: the
    default); the int8 path."""
    import torch

    from mnist_edge.core.formats import FORMATS
    from mnist_edge.core.metadata import ModelMetadata
    from mnist_edge.core.settings import ExportSettings
    from mnist_edge.pytorch.exporters import onnx as onnx_exporter
    from mnist_edge.pytorch.exporters.job import ExportJob
    from mnist_edge.pytorch.models import build

    torch.manual_seed(seed)
    model = build(arch, args).eval()
    with torch.no_grad():  # BatchNorm statistics that folding has to get right
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    meta = ModelMetadata(arch=arch, arch_args=dict(args or {}), test_acc=0.5, seed=seed)
    pixels = np.random.default_rng(seed).integers(0, 256, (calib, 28, 28), dtype=np.uint8)
    out.mkdir(parents=True, exist_ok=True)
    job = ExportJob(model, meta, ExportSettings(out=out, int8_recipe=recipe), meta.normalize(pixels),
                    {"onnx": out / "model.onnx"})
    onnx_exporter.export_fp32(job, FORMATS["onnx"], out / "model.onnx")
    onnx_exporter.export_int8(job, FORMATS["onnx-int8"], out / "model.int8.onnx")
    return out / "model.int8.onnx"


CHROMIUM = "/usr/bin/chromium"  # Debian's: a browser Playwright downloads does not run on these machines
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-proxy-server"]


def chromium(extra_args: tuple[str, ...] = ()):
    """A headless Debian Chromium through Playwright (a generator for module fixtures); skips saying why."""
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="browser test needs playwright: pip install playwright")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"browser test needs Chromium at {CHROMIUM}: apt-get install -y chromium")
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args], headless=True,
                                  timeout=60_000)
        except Exception as e:  # no display libraries, sandbox trouble...
            pytest.skip(f"cannot launch {CHROMIUM}: {str(e).strip().splitlines()[0][:200]}")
        yield b
        b.close()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def idx_data(tmp_path: Path) -> Path:
    return write_idx_dataset(tmp_path / "data")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A folder with a model.pth (+ metrics, plots) trained 5 epochs on synthetic data, shared by tests."""
    from mnist_edge.core.settings import TrainSettings
    from mnist_edge.pytorch.train import train

    root = tmp_path_factory.mktemp("tiny")
    data = write_idx_dataset(root / "data")
    out = root / "artifacts"
    train(TrainSettings.of(epochs=5, data_dir=str(data), out=str(out), threads=1, batch_size=32, lr=0.01))
    return out
