"""The step-adaptive recipe: its plan and schedule per step count, BatchNorm recalibration, the far-below warning,
the weight average, and each dataset's augmentation."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest
import torch

from mnist_edge.core.metadata import DATASETS, Augmentation
from mnist_edge.core.settings import TrainRecipe, TrainSettings
from mnist_edge.pytorch.models import build
from mnist_edge.pytorch.train import (
    StepPlan,
    WeightAverage,
    ema_decay,
    epoch_batches,
    far_below_warning,
    make_optimizer,
    plan_steps,
    random_affine,
    recalibrate_bn,
    to_input,
    train,
    train_step,
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
    # 5 epochs: the default edgenet has not settled after 2 or 3 on 512 images (63% test, 74% train)
    res = _run(tmp_path, write_idx_dataset(tmp_path / "data", n_train=512, n_test=128), epochs=5)
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


# --- the weight average ---------------------------------------------------------------------------

def test_the_weight_average_follows_weights_and_batchnorm_buffers_at_its_decay():
    torch.manual_seed(0)
    model = build("edgenet").train()
    avg = WeightAverage(model, decay=0.75, updates=1_000)  # past its warm-up
    start = {k: v.clone() for k, v in model.state_dict().items()}
    model(torch.randn(8, 1, 28, 28))  # BatchNorm's running buffers and batch counters move
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    avg.update()
    now = model.state_dict()
    for k, v in avg.model.state_dict().items():
        if v.is_floating_point():  # 0.75 of the start, 0.25 of the model now
            assert torch.allclose(v, 0.75 * start[k] + 0.25 * now[k], atol=1e-5), k
        else:
            assert torch.equal(v, now[k]), k
    assert not any(p.requires_grad for p in avg.model.parameters())


def test_the_weight_average_warms_up_from_the_first_steps_weights():
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(-50.0)  # the weights it starts from: a tenth of them left after one update
    avg = WeightAverage(model, decay=0.99)
    seen = []
    for t in range(2_000):
        with torch.no_grad():
            model.weight.fill_(float(t))
        avg.update()
        seen.append(float(avg.model.weight))
    # update 0 takes 9/10 of the weights, update 1 9/11; later ones average about the last tenth of the steps
    assert seen[0] == pytest.approx(-5.0, abs=1e-5) and seen[1] == pytest.approx(9 / 11 - 5 * 2 / 11, abs=1e-5)
    assert 80 < seen[99] < 95 and avg.updates == 2_000
    # from step ~900 on the decay is 0.99: a window of 100 steps, which trails a ramp by ~99 steps
    assert seen[-1] == pytest.approx(1_999 - 99, abs=1)


@pytest.mark.parametrize("total, expected", [(4_700, 1 - 1 / 4), (188, None)])
def test_the_weight_average_is_kept_in_runs_of_enough_steps(total, expected):
    recipe = TrainRecipe(ema_steps=4, ema_min_steps=1_000)
    assert ema_decay(recipe, StepPlan(256, 0.02, total // 20, total)) == expected
    assert ema_decay(TrainRecipe(ema_steps=0), StepPlan(256, 0.02, 235, 4_700)) is None


def test_the_weight_average_is_what_is_evaluated_saved_and_exported(tmp_path):
    from mnist_edge.core.data import load_dataset
    from mnist_edge.pytorch import checkpoint
    from mnist_edge.pytorch.evaluate import evaluate

    data = write_idx_dataset(tmp_path / "data", n_train=256, n_test=128)
    res = _run(tmp_path, data, epochs=2, batch_size=32, ema_steps=8, ema_min_steps=0)
    ckpt = checkpoint.load(res.checkpoint)
    avg, trained = ckpt["state_dict"], ckpt["trained_state_dict"]
    assert any(not torch.equal(avg[k], trained[k]) for k in avg)
    model, meta = checkpoint.load_model(res.checkpoint)  # what export, evaluate and check load
    assert all(torch.equal(v, avg[k]) for k, v in model.state_dict().items())
    test = load_dataset(str(data), allow_download=False)[1]
    assert evaluate(model, test, meta).accuracy == res.test_acc == meta.test_acc > 0.2  # chance: 0.1


# --- augmentation per dataset ---------------------------------------------------------------------

def _old_mnist_affine(x, g):
    """random_affine as it was before profiles: the MNIST stream must stay bit-identical."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=g) * 2 - 1) * math.radians(10)
    scale = 1 + (torch.rand(n, generator=g) * 2 - 1) * 0.1
    shift = (torch.rand(n, 2, generator=g) * 2 - 1) * 0.12
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def _batches(dataset: str):
    images, labels = synthetic_digits(64)
    x, y = torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))
    return x, [b for b, _ in epoch_batches(x, y, TrainRecipe(dataset=dataset), 32, 0, 0.0, 1.0)]


def test_mnist_keeps_its_rotation_scale_shift_bit_for_bit():
    assert DATASETS["mnist"].augmentation == Augmentation(rotation_deg=10, scale=0.1, shift=0.12, hflip=0.0)
    x, batches = _batches("mnist")
    g = torch.Generator().manual_seed(0 * 1_000_003 + 0)
    perm = torch.randperm(64, generator=g)
    for i, b in enumerate(batches):
        assert torch.equal(b, _old_mnist_affine(x[perm[32 * i:32 * i + 32]].float() / 255, g))


