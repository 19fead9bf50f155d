"""Copy the three onnxruntime-web files the page needs out of node_modules, checked against ort-files.sha256.

    cd web/npm && npm ci --ignore-scripts     # onnxruntime-web 1.30.0, pinned by package-lock.json
    python3 web/fetch_ort.py                  # into mnist_edge/edge/static/ort/ (`make web-vendor` does both)

Only the wasm backend is shipped: ort.wasm.min.mjs (the API, an ES module), ort-wasm-simd-threaded.mjs
(the Emscripten loader it imports) and ort-wasm-simd-threaded.wasm (the runtime). The other builds in
dist/ (WebGPU, WebGL, JSPI, asyncify, the bundles) are 15-28 MB each and not needed for a 0.4 MB CNN.
A file whose hash is not the pinned one is refused, so a registry or lockfile change cannot slip a
different runtime into the page unnoticed. Stdlib only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PINNED = HERE / "ort-files.sha256"
DIST = HERE / "npm" / "node_modules" / "onnxruntime-web" / "dist"
DEST = HERE.parent / "mnist_edge" / "edge" / "static" / "ort"  # what serve and `export --format web` use


def pinned_hashes(path: Path = PINNED) -> dict[str, str]:
    """{file name: sha256} from a `sha256sum` listing ('HASH  NAME' per line)."""
    hashes = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            hashes[name.strip()] = digest.lower()
    return hashes


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check(folder: Path, hashes: dict[str, str]) -> list[str]:
    """The problems with `folder`'s copies of the pinned files (missing or another hash); [] when all match."""
    problems = []
    for name, digest in hashes.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        actual = sha256(path)
        if actual != digest:
            problems.append(f"{path}: sha256 {actual}, pinned {digest}")
    return problems


def fetch(dest: Path, dist: Path = DIST, hashes: dict[str, str] | None = None) -> dict[str, int]:
    """Copy the pinned files from `dist` into `dest` after checking them; returns {name: size in bytes}."""
    hashes = pinned_hashes() if hashes is None else hashes
    problems = check(dist, hashes)
    if problems:
        raise SystemExit("onnxruntime-web files do not match web/ort-files.sha256 "
                         "(run `npm ci --ignore-scripts` in web/npm/):\n  " + "\n  ".join(problems))
    dest.mkdir(parents=True, exist_ok=True)
    for name in hashes:
        tmp = dest / f".{name}.tmp"  # then renamed: a reader never sees half a file
        shutil.copyfile(dist / name, tmp)
        tmp.replace(dest / name)
    return {name: (dest / name).stat().st_size for name in hashes}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", type=Path, default=DEST, help="where the files go")
    ap.add_argument("--dist", type=Path, default=DIST, help="onnxruntime-web's dist/ folder")
    args = ap.parse_args(argv)
    for name, size in fetch(args.dest, args.dist).items():
        print(f"{size:>12,}  {args.dest / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
