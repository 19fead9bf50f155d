"""OpenMP threads that sleep while they wait when another process holds a core, so that torch keeps its speed.

torch's CPU kernels run on an OpenMP team (libgomp on Linux, libomp on macOS). By default a team thread
that reaches a barrier spins for a few milliseconds before it sleeps. When another process holds a core,
the scheduler pauses one thread of the team and the others spin through their time slices waiting for
it. A training step of the default model (batch 256, 2 threads on 2 shared cores, one kept busy by
another process) took a median 2.8 s that way and 0.26 s with OMP_WAIT_POLICY=PASSIVE, where a waiting
thread sleeps at once and gives its core back. Thread counts stay as they are (every core torch may
use): the same step on 1 thread took 0.44 s, so a team that sleeps while it waits loses less to a busy
core than a smaller team does. The price on a quiet machine is the wake-up at each parallel region:
the same step alone on the cores took 60 ms against 53-55 ms spinning (bf16; fp32: 97 ms against 85 ms).
On a quiet machine spinning is what is fast: with a core kept busy by another process at nice 0, a
step took 45 ms spinning and 51 ms passive when quiet, 128 ms and 94 ms when busy; PyTorch at batch 1
took 0.5 ms spinning against 1.2-1.4 ms passive. So the policy follows the machine: PASSIVE only where
another process is running when the command starts (the kernel's count of runnable tasks, in each of a
few quick samples), the runtime's own spinning otherwise. The runtime reads the variable once, when it loads with
torch, so `prefer_passive_waits()` runs before torch is imported: in the CLI's root group, and the
decision is handed on to the processes the CLI starts (bench's workers) through MNIST_EDGE_WAIT_DECIDED.
A user's own OMP_WAIT_POLICY (or GOMP_SPINCOUNT / KMP_BLOCKTIME, which set the spinning directly) wins;
MNIST_EDGE_BUSY=1 or 0 overrides the sampling.
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


def others_running(loadavg: str | None = None) -> int:
    """Runnable tasks other than this one right now, from /proc/loadavg's "running/total" (0 where unreadable)."""
    try:
        text = loadavg if loadavg is not None else open("/proc/loadavg", encoding="ascii").read()
        return max(0, int(text.split()[3].split("/")[0]) - 1)
    except (OSError, IndexError, ValueError):
        return 0


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
    if not env.get(DECIDED) and not any(env.get(name, "").strip() for name in USER_TUNING):
        if machine_busy(env):
            env[WAIT_POLICY] = PASSIVE
        env[DECIDED] = "1"
    return env.get(WAIT_POLICY) or None
