"""The architectures by name, torch-free: what `mnist-edge models` lists and `--arch` accepts.

The classes live in mnist_edge.pytorch.models under the same names; the parameter and MAC counts here
are pinned (a test rebuilds every model and checks them, and the MAC counter against torch's). What each
costs as int8 C on emulated Cortex-M boards and what its recorded training runs scored are read from
archs_measured.json beside this file (tools/measure_archs.py writes it), so listing them needs no compiler.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mnist_edge.core.settings import DEFAULT_ARCH


@dataclass(frozen=True)
class ArchSpec:
    name: str
    summary: str
    params: int  # for 10 classes
    macs: int  # multiply-accumulates per 1x28x28 image (conv and linear layers)
    args: dict = field(default_factory=dict)  # default constructor arguments
    # the training recipe's settings this architecture trains with by default (core.settings.TrainRecipe's
    # other defaults apply); a setting given on the command line wins
    recipe: dict = field(default_factory=dict)


ARCH_SPECS: dict[str, ArchSpec] = {a.name: a for a in (
    ArchSpec("edgenet", "5 conv+BN blocks (5x5, then 3x3) -> global avg pool -> FC 10", 103_258, 5_959_360,
             {"channels": [16, 32, 48, 64, 96]}),
    ArchSpec("mcu-16k", "conv 5x5/2 -> 2 conv 3x3 + max-pool (BN each) -> conv 3x3 over the 3x3 map: for 16 KB "
             "flash, 4 KB RAM", 8_962, 493_664, {"channels": [8, 16, 32], "first_kernel": 5},
             # fp32 on every CPU: the same model everywhere (bf16 saves a tiny model nothing worth it);
             # no label smoothing: 99.42% against 99.32% at 8-16-32 (conv+pool first, seed 0)
             {"label_smoothing": 0.0, "precision": "fp32"}),
    ArchSpec("conv3pool-fc3", "3 conv (ReLU, max-pool each) -> 3 FC", 422_026, 7_780_096),
    ArchSpec("conv2pool-fc2", "conv 10@5x5 -> conv 20@5x5 (ReLU, max-pool) -> FC 50 -> FC 10", 30_840, 799_500),
    ArchSpec("lenet-dropout", "conv 32 -> pool -> conv 64 -> pool -> FC 128 -> dropout -> FC 10", 421_642,
             4_241_152),
    ArchSpec("conv3-flat", "conv 32 -> 64 -> 128 (3x3, ReLU) -> flatten -> FC 10 -> log-softmax", 712_202,
             47_115_392),
)}


# --- what each architecture costs on a device and scores: recorded, read torch-free ---------------------

MEASURED_FILE = Path(__file__).with_name("archs_measured.json")  # written by tools/measure_archs.py
NOT_MEASURED = "not measured"
# the boards `mnist-edge models` shows instructions for: the smallest part (no DSP) and the DSP one
SHOWN_CORES = ("cortex-m0", "cortex-m4")
_UNITS = {"B": 1, "K": 1024, "M": 1024 * 1024}
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([BKM]?)$", re.IGNORECASE)


@dataclass(frozen=True)
class Footprint:
    """The int8 C model on one emulated board: what the model itself takes (the smallest firmware around it,
    so its weights, scales, code and the C library routines it calls; its static buffers and measured
    stack), and its instructions per inference in the runner's firmware."""

    core: str  # e.g. "cortex-m4", a key of edge.runtimes.cortex_m.BOARDS
    board: str  # the QEMU machine, e.g. "mps2-an386"
    fits: bool  # False: the link failed against the board's memory, or there is no C model
    flash_bytes: int | None = None
    ram_bytes: int | None = None  # .data + .bss + the stack the model used (static RAM only where it does not fit)
    instructions: int | None = None  # per inference under QEMU's -icount: the mean over seeds and images
    # the least and most of one inference: max-pooling's and clamping's comparisons branch on the data
    instructions_min: int | None = None
    instructions_max: int | None = None
    compiler: str = ""
    date: str = ""  # YYYY-MM-DD
    seeds: tuple[int, ...] = ()  # the random-weight seeds measured: every one gave these numbers
    why: str = ""  # what it would need, where it does not fit; the exporter's refusal, where there is no C model
    c_model: bool = True  # False: the C exporter refuses the architecture (an op it cannot compute exactly)


@dataclass(frozen=True)
class TrainingRun:
    """One recorded default training run of an architecture (from its metrics.json)."""

    seed: int
    test_acc: float  # fp32 model on the 10,000 test images
    precision: str | None = None  # "fp32" or "bf16 autocast"
    seconds: float | None = None  # the epochs' sum
    date: str | None = None  # YYYY-MM-DD
    cpu: str | None = None  # e.g. "AMD EPYC, AVX-512 VNNI + BF16"
    int8_acc: float | None = None  # the int8 ONNX model's, where check recorded it