def test_a_mirror_is_exact_and_drawn_per_image():
    x = torch.rand(64, 1, 28, 28)
    out = random_affine(x, torch.Generator().manual_seed(0), Augmentation(hflip=1.0))
    assert torch.allclose(out, x.flip(-1), atol=1e-5)
    half = random_affine(x, torch.Generator().manual_seed(0), Augmentation(hflip=0.5))
    mirrored = torch.isclose(half, x.flip(-1), atol=1e-5).flatten(1).all(1)
    kept = torch.isclose(half, x, atol=1e-5).flatten(1).all(1)
    assert (mirrored | kept).all() and 16 < int(mirrored.sum()) < 48


def test_fashion_mnist_gets_its_own_augmentation():
    spec = DATASETS["fashion-mnist"].augmentation
    assert spec != DATASETS["mnist"].augmentation and not spec.rotation_deg and not spec.scale
    x, batches = _batches("fashion-mnist")
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(64, generator=g)
    for i, b in enumerate(batches):
        plain = x[perm[32 * i:32 * i + 32]].float() / 255
        assert torch.equal(b, plain if spec.is_identity else random_affine(plain, g, spec))



# --- distillation ---------------------------------------------------------------------------------

def test_the_teacher_term_is_zero_for_its_own_predictions_and_grows_with_disagreement():
    from mnist_edge.pytorch.train import Teacher

    torch.manual_seed(0)
    net = build("edgenet", {"channels": [4, 8, 8]}).eval()
    x = torch.randn(8, 1, 28, 28)
    teacher = Teacher(net, weight=0.5, temperature=4.0)
    own = net(x).detach()
    assert teacher.loss(x, own).item() == pytest.approx(0.0, abs=1e-5)
    assert teacher.loss(x, own + torch.randn_like(own)).item() > 0.01
    assert teacher.loss(x, torch.zeros_like(own)).item() > 0  # a uniform student disagrees with a confident one


def test_a_student_distils_from_a_checkpoint_and_records_its_teacher(tmp_path, tiny_run):
    data = write_idx_dataset(tmp_path / "data", n_train=256, n_test=128)
    teacher = str(tiny_run / "model.pth")
    a = _run(tmp_path / "a", data, epochs=2, batch_size=32, teacher=teacher, distill_weight=0.7)
    b = _run(tmp_path / "b", data, epochs=2, batch_size=32)
    from mnist_edge.pytorch import checkpoint
    wa, wb = (checkpoint.load(r.checkpoint)["state_dict"] for r in (a, b))
    assert any(not torch.equal(wa[k], wb[k]) for k in wa)  # the teacher's term changed the training
    assert checkpoint.load(a.checkpoint)["config"]["teacher"] == teacher
    assert a.test_acc > 0.2


def test_a_teacher_that_is_not_a_checkpoint_is_one_line(tmp_path):
    from mnist_edge.core.errors import MnistEdgeError

    data = write_idx_dataset(tmp_path / "data", n_train=64, n_test=32)
    bad = tmp_path / "teacher.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(MnistEdgeError, match="teacher.pth"):
        _run(tmp_path / "out", data, epochs=1, batch_size=32, teacher=str(bad))


@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_the_training_mean_has_autograds_values_bit_for_bit_and_a_dense_gradient(layout):
    from mnist_edge.pytorch.models import spatial_mean

    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, 7, 7, generator=g).contiguous(memory_format=layout)
    upstream = torch.randn(4, 6, 1, 1, generator=g)
    grads = []
    for training in (True, False):
        leaf = x.clone().requires_grad_()
        y = torch.relu(leaf * 1.5)
        out = spatial_mean(y, training)
        assert torch.equal(out, y.mean(dim=(2, 3), keepdim=True))
        (out * upstream).sum().backward()
        grads.append(leaf.grad)
    assert torch.equal(grads[0], grads[1])
    # the training path hands ReLU's backward a tensor in the input's layout, not a broadcast view
    y = torch.relu(x.clone().requires_grad_())
    grad_in = torch.autograd.grad(spatial_mean(y, True), y, upstream)[0]
    assert grad_in.is_contiguous(memory_format=layout) and 0 not in grad_in.stride()


@pytest.mark.parametrize("arch", ["edgenet", "mcu-16k"])
def test_training_pools_before_relu_with_the_same_weights_bit_for_bit(arch):
    """Features runs ReLU after the max-pool that follows it while training: the steps give the same weights."""
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(32, 1, 28, 28, generator=g), torch.randint(0, 10, (32,), generator=g)) for _ in range(4)]
    weights = []
    for order in ("pool first", "as listed"):
        torch.manual_seed(0)
        model = build(arch)
        if order == "as listed":
            model.features.train_order = tuple(range(len(model.features)))
        recipe = TrainRecipe(arch=arch)
        opt, sched = make_optimizer(recipe, model, StepPlan(32, recipe.lr, 4, 4))
        for x, y in batches:
            train_step(model, opt, sched, x, y, 0.1)
        weights.append(model.state_dict())
    features = build(arch).features
    assert list(features.train_order) != list(range(len(features)))  # training's order differs from the listing
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_an_exported_edgenet_sees_the_plain_mean_and_its_layers_in_order():
    """Training's dense-gradient mean and pool-before-ReLU order stay out of eval mode, and so of every export."""
    model = build("edgenet").eval()
    with torch.no_grad():
        graph = torch.export.export(model, (torch.zeros(2, 1, 28, 28),)).graph
    ops = [str(n.target) for n in graph.nodes if n.op == "call_function"]
    assert any("mean" in t for t in ops) and not any("SpatialMean" in t or "autograd" in t for t in ops)
    relu, pool = ops.index(next(o for o in ops if "relu" in o)), ops.index(next(o for o in ops if "max_pool" in o))
    assert relu < pool
