"""model.pth: weights plus everything needed to rebuild and use them, saved atomically, loaded safely.

Loading uses torch.load(weights_only=True): a pickle that tries to run code is refused, never run.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import zipfile
from pathlib import Path

import torch

from mnist_edge.core.errors import ModelFileError, first_line
from mnist_edge.core.fileio import write_bytes
from mnist_edge.core.metadata import FORMAT_TAG, ModelMetadata

CHECKPOINT_VERSION = 1


def save(path: str | os.PathLike, state: dict) -> None:
    """Write a checkpoint dict (state_dict, metadata, ...) atomically."""
    state = {"format": FORMAT_TAG, "checkpoint_version": CHECKPOINT_VERSION, **state}
    buf = io.BytesIO()  # torch's zip writer aborts the process on a short write: fill memory, then the file
    torch.save(state, buf)
    write_bytes(path, buf.getvalue())


def load(path: str | os.PathLike) -> dict:
    """Read and validate a checkpoint dict; any problem is a ModelFileError naming the file."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such checkpoint (train one with `mnist-edge train`)")
    if path.is_dir():
        raise ModelFileError(f"{path}: is a folder, not a checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message is long; the line naming the refused global is the useful one
        refused = re.search(r"GLOBAL ([\w.]+)", str(e))
        if refused:
            raise ModelFileError(
                f"{path}: not an mnist-edge checkpoint, refused to load it: it asks for "
                f"{refused.group(1)} (only plain weights are ever loaded)"
            ) from None
        raise ModelFileError(
            f"{path}: corrupt or unreadable checkpoint (not a torch archive of plain weights; nothing in it was run)"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, AttributeError) as e:
        raise ModelFileError(f"{path}: corrupt or unreadable checkpoint ({first_line(e, 120)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT_TAG:
        raise ModelFileError(f"{path}: not an mnist-edge checkpoint")
    if not isinstance(ckpt.get("state_dict"), dict):
        raise ModelFileError(f"{path}: corrupt checkpoint (no weights)")
    ckpt["metadata"] = ModelMetadata.from_dict(ckpt.get("metadata"), str(path))
    return ckpt


def load_model(path: str | os.PathLike):
    """(model in eval mode, its metadata) from a checkpoint."""
    from mnist_edge.pytorch.models import build

    path = Path(path)
    ckpt = load(path)
    meta: ModelMetadata = ckpt["metadata"]
    try:
        model = build(meta.arch, meta.arch_args, num_classes=len(meta.class_names))
    except ModelFileError as e:
        raise ModelFileError(f"{path}: {e}") from None
    try:
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise ModelFileError(f"{path}: weights do not fit architecture {meta.arch!r} ({first_line(e, 160)})") from None
    model.eval()
    return model, meta