@dataclass(frozen=True)
class Measured:
    """What is recorded of one architecture: footprints per board and training runs per seed."""

    arch: str
    footprints: dict[str, Footprint] = field(default_factory=dict)  # by core
    runs: tuple[TrainingRun, ...] = ()

    @property
    def accuracy(self) -> float | None:
        """Mean test accuracy over the recorded seeds (None: no run recorded)."""
        return sum(r.test_acc for r in self.runs) / len(self.runs) if self.runs else None

    def largest(self) -> Footprint | None:
        """The fitting footprint with the most flash (then RAM), or None: the build a part must hold whichever
        of the measured cores it has (a core without an FPU needs float routines in flash)."""
        fits = [f for f in self.footprints.values() if f.fits and f.flash_bytes is not None]
        return max(fits, key=lambda f: (f.flash_bytes, f.ram_bytes or 0, f.core), default=None)

    def fits(self, limits: Limits) -> bool:
        """Whether the largest measured build is within both limits (an unmeasured architecture fits nothing)."""
        f = self.largest()
        return (f is not None and f.ram_bytes is not None
                and (limits.flash is None or f.flash_bytes <= limits.flash)
                and (limits.ram is None or f.ram_bytes <= limits.ram))


@dataclass(frozen=True)
class Limits:
    """A part's memory, as `--fits flash=32K,ram=8K` gives it (None: no limit on that one)."""

    flash: int | None = None
    ram: int | None = None


class MeasuredFileError(ValueError):
    """The recorded measurements file is not what its reader expects."""


def parse_size(text: str) -> int:
    """'32K' -> 32768 bytes; units B, K (1024) and M (1024*1024), none meaning bytes."""
    m = _SIZE_RE.match(text.strip())
    if not m:
        raise ValueError(f"bad size {text!r}: a number with the unit B, K or M (e.g. 32K)")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "B").upper()])


def parse_limits(text: str) -> Limits:
    """'flash=32K,ram=8K' (either key optional, at least one) -> Limits."""
    got: dict[str, int] = {}
    for part in text.split(","):
        key, eq, value = part.partition("=")
        key = key.strip().lower()
        if key not in ("flash", "ram") or not eq:
            raise ValueError(f"bad limit {part.strip()!r}: give flash=SIZE and/or ram=SIZE, e.g. flash=32K,ram=8K")
        if key in got:
            raise ValueError(f"{key} is given twice")
        got[key] = parse_size(value)
    return Limits(**got)


def _footprint(core: str, d: dict) -> Footprint:
    return Footprint(core=core, board=d["board"], fits=bool(d["fits"]), flash_bytes=d.get("flash_bytes"),
                     ram_bytes=d.get("ram_bytes"), instructions=d.get("instructions"),
                     instructions_min=d.get("instructions_min"), instructions_max=d.get("instructions_max"),
                     compiler=d.get("compiler", ""), date=d.get("date", ""), seeds=tuple(d.get("seeds", ())),
                     why=d.get("why", ""), c_model=bool(d.get("c_model", True)))


def _run(d: dict) -> TrainingRun:
    return TrainingRun(seed=int(d["seed"]), test_acc=float(d["test_acc"]), precision=d.get("precision"),
                       seconds=d.get("seconds"), date=d.get("date"), cpu=d.get("cpu"), int8_acc=d.get("int8_acc"))


