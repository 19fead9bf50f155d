"""MNIST-style datasets: find, validate and load the IDX or CSV files into memory (numpy only).

A data folder may hold the four IDX files under their standard names (raw or gzip-compressed),
directly or in torchvision's layout DIR/<MNIST|FashionMNIST>/raw/, or Kaggle's "MNIST in CSV" pair.
An empty folder triggers a torchvision download (what a connected user gets).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_edge.core.errors import DataError, first_line
from mnist_edge.core.metadata import DATASETS, INPUT_SHAPE, NUM_CLASSES

DATA_ENV = "MNIST_EDGE_DATA"
DEFAULT_DATA_DIR = "data"
SPLITS = ("train", "test")
_IDX_STEM = {"train": "train", "test": "t10k"}
_IMAGES_MAGIC, _LABELS_MAGIC = 0x00000803, 0x00000801  # uint8 data, 3 and 1 dimensions
_CSV_NAME = {"train": "mnist_train.csv", "test": "mnist_test.csv"}


@dataclass
class Split:
    """One split held in memory: images (N, 28, 28) uint8 and labels (N,) uint8."""

    images: np.ndarray
    labels: np.ndarray
    source: str  # file(s) it came from, for messages

    def __len__(self) -> int:
        return len(self.labels)


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """--data-dir, else $MNIST_EDGE_DATA, else ./data."""
    return Path(data_dir or os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR)


# --- file discovery -------------------------------------------------------------------------------

def _candidate_dirs(root: Path, dataset: str) -> list[Path]:
    return [root, root / DATASETS[dataset].torchvision_class / "raw"]


def _find_idx(root: Path, dataset: str, split: str, kind: str) -> Path | None:
    name = f"{_IDX_STEM[split]}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
    for d in _candidate_dirs(root, dataset):
        for cand in (d / name, d / f"{name}.gz"):
            if cand.is_file():
                return cand
    return None


def _find_csv(root: Path, split: str) -> Path | None:
    p = root / _CSV_NAME[split]
    return p if p.is_file() else None


def has_any_data(root: Path, dataset: str) -> bool:
    return any(
        _find_idx(root, dataset, s, k) or _find_csv(root, s)
        for s in SPLITS for k in ("images", "labels")
    )


# --- IDX ------------------------------------------------------------------------------------------

def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: corrupt or truncated gzip data ({e})") from None
    return raw


def read_idx(path: str | os.PathLike, expect_dims: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (raw or .gz) with `expect_dims` dimensions."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: truncated IDX file ({len(data)} bytes, no header)")
    magic = struct.unpack(">I", data[:4])[0]
    want = _IMAGES_MAGIC if expect_dims == 3 else _LABELS_MAGIC
    if magic != want:
        raise DataError(
            f"{path}: wrong IDX magic number 0x{magic:08x} (expected 0x{want:08x}: "
            f"unsigned bytes, {expect_dims} dimension{'s' if expect_dims > 1 else ''})"
        )
    header = 4 + 4 * expect_dims
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{expect_dims}I", data[4:header])
    n_bytes = int(np.prod(dims, dtype=np.int64))
    if len(data) - header < n_bytes:
        raise DataError(
            f"{path}: truncated IDX file: header promises {n_bytes} bytes of data, "
            f"found {len(data) - header}"
        )
    if len(data) - header > n_bytes:
        raise DataError(f"{path}: {len(data) - header - n_bytes} unexpected bytes after the IDX data")
    # a writable copy: torch.from_numpy refuses to share read-only buffers silently
    return np.frombuffer(data, dtype=np.uint8, count=n_bytes, offset=header).reshape(dims).copy()


def _load_idx_split(img_path: Path, lbl_path: Path) -> Split:
    images = read_idx(img_path, 3)
    labels = read_idx(lbl_path, 1)
    if images.shape[1:] != INPUT_SHAPE[1:]:
        raise DataError(
            f"{img_path}: wrong image size {images.shape[1]}x{images.shape[2]} "
            f"(expected {INPUT_SHAPE[1]}x{INPUT_SHAPE[2]})"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{img_path}: {len(images)} images but {lbl_path.name} has {len(labels)} labels"
        )
    bad = np.flatnonzero(labels >= NUM_CLASSES)
    if bad.size:
        raise DataError(
            f"{lbl_path}: label {labels[bad[0]]} at index {bad[0]} is out of range 0..{NUM_CLASSES - 1}"
        )
    return Split(images, labels, f"{img_path}, {lbl_path}")


# --- CSV (Kaggle "MNIST in CSV") -----------------------------------------------------------------

def read_csv(path: str | os.PathLike) -> Split:
    """Parse `label,1x1,...,28x28` rows: a label 0..9 then 784 pixels 0..255."""
    path = Path(path)
    n_pix = INPUT_SHAPE[1] * INPUT_SHAPE[2]
    try:
        with open(path, encoding="utf-8") as f:
            header = f.readline()
            if not header.strip():
                raise DataError(f"{path}: empty CSV file")
            first = header.split(",")[0].strip().lower()
            if first != "label":
                raise DataError(f"{path}: not an MNIST CSV (header should start with 'label')")
            rows = []
            for lineno, line in enumerate(f, start=2):
                if not line.strip():
                    continue
                fields = line.split(",")
                if len(fields) != n_pix + 1:
                    raise DataError(
                        f"{path}: line {lineno} has {len(fields)} values (expected {n_pix + 1})"
                    )
                try:
                    row = np.array(fields, dtype=np.int64)
                except ValueError:
                    bad = next(v for v in fields if not v.strip().lstrip("-").isdigit())
                    raise DataError(
                        f"{path}: line {lineno}: non-numeric value {bad.strip()[:20]!r}"
                    ) from None
                if row[0] < 0 or row[0] >= NUM_CLASSES:
                    raise DataError(f"{path}: line {lineno}: label {row[0]} out of range 0..9")
                if row[1:].min() < 0 or row[1:].max() > 255:
                    raise DataError(f"{path}: line {lineno}: pixel value out of range 0..255")
                rows.append(row)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text CSV file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if not rows:
        raise DataError(f"{path}: no data rows")
    arr = np.stack(rows).astype(np.uint8)
    return Split(arr[:, 1:].reshape(-1, *INPUT_SHAPE[1:]), arr[:, 0].copy(), str(path))


# --- loading --------------------------------------------------------------------------------------

def load_split(root: Path, split: str, dataset: str = "mnist") -> Split:
    """Load one split from `root`, whichever supported layout it is in."""
    img = _find_idx(root, dataset, split, "images")
    lbl = _find_idx(root, dataset, split, "labels")
    if img and lbl:
        return _load_idx_split(img, lbl)
    csv = _find_csv(root, split)
    if csv:
        return read_csv(csv)
    stem = _IDX_STEM[split]
    missing = "labels" if img else "images" if lbl else "images and labels"
    raise DataError(
        f"{root}: the {split} split is missing ({missing}): expected {stem}-images-idx3-ubyte[.gz] "
        f"and {stem}-labels-idx1-ubyte[.gz], or {_CSV_NAME[split]}"
    )


def download(root: Path, dataset: str) -> None:
    """Fetch the dataset with torchvision into root/<Class>/raw (needs the network)."""
    from mnist_edge.core.deps import require

    tv = require("torchvision.datasets")
    cls = getattr(tv, DATASETS[dataset].torchvision_class)
    try:
        root.mkdir(parents=True, exist_ok=True)
        for train in (True, False):
            cls(root=str(root), train=train, download=True)
    except Exception as e:  # network errors come in many types (URLError, OSError, RuntimeError)
        reason = first_line(e, 120)
        raise DataError(
            f"{root}: no {dataset} data here and the download failed ({reason}). Put the four IDX "
            f"files (e.g. train-images-idx3-ubyte.gz) in {root}, or point --data-dir / "
            f"{DATA_ENV} at a folder that holds them"
        ) from None


def load_dataset(
    data_dir: str | os.PathLike | None = None, dataset: str = "mnist", allow_download: bool = True
) -> tuple[Split, Split]:
    """(train, test) in memory; downloads into an empty or missing folder if allowed."""
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r} (choose from {', '.join(DATASETS)})")
    root = resolve_data_dir(data_dir)
    if root.exists() and not root.is_dir():
        raise DataError(f"{root}: not a folder")
    if not has_any_data(root, dataset):
        if not allow_download:
            raise DataError(f"{root}: no {dataset} data here")
        download(root, dataset)
    return load_split(root, "train", dataset), load_split(root, "test", dataset)


def load_test_split(data_dir: str | os.PathLike | None = None, dataset: str = "mnist") -> Split:
    """Only the test split (for evaluate, check, bench); downloads like load_dataset."""
    root = resolve_data_dir(data_dir)
    if not has_any_data(root, dataset):
        return load_dataset(data_dir, dataset)[1]
    return load_split(root, "test", dataset)
