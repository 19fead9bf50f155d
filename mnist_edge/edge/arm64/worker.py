"""Runs inside the emulated arm64 Python: `python -m mnist_edge.edge.arm64.worker MODEL X.npy OUT.npy BATCH THREADS`.

Loads MODEL with the host's own loader (mnist_edge.core.formats), runs the normalised images of X.npy
in batches of BATCH, saves the logits to OUT.npy and prints one JSON line of timings. Torch-free: the
userland has only numpy, onnxruntime and ai-edge-litert.
"""

from __future__ import annotations

import json
import sys
import time

# Bits of the auxiliary vector that choose ONNX Runtime's and XNNPACK's ARM kernels (Linux's hwcap.h).
HWCAP = {16: {"asimd": 1 << 1, "asimddp": 1 << 20, "sve": 1 << 22},
         26: {"i8mm": 1 << 13, "bf16": 1 << 14, "sme": 1 << 23}}  # 16: AT_HWCAP, 26: AT_HWCAP2


def features() -> list[str]:
    """The kernel-choosing features this (emulated) CPU advertises, from getauxval: what the runtimes see."""
    import ctypes
    import platform

    if platform.machine() != "aarch64":  # the bits mean other things elsewhere
        return []
    getauxval = ctypes.CDLL(None).getauxval
    getauxval.restype = ctypes.c_ulong
    return [name for at, bits in HWCAP.items() for name, bit in bits.items() if getauxval(at) & bit]


def main(argv: list[str]) -> int:
    t0 = time.perf_counter()
    model, x_path, out_path, batch, threads = argv
    import numpy as np

    from mnist_edge.core.formats import load_runtime
    from mnist_edge.core.scores import run_batched

    rt = load_runtime(model, int(threads))
    x = np.load(x_path)
    t1, c1 = time.perf_counter(), time.process_time()
    logits = run_batched(rt, x, int(batch)) if len(x) else np.zeros((0, len(rt.metadata.class_names)), np.float32)
    t2, c2 = time.perf_counter(), time.process_time()
    np.save(out_path, logits.astype(np.float32))
    print(json.dumps({"load_s": t1 - t0, "run_s": t2 - t1, "run_cpu_s": c2 - c1, "features": features()}))
    return 0


if __name__ == "__main__":
    from mnist_edge.core.errors import MnistEdgeError

    try:
        sys.exit(main(sys.argv[1:]))
    except MnistEdgeError as e:  # a bad model file: its one line, for the host to report
        print(e, file=sys.stderr)
        sys.exit(1)
