"""`mnist-edge info`: what a model file is: format, size, accuracy and the metadata it carries."""

from __future__ import annotations

import json
from pathlib import Path

from mnist_edge.core.errors import ModelFileError
from mnist_edge.core.fileio import size_of
from mnist_edge.core.formats import Runtime
from mnist_edge.edge.predict import shipped_model_path


def shipped_metrics(path: Path) -> dict | None:
    """The recorded metrics of the shipped model (its model.json), when `path` is that very file."""
    shipped = shipped_model_path()
    side = shipped.with_suffix(".json")
    if not path.is_file() or not shipped.is_file() or not path.samefile(shipped) or not side.is_file():
        return None
    try:
        return json.loads(side.read_text())
    except (OSError, ValueError):
        raise ModelFileError(f"{side}: corrupt metrics file beside the model") from None


def describe(rt: Runtime) -> dict:
    m = rt.metadata
    d = {
        "path": str(rt.path),
        "format": rt.format,
        "size_bytes": size_of(rt.path),
        "arch": m.arch,
        "arch_args": m.arch_args,
        "dataset": m.dataset,
        "class_names": m.class_names,
        "input_shape": m.input_shape,
        "normalization": {"mean": m.mean, "std": m.std},
        "test_acc": m.test_acc,
        "test_loss": m.test_loss,
        "epochs": m.epochs,
        "seed": m.seed,
        "quantization": m.quantization,
        "int8_recipe": m.int8_recipe,
        "versions": m.versions,
    }
    shipped = shipped_metrics(rt.path)
    if shipped is not None:
        d["shipped_metrics"] = shipped
    return d


def render(d: dict) -> str:
    acc = f"{100 * d['test_acc']:.2f}%" if d["test_acc"] is not None else "unknown"
    lines = [
        f"{d['path']}",
        f"  format        {d['format']} ({d['size_bytes'] / 1024:.0f} KB)",
        f"  architecture  {d['arch']} {json.dumps(d['arch_args']) if d['arch_args'] else ''}".rstrip(),
        f"  dataset       {d['dataset']}: {', '.join(d['class_names'])}",
        f"  input         {'x'.join(map(str, d['input_shape']))} float32, (pixel/255 - {d['normalization']['mean']})"
        f" / {d['normalization']['std']}",
        f"  accuracy      {acc} on the test set (source PyTorch model, {d['epochs']} epochs, seed {d['seed']})",
    ]
    if d["quantization"]:
        lines.append(f"  quantization  {d['quantization']}")
    if d.get("int8_recipe"):
        lines.append(f"  int8 recipe   {json.dumps(d['int8_recipe'], sort_keys=True)}")
    if d["versions"]:
        lines.append("  made with     " + ", ".join(f"{k} {v}" for k, v in sorted(d["versions"].items())))
    if "shipped_metrics" in d:
        s = d["shipped_metrics"]
        cfg = s.get("config", {})
        lines.append(f"  shipped       the default model of mnist-edge: `mnist-edge train` with default settings "
                     f"(seed {s.get('seed')}, {s.get('epochs')} epochs, batch {cfg.get('batch_size')}, "
                     f"{s.get('train_seconds')} s of training), then `export`; recorded test accuracy "
                     f"{100 * s.get('test_acc', 0):.2f}%")
    return "\n".join(lines)
