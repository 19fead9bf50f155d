"""Where the emulated arm64 userland lives, and whether it is there and current.

The userland is an arm64 Debian root (Python 3.11 and the C++ runtime) plus the aarch64 wheels of
the host's onnxruntime, ai-edge-litert and numpy, installed from the host. It is cached outside
the repository, under a folder named for those versions, so a changed version builds a new one.
`make arm64` (tools/arm64_userland.py) builds it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

PYTHON = "3.11"  # Debian bookworm's python3 on the arm64 side: the wheels are chosen for it
SUITE = "bookworm"
LAYOUT = 1  # bump when what the build puts in the folder changes
PACKAGES = ("onnxruntime", "ai-edge-litert", "numpy")  # the host's versions are installed for aarch64
COMPLETE = ".complete"  # written last: a folder without it is an interrupted build
QEMU = "qemu-aarch64-static"
SETUP_HINT = "run `make arm64`"


def host_versions() -> dict[str, str]:
    """{package: version} of PACKAGES installed on the host; the ones it lacks are left out."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def cache_root() -> Path:
    """$MNIST_EDGE_ARM64_CACHE, else $XDG_CACHE_HOME/mnist-edge/arm64 (default ~/.cache/mnist-edge/arm64)."""
    if os.environ.get("MNIST_EDGE_ARM64_CACHE"):
        return Path(os.environ["MNIST_EDGE_ARM64_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mnist-edge" / "arm64"


def key(versions: dict[str, str] | None = None) -> str:
    """The cache folder's name: the Debian suite, Python and every installed version, e.g. bookworm-py3.11-..."""
    versions = host_versions() if versions is None else versions
    parts = [f"{SUITE}-py{PYTHON}", *(f"{n}{v}" for n, v in sorted(versions.items())), f"l{LAYOUT}"]
    return "-".join(parts)


@dataclass(frozen=True)
class Userland:
    """A built userland: `root` is the arm64 Debian tree, `site` the folder of aarch64 wheels."""

    folder: Path

    @property
    def root(self) -> Path:
        return self.folder / "root"

    @property
    def site(self) -> Path:
        return self.folder / "site"

    @property
    def python(self) -> Path:
        return self.root / "usr" / "bin" / f"python{PYTHON}"

    def has(self, module: str) -> bool:
        """Whether an aarch64 package (by import name) is installed in it."""
        return (self.site / module).is_dir()


def current() -> Userland:
    return Userland(cache_root() / key())


def problem(userland: Userland | None = None) -> str | None:
    """One line on why ARM64 emulation cannot run here, or None."""
    import shutil

    userland = userland or current()
    if shutil.which(QEMU) is None:
        return f"{QEMU} not found (Debian: apt-get install qemu-user-static)"
    if not (userland.folder / COMPLETE).is_file():
        why = f"{userland.folder} {'is incomplete' if userland.folder.is_dir() else 'not found'}"
        return f"no emulated arm64 userland for these versions ({why}): {SETUP_HINT}"
    if not userland.python.is_file():
        return f"{userland.python}: not found in the arm64 userland: {SETUP_HINT}"
    return None
