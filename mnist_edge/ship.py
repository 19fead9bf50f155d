"""Rebuild the pretrained model shipped inside the package (`make default-model`).

Copies the verified fp32 ONNX export of a default training run into mnist_edge/assets/ and records
its metrics (test accuracy, seed, epochs, versions) beside it, for `mnist-edge info`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .errors import MnistEdgeError
from .fileio import write_bytes, write_json
from .predict import shipped_model_path
from .runtimes import load_runtime

MAX_SHIPPED_BYTES = 2 * 1024 * 1024


def ship(artifacts: Path) -> Path:
    src = artifacts / "model.onnx"
    rt = load_runtime(src)  # refuses anything that is not a valid mnist-edge ONNX model
    size = src.stat().st_size
    if size > MAX_SHIPPED_BYTES:
        raise MnistEdgeError(f"{src}: {size} bytes is over the {MAX_SHIPPED_BYTES} byte budget of the shipped model")
    metrics = json.loads((artifacts / "metrics.json").read_text())
    m = rt.metadata
    dest = shipped_model_path()
    write_bytes(dest, src.read_bytes())
    write_json(dest.with_suffix(".json"), {
        "test_acc": m.test_acc, "test_loss": m.test_loss, "arch": m.arch, "epochs": m.epochs, "seed": m.seed,
        "train_seconds": round(sum(e["seconds"] for e in metrics["epochs"]), 1),
        # the run's settings, less where its files were on the machine that made it
        "config": {k: v for k, v in metrics.get("config", {}).items() if k not in ("data_dir", "out")},
        "versions": m.versions, "size_bytes": size,
    })
    return dest


def main() -> None:
    try:
        dest = ship(Path(sys.argv[1] if len(sys.argv) > 1 else "artifacts"))
    except (MnistEdgeError, OSError, ValueError) as e:
        sys.exit(f"Error: {e}")
    print(f"shipped {dest} and {dest.with_suffix('.json').name}")


if __name__ == "__main__":
    main()
