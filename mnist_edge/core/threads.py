"""OpenMP threads that sleep while they wait, so that torch keeps its speed when another process holds a core.

torch's CPU kernels run on an OpenMP team (libgomp on Linux, libomp on macOS). By default a team thread
that reaches a barrier spins for a few milliseconds before it sleeps. When another process holds a core,
the scheduler pauses one thread of the team and the others spin through their time slices waiting for
it. A training step of the default model (batch 256, 2 threads on 2 shared cores, one kept busy by
another process) took a median 2.8 s that way and 0.26 s with OMP_WAIT_POLICY=PASSIVE, where a waiting
thread sleeps at once and gives its core back. Thread counts stay as they are (every core torch may
use): the same step on 1 thread took 0.44 s, so a team that sleeps while it waits loses less to a busy
core than a smaller team does. The price on a quiet machine is the wake-up at each parallel region:
the same step alone on the cores took 60 ms against 53-55 ms spinning (bf16; fp32: 97 ms against 85 ms).
The runtime reads the variable once, when it loads with torch, so `prefer_passive_waits()` runs
before torch is imported: in the CLI's root group and in each process the CLI starts (bench's workers).
A user's own OMP_WAIT_POLICY (or GOMP_SPINCOUNT / KMP_BLOCKTIME, which set the spinning directly) wins.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

WAIT_POLICY = "OMP_WAIT_POLICY"
PASSIVE = "PASSIVE"
# Variables that tune the waiting themselves: where the user set one, the runtime is left as they set it.
USER_TUNING = (WAIT_POLICY, "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def prefer_passive_waits(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Set OMP_WAIT_POLICY=PASSIVE unless the user tuned the waiting; -> the policy in force (None: the runtime's)."""
    env = os.environ if environ is None else environ
    if not any(env.get(name, "").strip() for name in USER_TUNING):
        env[WAIT_POLICY] = PASSIVE
    return env.get(WAIT_POLICY) or None
