"""The bench worker: one format in a process of its own, loaded once, timing windows when asked.

Each format runs in its own process with the same thread count: ONNX Runtime's spinning threads and
torch's pool slow each other down when they share a process (onnxruntime issue #13808), and a process
per format makes its peak RSS its own. The worker loads its model through the registry, as check and
predict do, scores it on the test set, then answers requests on stdin, one JSON object a line:

    {"batch": 32, "seconds": 0.1, "min_calls": 5}  ->  {"times": [seconds per call, ...]}
    {"quit": true}                                 ->  {"peak_rss_mb": ...}, and it exits

Inputs are normalised once, outside the timed part. An ONNX worker never imports torch.
`python -m mnist_edge.verify.bench.worker SPEC_JSON` (run by `mnist-edge bench`).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from mnist_edge.core.cache import accuracy_key, recall, remember
from mnist_edge.core.errors import DataError, MnistEdgeError, first_line
from mnist_edge.core.fileio import size_of
from mnist_edge.verify.bench.stats import batch_of, time_calls

ACCURACY_BATCH = 256  # images per run() in the accuracy pass (not timed)


def rss_mb() -> float | None:
    """Resident memory of this process now (Linux), in MB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KB elsewhere


def _load(spec: dict):
    """(runtime, normalised test images, what the parent learns at start-up)."""
    from mnist_edge.core.data import has_any_data, load_split, resolve_data_dir
    from mnist_edge.core.formats import Format
    from mnist_edge.core.scores import accuracy, run_batched

    row = spec["row"]
    fmt = Format(**{**row, "batch_sizes": tuple(row["batch_sizes"]) if row["batch_sizes"] else None})
    path = Path(spec["path"])
    t0 = time.perf_counter()
    rt = fmt.load(path, spec["threads"])
    load_ms = 1e3 * (time.perf_counter() - t0)
    rss_loaded = rss_mb()
    root = resolve_data_dir(spec.get("data_dir"))
    if not has_any_data(root, rt.metadata.dataset):  # no download from a worker: it would import torch
        raise DataError(f"{root}: no {rt.metadata.dataset} test set here (set --data-dir or MNIST_EDGE_DATA)")
    split = load_split(root, "test", rt.metadata.dataset)
    x = rt.metadata.normalize(split.images)  # (N, 1, 28, 28) float32, once, outside the timing
    key = accuracy_key(path, fmt.loader, x, split.labels)
    known = recall(path.parent, "accuracy", key)  # what check (or an earlier bench) measured on these bytes
    remembered = known is not None and isinstance(known.get("accuracy"), float)
    if not remembered:
        logits = run_batched(rt, x, ACCURACY_BATCH)  # a fixed-batch runtime loops over its program's batch
        known = {"accuracy": accuracy(logits, split.labels), "by": "bench"}
        remember(path.parent, "accuracy", key, known)
    facts = {"format": fmt.name, "path": str(path), "size_bytes": size_of(path), "load_ms": load_ms,
             "accuracy": known["accuracy"], "accuracy_by": known.get("by") if remembered else None,
             "test_images": len(split),
             "rss_after_load_mb": rss_loaded, "torch_imported": "torch" in sys.modules,
             "threads": spec["threads"]}
    facts["footprint"] = rt.footprint()  # a microcontroller target's flash and RAM, where it has them
    return rt, x, facts


def serve(spec: dict, stdin=sys.stdin, stdout=sys.stdout) -> None:
    """Load, report, then answer timing requests until told to quit."""
    rt, x, facts = _load(spec)
    inputs: dict[int, object] = {}
    print(json.dumps({"ready": facts}), file=stdout, flush=True)
    for line in stdin:
        req = json.loads(line)
        if req.get("quit"):
            break
        bs = int(req["batch"])
        xb = inputs.setdefault(bs, batch_of(x, bs))
        times = time_calls(rt.run, xb, req["seconds"], req["min_calls"], req.get("warmup_s", 0.0),
                           req.get("warmup_calls", 0), req.get("max_seconds", float("inf")))
        print(json.dumps({"times": times.tolist()}), file=stdout, flush=True)
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}), file=stdout, flush=True)


def main(argv: list[str]) -> int:
    from mnist_edge.core.quiet import quiet_libraries
    from mnist_edge.core.threads import prefer_passive_waits

    prefer_passive_waits()  # before a runtime imports torch (the parent's setting, when it set one)

    if len(argv) != 1:
        print("usage: python -m mnist_edge.verify.bench.worker SPEC_JSON (run by `mnist-edge bench`)",
              file=sys.stderr)
        return 2
    quiet_libraries()
    try:
        serve(json.loads(argv[0]))
    except MnistEdgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except Exception as e:  # anything else a runtime raises: one line for the parent to report
        print(f"error: {type(e).__name__}: {first_line(e)}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
