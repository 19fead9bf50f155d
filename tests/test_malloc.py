"""Training keeps the memory it frees (mnist_edge/core/malloc.py): no page faults for blocks freed and taken again."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from mnist_edge.core.malloc import USER_SETTINGS, keep_freed_memory, user_set

GLIBC = platform.libc_ver()[0] == "glibc"
needs_glibc = pytest.mark.skipif(not GLIBC, reason="keep_freed_memory sets glibc's malloc; this C library is not glibc")

# A training step's pattern in a fresh interpreter: several 12 MB blocks taken (and written) together, all freed,
# again and again. Prints the page faults of rounds 3-10, after glibc has adjusted to the block size.
ROUNDS = textwrap.dedent("""
    import resource, sys
    from mnist_edge.core.malloc import keep_freed_memory
    if sys.argv[1] == "keep":
        assert keep_freed_memory()
    faults = []
    for _ in range(10):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        blocks = [bytearray(12 << 20) for _ in range(4)]  # zero-filled: every page is written
        del blocks
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(sum(faults[2:]))
""")


def faults_of_rounds(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k not in USER_SETTINGS and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


@needs_glibc
def test_freed_blocks_come_back_without_page_faults():
    pages_per_round = 4 * (12 << 20) // os.sysconf("SC_PAGE_SIZE")
    plain, kept = faults_of_rounds("plain"), faults_of_rounds("keep")
    # glibc's own behaviour hands the freed top of the heap back each round: every page faults again
    assert plain > 4 * pages_per_round, f"{plain} page faults in 8 rounds of {pages_per_round} pages"
    assert kept < pages_per_round // 10, f"{kept} page faults in 8 rounds with the memory kept"


def test_other_settings_are_not_the_users_malloc_settings():
    assert not user_set({"HOME": "/root", "MALLOC_ARENA_MAX": "2", "GLIBC_TUNABLES": "glibc.pthread.rseq=0"})


@pytest.mark.parametrize("env", [{name: "1048576"} for name in USER_SETTINGS]
                         + [{"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1048576"}])
def test_a_users_own_malloc_settings_win(env):
    assert user_set(env)
    assert keep_freed_memory(env=env) is False
