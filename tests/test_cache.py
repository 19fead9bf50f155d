"""core/cache.py: content keys, remembered results, and bench reusing the accuracy that check measured."""

from __future__ import annotations

import json

import numpy as np

from mnist_edge.core import cache
from mnist_edge.core.settings import BenchSettings
from mnist_edge.verify.bench.run import run_bench

from .conftest import random_onnx_run

FAST = {"min_time_s": 0.02, "min_iters": 4, "warmup_s": 0.0, "warmup_iters": 1, "threads": 1, "rounds": 2,
        "batch_sizes": (1,), "plot": False}


def test_content_key_follows_every_byte_of_files_folders_and_arrays(tmp_path):
    f = tmp_path / "m.bin"
    f.write_bytes(b"abc")
    folder = tmp_path / "app"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_text("1")
    x = np.zeros((2, 3), np.float32)
    key = cache.content_key(f, folder, x, "onnx", {"onnxruntime": "1.0"})
    assert key == cache.content_key(f, folder, x.copy(), "onnx", {"onnxruntime": "1.0"})  # stable
    changed = [
        (lambda: f.write_bytes(b"abd"), lambda: f.write_bytes(b"abc")),
        (lambda: (folder / "sub" / "a.txt").write_text("2"), lambda: (folder / "sub" / "a.txt").write_text("1")),
        (lambda: (folder / "b.txt").write_text(""), lambda: (folder / "b.txt").unlink()),
    ]
    for change, undo in changed:
        change()
        assert cache.content_key(f, folder, x, "onnx", {"onnxruntime": "1.0"}) != key
        undo()
    assert cache.content_key(f, folder, x.astype(np.float64), "onnx", {"onnxruntime": "1.0"}) != key
    assert cache.content_key(f, folder, x.reshape(3, 2), "onnx", {"onnxruntime": "1.0"}) != key
    assert cache.content_key(f, folder, x, "onnx", {"onnxruntime": "1.1"}) != key


def test_recall_returns_what_was_remembered_and_misses_on_anything_else(tmp_path):
    key = cache.content_key("a")
    assert cache.recall(tmp_path, "accuracy", key) is None
    cache.remember(tmp_path, "accuracy", key, {"accuracy": 0.5})
    assert cache.recall(tmp_path, "accuracy", key) == {"accuracy": 0.5}
    assert cache.recall(tmp_path, "accuracy", cache.content_key("b")) is None
    entry = next((tmp_path / cache.CACHE_FOLDER).iterdir())
    for bad in ("{not json", json.dumps([1]), json.dumps({"key": "other", "value": {}})):
        entry.write_text(bad)
        assert cache.recall(tmp_path, "accuracy", key) is None


def test_a_folder_that_cannot_be_written_keeps_nothing_and_raises_nothing(tmp_path):
    (tmp_path / cache.CACHE_FOLDER).write_text("a file where the cache folder would be")
    cache.remember(tmp_path, "accuracy", cache.content_key("a"), {"accuracy": 0.5})
    assert cache.recall(tmp_path, "accuracy", cache.content_key("a")) is None


def test_bench_reuses_the_accuracy_check_measured_and_only_for_the_same_bytes(tmp_path):
    from mnist_edge.core.data import load_test_split
    from mnist_edge.core.formats import load_runtime
    from mnist_edge.verify.parity import check_folder, reference

    art, data = random_onnx_run(tmp_path)
    ref = reference(load_runtime(art / "model.pth"), load_test_split(str(data)))
    report = check_folder(ref, art)
    measured = report.results[0].accuracy
    assert [r.format for r in report.results] == ["onnx"] and len(list((art / ".cache").iterdir())) == 1
    # plant a value bench could not have measured: if bench reports it, bench took it from the cache
    entry = next((art / ".cache").iterdir())
    doc = json.loads(entry.read_text())
    assert doc["value"] == {"accuracy": measured, "by": "check"}
    doc["value"]["accuracy"] = 0.123
    entry.write_text(json.dumps(doc))
    lines: list[str] = []
    rows = run_bench(BenchSettings(artifacts=art, data_dir=str(data), formats=("onnx",), **FAST), lines.append).results
    assert rows[0].accuracy == 0.123
    assert any("accuracy 12.30% (as check measured it on these bytes)" in ln for ln in lines)
    # other inputs, other key: a different test set is scored again, by bench, and remembered
    from .conftest import write_idx_dataset

    other = write_idx_dataset(tmp_path / "other", n_train=64, n_test=48)
    rows = run_bench(BenchSettings(artifacts=art, data_dir=str(other), formats=("onnx",), **FAST)).results
    expected = load_runtime(art / "model.onnx")
    from mnist_edge.core.scores import score

    assert rows[0].accuracy == score(expected, load_test_split(str(other))).accuracy != 0.123
    assert len(list((art / ".cache").iterdir())) == 2
