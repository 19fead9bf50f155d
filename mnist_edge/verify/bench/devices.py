"""`bench`'s emulated-device rows: the C model on QEMU Cortex-M boards, counted in instructions.

Host timings of an emulator say nothing about a device, so these rows are not timed: they give the
instructions per inference (the same on every run and host, see edge/runtimes/cortex_m.py), per layer,
the flash and RAM of the linked firmware (RAM: .data, .bss and the stack it reserves), and the stack the
run used (the firmware paints it and finds the high-water mark). A time in ms at a clock the user names is
an estimate from the instructions (one per cycle), labelled so.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from mnist_edge.core.errors import MnistEdgeError, first_line
from mnist_edge.core.formats import Format


def measure_devices(todo: list[tuple[Format, Path]], images: np.ndarray, clock_mhz: float | None,
                    say: Callable[[str], None] = lambda line: None) -> list[dict]:
    """One row per device format: its profile on `images` (normalised), or why it was skipped."""
    rows = []
    for fmt, path in todo:
        why = fmt.unavailable()
        if not why:
            try:
                p = fmt.load(path).profile(images)
            except MnistEdgeError as e:  # a firmware that does not build or run is reported, not raised
                why = first_line(e)
        if why:
            say(f"  {fmt.name:<17} skipped: {why}")
            rows.append({"format": fmt.name, "device": fmt.device, "skipped": why})
            continue
        if clock_mhz:
            p["clock_mhz"] = clock_mhz
            p["ms_estimate"] = p["instructions_mean"] / (clock_mhz * 1e3)  # at one instruction per cycle
        say(f"  {fmt.name:<17} {p['instructions_mean'] / 1e6:.2f} M instructions per inference (emulated), "
            f"firmware flash {p['flash_bytes'] / 1024:.1f} KB, RAM {p['ram_bytes'] / 1024:.1f} KB "
            f"(stack: {_stack(p)}); the model's own {_model(p)}")
        rows.append({"format": fmt.name, "device": fmt.device, **p})
    return rows


def _model(p: dict) -> str:
    """'13.2 KB / 3.3 KB': the model's own flash and RAM (without the runner), where measured."""
    if "model_flash_bytes" not in p:
        return "–"
    ram = p.get("model_ram_bytes", p.get("model_static_ram_bytes", 0))
    return f"{p['model_flash_bytes'] / 1024:.1f} KB / {ram / 1024:.1f} KB"


def _stack(p: dict) -> str:
    """'612 B used of 768 B reserved': the deepest the run's stack went (painted, measured), and the reserve."""
    used = p.get("stack_used_bytes")
    return (f"{used:,} B used of " if used is not None else "") + f"{p.get('stack_bytes', 0):,} B reserved"


def markdown(rows: list[dict], clock_mhz: float | None) -> list[str]:
    """bench.md's section of the emulated devices: a table per format and one per layer."""
    if not rows:
        return []
    done = [r for r in rows if not r.get("skipped")]
    est = f" | ms @{clock_mhz:g} MHz (estimate) |" if clock_mhz else " |"
    lines = ["", "Emulated Cortex-M (QEMU, `-icount shift=0`): instructions counted on the emulated core, "
             "not host time" + (f"; ms at {clock_mhz:g} MHz is an estimate from instructions at one per cycle"
                                if clock_mhz else ""), "",
             "| Format | board | instructions / inference (min-max) | images | flash KB | RAM KB | stack "
             "| the model's own flash / RAM" + est,
             "|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if clock_mhz else "")]
    for r in rows:
        if r.get("skipped"):
            lines.append(f"| {r['format']} | skipped: {r['skipped']} | | | | | | |" + (" |" if clock_mhz else ""))
            continue
        ms = f" {r['ms_estimate']:.2f} |" if clock_mhz else ""
        lines.append(f"| {r['format']} | {r['board']} | {r['instructions_mean'] / 1e6:.3f} M "
                     f"({r['instructions_min'] / 1e6:.3f}-{r['instructions_max'] / 1e6:.3f}) | {r['images']} | "
                     f"{r['flash_bytes'] / 1024:.1f} | {r['ram_bytes'] / 1024:.1f} | {_stack(r)} | {_model(r)} |{ms}")
    if done:
        names = [layer["name"] for layer in done[0]["layers"]]
        lines += ["", "| layer (instructions) | " + " | ".join(r["format"] for r in done) + " |",
                  "|---|" + "---:|" * len(done)]
        for i, name in enumerate(names):
            cells = [f"{r['layers'][i]['instructions']:,.0f}" if i < len(r["layers"]) else "–" for r in done]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines
