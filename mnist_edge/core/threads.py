"""OpenMP threads that sleep while they wait when another process holds a core, so that torch keeps its speed.

torch's CPU kernels run on an OpenMP team (libgomp on Linux, libomp on macOS). By default a team thread that
reaches a barrier spins for a few milliseconds before it sleeps. When another process holds a core, the scheduler
pauses one thread of the team and the others spin through their time slices waiting for it. A training step of the
default model (batch 256, 2 threads on 2 shared cores, one kept busy by another process) took a median 2.8 s that
way and 0.26 s with OMP_WAIT_POLICY=PASSIVE, where a waiting thread sleeps at once and gives its core back. Thread
counts stay as they are (every core torch may use): one thread can be faster on a busy machine, but a training
run's weights depend on its thread count, and a seed should give the same model whatever else runs
(docs/reliability.md). The price on a quiet machine is the wake-up at each parallel region: the same step alone on
the cores took 60 ms against 53-55 ms spinning (bf16; fp32: 97 ms against 85 ms). On a quiet machine spinning is
what is fast: with a core kept busy by another process at nice 0, a step took 45 ms spinning and 51 ms passive when
quiet, 128 ms and 94 ms when busy; PyTorch at batch 1 took 0.5 ms spinning against 1.2-1.4 ms passive. So the
policy follows the machine: PASSIVE only where another process is running when the command starts (the kernel's
count of runnable tasks, in each of a few quick samples), the runtime's own spinning otherwise. The runtime reads
the variable once, when it loads with torch, so `prefer_passive_waits()` runs before torch is imported: in the
CLI's root group, and the decision is handed on to the processes the CLI starts (bench's workers) through
MNIST_EDGE_WAIT_DECIDED. A user's own OMP_WAIT_POLICY (or GOMP_SPINCOUNT / KMP_BLOCKTIME, which set the spinning
directly) wins; MNIST_EDGE_BUSY=1 or 0 overrides the sampling.

A machine can turn busy after a command starts: a training run that started quiet spins, and with another process
keeping a core busy its steps take 2-4x their quiet time. `policy_now()` tells a long command, at a point where its
work is saved, the environment it should continue in; `mnist-edge train` then continues in a new process from the
epoch just saved (`--resume`, bit for bit the same weights: the policy changes only how threads wait, not how work
is split). Only towards PASSIVE: a run that started busy and finds the machine quiet loses 10-35% a step and keeps
PASSIVE, rather than start a new process at every change of the load.
"""

from __future__ import annotations

import os
import time
from collections.abc import MutableMapping

WAIT_POLICY = "OMP_WAIT_POLICY"
PASSIVE = "PASSIVE"
# Variables that tune the waiting themselves: where the user set one, the runtime is left as they set it.
USER_TUNING = (WAIT_POLICY, "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


DECIDED = "MNIST_EDGE_WAIT_DECIDED"  # set by the first process that chose: its children keep its choice
BUSY = "MNIST_EDGE_BUSY"  # "1" or "0": what the machine is taken to be, instead of sampling it
SAMPLES, SAMPLE_GAP_S = 4, 0.005


def own_running(task_dir: str = "/proc/self/task") -> int:
    """This process's threads that are running or runnable now (state R in /proc/self/task/*/stat): itself, and
    an OpenMP thread still spinning after torch's last parallel region. 1 where unreadable."""
    count = 0
    try:
        for tid in os.listdir(task_dir):
            try:
                with open(os.path.join(task_dir, tid, "stat"), encoding="ascii", errors="replace") as f:
                    text = f.read()
            except OSError:
                continue  # the thread ended
            state_at = text.rfind(")") + 2  # after the name, which may hold spaces and parentheses
            count += text[state_at:state_at + 1] == "R"
    except OSError:
        return 1
    return max(count, 1)


def others_running(loadavg: str | None = None, own: int | None = None) -> int:
    """Runnable tasks of other processes right now: /proc/loadavg's "running/total" less this process's own
    (own_running(); 0 where unreadable)."""
    try:
        before = own if own is not None else own_running()
        text = loadavg if loadavg is not None else open("/proc/loadavg", encoding="ascii").read()
        after = own if own is not None else own_running()  # a thread of ours may sleep between the reads
        return max(0, int(text.split()[3].split("/")[0]) - max(before, after))
    except (OSError, IndexError, ValueError):
        return 0


def load_average() -> float | None:
    """Runnable processes over the last minute (Unix), this one's threads included: other work on the machine
    skews every timing, so benchmarks and each training epoch record it."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _wait_set(env: MutableMapping[str, str]) -> bool:
    """Whether the environment already says how OpenMP threads wait (the user's setting, or PASSIVE chosen)."""
    return any(env.get(name, "").strip() for name in USER_TUNING)


def machine_busy(environ: MutableMapping[str, str] | None = None) -> bool:
    """Whether another process is running now: MNIST_EDGE_BUSY where set, else in every one of a few quick samples
    (a process that keeps a core busy is runnable in each; a short-lived one, a daemon's wake-up, is not)."""
    env = os.environ if environ is None else environ
    forced = env.get(BUSY, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    for i in range(SAMPLES):
        if i:
            time.sleep(SAMPLE_GAP_S)
        if others_running() < 1:
            return False
    return True


def prefer_passive_waits(environ: MutableMapping[str, str] | None = None) -> str | None:
    """OMP_WAIT_POLICY=PASSIVE where another process holds a core, unless the user tuned the waiting or a parent
    process decided already; -> the policy in force (None: the runtime's own spinning)."""
    env = os.environ if environ is None else environ
    if not env.get(DECIDED) and not _wait_set(env):
        if machine_busy(env):
            env[WAIT_POLICY] = PASSIVE
        env[DECIDED] = "1"
    return env.get(WAIT_POLICY) or None


def policy_now(environ: MutableMapping[str, str] | None = None) -> dict[str, str] | None:
    """The environment to continue in where mnist-edge chose the wait policy (not the user, nor MNIST_EDGE_BUSY)
    and chose spinning, and another process now keeps a core busy: the same with OMP_WAIT_POLICY=PASSIVE.
    None: keep this process (a user's setting, PASSIVE already, or still quiet)."""
    env = os.environ if environ is None else environ
    if env.get(DECIDED) != "1" or env.get(BUSY, "").strip() in ("0", "1"):
        return None
    if _wait_set(env) or not machine_busy(env):
        return None
    return {**env, WAIT_POLICY: PASSIVE}
