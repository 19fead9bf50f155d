"""Optional dependencies: the pip extras of pyproject.toml, the modules each brings, late, guarded imports.

pyproject.toml is the one list: the extras and their packages are read from it (in a source checkout)
or from the installed package's metadata, which pip writes from it. The Makefile's install line asks
this module for the extras (`python -m mnist_edge.core.deps`); `quiet` and the recorded versions
derive their package lists from here. A new format's extra is one entry in pyproject.toml.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import re
from pathlib import Path
from types import ModuleType

from mnist_edge.core.errors import MissingExtraError
from mnist_edge.core.quiet import quiet

PROJECT = "mnist-edge"
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"  # present in a source checkout only
BASE = ""  # extras()'s key for the base install's dependencies
# Import names that are not the distribution's name with "-" as "_". A package that is not installed
# cannot be asked which modules it brings, and the one-line hint is needed exactly then: stated here.
IMPORT_NAMES = {"pillow": ("PIL",), "python-multipart": ("multipart", "python_multipart")}
# Modules an extra brings through its packages' own dependencies (pyproject.toml does not name them):
# for the hint when one is missing, and for `quiet`.
INDIRECT = {"executorch": ("torchao",), "train": ("onnx_ir",), "litert-export": ("ai_edge_quantizer", "jax")}
# Base dependencies that neither make nor run models (the CLI, image decoding): not in recorded versions.
NOT_MODEL_PACKAGES = ("click", "pillow")
TOOL_EXTRAS = ("dev",)  # extras for developing mnist-edge, not for using it


def _name(requirement: str) -> str:
    """'torch>=2.4,!=2.13.0' -> 'torch' (PEP 508's name, normalised as pip compares names)."""
    return re.split(r"[\s\[<>=!~;@(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _toml_project(text: str) -> dict:
    """[project]'s name, dependencies and optional-dependencies from pyproject.toml's text.

    Read by pattern rather than with tomllib (about 20 ms to import, paid by every command that quiets
    warnings): these tables are plain arrays of strings; a test holds the result to tomllib's.
    """
    array = r'\[((?:[^\]"#]|"[^"]*"|#[^\n]*)*)\]'  # an array of strings; "]" may appear inside a string

    def table(section: str) -> str:
        body = re.search(rf"^\[{re.escape(section)}\][ \t]*\n(.*?)(?=^\[|\Z)", text, re.S | re.M)
        return body.group(1) if body else ""

    def arrays(body: str) -> dict[str, list[str]]:
        found = re.findall(rf"^([\w-]+)\s*=\s*{array}", body, re.M)
        return {key: re.findall(r'"([^"]*)"', re.sub(r"#[^\n]*", "", items)) for key, items in found}

    name = re.search(r'^name\s*=\s*"([^"]+)"', table("project"), re.M)
    return {"name": name and name.group(1), "dependencies": arrays(table("project")).get("dependencies", []),
            "optional-dependencies": arrays(table("project.optional-dependencies"))}


def _from_pyproject() -> dict[str, tuple[str, ...]] | None:
    try:
        project = _toml_project(PYPROJECT.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if project.get("name") != PROJECT:
        return None
    extras = {BASE: tuple(_name(r) for r in project.get("dependencies", []))}
    for extra, reqs in project.get("optional-dependencies", {}).items():
        extras[extra] = tuple(_name(r) for r in reqs)
    return extras


def _from_metadata() -> dict[str, tuple[str, ...]]:
    import importlib.metadata  # ~30 ms: only where pyproject.toml is not beside the package

    try:
        dist = importlib.metadata.distribution(PROJECT)
    except importlib.metadata.PackageNotFoundError:
        return {BASE: ()}
    extras: dict[str, list[str]] = {BASE: [], **{e: [] for e in dist.metadata.get_all("Provides-Extra") or []}}
    for req in dist.requires or []:
        m = re.search(r"""extra\s*==\s*["']([^"']+)["']""", req)
        extras.setdefault(m.group(1) if m else BASE, []).append(_name(req))
    return {k: tuple(v) for k, v in extras.items()}


@functools.cache
def extras() -> dict[str, tuple[str, ...]]:
    """{extra: the distributions it names}, in pyproject.toml's order; BASE ("") is the base install."""
    return _from_pyproject() or _from_metadata()


def extra_names() -> list[str]:
    """Every extra of pyproject.toml, in its order: what `make install` installs."""
    return [e for e in extras() if e != BASE]


def modules_of(dist: str) -> tuple[str, ...]:
    """The top-level modules a distribution brings."""
    return IMPORT_NAMES.get(dist, (dist.replace("-", "_"),))


def extra_modules(extra: str) -> tuple[str, ...]:
    """The top-level modules an extra brings: its packages' own, then the ones they bring along."""
    if extra not in extras():
        raise KeyError(f"{extra!r} is not an extra of pyproject.toml ({', '.join(extra_names())})")
    named = [m for d in extras()[extra] for m in modules_of(d)]
    return tuple(dict.fromkeys(named + list(INDIRECT.get(extra, ()))))


def extra_of(module: str) -> str | None:
    """The first extra (in pyproject.toml's order) that brings a top-level module; None if none does."""
    for extra in extra_names():
        if extra not in TOOL_EXTRAS and module in extra_modules(extra):
            return extra
    return None


def model_distributions() -> tuple[str, ...]:
    """The packages that make or run models: the base install's (but NOT_MODEL_PACKAGES) and those of every
    extra a format row names."""
    from mnist_edge.core.formats import FORMATS

    named = [x for f in FORMATS.values() for x in (f.export_extra, f.runtime_extra) if x]
    dists = [d for d in extras()[BASE] if d not in NOT_MODEL_PACKAGES]
    dists += [d for extra in dict.fromkeys(named) for d in extras().get(extra, ())]
    return tuple(dict.fromkeys(dists))


def missing_extra(e: ImportError) -> MissingExtraError | None:
    """The one-line MissingExtraError for an ImportError of an optional dependency, else None."""
    root = (e.name or "").split(".")[0]
    extra = extra_of(root)
    if extra is None:
        return None
    return MissingExtraError(f"this command needs {root}, which is not installed: install mnist-edge[{extra}]")


def require(module: str, extra: str | None = None, needed_for: str = "this command") -> ModuleType:
    """Import `module` or raise MissingExtraError naming the extra to install (default: the one that brings it)."""
    root = module.split(".")[0]
    try:
        with quiet():  # deprecation noise of torch.jit / torch.ao on import
            return importlib.import_module(module)
    except ImportError as e:
        extra = extra or extra_of((e.name or root).split(".")[0]) or extra_of(root) or "train"
        raise MissingExtraError(f"{needed_for} needs {root} ({e.name or module} is not installed): "
                                f"install mnist-edge[{extra}]") from None


def installed(extra: str | None) -> bool:
    """Whether an extra is installed: each of its packages' modules can be found (nothing is imported)."""
    if extra is None:
        return True
    return all(importlib.util.find_spec(m) is not None for d in extras()[extra] for m in modules_of(d)[:1])


def torch() -> ModuleType:
    """The torch module (or one line naming the extra)."""
    return require("torch")


if __name__ == "__main__":  # `python -m mnist_edge.core.deps`: the Makefile's `pip install -e '.[...]'`
    print(",".join(extra_names()))
