"""One switch for the libraries' warnings: hidden from users, shown in CI (MNIST_EDGE_SHOW_WARNINGS=1).

torch.jit, torch.ao.quantization and the exporters warn about deprecations a user of this tool cannot
act on; CI sets the variable so that the developers see them before they turn into errors.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator

SHOW_ENV = "MNIST_EDGE_SHOW_WARNINGS"
ALSO_QUIET = ("copyreg",)  # torch's deprecations of pickled types are raised from the standard library's copyreg


def libraries() -> tuple[str, ...]:
    """Modules whose warnings the CLI hides process-wide (their deprecations are ours to handle, not the user's):
    those of every package that makes or runs models (core.deps), with what their extras bring along."""
    from mnist_edge.core import deps

    mods = [m for d in deps.model_distributions() for m in deps.modules_of(d)]
    mods += [m for extra in deps.INDIRECT.values() for m in extra]
    return tuple(dict.fromkeys(mods + list(ALSO_QUIET)))


def showing() -> bool:
    """Whether warnings should be shown (the CI setting)."""
    return os.environ.get(SHOW_ENV, "").strip() not in ("", "0")


@contextlib.contextmanager
def quiet(stdout: bool = False) -> Iterator[None]:
    """Hide warnings raised inside the block (and, with stdout=True, what libraries print), unless showing()."""
    if showing():
        yield
        return
    with warnings.catch_warnings(), \
            (contextlib.redirect_stdout(io.StringIO()) if stdout else contextlib.nullcontext()):
        warnings.simplefilter("ignore")
        yield


def hide_cpp_logs() -> None:
    """torch's C++ warnings bypass Python's filters and are read when torch is first imported: hide them
    before that (mnist_edge/__init__.py calls this), unless showing()."""
    if not showing():
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")


def quiet_libraries() -> None:
    """Process-wide: ignore the warnings that libraries() raise, unless showing()."""
    if showing():
        return
    hide_cpp_logs()
    for mod in libraries():
        warnings.filterwarnings("ignore", module=rf"{mod}(\..*)?")