def parse_measured(data: dict, source: str = "measurements") -> dict[str, Measured]:
    """The recorded measurements by architecture, from the file's JSON object."""
    try:
        return {arch: Measured(arch, {core: _footprint(core, f) for core, f in entry.get("footprint", {}).items()},
                               tuple(sorted((_run(r) for r in entry.get("runs", ())), key=lambda r: r.seed)))
                for arch, entry in data["archs"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise MeasuredFileError(f"{source}: not a measurements file ({type(e).__name__}: {e})") from None


def measured_to_json(measured: dict[str, Measured]) -> dict:
    """The file's JSON object (parse_measured's inverse)."""
    out = {}
    for arch, m in sorted(measured.items()):
        out[arch] = {"footprint": {core: {k: (list(v) if k == "seeds" else v) for k, v in asdict(f).items()
                                          if k != "core"} for core, f in sorted(m.footprints.items())},
                     "runs": [asdict(r) for r in sorted(m.runs, key=lambda r: r.seed)]}
    return {"about": "int8 C footprints per emulated board and recorded default training runs, per architecture "
                     "(tools/measure_archs.py writes it; `mnist-edge models` reads it)", "archs": out}


def load_measured(path: Path = MEASURED_FILE) -> dict[str, Measured]:
    """The recorded measurements ({} where the file is absent)."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text)
    except ValueError as e:
        raise MeasuredFileError(f"{path}: not JSON ({e})") from None
    return parse_measured(data, str(path))


# --- the `mnist-edge models` listing ------------------------------------------------------------------

def _kb(n: int | None) -> str:
    return NOT_MEASURED if n is None else f"{n / 1024:.1f}K"


def _instructions(f: Footprint | None) -> str:
    if f is None:
        return NOT_MEASURED
    if not f.c_model:
        return "no C model"
    if not f.fits:
        return "does not fit"
    return NOT_MEASURED if f.instructions is None else f"{f.instructions / 1e6:.2f}M"


def _run_of(m: Measured) -> str:
    """The recorded runs' date and CPU (the latest date; the CPU when every run names the same one)."""
    dates = sorted({r.date for r in m.runs if r.date})
    cpus = sorted({r.cpu for r in m.runs if r.cpu})
    date = dates[-1] if dates else "date not recorded"
    cpu = cpus[0] if len(cpus) == 1 else ("several CPUs" if cpus else "CPU not recorded")
    return f"{date}, {cpu}"


def rows(measured: dict[str, Measured], limits: Limits | None = None) -> list[dict]:
    """One dict per architecture (what --json prints); with `limits`, only those whose measured footprint
    fits, best mean accuracy first and the unmeasured last."""
    out = []
    for a in ARCH_SPECS.values():
        m = measured.get(a.name, Measured(a.name))
        if limits is not None and not m.fits(limits):
            continue
        big = m.largest()
        out.append({
            "name": a.name, "default": a.name == DEFAULT_ARCH, "summary": a.summary, "params": a.params,
            "macs": a.macs,
            "largest": None if big is None else {"core": big.core, "flash_bytes": big.flash_bytes,
                                                  "ram_bytes": big.ram_bytes},
            "footprint": {core: asdict(f) for core, f in m.footprints.items()},
            "accuracy": None if m.accuracy is None else {"mean": m.accuracy, "seeds": len(m.runs)},
            "runs": [asdict(r) for r in m.runs],
        })
    if limits is not None:  # sorted() is stable: equal accuracies keep the table's order
        out.sort(key=lambda r: -r["accuracy"]["mean"] if r["accuracy"] else 1.0)
    return out


def table(measured: dict[str, Measured] | None = None, limits: Limits | None = None) -> str:
    """The `mnist-edge models` listing."""
    measured = load_measured() if measured is None else measured
    listed = rows(measured, limits)
    head = (f"{'name':<16}{'params':>10}{'MACs/img':>10}  {'flash':>7} {'RAM':>7}  {'board':<11}"
            f"{'M0 instr':>14}{'M4 instr':>14}  {'test acc (seeds)':<18}  recorded run")
    lines = [head]
    for r in listed:
        m = measured.get(r["name"], Measured(r["name"]))
        big = m.largest()
        size = (f"{_kb(big.flash_bytes):>7} {_kb(big.ram_bytes):>7}  {big.core:<11}" if big else
                f"{NOT_MEASURED:<28}")
        acc = NOT_MEASURED if m.accuracy is None else f"{100 * m.accuracy:.2f}% ({len(m.runs)})"
        run = _run_of(m) if m.runs else ""
        name = r["name"] + (" *" if r["default"] else "")
        lines.append(f"{name:<16}{r['params']:>10,}{r['macs'] / 1e6:>9.2f}M  {size}"
                     f"{_instructions(m.footprints.get(SHOWN_CORES[0])):>14}"
                     f"{_instructions(m.footprints.get(SHOWN_CORES[1])):>14}  {acc:<18}  {run}".rstrip())
    if limits is not None and not listed:
        lines.append("(no measured architecture fits)")
    lines.append("")
    lines += ["* the default (train without --arch). flash, RAM: what the int8 C model itself takes on the",
              "  measured board with the largest build (weights, scales, its code and the C library routines it",
              "  calls; its buffers and measured stack), without a firmware's own I/O. instr: per inference on",
              "  the emulated Cortex-M0 and M4 (QEMU). test acc: the mean over the recorded default training runs",
              "  (their count in brackets).", ""]
    lines.extend(f"{a.name:<16}{a.summary}" for a in ARCH_SPECS.values() if any(r["name"] == a.name for r in listed))
    return "\n".join(lines)
