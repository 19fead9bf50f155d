"""Training speed in units a user can check on their own machine: the seed's torchvision-style loop.

mnist-edge (train.py): the training set lives in memory as one uint8 tensor; a batch is an index
into it, converted, augmented (random_affine) and normalised as a whole. The seed: a Dataset that
does what torchvision.datasets.MNIST.__getitem__ does (a PIL image per item, then ToTensor and
Normalize), batched by a DataLoader of 64. Both train edgenet with train.py's optimizer and train_step
for a fixed number of steps after uncounted warm-up steps, taking turns so that machine noise hits both alike;
mnist-edge runs with the precision `--precision auto` picks here and, where that is bf16, in fp32 too.

Three results, each a verdict against its goal (printed and in the JSON; goals, not asserts: a slow CPU
is no failure of the code):
- the training-throughput ratio, mnist-edge / seed, in images/s (goal >= 2x);
- the default run's time in seed-loop epochs (one: 60,000 images at the seed loop's measured rate), goal
  <= 10: measured where ARTIFACTS/metrics.json is a default-recipe run recorded on this CPU that had the machine
  to itself (no epoch's load average above its threads + SHARED_LOAD; a run that records no load counts), and
  estimated for each precision as its measured step time x the run's steps + one test-set evaluation per epoch
  (BatchNorm recalibration, which runs of the default length skip, and the weight average's ~0.06 ms
  a step left out);
- the step time with one core kept busy by a bounded loop this benchmark starts and stops itself, in a process
  with the wait policy the CLI picks on a busy machine (PASSIVE), against the same steps quiet in this one,
  with the policy it picked here, in alternating chunks (goal <= 2x); and, shown beside it, the same steps
  busy in this process: what a run that started quiet gets until its next epoch, where `train` goes on in a
  process with PASSIVE (cli/train.py).
Every loop runs with the OpenMP wait policy a command would pick here (benchmarks/conftest.py): on a quiet
machine the runtime's spinning, for the seed loop as for mnist-edge; and in a process whose malloc keeps the
memory it frees, as `train` sets it (core/malloc.py; the seed loop's own steps free nothing that glibc would hand
back, so it runs the same either way: 0-1% apart, measured).
Writes ARTIFACTS/bench_train.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mnist_edge.core.fileio import write_json

STEPS = int(os.environ.get("MNIST_EDGE_TRAIN_STEPS", "200"))  # timed steps per loop (>= 200: a stable ratio)
WARMUP_STEPS = 2
CHUNK = 5  # the loops take turns, CHUNK steps at a time
SEED_BATCH = 64  # the seed's DataLoader
GOAL = 2.0  # mnist-edge's loop should train at least this many times as many images/s
EPOCHS_GOAL = 10.0  # the default run should take at most this many seed-loop epochs of time
BUSY_GOAL = 2.0  # a step with one core busy should take at most this many times as long as a quiet one
BUSY_STEPS = 40  # timed steps each, quiet and busy
# A recorded run whose epochs saw a load average above its threads plus this shared its cores with other work
# (at least half a core's worth, on average): its time is not this machine's, and the estimate is the verdict's.
SHARED_LOAD = 0.5
BUSY_LIMIT_S = 120.0  # the busy loop ends itself after this long, whatever becomes of the benchmark
# One core busy, as a browser tab or another build keeps it: at this process's own priority, so the
# scheduler shares that core evenly between the busy loop and torch's threads.
BUSY_LOOP = "import time\nend = time.monotonic() + {limit}\nwhile time.monotonic() < end:\n    pass\n"


def edge_batches(torch, images, labels, recipe, mean: float, std: float):
    """train.py's own batches (mnist_edge.train.epoch_batches), epoch after epoch."""
    from mnist_edge.pytorch.train import epoch_batches

    epoch = 0
    while True:
        yield from epoch_batches(images, labels, recipe, recipe.batch_size, epoch, mean, std)
        epoch += 1


