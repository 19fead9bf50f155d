"""`make arm64`: build the emulated arm64 userland the ARM64 rows of `check --cpu` and the tests run in.

1. `debootstrap --foreign --arch=arm64` (first stage only: it downloads and checks the .debs; the
   second stage would need arm64 programs to run, which QEMU without binfmt_misc cannot start),
   then every downloaded .deb unpacked with `dpkg-deb -x`.
2. The aarch64 wheels of the host's onnxruntime, ai-edge-litert and numpy installed from the host
   (`pip install --platform ... --target`): pip under emulation is far slower.

Cached under mnist_edge.edge.arm64.userland.cache_root(), keyed by the versions; an existing
complete build is kept. Where apt, debootstrap or the registries cannot be reached, one line says
so and the ARM64 rows and tests skip. Exit 0 in both cases (it is an optional tool), 1 on misuse.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mnist_edge.edge.arm64 import userland as ul  # noqa: E402

MIRROR = os.environ.get("MNIST_EDGE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# python3.11 (the interpreter and its standard library), the C++ runtime the wheels link against
DEBS = ("python3.11", "libstdc++6", "libgcc-s1")
# bookworm's glibc is 2.36: every manylinux tag up to it (pip takes only the tags it is given)
LAST_LOG = ul.cache_root() / "last-build.log"  # what a failed build leaves behind
PLATFORMS = [f"manylinux_2_{minor}_aarch64" for minor in range(36, 16, -1)] + ["manylinux2014_aarch64"]


APT = (("qemu-aarch64-static", "qemu-user-static"), ("debootstrap", "debootstrap"), ("dpkg-deb", "dpkg"))


class Unavailable(Exception):
    """A tool, the mirror or the registry is not reachable: the build is skipped with one line."""


def ensure_tools() -> None:
    """QEMU user mode and debootstrap, installed with apt where they are missing and apt can run."""
    missing = [pkg for cmd, pkg in APT if shutil.which(cmd) is None]
    if not missing:
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        for args in (["update", "-q"], ["install", "-y", "-q", "--no-install-recommends", *missing]):
            subprocess.run(["apt-get", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    still = [pkg for cmd, pkg in APT if shutil.which(cmd) is None]
    if still:
        raise Unavailable(f"{', '.join(still)} missing and not installable with apt here")


def run(cmd: list[str], what: str, log: Path) -> None:
    with log.open("a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        res = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if res.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        raise Unavailable(f"{what} failed (exit {res.returncode}: {tail[0][:160]}; log {LAST_LOG})")


def debian_root(root: Path, log: Path) -> None:
    run(["debootstrap", "--arch=arm64", "--foreign", "--variant=minbase", f"--include={','.join(DEBS)}",
         ul.SUITE, str(root), MIRROR], f"debootstrap of Debian {ul.SUITE} arm64 from {MIRROR}", log)
    debs = sorted((root / "var/cache/apt/archives").glob("*.deb"))
    if not debs:
        raise Unavailable(f"debootstrap left no .deb files in {root}/var/cache/apt/archives (log {LAST_LOG})")
    for deb in debs:
        run(["dpkg-deb", "-x", str(deb), str(root)], f"unpacking {deb.name}", log)
        deb.unlink()  # 100 MB of archives the emulator never reads
    if not (root / "usr/bin" / f"python{ul.PYTHON}").is_file():
        raise Unavailable(f"python{ul.PYTHON} missing from the unpacked root {root} (log {LAST_LOG})")


def wheels(site: Path, versions: dict[str, str], log: Path) -> None:
    pins = [f"{n}=={v}" for n, v in versions.items()]
    run([sys.executable, "-m", "pip", "install", "--quiet", "--no-cache-dir",
         *(a for p in PLATFORMS for a in ("--platform", p)),
         "--python-version", ul.PYTHON, "--implementation", "cp", "--only-binary=:all:", "--target", str(site),
         *pins], f"pip install of the aarch64 wheels ({', '.join(pins)})", log)


def build(force: bool = False) -> ul.Userland:
    versions = ul.host_versions()
    if "onnxruntime" not in versions:
        raise Unavailable("onnxruntime is not installed on the host: nothing to emulate")
    land = ul.Userland(ul.cache_root() / ul.key(versions))
    if (land.folder / ul.COMPLETE).is_file() and not force:
        print(f"arm64 userland: {land.folder} (cached)")
        return land
    ensure_tools()
    ul.cache_root().mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=ul.cache_root()))
    log = tmp / "build.log"
    t0 = time.monotonic()
    try:
        print(f"arm64 userland: building {land.folder} (Debian {ul.SUITE} arm64, {', '.join(versions)}; "
              "about 2 minutes)", flush=True)
        debian_root(tmp / "root", log)
        wheels(tmp / "site", versions, log)
        (tmp / ul.COMPLETE).write_text(" ".join(f"{n}=={v}" for n, v in versions.items()) + "\n")
        if land.folder.exists():
            shutil.rmtree(land.folder)
        os.replace(tmp, land.folder)  # the finished build appears whole, or not at all
    except BaseException:
        _keep_log(tmp, log)
        raise
    print(f"arm64 userland: built in {time.monotonic() - t0:.0f} s, {_size(land.folder) / 1e6:.0f} MB")
    return land


def _keep_log(tmp: Path, log: Path) -> None:
    """A failed build leaves only its log (cache_root()/last-build.log), not a half tree."""
    if log.is_file():
        shutil.copyfile(log, LAST_LOG)
    shutil.rmtree(tmp, ignore_errors=True)


def _size(folder: Path) -> int:
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> int:
    force = "--force" in sys.argv[1:]
    if set(sys.argv[1:]) - {"--force"}:
        print("usage: tools/arm64_userland.py [--force]", file=sys.stderr)
        return 1
    try:
        build(force)
    except Unavailable as e:
        print(f"arm64 userland not built: {e}; without one, the ARM64 rows of `check --cpu` and their tests skip")
    return 0


if __name__ == "__main__":
    sys.exit(main())
