"""`mnist-edge tune` on a toy model: a small search writes a candidate within its budget, the layer fallback
puts a deliberately harmful layer back to fp32, the per-layer report names every layer, bad input is one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mnist_edge.cli import cli
from mnist_edge.core.archs import ARCH_SPECS
from mnist_edge.core.settings import Int8Recipe, TuneSettings
from mnist_edge.core.tolerances import Tolerances

from .conftest import save_random_checkpoint, write_idx_dataset

# A toy test set of 128 images: one flip is 0.78 points, so the toy's budget is wide; the timing is short.
CONVS = len(ARCH_SPECS["edgenet"].args["channels"])  # the toy model is the default edgenet: one conv per entry
TOY_BUDGET = {"max_drop": 5.0, "tolerances": Tolerances(int8_min_agreement=0.9, int8_max_accuracy_drop=0.05),
              "threads": 1, "rounds": 2,
              "min_time_s": 0.05, "confirm_time_s": 0.1, "throughput_batch": 8, "layer_images": 32}


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> tuple[Path, Path]:
    """(artifacts with a trained toy model.pth and its model.onnx, the synthetic data folder)."""
    from mnist_edge.core.settings import ExportSettings, TrainSettings
    from mnist_edge.pytorch.train import train
    from mnist_edge.verify.export import export_models

    root = tmp_path_factory.mktemp("tune")
    data = write_idx_dataset(root / "data", n_train=512, n_test=128)
    art = root / "art"
    train(TrainSettings.of(epochs=4, data_dir=str(data), out=str(art), threads=1, batch_size=32, lr=0.01,
                           arch="edgenet", plots=False))
    export_models(ExportSettings(checkpoint=art / "model.pth", out=art, format="onnx", data_dir=str(data)))
    return art, data


def _copy(art: Path, dest: Path) -> Path:
    dest.mkdir()
    for name in ("model.pth", "model.onnx"):
        shutil.copyfile(art / name, dest / name)
    return dest


def _harm_the_head(art: Path, data: Path) -> None:
    """Channel 0 of the last conv block is always 0 (BatchNorm shift -1000 before the ReLU), and the head
    gives it weights 10^4 times the others': fp32 does not change (x 0), while int8 weights, whose scale
    that one column sets, round every other weight of the head to 0."""
    import torch

    from mnist_edge.core.settings import ExportSettings
    from mnist_edge.pytorch import checkpoint
    from mnist_edge.verify.export import export_models

    ck = torch.load(art / "model.pth", weights_only=False)
    sd = ck["state_dict"]
    bn = [k for k in sd if k.startswith("features.") and k.endswith(".running_var")][-1].rsplit(".", 1)[0]
    sd[f"{bn}.bias"][0] = -1000.0
    sd["head.weight"][:, 0] = 1e4 * sd["head.weight"].abs().max()
    checkpoint.save(art / "model.pth", ck)
    (art / "model.onnx").unlink()
    export_models(ExportSettings(checkpoint=art / "model.pth", out=art, format="onnx", data_dir=str(data)))


def test_a_small_search_writes_a_candidate_within_its_budget_that_check_passes(toy, tmp_path, runner):
    from mnist_edge.core.formats import load_runtime
    from mnist_edge.verify.tune.search import tune

    src, data = toy
    art = _copy(src, tmp_path / "art")
    res = tune(TuneSettings(artifacts=art, data_dir=str(data), recipes=("qoperator", "per-tensor"), **TOY_BUDGET))
    names = [c.name for c in res.candidates if c.stage == "recipe"]
    assert names == ["default", "qoperator", "per-tensor"]
    assert res.chosen.passed and -100 * res.chosen.parity.accuracy_delta <= 5.0
    assert sum(c.chosen for c in res.candidates) == 1 and res.excluded == []
    # every timed candidate has a p50 with its interval at the deciding batch; the chosen one was confirmed
    assert all(c.timing[1].p50_ci_ms[0] <= c.p50(1) <= c.timing[1].p50_ci_ms[1] for c in res.candidates
               if c.passed and c.stage == "recipe")
    final = res.final["points"]
    assert set(final) == {"1", "8"} and {"default", "onnx", res.chosen.name} <= set(final["1"])
    assert final["1"]["onnx"]["vs_fp32"] == 1.0
    # the file: the chosen recipe in its metadata, shown by info, passing check with the default bars
    meta = load_runtime(art / "model.int8.onnx").metadata
    assert Int8Recipe.from_dict(meta.int8_recipe) == res.chosen.recipe
    out = runner.invoke(cli, ["info", "--model", str(art / "model.int8.onnx")])
    assert out.exit_code == 0 and "int8 recipe" in out.output and res.chosen.recipe.form in out.output
    out = runner.invoke(cli, ["check", "--artifacts", str(art), "--data-dir", str(data), "--json",
                              "--min-agreement-int8", "0.9", "--max-acc-drop-int8", "0.05"])
    assert out.exit_code == 0, out.output
    # the reports: every candidate in tune.json, the table, both plots
    report = json.loads((art / "tune.json").read_text())
    assert [c["name"] for c in report["candidates"]] == [c.name for c in res.candidates]
    assert {"recipe", "accuracy", "top1_agreement", "timing", "size_bytes"} <= set(report["candidates"][0])
    # one table row per candidate, whichever won the timing; only the chosen one in bold
    md = (art / "tune.md").read_text()
    for c in res.candidates:
        shown = f"| **{c.name}** |" if c.chosen else f"| {c.name} |"
        assert md.count(shown) == 1, (c.name, md)
    assert md.count("| **") == 1
    assert (art / "tune.png").stat().st_size > 1000 and (art / "tune_layers.png").stat().st_size > 1000
    # the per-layer report lists every Conv/Gemm of the model, each quantized, with a finite SQNR
    assert sorted(r["op"] for r in report["layers"]) == ["Conv"] * CONVS + ["Gemm"]
    assert all(r["quantized"] and 0 < r["sqnr_db"] < 120 for r in report["layers"])


def test_the_fallback_puts_the_harmful_layer_back_to_fp32(toy, tmp_path, runner):
    from mnist_edge.verify.tune.layers import layer_errors
    from mnist_edge.verify.tune.search import tune

    src, data = toy
    art = _copy(src, tmp_path / "art")
    _harm_the_head(art, data)
    res = tune(TuneSettings(artifacts=art, data_dir=str(data), recipes=("per-tensor",), **TOY_BUDGET))
    recipes = [c for c in res.candidates if c.stage == "recipe"]
    assert recipes and not any(c.passed for c in recipes)  # the harm is real: no plain recipe survives it
    fallback = [c for c in res.candidates if c.stage == "fallback"]
    assert len(fallback) == 1 and fallback[0].passed
    assert res.excluded == [fallback[0].recipe.exclude[0]] and res.chosen.recipe.exclude == tuple(res.excluded)
    rows = {r.node: r for r in layer_errors(art / "model.int8.onnx", art / "model.onnx",
                                            _images(art, data))}
    assert rows[res.excluded[0]].op == "Gemm" and not rows[res.excluded[0]].quantized
    assert sum(r.quantized for r in rows.values()) == CONVS  # every conv; only the head went back
    # `check --per-layer` ranks the layers of any int8 ONNX file: here the default recipe's, head first
    from mnist_edge.core.settings import ExportSettings
    from mnist_edge.verify.export import export_models

    export_models(ExportSettings(checkpoint=art / "model.pth", out=tmp_path / "plain", format="onnx",
                                 quantize=True, data_dir=str(data),
                                 tolerances=Tolerances(int8_min_agreement=0.0, int8_max_accuracy_drop=1.0)))
    out = runner.invoke(cli, ["check", "--artifacts", str(tmp_path / "plain"), "--checkpoint", str(art / "model.pth"),
                              "--data-dir", str(data), "--per-layer", "--json"])
    assert out.exit_code == 1  # the harmed default int8 fails parity; the per-layer report says why
    layers = next(iter(json.loads(out.output)["per_layer"].values()))
    assert len(layers) == CONVS + 1 and layers[0]["node"] == res.excluded[0] and layers[0]["sqnr_db"] < 10


def _images(art: Path, data: Path):
    from mnist_edge.core.formats import load_runtime
    from mnist_edge.core.settings import ExportSettings
    from mnist_edge.verify.export import calibration_images

    meta = load_runtime(art / "model.onnx").metadata
    return calibration_images(ExportSettings(calibration_samples=32, data_dir=str(data)), meta)[0]


@pytest.mark.parametrize("args, message", [
    (["--max-drop", "-1"], "--max-drop is in accuracy points and cannot be negative"),
    (["--formats", "tflite-int8"], "tune searches int8 recipes for onnx-int8 only"),
    (["--formats", "nope"], "unknown format"),
    (["--recipes", "nope"], "--recipes: unknown recipe 'nope'"),
    (["--threads", "0"], "--threads must be at least 1"),
])
def test_bad_options_are_one_line(runner, tmp_path, args, message):
    res = runner.invoke(cli, ["tune", "--artifacts", str(tmp_path), *args])
    assert res.exit_code == 1 and message in res.output and "Traceback" not in res.output, res.output
    assert list(tmp_path.iterdir()) == []


def test_missing_models_and_unwritable_folders_are_one_line(runner, tmp_path):
    data = write_idx_dataset(tmp_path / "data", n_train=64, n_test=32)
    art = tmp_path / "art"
    art.mkdir()
    res = runner.invoke(cli, ["tune", "--artifacts", str(art), "--data-dir", str(data)])
    assert res.exit_code == 1 and "model.onnx: no such model file" in res.output, res.output
    save_random_checkpoint(art / "model.pth")
    shutil.copyfile(art / "model.pth", art / "model.onnx")  # the right name, the wrong content
    res = runner.invoke(cli, ["tune", "--artifacts", str(art), "--data-dir", str(data)])
    assert res.exit_code == 1 and "model.onnx" in res.output and "Traceback" not in res.output, res.output
    (tmp_path / "file").write_text("x")
    res = runner.invoke(cli, ["tune", "--artifacts", str(tmp_path / "file")])
    assert res.exit_code == 2 and "is a file" in res.output and "Traceback" not in res.output, res.output
    res = runner.invoke(cli, ["tune", "--artifacts", str(tmp_path / "none")])
    assert res.exit_code == 1 and "no such folder" in res.output


def test_recipes_round_trip_and_describe_themselves():
    r = Int8Recipe(name="x", per_channel=False, form="qoperator", exclude=("node_linear",), threads=1)
    assert Int8Recipe.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    text = r.describe()
    assert "QOperator" in text and "per-tensor" in text and "node_linear" in text and "1 thread" in text
    assert Int8Recipe().describe().startswith("onnxruntime static QDQ int8, per-channel weights")
