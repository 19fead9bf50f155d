"""Cold start of `mnist-edge predict digit.png` as a whole process, with the default ONNX model.

Goal (the edge footprint): <= 0.6 s wall and <= 120 MB peak RSS on a 2-core machine. Each run is a
fresh interpreter started by a tiny launcher that reports its child's wall time and peak RSS
(RUSAGE_CHILDREN of the launcher holds only that child). Writes ARTIFACTS/predict_cold_start.json.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mnist_edge.core.fileio import write_json

RUNS = int(os.environ.get("MNIST_EDGE_COLD_RUNS", "7"))
GOAL_WALL_S = 0.6
GOAL_RSS_MB = 120.0
LAUNCHER = (
    "import json, resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "wall = time.perf_counter() - t\n"
    "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"  # KB on Linux
    "print(json.dumps({'wall_s': wall, 'peak_rss_mb': rss, 'rc': r.returncode, 'out': r.stdout.strip(),"
    " 'err': r.stderr.strip()}))\n"
)


def predict_command() -> list[str]:
    """The installed console script if there is one (what a user runs), else the module."""
    script = Path(sys.executable).with_name("mnist-edge")
    if script.is_file():
        return [str(script)]
    found = shutil.which("mnist-edge")
    return [found] if found else [sys.executable, "-m", "mnist_edge.cli"]


def test_predict_cold_start(tmp_path, artifacts, summary):
    digit = tmp_path / "digit.png"
    img = Image.new("L", (200, 240), 250)
    ImageDraw.Draw(img).line([(50, 48), (150, 48), (80, 204)], fill=10, width=14)  # a 7, dark on paper
    img.save(digit)
    runs = []
    for _ in range(RUNS):
        res = subprocess.run([sys.executable, "-c", LAUNCHER, *predict_command(), "predict", str(digit)],
                             capture_output=True, text=True, timeout=120, cwd=Path.cwd())
        runs.append(json.loads(res.stdout))
    assert all(r["rc"] == 0 for r in runs), runs[0]["err"]
    assert runs[0]["out"].startswith(f"{digit}: 7 ("), runs[0]["out"]
    walls = sorted(r["wall_s"] for r in runs[1:])  # the first run also warms the page cache
    wall_p50 = float(np.median(walls))
    rss = max(r["peak_rss_mb"] for r in runs)
    result = {"runs": len(walls), "wall_s_p50": wall_p50, "wall_s_min": walls[0], "wall_s_max": walls[-1],
              "peak_rss_mb": rss, "goal_wall_s": GOAL_WALL_S, "goal_rss_mb": GOAL_RSS_MB,
              "goal_met": wall_p50 <= GOAL_WALL_S and rss <= GOAL_RSS_MB, "output": runs[0]["out"]}
    if artifacts.is_dir():
        write_json(artifacts / "predict_cold_start.json", result)
    verdict = "met" if result["goal_met"] else "NOT met"
    summary(f"predict cold start: {wall_p50:.3f} s wall (median of {len(walls)}; min {walls[0]:.3f}), "
            f"peak RSS {rss:.0f} MB (goal <= {GOAL_WALL_S} s, <= {GOAL_RSS_MB:.0f} MB: {verdict})")
    assert rss > 0 and wall_p50 > 0
