"""OpenMP's wait policy: every torch-based command sets OMP_WAIT_POLICY=PASSIVE before torch loads where another
process holds a core, unless the user tuned it; see mnist_edge/core/threads.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import asdict
from pathlib import Path

import pytest

from mnist_edge.core.formats import FORMATS
from mnist_edge.core.threads import (
    BUSY,
    DECIDED,
    USER_TUNING,
    WAIT_POLICY,
    machine_busy,
    others_running,
    own_running,
    policy_now,
    prefer_passive_waits,
)

ROOT = Path(__file__).resolve().parents[1]
CLI = "mnist_edge.cli:main"  # the `mnist-edge` script's entry point (pyproject.toml)

# Run in a fresh interpreter: the first `import torch` prints the environment OpenMP would read, then ends the
# process (exit 0), so no command does any work; a process that never imports torch prints nothing.
PROBE = textwrap.dedent("""
    import importlib.abc, json, os, runpy, sys

    class Probe(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch":
                print(json.dumps({"at_torch_import": os.environ.get("OMP_WAIT_POLICY")}), flush=True)
                os._exit(0)
            return None

    sys.meta_path.insert(0, Probe())
    target, sys.argv = sys.argv[1], sys.argv[1:]
    if ":" in target:  # a console script's entry point, called as the script calls it
        module, _, function = target.partition(":")
        sys.exit(getattr(__import__(module, fromlist=[function]), function)())
    runpy.run_module(target, run_name="__main__", alter_sys=True)  # `python -m target`
""")


def _policy_at_torch_import(target: str, args: list[str], env_extra: dict[str, str] | None = None) -> str | None:
    env = {k: v for k, v in os.environ.items() if k not in (*USER_TUNING, DECIDED, BUSY)}
    env.update(env_extra or {}, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-c", PROBE, target, *args], capture_output=True, text=True, env=env,
                         timeout=120, cwd=ROOT)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith('{"at_torch_import"')]
    assert lines, f"{target} {' '.join(args)} never imported torch (exit {res.returncode}): {res.stderr[-800:]}"
    return json.loads(lines[0])["at_torch_import"]


def _commands(tmp: Path) -> dict[str, list[str]]:
    """A command line of each torch-based command that reaches its `import torch`."""
    ckpt = tmp / "model.pth"
    for name in (ckpt.name, "model.onnx"):
        (tmp / name).write_bytes(b"not read: the process ends at `import torch`")
    return {
        "train": ["train", "--out", str(tmp / "run"), "--data-dir", str(tmp / "data"), "--epochs", "1"],
        "evaluate": ["evaluate", "--model", str(ckpt), "--data-dir", str(tmp / "data")],
        "export": ["export", "--checkpoint", str(ckpt), "--out", str(tmp / "out")],
        "check": ["check", "--artifacts", str(tmp)],
    }


@pytest.mark.parametrize("name", ["train", "evaluate", "export", "check"])
def test_the_cli_sets_a_passive_wait_policy_before_torch_loads_on_a_busy_machine(name, tmp_path):
    assert _policy_at_torch_import(CLI, _commands(tmp_path)[name], {BUSY: "1"}) == "PASSIVE"


def test_on_a_quiet_machine_the_runtime_keeps_its_spinning(tmp_path):
    assert _policy_at_torch_import(CLI, _commands(tmp_path)["train"], {BUSY: "0"}) is None


@pytest.mark.parametrize("user", [{"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "10000"}])
def test_a_users_own_wait_setting_wins(user, tmp_path):
    got = _policy_at_torch_import(CLI, _commands(tmp_path)["train"], {**user, BUSY: "1"})
    assert got == user.get("OMP_WAIT_POLICY")  # ACTIVE as set; with GOMP_SPINCOUNT, no policy added


def test_a_bench_worker_keeps_its_parents_choice_or_makes_its_own(tmp_path):
    """bench's and tune's torch rows run in workers: they inherit the CLI's choice, or choose themselves."""
    (tmp_path / "model.pth").write_bytes(b"not read: the process ends at `import torch`")
    spec = {"row": asdict(FORMATS["pytorch"]), "path": str(tmp_path / "model.pth"), "threads": 1,
            "data_dir": str(tmp_path)}
    worker = "mnist_edge.verify.bench.worker"
    assert _policy_at_torch_import(worker, [json.dumps(spec)], {BUSY: "1"}) == "PASSIVE"
    # the parent found the machine quiet: a worker started while the others load keeps that choice
    assert _policy_at_torch_import(worker, [json.dumps(spec)], {BUSY: "1", DECIDED: "1"}) is None


def test_prefer_passive_waits_keeps_what_the_user_or_a_parent_set():
    assert prefer_passive_waits(env := {BUSY: "1"}) == "PASSIVE" and env[WAIT_POLICY] == "PASSIVE"
    assert prefer_passive_waits(env := {BUSY: "0"}) is None and WAIT_POLICY not in env and env[DECIDED] == "1"
    assert prefer_passive_waits(env := {BUSY: "1", DECIDED: "1"}) is None and WAIT_POLICY not in env
    assert prefer_passive_waits(env := {BUSY: "1", WAIT_POLICY: "active"}) == "active"
    assert prefer_passive_waits(env := {BUSY: "1", "KMP_BLOCKTIME": "0"}) is None and WAIT_POLICY not in env
    assert prefer_passive_waits(env := {BUSY: "1", WAIT_POLICY: " "}) == "PASSIVE"  # blank is unset


def test_runnable_tasks_are_read_from_proc_loadavg():
    assert others_running("0.98 1.48 2.33 3/108 31453\n", own=1) == 2  # this process is one of the three
    assert others_running("0.00 0.01 0.05 1/90 12\n", own=1) == 0
    assert others_running("garbage") == 0


def test_a_process_keeping_a_core_busy_is_seen():
    hog = subprocess.Popen([sys.executable, "-c", "import time\nend = time.monotonic() + 20\n"
                            "while time.monotonic() < end: pass"])
    try:
        import time

        time.sleep(0.5)
        assert machine_busy({})
    finally:
        hog.kill()
        hog.wait()


def test_this_processs_own_running_threads_are_not_counted_as_others(tmp_path):
    for tid, state in (("11", "R"), ("12", "S"), ("13", "R")):
        (tmp_path / tid).mkdir()
        (tmp_path / tid / "stat").write_text(f"{tid} (py thon) {state} 1 2 3\n")  # a name may hold spaces
    assert own_running(str(tmp_path)) == 2
    assert own_running(str(tmp_path / "absent")) == 1
    assert others_running("1.00 1.00 1.00 3/108 31453\n", own=2) == 1  # a spinning OpenMP thread is ours
    assert own_running() >= 1  # this thread, reading it


def test_a_run_that_chose_spinning_turns_passive_when_another_process_holds_a_core(monkeypatch):
    from mnist_edge.core import threads

    monkeypatch.setattr(threads, "others_running", lambda: 1)
    assert policy_now({DECIDED: "1", "X": "kept"}) == {DECIDED: "1", "X": "kept", WAIT_POLICY: "PASSIVE"}
    assert policy_now({}) is None  # nothing decided here: the user's or nobody's runtime
    assert policy_now({DECIDED: "1", WAIT_POLICY: "PASSIVE"}) is None  # passive already
    assert policy_now({DECIDED: "1", "GOMP_SPINCOUNT": "100"}) is None  # the user's tuning wins
    assert policy_now({DECIDED: "1", BUSY: "0"}) is None  # the user said what the machine is
    monkeypatch.setattr(threads, "others_running", lambda: 0)
    assert policy_now({DECIDED: "1"}) is None  # still quiet


def test_training_continues_passive_in_a_new_process_when_a_core_turns_busy(tmp_path):
    """The run started quiet (spinning: its parent's choice, DECIDED), a process then keeps a core busy: after
    epoch 1 it goes on from the saved epoch in a new process with PASSIVE, to the same weights bit for bit."""
    import torch

    from mnist_edge.pytorch import checkpoint

    from .conftest import write_idx_dataset

    data = write_idx_dataset(tmp_path / "data", n_train=128, n_test=32)
    env = {k: v for k, v in os.environ.items() if k not in (*USER_TUNING, DECIDED, BUSY)}
    env.update(PYTHONPATH=str(ROOT), **{DECIDED: "1"})

    def run(out: str, **extra: str) -> str:
        args = ["train", "--data-dir", str(data), "--out", str(tmp_path / out), "--epochs", "3", "--threads", "1",
                "--batch-size", "64", "--no-plots"]
        res = subprocess.run([sys.executable, "-m", "mnist_edge", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env={**env, **extra}, timeout=300, cwd=ROOT)
        assert res.returncode == 0, res.stdout[-800:]
        return res.stdout

    quiet = run("quiet", **{BUSY: "0"})  # taken as quiet whatever else this machine runs: one process throughout
    hog = subprocess.Popen([sys.executable, "-c", "import time\nend = time.monotonic() + 280\n"
                            "while time.monotonic() < end: pass"])
    try:
        busy = run("busy")
    finally:
        hog.kill()
        hog.wait()
    assert "keeps a core busy" not in quiet
    assert busy.count("keeps a core busy: continuing from epoch 1 in a new process") == 1, busy
    assert busy.count("resuming from") == 1 and "epoch   3/3" in busy
    a, b = (checkpoint.load(tmp_path / out / "model.pth")["state_dict"] for out in ("quiet", "busy"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_train_replaces_itself_only_before_its_last_epoch_and_survives_a_failed_start(monkeypatch, capsys):
    from mnist_edge import cli
    from mnist_edge.cli import train as train_cli

    calls = []

    def execve(path, args, env):
        calls.append((args, env))
        raise OSError(2, "No such file or directory")

    monkeypatch.setattr(cli, "ARGV", ["train", "--epochs", "3"])
    monkeypatch.setattr("mnist_edge.core.threads.policy_now", lambda: {WAIT_POLICY: "PASSIVE"})
    monkeypatch.setattr(train_cli.os, "execve", execve)
    on_epoch = train_cli._follow_the_machine(epochs=3)
    on_epoch({"epoch": 3})  # the last epoch: nothing left to go on with
    assert calls == []
    on_epoch({"epoch": 1})
    assert calls == [([sys.executable, "-m", "mnist_edge", "train", "--epochs", "3", "--resume"],
                      {WAIT_POLICY: "PASSIVE"})]
    assert "going on in this process" in capsys.readouterr().out  # one line, no traceback
    monkeypatch.setattr(cli, "ARGV", None)  # not the `mnist-edge` command (a test's runner): never
    assert train_cli._follow_the_machine(epochs=3) is None
