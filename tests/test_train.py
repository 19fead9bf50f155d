"""Training: every architecture's output shape, the CLI run and its files, determinism and resume."""

from __future__ import annotations

import json
import platform

import pytest
import torch

from mnist_edge.cli import cli
from mnist_edge.core import malloc
from mnist_edge.core.archs import ARCH_SPECS
from mnist_edge.core.errors import ModelFileError
from mnist_edge.core.settings import TrainSettings
from mnist_edge.pytorch import checkpoint
from mnist_edge.pytorch.models import build, count_macs, count_params
from mnist_edge.pytorch.plots import PLOT_FILES
from mnist_edge.pytorch.train import TrainingInterrupted, train

from .conftest import needs_real_data, write_idx_dataset


@pytest.mark.parametrize("name", list(ARCH_SPECS))
def test_every_arch_maps_a_batch_to_10_scores_with_its_documented_size(name):
    model = build(name).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, 10)
    assert torch.isfinite(out).all()
    spec = ARCH_SPECS[name]  # what `mnist-edge models` and the README print, without torch
    assert count_params(model) == spec.params and count_macs(model) == spec.macs
    # the MAC counter agrees with torch's own FLOP counter (2 FLOPs per multiply-accumulate), conv and linear
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    counted = sum(v for op, v in fc.get_flop_counts()["Global"].items()
                  if "conv" in str(op) or "addmm" in str(op) or "mm" in str(op))
    assert counted == 2 * spec.macs


def test_the_default_model_is_pinned():
    assert ARCH_SPECS["edgenet"].params == 103_258 and round(ARCH_SPECS["edgenet"].macs / 1e6, 2) == 5.96


def test_scoring_batches_keep_every_activation_of_the_default_model_on_the_heap():
    """Each epoch's evaluation runs at EVAL_BATCH: no activation may reach glibc's mmap ceiling, or every batch
    maps and unmaps it again (page faults; core/scores.py)."""
    from mnist_edge.core.scores import EVAL_BATCH

    model, sizes = build("edgenet").eval(), []
    for layer in model.modules():
        if not list(layer.children()):
            layer.register_forward_hook(lambda _m, _i, out: sizes.append(out.nbytes))
    with torch.no_grad():
        model(torch.zeros(EVAL_BATCH, 1, 28, 28))
    assert max(sizes) == EVAL_BATCH * 16 * 28 * 28 * 4  # the first conv's output, the largest
    assert max(sizes) < malloc.HEAP_BELOW


def test_edgenet_builds_at_any_depth_from_its_checkpoint_arguments():
    # a checkpoint records its channels: a 3- or 4-layer edgenet rebuilds exactly from them
    three = build("edgenet", {"channels": [32, 64, 128]})
    assert count_params(three) == 94_698 and count_macs(three) == 7_853_824
    four = build("edgenet", {"channels": [16, 48, 80, 96]})
    assert count_params(four) == 112_442 and count_macs(four) == 6_749_632
    assert [type(m).__name__ for m in three.features][-3:] == ["Conv2d", "BatchNorm2d", "ReLU"]
    with pytest.raises(ModelFileError, match="at least 3"):
        build("edgenet", {"channels": [8, 8]})


