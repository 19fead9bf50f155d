"""OpenMP threads that sleep while they wait, so that torch keeps its speed when another process holds a core.

torch's CPU kernels run on an OpenMP team (libgomp on Linux, libomp on macOS). By default a team thread
that reaches a barrier spins for a few milliseconds before it sleeps. When another process keeps a core
busy, the scheduler pauses one thread of the team and the others spin through their time slices
waiting for it: a training step of the default model, batch 256, on 2 cores took 2,224 ms instead of
~55 ms. With OMP_WAIT_POLICY=PASSIVE a waiting thread sleeps at once and gives its core back.
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
