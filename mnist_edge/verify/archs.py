"""What each architecture costs as int8 C on the emulated Cortex-M boards, and what its recorded runs scored.

The footprint needs no training: flash and RAM of the generated C depend on the layer shapes, not on
the weights' values (every table and buffer has a fixed size), and instructions per inference nearly so
(max-pooling's and clamping's comparisons branch on the data: seeds differ by well under 1%), so a model
with seeded random weights is exported to int8 ONNX, then C, then linked and run for each board.
`measure_footprints` checks both claims on every seed it is given.
The training part comes from the runs' metrics.json files (and check.json beside them, for the int8
accuracy). Both are merged into core/archs_measured.json, which `mnist-edge models` reads.
"""

from __future__ import annotations

import datetime
import json
import re
import tempfile
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from mnist_edge.core.archs import (
    ARCH_SPECS,
    MEASURED_FILE,
    Footprint,
    Measured,
    TrainingRun,
    load_measured,
    measured_to_json,
)
from mnist_edge.core.errors import ExportError, MnistEdgeError, ModelFileError
from mnist_edge.core.fileio import write_json
from mnist_edge.edge.runtimes import cortex_m

PROFILE_IMAGES = 4  # instructions per inference: one input of zeros, three of noise
# the seeds' mean instructions may differ this much (data-dependent comparisons, and on a core without an FPU
# float arithmetic in software, which is quicker on zeros: one image to another differs by up to 20% on the
# Cortex-M0), in flash and RAM not at all
INSTRUCTIONS_SPREAD = 0.10
CALIBRATION_IMAGES = 16


def int8_c_model(arch: str, work: Path, seed: int = 0) -> Path:
    """The folder of the generated C model of a seeded random-weight `arch`, via its int8 QDQ ONNX file."""
    import torch

    from mnist_edge.core.formats import FORMATS
    from mnist_edge.core.metadata import ModelMetadata
    from mnist_edge.core.settings import ExportSettings
    from mnist_edge.pytorch.exporters import c as c_exporter
    from mnist_edge.pytorch.exporters import onnx as onnx_exporter
    from mnist_edge.pytorch.exporters.job import ExportJob
    from mnist_edge.pytorch.models import build, default_args

    torch.manual_seed(seed)
    model = build(arch).eval()
    meta = ModelMetadata(arch=arch, arch_args=default_args(arch), test_acc=0.0, seed=seed)
    pixels = np.random.default_rng(seed).integers(0, 256, (CALIBRATION_IMAGES, 28, 28), dtype=np.uint8)
    work.mkdir(parents=True, exist_ok=True)
    job = ExportJob(model, meta, ExportSettings(out=work), meta.normalize(pixels), {"onnx": work / "model.onnx"})
    onnx_exporter.export_fp32(job, FORMATS["onnx"], work / "model.onnx")
    onnx_exporter.export_int8(job, FORMATS["onnx-int8"], work / "model.int8.onnx")
    c_text, h_text, _ = c_exporter.generate(work / "model.int8.onnx")
    c_dir = work / "c"
    c_dir.mkdir(exist_ok=True)
    c_exporter.write_files(c_text, h_text, c_dir)
    return c_dir


def _inputs(n: int) -> np.ndarray:
    x = np.random.default_rng(0).normal(0.0, 1.0, (n, 1, 28, 28)).astype(np.float32)
    x[0] = 0.0
    return x


def _memory(b: cortex_m.Board) -> str:
    """The board's memory as its flags give it to the linker script (which defaults to 4 MB each)."""
    sizes = dict(re.findall(r"(FLASH_SIZE|RAM_SIZE)=(\w+)", " ".join(b.flags)))
    return f"{sizes.get('FLASH_SIZE', '4M')} of flash, {sizes.get('RAM_SIZE', '4M')} of RAM"


def _unbounded(b: cortex_m.Board) -> cortex_m.Board:
    """The same core and flags with the linker script's default 4 MB memories: what a firmware needs."""
    flags = tuple(f for f in b.flags if "FLASH_SIZE" not in f and "RAM_SIZE" not in f)
    return replace(b, core=f"{b.core}-unbounded", flags=flags)


def measure_one(c_dir: Path, core: str, date: str, seed: int) -> Footprint:
    """Link the C model for board `core` and count its instructions; a link that fails is "does not fit",
    with the flash and RAM it would need."""
    b = cortex_m.board(core)
    try:
        rt = cortex_m.load(c_dir, SimpleNamespace(name=f"c-int8@{core}", device=core))
    except ModelFileError as e:  # ld: "region `FLASH' overflowed by N bytes", then "ld returned 1 exit status"
        if not any(s in str(e) for s in ("ld returned", "overflow", "will not fit")):
            raise
        need = cortex_m.model_footprint(c_dir, _unbounded(b))
        flash, ram = need["model_flash_bytes"], need["model_static_ram_bytes"]
        return Footprint(core, b.machine, False, flash, ram, compiler=cortex_m.compiler_version(),
                         date=date, seeds=(seed,),
                         why=f"its firmware does not link: the model needs {flash} B of flash and {ram} B of static "
                             f"RAM; {b.machine} has {_memory(b)}")
    p = rt.profile(_inputs(PROFILE_IMAGES))
    # the model's own flash and RAM (weights, scales, code and the library routines it calls; its buffers and
    # its measured stack), not the runner's I/O around it
    return Footprint(core, b.machine, True, p["model_flash_bytes"], p["model_ram_bytes"], round(p["instructions_mean"]),
                     round(p["instructions_min"]), round(p["instructions_max"]), p["compiler"], date, (seed,))


