"""The step-adaptive recipe: its plan and schedule per step count, BatchNorm recalibration, the far-below warning."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest
import torch

from mnist_edge.core.settings import TrainRecipe, TrainSettings
from mnist_edge.pytorch.models import build
from mnist_edge.pytorch.train import (
    StepPlan,
    far_below_warning,
    make_optimizer,
    plan_steps,
    recalibrate_bn,
    to_input,
    train,
)

from .conftest import idx_bytes, synthetic_digits, write_idx_dataset


@pytest.mark.parametrize("n, epochs, batch, steps", [
    (60_000, 20, 256, 4_700),  # the default run: the recipe as written
    (60_000, 1, 256, 235),     # enough steps already
    (6_000, 3, 64, 282),       # 72 steps of 256 are too few: halved twice
    (6_000, 1, 32, 188),       # down to min_batch
    (1_000, 5, 32, 160),
    (100, 1, 32, 4),           # min_batch is a floor even when min_steps is out of reach
])
def test_the_batch_shrinks_until_a_run_has_enough_steps(n, epochs, batch, steps):
    recipe = TrainRecipe(epochs=epochs)
    plan = plan_steps(recipe, n)
    assert (plan.batch_size, plan.total_steps) == (batch, steps)
    assert plan.steps_per_epoch == math.ceil(n / batch)
    assert plan.lr == pytest.approx(recipe.lr * math.sqrt(batch / recipe.batch_size))  # Adam's sqrt rule


@pytest.mark.parametrize("total", [10, 188, 4_700])
def test_one_cycle_warms_up_to_the_planned_peak_then_anneals(total):
    model = torch.nn.Linear(2, 2)
    opt, sched = make_optimizer(TrainRecipe(), model, StepPlan(32, 0.01, total, total))
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = int(np.argmax(lrs))
    assert max(lrs) == pytest.approx(0.01, rel=1e-3) and abs(peak - 0.3 * total) <= 1  # 30% warm-up
    assert lrs[0] < 0.05 * 0.01 and lrs[-1] < 0.01 * 0.01  # starts low, ends near zero
    assert (np.diff(lrs[:peak + 1]) > 0).all() and (np.diff(lrs[peak:]) < 0).all()  # rises, then only falls


def _batch_stats(model, x):
    """Mean and unbiased variance per channel of the first BatchNorm's input, over all of x."""
    with torch.no_grad():
        z = model.features[0](x)  # conv 1 -> (N, 32, 28, 28)
    return z.mean(dim=(0, 2, 3)), z.var(dim=(0, 2, 3), unbiased=True)


def test_bn_recalibration_gives_the_statistics_of_the_final_weights():
    images, labels = synthetic_digits(600)
    sample = torch.from_numpy(images).unsqueeze(1)
    torch.manual_seed(0)
    model = build("edgenet").train()
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)  # weights that move fast, as at a one-cycle peak
    x, y = to_input(sample.float() / 255, 0.13, 0.31, "cpu"), torch.from_numpy(labels.astype(np.int64))
    for i in range(0, 600, 50):
        loss = torch.nn.functional.cross_entropy(model(x[i:i + 50]), y[i:i + 50])
        opt.zero_grad()
        loss.backward()
        opt.step()
    bn = model.features[1]
    mean, var = _batch_stats(model, x)
    assert not torch.allclose(bn.running_mean, mean, rtol=0.05)  # the momentum average lags behind
    recalibrate_bn(model, sample, 0.13, 0.31, "cpu", batch=128)
    assert torch.allclose(bn.running_mean, mean, rtol=1e-4, atol=1e-5)  # batches of 128, 128, ... 88
    # the mean of 5 batches' variances: short of the whole sample's by the spread of the batch means
    assert torch.allclose(bn.running_var, var, rtol=2e-2)
    assert bn.momentum == 0.1 and model.training  # left as it was found


def _run(tmp_path, data, **options):
    return train(TrainSettings.of(data_dir=str(data), out=str(tmp_path / "o"), threads=1, plots=False, **options))


def test_a_good_run_does_not_warn(tmp_path):
    res = _run(tmp_path, write_idx_dataset(tmp_path / "data", n_train=512, n_test=128), epochs=2)
    assert res.test_acc > 0.5 and abs(res.train_acc - res.test_acc) < 0.05  # chance is 0.1
    assert res.warning is None


def test_a_test_set_of_another_task_gets_the_far_below_warning(tmp_path):
    data = write_idx_dataset(tmp_path / "data", n_train=512, n_test=128)
    _, test_labels = synthetic_digits(128, seed=1)
    wrong = (test_labels + 1 + np.arange(128) % 9).astype(np.uint8) % 10  # every label wrong: another dataset
    (data / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(wrong)))
    res = _run(tmp_path, data, epochs=2)
    assert res.train_acc > 0.5 and res.test_acc < 0.1
    assert res.warning and res.warning.startswith("warning: test accuracy")
    assert f"{100 * res.test_acc:.1f}%" in res.warning and "--dataset" in res.warning


def test_far_below_means_15_points_of_the_same_weights():
    assert far_below_warning(0.99, 0.95) is None  # a small-data generalisation gap
    assert far_below_warning(0.95, 0.43) == (
        "warning: test accuracy 43.0% is far below train accuracy 95.0% of the same model "
        "(a too-short run, a tiny --subset it memorised, or the wrong --dataset?)")
