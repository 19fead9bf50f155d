"""`mnist-edge train`."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import click

from mnist_edge.cli import options
from mnist_edge.core.archs import ARCH_SPECS
from mnist_edge.core.settings import TrainPlace, TrainRecipe

R, P = TrainRecipe, TrainPlace  # the defaults shown below are these dataclasses' own


@click.command()
@click.option("--epochs", type=click.IntRange(min=1), default=R.epochs, show_default=True, help="Epochs to train.")
@click.option("--lr", type=float, default=R.lr, show_default=True, help="Peak learning rate (one-cycle).")
@click.option("--batch-size", type=click.IntRange(min=1), default=R.batch_size, show_default=True,
              help="Images per step.")
@click.option("--min-steps", type=click.IntRange(min=0), default=R.min_steps, show_default=True,
              help=f"Fewer steps than this: the batch halves (not below {R.min_batch}; lr by sqrt) until there are.")
@click.option("--bn-recalibration/--no-bn-recalibration", default=R.bn_recalibration, show_default=True,
              help="Recompute BatchNorm statistics over training images after each epoch.")
@click.option("--ema-steps", type=click.IntRange(min=0), default=R.ema_steps, show_default=True,
              help=f"Evaluate and save a moving average of the weights over about this many steps, in runs of "
                   f"at least {R.ema_min_steps:,} steps (0: the trained weights).")
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default=R.optimizer, show_default=True,
              help="AdamW, or SGD with momentum 0.9.")
@click.option("--label-smoothing", type=click.FloatRange(0, 1, max_open=True), default=R.label_smoothing,
              show_default=True, help="Cross-entropy against targets that give the other classes this much.")
@click.option("--teacher", type=click.Path(dir_okay=False), default=None,
              help="Distil from this trained checkpoint (model.pth): learn its softened predictions as well.")
@click.option("--distill-weight", type=click.FloatRange(0, 1), default=R.distill_weight, show_default=True,
              help="With --teacher: the weight of the teacher's term (the labels' term keeps the rest).")
@click.option("--distill-temperature", type=click.FloatRange(min=0, min_open=True), default=R.distill_temperature,
              show_default=True, help="With --teacher: the temperature both predictions are softened by.")
@click.option("--arch", default=R.arch, show_default=True,
              help=f"Architecture: {', '.join(ARCH_SPECS)} (see `mnist-edge models`).")
@click.option("--seed", type=int, default=R.seed, show_default=True, help="Seed: same seed, same weights (CPU).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=P.device, show_default=True)
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]), default=R.precision, show_default=True,
              help="auto depends on the CPU: bf16 autocast where it has native bf16 (AVX512-BF16, AMX; or a CUDA "
                   "GPU), else fp32, so the model trained differs between CPUs. fp32: the precision every CPU "
                   "trains in. bf16: native bf16 or an error. metrics.json records which ran.")
@click.option("--augment/--no-augment", default=R.augment, show_default=True,
              help="The dataset's random augmentation of each training image (MNIST: rotation, scale, shift; "
                   "Fashion-MNIST: none).")
@click.option("--out", type=click.Path(file_okay=False), default=P.out, show_default=True,
              help="Where model.pth, metrics.json and the plots go.")
@click.option("--resume", is_flag=True, help="Continue the run whose checkpoint is in --out.")
@click.option("--subset", type=click.IntRange(min=1), default=None,
              help="Train on the first N training images only (quick trials, small data).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Torch threads. [default: all cores]")
@click.option("--plots/--no-plots", default=P.plots, show_default=True, help="Write the figures at the end.")
@options.data_dir
@options.dataset
def command(**opts) -> None:
    """Train a model; writes model.pth, metrics.json and the figures into --out.

    An architecture may train with other defaults than those shown (mcu-16k: --label-smoothing 0); an
    option given here always wins. `train` prints the settings it ran with."""
    from mnist_edge.cli.ui import Terminal
    from mnist_edge.core.settings import TrainSettings
    from mnist_edge.pytorch.train import train

    ctx = click.get_current_context()
    given = {k: v for k, v in opts.items()  # left out: a default, which the architecture may set otherwise
             if ctx.get_parameter_source(k) is not click.core.ParameterSource.DEFAULT}
    settings = TrainSettings.of(**given)
    res = train(settings, on_epoch=_follow_the_machine(settings.recipe.epochs), reporter=Terminal())
    click.echo(f"test accuracy {100 * res.test_acc:.2f}% (loss {res.test_loss:.4f}) after "
               f"{len(res.history)} epochs; {res.seconds:.0f} s of training")
    click.echo(f"wrote {res.checkpoint} and metrics.json{', figures' if settings.place.plots else ''} "
               f"in {settings.place.out}/")


def _follow_the_machine(epochs: int) -> Callable[[dict], None] | None:
    """After each saved epoch but the last: where another process now keeps a core busy and this run's OpenMP
    threads spin (mnist-edge's choice, made when the machine was quiet), continue from that epoch in a new
    process whose threads sleep while they wait: `--resume`, the same weights bit for bit (core/threads.py).
    None where this process is not the `mnist-edge` command (a test's runner) or cannot replace itself."""
    from mnist_edge import cli
    from mnist_edge.core.threads import PASSIVE, WAIT_POLICY, policy_now

    argv = cli.ARGV
    if argv is None or os.name != "posix":
        return None

    def on_epoch(row: dict) -> None:
        if row["epoch"] >= epochs:
            return
        env = policy_now()
        if env is None:
            return
        click.echo(f"another process now keeps a core busy: continuing from epoch {row['epoch']} in a new "
                   f"process whose OpenMP threads sleep while they wait ({WAIT_POLICY}={PASSIVE})")
        sys.stdout.flush()
        sys.stderr.flush()
        again = argv if "--resume" in argv else [*argv, "--resume"]
        try:
            os.execve(sys.executable, [sys.executable, "-m", "mnist_edge", *again], env)
        except OSError as e:  # this process goes on as it was
            click.echo(f"could not start {sys.executable} ({e.strerror}): going on in this process")

    return on_epoch
