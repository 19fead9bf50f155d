"""Rebuild the pretrained model shipped in the source tree (`make default-model`, a maintainer's job).

Copies the verified fp32 ONNX export of a default training run into mnist_edge/edge/assets/ of this
checkout (never into an installed package) and records its metrics (test accuracy, seed, epochs,
versions) beside it, for `mnist-edge info`.

    python tools/ship_default_model.py ARTIFACTS [DEST]     (DEST: mnist_edge/edge/assets)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mnist_edge.core.errors import MnistEdgeError
from mnist_edge.core.fileio import write_bytes, write_json
from mnist_edge.core.formats import load_runtime

MAX_SHIPPED_BYTES = 2 * 1024 * 1024
SOURCE_ASSETS = Path(__file__).resolve().parents[1] / "mnist_edge" / "edge" / "assets"


def ship(artifacts: Path, dest_folder: Path = SOURCE_ASSETS) -> Path:
    src = artifacts / "model.onnx"
    rt = load_runtime(src)  # refuses anything that is not a valid mnist-edge ONNX model
    size = src.stat().st_size
    if size > MAX_SHIPPED_BYTES:
        raise MnistEdgeError(f"{src}: {size} bytes is over the {MAX_SHIPPED_BYTES} byte budget of the shipped model")
    metrics_path = artifacts / "metrics.json"
    try:
        metrics = json.loads(metrics_path.read_text())
    except (OSError, ValueError) as e:
        raise MnistEdgeError(f"{metrics_path}: cannot read the run's metrics ({type(e).__name__})") from None
    m = rt.metadata
    dest = dest_folder / "model.onnx"
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
    args = sys.argv[1:]
    if not 1 <= len(args) <= 2:
        sys.exit(__doc__.strip().splitlines()[-1].strip())
    try:
        dest = ship(Path(args[0]), Path(args[1]) if len(args) == 2 else SOURCE_ASSETS)
    except (MnistEdgeError, OSError, ValueError, KeyError) as e:
        sys.exit(f"Error: {e}")
    print(f"shipped {dest} and {dest.with_suffix('.json').name}")


if __name__ == "__main__":
    main()
