"""Typed errors a user can cause; the CLI turns each into one clear line and a non-zero exit."""

from __future__ import annotations


class MnistEdgeError(Exception):
    """Base of every error the CLI reports as one line (exit code 1 unless a subclass says otherwise)."""

    exit_code = 1


class DataError(MnistEdgeError):
    """A data file or folder is missing, corrupt or of the wrong shape."""


class ModelFileError(MnistEdgeError):
    """A checkpoint or exported model is missing, corrupt or not one of ours."""


class ImageError(MnistEdgeError):
    """An input image is missing, not an image, corrupt or too large.

    `kind` says which, for callers that map it (the server's HTTP status): "too_large" (more pixels
    than allowed), "unsupported" (not an image, or a format we do not decode), "invalid" (the rest).
    """

    def __init__(self, message: str, kind: str = "invalid"):
        super().__init__(message)
        self.kind = kind


class ExportError(MnistEdgeError):
    """An export could not be written or did not pass its verification."""


class ParityError(MnistEdgeError):
    """An exported model does not compute what the reference computes."""


class MissingExtraError(MnistEdgeError):
    """A command needs an optional dependency group that is not installed."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type when it has none): the detail of a one-line error."""
    text = str(e).strip()
    return text.splitlines()[0][:limit] if text else type(e).__name__
