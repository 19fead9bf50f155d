"""Cortex-M4 footprint of a generated C model: flash, static RAM and worst-case stack, via arm-none-eabi-gcc.

The stack is static: the deepest chain of frames in GCC's call graph of the model's own functions. Calls
into libraries have no frame there (`stack_unsized_calls` names them); with a hard-float FPU there are
none, while a soft-float core (Cortex-M0, M3) calls libgcc's __aeabi_fmul, __aeabi_fadd, ... from the
requantisation. The firmware on an emulated core measures the real stack (edge/runtimes/cortex_m.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mnist_edge.core.errors import ModelFileError

M4_FLAGS = ("-mcpu=cortex-m4", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-mthumb", "-O2", "-std=c99")
ENTRY_POINTS = ("mnist_edge_predict", "mnist_edge_predict_normalized")
_NODE_RE = re.compile(r'node: \{ title: "([^"]+)" label: "[^"]*\\n(\d+) bytes')
_EDGE_RE = re.compile(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"')


def cross_size(c_path: Path, flags: tuple[str, ...] = M4_FLAGS, target: str = "cortex-m4f") -> dict | None:
    """Sizes in bytes of the model compiled for a Cortex-M4F (or `flags`), or None without arm-none-eabi-gcc/-size."""
    cc, size = shutil.which("arm-none-eabi-gcc"), shutil.which("arm-none-eabi-size")
    if not cc or not size:
        return None
    c_path = Path(c_path).resolve()  # compiled from a temp folder
    with tempfile.TemporaryDirectory(prefix="mnist-edge-m4-") as work:
        obj = Path(work) / "model.o"
        # -fcallgraph-info=su writes model.ci: every function's frame and the calls between them
        res = subprocess.run([cc, *flags, "-fcallgraph-info=su", "-c", str(c_path), "-o", str(obj)],
                             capture_output=True, text=True, check=False, cwd=work)
        if res.returncode != 0:
            first = next((ln for ln in res.stderr.splitlines() if "error" in ln), res.stderr.strip()[:160])
            raise ModelFileError(f"{c_path}: does not compile for {target} ({first[:200]})")
        sections = _sections(subprocess.run([size, "-A", str(obj)], capture_output=True, text=True,
                                            check=True).stdout)
        ci = (Path(work) / "model.ci").read_text()
        stack, unsized = _worst_stack(ci), _unsized_calls(ci)
    text, rodata = _total(sections, ".text"), _total(sections, ".rodata")
    data, bss = _total(sections, ".data"), _total(sections, ".bss") + _total(sections, "COMMON")
    return {
        "target": target, "flags": " ".join(flags), "compiler": _version(cc),
        "text": text, "rodata": rodata, "data": data, "bss": bss,
        "flash_bytes": text + rodata + data,  # .data's initial values live in flash too
        "ram_bytes": data + bss,
        "stack_bytes": stack,  # deepest call chain from an entry point (the C code has no recursion)
        "stack_unsized_calls": unsized,  # library functions it calls, whose frames the figure leaves out
    }


def _sections(size_a: str) -> dict[str, int]:
    """`size -A` (SysV) output -> {section: bytes}."""
    out = {}
    for line in size_a.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith((".", "COMMON")) and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def _total(sections: dict[str, int], prefix: str) -> int:
    return sum(v for k, v in sections.items() if k == prefix or k.startswith(prefix + "."))


def _worst_stack(ci: str) -> int:
    """The largest sum of frames along a call chain starting at an entry point, from GCC's .ci graph."""
    frames = {name: int(b) for name, b in _NODE_RE.findall(ci)}
    calls: dict[str, list[str]] = {}
    for src, dst in _EDGE_RE.findall(ci):
        calls.setdefault(src, []).append(dst)

    def depth(fn: str, seen: frozenset) -> int:
        if fn in seen:  # recursion cannot be bounded statically; the generated code has none
            raise ValueError(f"recursive call through {fn}")
        return frames.get(fn, 0) + max((depth(c, seen | {fn}) for c in calls.get(fn, [])), default=0)

    return max(depth(e, frozenset()) for e in ENTRY_POINTS if e in frames)


def _unsized_calls(ci: str) -> list[str]:
    """The functions called in GCC's .ci graph that have no frame size there (library code, e.g. libgcc's)."""
    sized = {name for name, _ in _NODE_RE.findall(ci)}
    return sorted({dst for _, dst in _EDGE_RE.findall(ci)} - sized)


def _version(cc: str) -> str:
    out = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0] if out else "unknown"


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(p, cross_size(Path(p)))