def seed_batches(torch, images: np.ndarray, labels: np.ndarray, mean: float, std: float):
    """The seed's batches: torchvision's MNIST item pipeline over the same arrays, DataLoader of 64."""
    from torchvision import transforms

    try:
        from torchvision.utils import _Image_fromarray as fromarray  # what torchvision's MNIST calls
    except ImportError:
        from PIL.Image import fromarray

    class IdxMNIST(torch.utils.data.Dataset):
        """torchvision.datasets.MNIST without the download: same storage, same __getitem__."""

        def __init__(self, transform):
            self.data = torch.from_numpy(images)  # (N, 28, 28) uint8, as torchvision keeps it
            self.targets = torch.from_numpy(labels.astype(np.int64))
            self.transform = transform

        def __len__(self) -> int:
            return len(self.data)

        def __getitem__(self, index: int):
            img, target = self.data[index], int(self.targets[index])
            img = fromarray(img.numpy(), mode="L")
            return self.transform(img), target

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((mean,), (std,))])
    loader = torch.utils.data.DataLoader(IdxMNIST(tf), batch_size=SEED_BATCH, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    while True:
        yield from loader


def trainer(torch, batches, mnist_edge: bool, bf16: bool = False, steps: int = WARMUP_STEPS + STEPS):
    """A fresh edgenet trained by train.py's own step; step() trains one batch -> (images, data seconds).

    mnist_edge=True: as train.py runs it (channels_last; bf16 autocast if asked); False: as the seed ran
    it (torch's default layout, float32). `steps`: how many the one-cycle schedule allows.
    """
    from mnist_edge.core.settings import TrainRecipe
    from mnist_edge.pytorch.models import build
    from mnist_edge.pytorch.train import StepPlan, make_optimizer, train_step

    recipe = TrainRecipe()
    torch.manual_seed(0)
    model = build(recipe.arch).train()
    if mnist_edge:
        model = model.to(memory_format=torch.channels_last)
    opt, sched = make_optimizer(recipe, model, StepPlan(recipe.batch_size, recipe.lr, steps, steps))

    def step() -> tuple[int, float]:
        t0 = time.perf_counter()
        x, y = next(batches)
        data_s = time.perf_counter() - t0
        train_step(model, opt, sched, x, y, recipe.label_smoothing, bf16)
        return len(y), data_s

    return step


def interleaved(steps_of: dict, steps: int, warmup: int, chunk: int = CHUNK) -> dict:
    """Time each loop for `steps` steps after `warmup`, in alternating chunks, so that a noisy
    neighbour slows both loops alike; -> {name: images/s, step and data ms}."""
    totals = {name: [0, 0.0, 0.0] for name in steps_of}  # images, seconds, data seconds
    for step in steps_of.values():
        for _ in range(warmup):
            step()
    done = 0
    while done < steps:
        n = min(chunk, steps - done)
        for name, step in steps_of.items():
            t0 = time.perf_counter()
            for _ in range(n):
                images, data_s = step()
                totals[name][0] += images
                totals[name][2] += data_s
            totals[name][1] += time.perf_counter() - t0
        done += n
    return {name: {"images_per_s": imgs / secs, "steps": steps, "batch_size": imgs // steps, "seconds": secs,
                   "step_ms": 1e3 * secs / steps, "data_ms_per_step": 1e3 * data_s / steps}
            for name, (imgs, secs, data_s) in totals.items()}


@contextlib.contextmanager
def busy_core(limit_s: float = BUSY_LIMIT_S):
    """A process keeping one core busy, paused until asked; -> busy(on). Killed on leaving, and ends by itself."""
    if not hasattr(signal, "SIGSTOP"):
        pytest.skip("the busy-core row pauses its busy loop with SIGSTOP (POSIX only)")
    proc = subprocess.Popen([sys.executable, "-c", BUSY_LOOP.format(limit=limit_s)])

    def busy(on: bool) -> None:
        proc.send_signal(signal.SIGCONT if on else signal.SIGSTOP)

    try:
        busy(False)
        yield busy
    finally:
        proc.kill()
        proc.wait()


def quiet_and_busy(quiet_step, busy_steps, steps: int = BUSY_STEPS, warmup: int = WARMUP_STEPS,
                   chunk: int = CHUNK) -> dict:
    """Median and p90 step ms in alternating chunks of `chunk` steps: "quiet", by `quiet_step()` here; with one
    core busy, "busy" by `busy_steps(n)` (-> n step times in seconds), which runs them in a process with the busy
    machine's wait policy, and "busy_started_quiet" by `quiet_step()` here, with this process's policy: what a
    training run that started on a quiet machine gets until its next epoch (cli/train.py)."""
    times: dict[str, list[float]] = {"quiet": [], "busy": [], "busy_started_quiet": []}

    def here(n: int) -> list[float]:
        took = []
        for _ in range(n):
            t0 = time.perf_counter()
            quiet_step()
            took.append(time.perf_counter() - t0)
        return took

    with busy_core() as busy:
        here(warmup)
        busy_steps(warmup)
        for _ in range(max(steps // chunk, 1)):
            for on in (False, True):
                busy(on)
                time.sleep(0.02)  # the busy loop is running (or stopped) before the chunk starts
                if on:
                    times["busy"] += busy_steps(chunk)
                    times["busy_started_quiet"] += here(chunk)
                else:
                    times["quiet"] += here(chunk)
        busy(False)
    out = {name: {"median_ms": 1e3 * float(np.median(t)), "p90_ms": 1e3 * float(np.percentile(t, 90)),
                  "steps": len(t)} for name, t in times.items()}
    out["ratio"] = out["busy"]["median_ms"] / out["quiet"]["median_ms"]
    out["ratio_started_quiet"] = out["busy_started_quiet"]["median_ms"] / out["quiet"]["median_ms"]
    return out


@contextlib.contextmanager
def step_worker(data_dir: str, threads: int, bf16: bool):
    """A process that trains mnist-edge's steps with OMP_WAIT_POLICY=PASSIVE, what the CLI runs with when another
    process holds a core (mnist_edge/core/threads.py); -> steps(n): the seconds of its next n steps."""
    from mnist_edge.core.threads import DECIDED, PASSIVE, WAIT_POLICY

    env = {**os.environ, WAIT_POLICY: PASSIVE, DECIDED: "1"}
    cmd = [sys.executable, "-m", "benchmarks.test_training", data_dir, str(threads), str(int(bf16))]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                            cwd=Path(__file__).resolve().parents[1])

    def steps(n: int) -> list[float]:
        proc.stdin.write(f"{n}\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the busy-row step worker ended (exit {proc.wait()})")
        return json.loads(line)

    try:
        yield steps
    finally:
        proc.kill()
        proc.wait()


def serve_steps(argv: list[str]) -> None:
    """The step worker's side: DATA_DIR THREADS BF16; reads a count per line, answers that many step times."""
    from mnist_edge.core.data import load_dataset
    from mnist_edge.core.deps import torch as _torch
    from mnist_edge.core.malloc import keep_freed_memory
    from mnist_edge.core.metadata import DATASETS
    from mnist_edge.core.settings import TrainRecipe
    from mnist_edge.pytorch.train import split_tensors

    data_dir, threads, bf16 = argv[0], int(argv[1]), argv[2] == "1"
    keep_freed_memory()  # as train() runs
    torch = _torch()
    torch.set_num_threads(threads)
    train, _ = load_dataset(data_dir, "mnist", allow_download=False)
    spec = DATASETS["mnist"]
    images, labels = split_tensors(train)
    step = trainer(torch, edge_batches(torch, images, labels, TrainRecipe(), spec.mean, spec.std), True, bf16,
                   steps=WARMUP_STEPS + 2 * BUSY_STEPS)
    for line in sys.stdin:
        times = []
        for _ in range(int(line)):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        print(json.dumps(times), flush=True)


def eval_seconds(torch, test, spec) -> float:
    """Seconds of one test-set evaluation as train.py runs it after each epoch (the second of two; fp32)."""
    from mnist_edge.core.metadata import ModelMetadata
    from mnist_edge.core.settings import TrainRecipe
    from mnist_edge.pytorch.evaluate import evaluate
    from mnist_edge.pytorch.models import build, default_args

    arch = TrainRecipe().arch
    meta = ModelMetadata.for_dataset(arch, default_args(arch), "mnist")
    model = build(arch).to(memory_format=torch.channels_last)
    evaluate(model, test, meta)
    t0 = time.perf_counter()
    evaluate(model, test, meta)
    return time.perf_counter() - t0


def recorded_run(artifacts: Path) -> tuple[dict | None, str]:
    """(ARTIFACTS/metrics.json's time and precision, if it is a default-recipe run recorded on this CPU; why not)."""
    from dataclasses import asdict

    from mnist_edge.core.cpu import cpu_info
    from mnist_edge.core.settings import TrainRecipe

    path = artifacts / "metrics.json"
    if not path.is_file():
        return None, f"no {path}"
    try:
        m = json.loads(path.read_text())
        config, epochs = m["config"], m["epochs"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, f"{path}: unreadable ({e})"
    # seeds 0-2 are all the default; the precision used is matched to the rows of the same precision
    default = {k: v for k, v in asdict(TrainRecipe()).items() if k not in ("seed", "precision")}
    differs = [k for k, v in default.items() if config.get(k) != v]
    if differs:
        return None, f"{path}: not the default recipe ({', '.join(differs)} differ)"
    if "precision" not in m or "cpu" not in m:
        return None, f"{path}: records no precision or CPU"
    if m["cpu"].get("model") != cpu_info()["model"] or m["cpu"].get("features") != cpu_info()["features"]:
        return None, f"{path}: trained on another CPU ({m['cpu'].get('model')})"
    loads = [e.get("load_avg_1m") for e in epochs if isinstance(e.get("load_avg_1m"), (int, float))]
    return {"seconds": sum(e["seconds"] for e in epochs), "precision": m["precision"], "seed": config.get("seed"),
            "threads": m.get("threads"), "load_max": max(loads) if loads else None, "source": str(path)}, ""


def ran_alone(load_max: float | None, threads: int) -> bool | None:
    """Whether a recorded run had the machine to itself: no epoch's load average over its threads plus SHARED_LOAD
    (None: its metrics.json records no load)."""
    return None if load_max is None else load_max <= threads + SHARED_LOAD


def recorded_load(run: dict) -> str:
    """What a recorded run's load says, for its summary line."""
    if run["recorded_load_max"] is None:
        return "its load not recorded"
    said = f"load up to {run['recorded_load_max']:.1f} on {run['recorded_threads']} threads"
    return said if run["recorded_alone"] else f"{said}: it shared the machine, so the verdict takes the estimate"


def test_training_throughput_against_the_seed_loop(data_dir, artifacts, threads, summary):
    from mnist_edge.core.cpu import cpu_info, describe
    from mnist_edge.core.data import load_dataset
    from mnist_edge.core.deps import torch as _torch
    from mnist_edge.core.malloc import keep_freed_memory
    from mnist_edge.core.metadata import DATASETS
    from mnist_edge.core.settings import TrainRecipe
    from mnist_edge.core.threads import load_average
    from mnist_edge.pytorch.train import plan_steps, split_tensors, use_bf16

    keeps_freed_memory = keep_freed_memory()  # as train() runs
    torch = _torch()
    torch.set_num_threads(threads)
    load_before = load_average()  # how busy the machine was
    train, test = load_dataset(data_dir, "mnist", allow_download=False)
    spec = DATASETS["mnist"]
    images, labels = split_tensors(train)

    recipe = TrainRecipe()
    edge_bs = recipe.batch_size
    auto_bf16 = use_bf16(recipe.precision, "cpu")  # what a default run uses on this CPU
    # the precision auto picks here first; fp32 as well where that is bf16 (what most CPUs train in)
    precisions = ["bf16 autocast", "fp32"] if auto_bf16 else ["fp32"]

    def edge(bf16: bool, steps: int = WARMUP_STEPS + STEPS):
        return trainer(torch, edge_batches(torch, images, labels, recipe, spec.mean, spec.std), True, bf16, steps)

    loops = {f"mnist_edge {p}": edge(p != "fp32") for p in precisions}
    loops["seed"] = trainer(torch, seed_batches(torch, train.images, train.labels, spec.mean, spec.std), False)
    res = interleaved(loops, STEPS, WARMUP_STEPS)
    seed = res["seed"]
    seed_epoch_s = len(train) / seed["images_per_s"]  # one epoch of the seed loop on this machine

    # the default run, in seed-loop epochs: recorded where the artifacts hold one from this CPU, else estimated
    plan = plan_steps(recipe, len(train))
    evaluation_s = eval_seconds(torch, test, spec)
    recorded, why_not = recorded_run(artifacts)
    runs = {}
    for p in precisions:
        r = res[f"mnist_edge {p}"]
        estimate = plan.total_steps * r["step_ms"] / 1e3 + recipe.epochs * evaluation_s
        run = {"precision": p, "ratio": r["images_per_s"] / seed["images_per_s"], "estimated_s": estimate,
               "estimated_seed_epochs": estimate / seed_epoch_s}
        if recorded and recorded["precision"] == p:
            run.update(recorded_s=recorded["seconds"], recorded_seed_epochs=recorded["seconds"] / seed_epoch_s,
                       recorded_from=recorded["source"], recorded_seed=recorded["seed"],
                       recorded_load_max=recorded["load_max"], recorded_threads=recorded["threads"] or threads)
            run["recorded_alone"] = ran_alone(run["recorded_load_max"], run["recorded_threads"])
        # the recorded time where the run had the machine to itself (or records no load), else the estimate
        use_recorded = "recorded_s" in run and run["recorded_alone"] is not False
        run["seed_epochs"] = run["recorded_seed_epochs"] if use_recorded else run["estimated_seed_epochs"]
        run["ratio_goal_met"] = run["ratio"] >= GOAL
        run["epochs_goal_met"] = run["seed_epochs"] <= EPOCHS_GOAL
        runs[p] = run

    # a step of the default run (the precision auto picks) with one core busy and the busy machine's wait policy,
    # against the same steps quiet with this machine's own (the CLI's choice when the command started)
    with step_worker(str(Path(data_dir).resolve()), threads, auto_bf16) as busy_steps:
        busy = quiet_and_busy(edge(auto_bf16, steps=WARMUP_STEPS + 2 * BUSY_STEPS), busy_steps)
    busy.update(precision=precisions[0], threads=threads, goal=BUSY_GOAL, goal_met=busy["ratio"] <= BUSY_GOAL,
                omp_wait_policy={"quiet": os.environ.get("OMP_WAIT_POLICY") or "unset", "busy": "PASSIVE"})

    load_after = load_average()
    result = {"arch": recipe.arch, "threads": threads, "cpu": cpu_info(), "load_1min": [load_before, load_after],
              "keeps_freed_memory": keeps_freed_memory,
              "loops": res, "seed_epoch_s": seed_epoch_s,
              "default_run": {"steps": plan.total_steps, "epochs": recipe.epochs, "evaluation_s": evaluation_s,
                              "recorded": why_not or "used", "by_precision": runs},
              "busy_core": busy, "goals": {"ratio": GOAL, "seed_epochs": EPOCHS_GOAL, "busy": BUSY_GOAL}}
    if artifacts.is_dir():
        write_json(artifacts / "bench_train.json", result)

    loads = (f"{load_before:.1f} at the start, {load_after:.1f} at the end (its own threads included)"
             if load_before is not None else "unknown")
    summary(f"training on {describe()}, {threads} threads; load average (1 min) {loads}; malloc keeps freed "
            f"memory: {'yes' if keeps_freed_memory else 'no (not glibc, or MALLOC_* set)'}")
    for name, r in res.items():
        summary(f"training {name.replace('_', '-'):<24} {recipe.arch}, batch {r['batch_size']:>3}: "
                f"{r['images_per_s']:7.0f} img/s  (step {r['step_ms']:.0f} ms, of which data "
                f"{r['data_ms_per_step']:.1f} ms; {r['steps']} steps)")
    verdict = {True: "met", False: "NOT met"}
    summary("training ratio mnist-edge / seed: " + ", ".join(f"{r['ratio']:.2f}x {p}" for p, r in runs.items())
            + f" (goal >= {GOAL:g}x: {verdict[all(r['ratio_goal_met'] for r in runs.values())]})")
    for p, r in runs.items():
        how = (f"{r['recorded_s']:.0f} s recorded in {r['recorded_from']} (seed {r['recorded_seed']}, "
               f"{recorded_load(r)}); estimate {r['estimated_seed_epochs']:.1f}"
               if "recorded_s" in r else
               f"estimated: {plan.total_steps:,} steps x {res[f'mnist_edge {p}']['step_ms']:.0f} ms + "
               f"{recipe.epochs} evaluations x {evaluation_s:.1f} s = {r['estimated_s']:.0f} s")
        summary(f"default run, {p:<13}: {r['seed_epochs']:5.1f} seed-loop epochs of {seed_epoch_s:.1f} s ({how}; "
                f"goal <= {EPOCHS_GOAL:g}: {verdict[r['epochs_goal_met']]})")
    if why_not:
        summary(f"default run recorded: not used ({why_not})")
    policy = busy["omp_wait_policy"]
    summary(f"training step, one core busy: {busy['busy']['median_ms']:.0f} ms (OMP_WAIT_POLICY={policy['busy']}) "
            f"against {busy['quiet']['median_ms']:.0f} ms quiet (OMP_WAIT_POLICY={policy['quiet']}) = "
            f"{busy['ratio']:.2f}x ({precisions[0]}, {threads} threads; goal <= {BUSY_GOAL:g}x: "
            f"{verdict[busy['goal_met']]}); a run that started quiet, until its next epoch: "
            f"{busy['busy_started_quiet']['median_ms']:.0f} ms (OMP_WAIT_POLICY={policy['quiet']}) = "
            f"{busy['ratio_started_quiet']:.2f}x")
    assert all(r["images_per_s"] > 0 for r in res.values())
    assert all(res[f"mnist_edge {p}"]["batch_size"] == edge_bs for p in precisions)
    assert seed["batch_size"] == SEED_BATCH
    assert busy["quiet"]["steps"] == busy["busy"]["steps"] == busy["busy_started_quiet"]["steps"] == BUSY_STEPS


if __name__ == "__main__":  # the busy-core row's step worker (step_worker)
    serve_steps(sys.argv[1:])