def test_cli_train_writes_every_output(tmp_path, runner):
    data = write_idx_dataset(tmp_path / "data")
    out = tmp_path / "art"
    res = runner.invoke(cli, ["train", "--data-dir", str(data), "--epochs", "1", "--out", str(out),
                              "--threads", "1", "--batch-size", "64"])
    assert res.exit_code == 0, res.output
    assert "test accuracy" in res.output
    for name in ("model.pth", "metrics.json", *PLOT_FILES):
        f = out / name
        assert f.is_file() and f.stat().st_size > 0, name
    for name in PLOT_FILES:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = json.loads((out / "metrics.json").read_text())
    assert len(m["epochs"]) == 1
    row = m["epochs"][0]
    assert set(row) == {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds", "load_avg_1m"}
    assert row["load_avg_1m"] is None or row["load_avg_1m"] >= 0  # None only where the OS has no load average
    assert 0 <= m["test_acc"] <= 1 and m["test_acc"] == row["test_acc"]
    assert not list(out.glob("*.tmp")), "temporary files left behind"


@pytest.mark.parametrize("native", [True, False], ids=["native-bf16", "no-bf16"])
def test_train_says_and_records_the_precision_it_chose_and_the_cpu(tmp_path, runner, monkeypatch, native):
    from mnist_edge.core.cpu import cpu_info
    from mnist_edge.pytorch import train as train_module

    monkeypatch.setattr(train_module, "native_bf16", lambda device: native)  # either CPU, whichever runs the test
    data = write_idx_dataset(tmp_path / "data", n_train=128, n_test=32)
    out = tmp_path / "art"
    res = runner.invoke(cli, ["train", "--data-dir", str(data), "--epochs", "1", "--out", str(out), "--threads", "1",
                              "--batch-size", "64", "--no-plots"])
    assert res.exit_code == 0, res.output
    used = "bf16 autocast" if native else "fp32"
    lines = [ln for ln in res.output.splitlines() if ln.startswith("precision: ")]
    assert len(lines) == 1 and lines[0].startswith(f"precision: {used} (auto: this CPU has ")
    assert ("--precision fp32" in lines[0]) == native  # where auto chose bf16, the line names the way to fp32
    m = json.loads((out / "metrics.json").read_text())
    assert m["precision"] == used and m["config"]["precision"] == "auto"
    assert m["cpu"] == json.loads(json.dumps(cpu_info())) and m["cpu"]["kind"] and m["threads"] == 1
    assert checkpoint.load(out / "model.pth")["run"]["precision"] == used
    # the malloc setting the run's speed depends on (core/malloc.py): set wherever the C library is glibc
    assert m["keeps_freed_memory"] is (platform.libc_ver()[0] == "glibc" and not malloc.user_set())


def test_an_architecture_trains_with_its_own_defaults_and_the_command_line_wins(tmp_path, runner):
    from mnist_edge.core.settings import TrainSettings

    assert ARCH_SPECS["mcu-16k"].recipe == {"label_smoothing": 0.0, "precision": "fp32"}
    assert TrainSettings.of(arch="mcu-16k", precision="auto").recipe.precision == "auto"
    data = write_idx_dataset(tmp_path / "data", n_train=128, n_test=32)
    for extra, smoothing in (([], 0.0), (["--label-smoothing", "0.1"], 0.1)):
        out = tmp_path / f"art{smoothing}"
        res = runner.invoke(cli, ["train", "--arch", "mcu-16k", "--data-dir", str(data), "--epochs", "1", "--out",
                                  str(out), "--threads", "1", "--batch-size", "64", "--no-plots", *extra])
        assert res.exit_code == 0, res.output
        m = json.loads((out / "metrics.json").read_text())
        assert m["config"]["label_smoothing"] == smoothing and m["config"]["precision"] == "fp32"
        assert m["precision"] == "fp32" and f"label smoothing {smoothing:g}" in res.output
    # the default architecture keeps TrainRecipe's defaults
    assert TrainSettings.of().recipe.label_smoothing == 0.1


def test_an_explicit_precision_is_what_the_line_names(monkeypatch):
    from mnist_edge.core.errors import MnistEdgeError
    from mnist_edge.pytorch.train import choose_precision

    monkeypatch.setattr("mnist_edge.pytorch.train.native_bf16", lambda device: False)
    assert choose_precision("fp32", "cpu") == (False, "precision: fp32 (set by --precision or the architecture: "
                                                    "float32 on every CPU)")
    with pytest.raises(MnistEdgeError, match="no native bfloat16"):
        choose_precision("bf16", "cpu")
    monkeypatch.setattr("mnist_edge.pytorch.train.native_bf16", lambda device: True)
    assert choose_precision("bf16", "cpu") == (True, "precision: bf16 autocast (--precision bf16)")
    assert choose_precision("fp32", "cpu")[0] is False


def test_checkpoint_carries_what_is_needed_to_use_it(tiny_run):
    ckpt = checkpoint.load(tiny_run / "model.pth")
    meta = ckpt["metadata"]
    assert meta.arch == "edgenet" and meta.class_names == [str(d) for d in range(10)]
    assert (meta.mean, meta.std) == (0.1307, 0.3081)
    assert meta.epochs == 5 and 0 <= meta.test_acc <= 1
    assert meta.versions["torch"] == torch.__version__
    model, meta2 = checkpoint.load_model(tiny_run / "model.pth")
    assert meta2 == meta and not model.training


def test_tiny_model_learns_the_synthetic_task(tiny_run):
    m = json.loads((tiny_run / "metrics.json").read_text())
    assert m["test_acc"] > 0.5  # chance is 0.1; the bars are easy


@pytest.mark.parametrize("average", [{"ema_steps": 0}, {"ema_steps": 4, "ema_min_steps": 0}],
                         ids=["trained-weights", "weight-average"])
def test_same_seed_same_weights_and_resume_equivalence(tmp_path, average):
    data = write_idx_dataset(tmp_path / "data", n_train=256, n_test=64)
    base = dict(epochs=3, data_dir=str(data), threads=1, batch_size=64, plots=False, **average)
    train(TrainSettings.of(out=str(tmp_path / "a"), **base))

    def stop_after_first(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted) as e:
        train(TrainSettings.of(out=str(tmp_path / "b"), **base), on_epoch=stop_after_first)
    assert "holds epoch 1" in str(e.value) and e.value.exit_code == 130
    assert checkpoint.load(tmp_path / "b" / "model.pth")["epochs_done"] == 1
    train(TrainSettings.of(out=str(tmp_path / "b"), resume=True, **base))

    ckpt_a, ckpt_b = checkpoint.load(tmp_path / "a" / "model.pth"), checkpoint.load(tmp_path / "b" / "model.pth")
    kinds = ["state_dict", "trained_state_dict"] if average["ema_steps"] else ["state_dict"]
    assert [k for k in ckpt_a if k.endswith("state_dict")] == kinds
    for kind in kinds:  # the average and the trained weights it follows: both bit-exact after --resume
        a, b = ckpt_a[kind], ckpt_b[kind]
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (kind, k)
    hist_a = json.loads((tmp_path / "a" / "metrics.json").read_text())["epochs"]
    hist_b = json.loads((tmp_path / "b" / "metrics.json").read_text())["epochs"]
    assert [h["test_acc"] for h in hist_a] == [h["test_acc"] for h in hist_b]


def test_resume_refuses_a_different_run(tmp_path, runner):
    data = write_idx_dataset(tmp_path / "data", n_train=128, n_test=32)
    args = ["train", "--data-dir", str(data), "--out", str(tmp_path / "o"), "--epochs", "1",
            "--no-plots", "--threads", "1"]
    assert runner.invoke(cli, args).exit_code == 0
    res = runner.invoke(cli, args + ["--resume", "--seed", "5"])
    assert res.exit_code == 1 and "cannot resume" in res.output and "seed" in res.output


def test_resume_without_checkpoint_is_one_line(tmp_path, runner):
    data = write_idx_dataset(tmp_path / "data", n_train=64, n_test=16)
    res = runner.invoke(cli, ["train", "--data-dir", str(data), "--out", str(tmp_path / "none"),
                              "--resume", "--no-plots"])
    assert res.exit_code == 1 and "no such checkpoint" in res.output and "Traceback" not in res.output


def test_unknown_arch_is_one_line(tmp_path, runner, idx_data):
    res = runner.invoke(cli, ["train", "--arch", "resnet9000", "--data-dir", str(idx_data)])
    assert res.exit_code == 1 and "unknown architecture 'resnet9000'" in res.output


@needs_real_data
@pytest.mark.slow
def test_real_mnist_short_run_beats_95_percent(tmp_path):
    import os

    res = train(TrainSettings.of(epochs=3, subset=10_000, batch_size=128, data_dir=os.environ["MNIST_EDGE_DATA"],
                            out=str(tmp_path), plots=False))
    assert res.test_acc > 0.95, res.test_acc


def test_evaluate_reports_the_trained_accuracy(tiny_run, runner):
    m = json.loads((tiny_run / "metrics.json").read_text())
    data = tiny_run.parent / "data"
    res = runner.invoke(cli, ["evaluate", "--model", str(tiny_run / "model.pth"), "--data-dir", str(data), "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)
    assert got["test_acc"] == pytest.approx(m["test_acc"]) and got["images"] == 128
    assert got["test_loss"] == pytest.approx(m["test_loss"], rel=1e-4)
    res = runner.invoke(cli, ["evaluate", "--model", str(tiny_run / "model.pth"), "--data-dir", str(data)])
    assert f"{100 * m['test_acc']:.2f}%" in res.output


def test_fashion_mnist_class_names_travel_with_the_model(tmp_path):
    data = write_idx_dataset(tmp_path / "fashion", n_train=128, n_test=32)
    train(TrainSettings.of(epochs=1, dataset="fashion-mnist", data_dir=str(data), out=str(tmp_path / "o"),
                      threads=1, plots=False))
    meta = checkpoint.load(tmp_path / "o" / "model.pth")["metadata"]
    assert meta.dataset == "fashion-mnist"
    assert meta.class_names[0] == "T-shirt/top" and meta.class_names[9] == "Ankle boot"
    assert (meta.mean, meta.std) == (0.2860, 0.3530)