def measure_footprints(arch: str, cores: list[str], seeds: tuple[int, ...] = (0, 1), work: Path | None = None,
                       say=print) -> dict[str, Footprint]:
    """Each board's footprint of `arch`, measured on every seed's random weights, which must agree."""
    date = datetime.date.today().isoformat()
    got: dict[str, Footprint] = {}
    with tempfile.TemporaryDirectory(prefix="mnist-edge-archs-") as tmp:
        root = Path(work or tmp)
        for seed in seeds:
            try:
                c_dir = int8_c_model(arch, root / f"{arch}-seed{seed}", seed)
            except ExportError as e:  # an op the C exporter refuses: the same for every board and seed
                say(f"{arch}: no C model ({e})")
                why = str(e).split(": ", 1)[-1]
                return {core: Footprint(core, cortex_m.board(core).machine, False, date=date, seeds=seeds, why=why,
                                        c_model=False) for core in cores}
            for core in cores:
                f = measure_one(c_dir, core, date, seed)
                say(f"{arch} seed {seed} on {core}: " + (f"flash {f.flash_bytes} B, RAM {f.ram_bytes} B, "
                                                         f"{f.instructions} instructions" if f.fits else
                                                         f"does not fit ({f.why})"))
                if core not in got:
                    got[core] = f
                    continue
                first = got[core]
                if (first.fits, first.flash_bytes, first.ram_bytes) != (f.fits, f.flash_bytes, f.ram_bytes):
                    raise MnistEdgeError(f"{arch} on {core}: seed {seed} gives another flash or RAM than seed "
                                         f"{first.seeds[0]} ({f.flash_bytes}/{f.ram_bytes} B against "
                                         f"{first.flash_bytes}/{first.ram_bytes} B)")
                if not f.fits:
                    got[core] = replace(first, seeds=(*first.seeds, seed))
                    continue
                lo = min(first.instructions_min, f.instructions_min)
                hi = max(first.instructions_max, f.instructions_max)
                means = sorted((first.instructions, f.instructions))
                if means[1] > means[0] * (1 + INSTRUCTIONS_SPREAD):
                    raise MnistEdgeError(f"{arch} on {core}: the seeds' mean instructions per inference differ, "
                                         f"{means[0]} against {means[1]}, by more than {INSTRUCTIONS_SPREAD:.0%}")
                n = len(first.seeds)
                got[core] = replace(first, seeds=(*first.seeds, seed), instructions_min=lo, instructions_max=hi,
                                    instructions=round((first.instructions * n + f.instructions) / (n + 1)))
    return got


def _date(iso: str | None) -> str | None:
    return iso[:10] if iso else None


def _int8_acc(metrics_path: Path) -> float | None:
    """The int8 ONNX model's test accuracy from check.json beside the run's metrics.json, where there is one."""
    try:
        check = json.loads((metrics_path.parent / "check.json").read_text("utf-8"))
        row = next(r for r in check["results"] if r.get("format") == "onnx-int8")
        return float(row["accuracy"]) if row.get("accuracy") is not None else None
    except (OSError, ValueError, KeyError, TypeError, StopIteration):
        return None


def run_from_metrics(path: Path) -> tuple[str, TrainingRun]:
    """(arch, its training run) from one metrics.json."""
    try:
        m = json.loads(Path(path).read_text("utf-8"))
        arch, config = m["arch"], m.get("config", {})
        seed, acc = int(config["seed"]), float(m["test_acc"])
        seconds = sum(float(e["seconds"]) for e in m.get("epochs", ())) or None
    except OSError as e:
        raise MnistEdgeError(f"{path}: cannot read ({e.strerror})") from None
    except (ValueError, KeyError, TypeError) as e:
        raise MnistEdgeError(f"{path}: not a metrics.json of mnist-edge train ({type(e).__name__}: {e})") from None
    if arch not in ARCH_SPECS:
        raise MnistEdgeError(f"{path}: architecture {arch!r} has no ArchSpec in core/archs.py (add it first)")
    cpu = m.get("cpu")
    cpu_text = f"{cpu.get('model', 'unknown')}, {cpu.get('kind', 'unknown')}" if isinstance(cpu, dict) else None
    precision = m.get("precision") or (config.get("precision") if config.get("precision") != "auto" else None)
    return arch, TrainingRun(seed=seed, test_acc=acc, precision=precision,
                             seconds=round(seconds, 1) if seconds else None, date=_date(m.get("date")),
                             cpu=cpu_text, int8_acc=_int8_acc(Path(path)))


def record_footprints(footprints: dict[str, dict[str, Footprint]], path: Path = MEASURED_FILE) -> None:
    """Merge {arch: {core: Footprint}} into the measurements file (a board measured again is replaced)."""
    measured = load_measured(path)
    for arch, by_core in footprints.items():
        m = measured.get(arch, Measured(arch))
        measured[arch] = replace(m, footprints={**m.footprints, **by_core})
    write_json(path, measured_to_json(measured))


def record_runs(metrics_files: list[Path], path: Path = MEASURED_FILE) -> list[tuple[str, TrainingRun]]:
    """Merge the runs of these metrics.json files into the measurements file (a seed recorded again is replaced)."""
    got = [run_from_metrics(p) for p in metrics_files]  # every file read before anything is written
    measured = load_measured(path)
    for arch, run in got:
        m = measured.get(arch, Measured(arch))
        runs = {r.seed: r for r in m.runs}
        runs[run.seed] = run
        measured[arch] = replace(m, runs=tuple(runs[s] for s in sorted(runs)))
    write_json(path, measured_to_json(measured))
    return got
