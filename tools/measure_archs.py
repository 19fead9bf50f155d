"""Record what each architecture costs as int8 C on the emulated Cortex-M boards, and what its runs scored.

Writes mnist_edge/core/archs_measured.json, which `mnist-edge models` reads (a maintainer's job; needs the
train extra and the Cortex-M toolchain, `make toolchains`):

    python tools/measure_archs.py [ARCH ...]                  footprints (all architectures when none named)
    python tools/measure_archs.py --record-runs RUN/metrics.json ...   training runs (a seed again: replaced)

Footprints use seeded random weights (no training): flash, RAM and instructions depend only on the shapes,
and every seed given (--seeds, default 0,1) must give the same numbers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mnist_edge.core.archs import ARCH_SPECS, MEASURED_FILE, SHOWN_CORES
from mnist_edge.core.errors import MnistEdgeError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("archs", nargs="*", help=f"architectures to measure (default: all: {', '.join(ARCH_SPECS)})")
    ap.add_argument("--record-runs", nargs="+", type=Path, metavar="METRICS_JSON",
                    help="record these runs' metrics.json files instead of measuring footprints")
    ap.add_argument("--cores", default=",".join(SHOWN_CORES),
                    help="boards to measure, as BOARDS names them; those this checkout lacks are left out")
    ap.add_argument("--seeds", default="0,1", help="random-weight seeds that must agree (default 0,1)")
    ap.add_argument("--out", type=Path, default=MEASURED_FILE)
    args = ap.parse_args(argv)
    try:
        if args.record_runs:
            from mnist_edge.verify.archs import record_runs

            for arch, run in record_runs(args.record_runs, args.out):
                print(f"{arch} seed {run.seed}: {100 * run.test_acc:.2f}% ({run.date}, {run.cpu})")
            return 0
        from mnist_edge.edge.runtimes import cortex_m
        from mnist_edge.verify.archs import measure_footprints, record_footprints

        unknown = [a for a in args.archs if a not in ARCH_SPECS]
        if unknown:
            raise MnistEdgeError(f"unknown architecture {unknown[0]!r} (one of {', '.join(ARCH_SPECS)})")
        cores = [c for c in args.cores.split(",") if c in cortex_m.BOARDS]
        left = [c for c in args.cores.split(",") if c not in cortex_m.BOARDS]
        if left:
            print(f"no board {', '.join(left)} in edge/runtimes/cortex_m.py here: left out", file=sys.stderr)
        if not cores:
            raise MnistEdgeError("no board to measure on")
        seeds = tuple(int(s) for s in args.seeds.split(","))
        for arch in args.archs or list(ARCH_SPECS):
            record_footprints({arch: measure_footprints(arch, cores, seeds)}, args.out)  # each arch kept at once
        return 0
    except MnistEdgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
