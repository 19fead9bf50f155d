"""Silencing libraries, written once: their warnings, what they print, their C++ logs.

One switch for the warnings and prints: hidden from users, shown in CI (MNIST_EDGE_SHOW_WARNINGS=1).
torch.jit, torch.ao.quantization and the exporters warn about deprecations a user of this tool cannot
act on; CI sets the variable so that the developers see them before they turn into errors.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
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
def quiet(stdout: bool = False, stderr: bool = False, native: bool = False,
          loggers: tuple[str, ...] = ()) -> Iterator[None]:
    """Hide, unless showing(), the warnings raised inside the block and, on request, what libraries print:
    on Python's stdout or stderr, on file descriptor 2 from C++ (native), or through `loggers` below ERROR."""
    if showing():
        yield
        return
    with contextlib.ExitStack() as stack:
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        if stdout:
            stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        if stderr:
            stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
        if native:
            stack.enter_context(native_output_dropped())
        for name in loggers:
            import logging

            log = logging.getLogger(name)
            stack.callback(log.setLevel, log.level)
            log.setLevel(logging.ERROR)
        yield


@contextlib.contextmanager
def native_output_dropped() -> Iterator[None]:
    """Drop what C++ code prints on fd 2 meanwhile (converter and TFLM logging; Python's stderr too), always:
    a runtime's retries (TFLM's arena search) print lines that say nothing about the result."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


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
