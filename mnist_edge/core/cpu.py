"""The processor a result came from: its model name and the instruction-set features that change results or speed.

Int8 kernels (ONNX Runtime's MLAS picks U8S8 code by AVX2, AVX-512 and VNNI), bf16 training (native only
with AVX512-BF16 or AMX) and every timing depend on these, so every result file records them.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

# The flags that change what the libraries compute or how fast: /proc/cpuinfo names (x86 "flags", ARM "Features").
X86_FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8",
                "amx_bf16")
ARM_FEATURES = ("asimd", "asimddp", "i8mm", "bf16", "sve", "sme")
_ARM_NAMES = {"asimd": "neon", "asimddp": "dotprod"}  # the names ARM's documentation uses


def _cpuinfo(path: Path = Path("/proc/cpuinfo")) -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none: macOS, Windows)."""
    fields: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return fields
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    return fields


def parse(cpuinfo: dict[str, str], machine: str) -> dict:
    """{"model", "machine", "features", "kind"} from /proc/cpuinfo's fields and platform.machine()."""
    flags = set((cpuinfo.get("flags") or cpuinfo.get("features") or "").split())
    arm = machine.lower() in ("aarch64", "arm64") or machine.lower().startswith("arm")
    names = ARM_FEATURES if arm else X86_FEATURES
    features = [_ARM_NAMES.get(f, f) for f in names if f in flags]
    model = cpuinfo.get("model name") or cpuinfo.get("hardware") or cpuinfo.get("cpu part") or platform.processor()
    return {"model": model or "unknown", "machine": machine, "features": features, "kind": kind(features, machine)}


def kind(features: list[str], machine: str) -> str:
    """The CPU kind as figures name it: "AVX-512 VNNI + BF16", "AVX2 only", "ARM64 (neon, dotprod)"."""
    f = set(features)
    if "neon" in f or machine.lower() in ("aarch64", "arm64"):
        return "ARM64" + (f" ({', '.join(features)})" if features else "")
    if "avx512f" in f:
        out = "AVX-512" + (" VNNI" if "avx512_vnni" in f else "") + (" + BF16" if "avx512_bf16" in f else "")
        return out + (" + AMX" if "amx_tile" in f else "")
    if "avx2" in f:
        return "AVX2 only" + (" + AVX-VNNI" if "avx_vnni" in f else "")
    return f"{machine or 'unknown'} without AVX2"


@functools.cache
def cpu_info() -> dict:
    """This machine's processor: {"model", "machine", "features", "kind"}; what every result file records."""
    return parse(_cpuinfo(), platform.machine())


def describe(info: dict | None = None) -> str:
    """One line for reports: "AMD EPYC 9B14 (AVX-512 VNNI + BF16)"."""
    info = info or cpu_info()
    return f"{info['model']} ({info['kind']})"


def has_vnni(info: dict | None = None) -> bool:
    """Whether ONNX Runtime's x86 U8S8 kernels sum u8 x s8 products in int32 (VNNI) rather than in int16 pairs."""
    f = set((info or cpu_info())["features"])
    return bool(f & {"avx512_vnni", "avx_vnni", "amx_int8"})
