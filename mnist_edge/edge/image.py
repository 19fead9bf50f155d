"""Safe image decoding: any image a person or a client sends, opened only as far as it is safe to.

A security surface: inputs may come from the network. Only raster formats an MNIST digit needs are
decoded, the pixel count is checked before decoding (decompression bombs), the data is verified, and
every problem is one ImageError line "NAME: problem". numpy-free; Pillow only.
"""

from __future__ import annotations

import io
import os
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from mnist_edge.core.errors import ImageError

MAX_PIXELS: int = 40_000_000  # decompression-bomb limit (width*height), checked before decoding

# Raster formats we decode. Others (EPS runs Ghostscript, PSD, WMF...) are refused: inputs may come
# from the network, and an MNIST digit never needs them.
_FORMATS = ("PNG", "JPEG", "MPO", "GIF", "BMP", "DIB", "TIFF", "WEBP", "PPM", "TGA", "ICO", "PCX",
            "QOI", "AVIF")


def fail(name: str, problem: str, detail: object = None, kind: str = "invalid") -> ImageError:
    """An ImageError of exactly one line, 'NAME: problem (detail)'."""
    text = f"{name}: {problem}"
    if detail is not None:
        lines = str(detail).strip().splitlines()
        if lines and lines[0].strip():
            text += f" ({lines[0].strip()[:200]})"
    return ImageError(text, kind)


def _allowed_formats() -> tuple[str, ...]:
    Image.init()  # registers every plugin; an unknown name in `formats` would be a KeyError
    return tuple(f for f in _FORMATS if f in Image.OPEN)


def _open_checked(fp, name: str, max_pixels: int) -> Image.Image:
    """Image.open (header only) and refuse too many pixels before anything is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "possibly corrupt EXIF" etc.: not the user's business
            # Pillow only warns up to twice its own limit; a warning must refuse the image too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp, formats=_allowed_formats())
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Over Pillow's own limit (89 Mpx); the size is not known here.
        limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
        raise fail(name, f"image too large: more than {limit:,} pixels "
                          "(a possible decompression bomb, refused before decoding)", kind="too_large") from None
    except UnidentifiedImageError:
        raise fail(name, _identify(fp), kind="unsupported") from None
    except Exception as e:  # a plugin choking on a broken header: SyntaxError, struct.error, ...
        raise fail(name, "corrupt image header", e) from None
    w, h = img.size
    if w * h > max_pixels:
        raise fail(name, f"image too large: {w} x {h} = {w * h:,} pixels "
                          f"(limit {max_pixels:,})", kind="too_large")
    if w == 0 or h == 0:
        raise fail(name, f"empty image ({w} x {h} pixels)")
    return img


def _identify(fp) -> str:
    """Why Image.open refused it: a format we do not decode, or not an image at all."""
    try:
        fp.seek(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fmt = Image.open(fp).format  # header only: no plugin decodes anything here
        return f"unsupported image format {fmt} (use PNG, JPEG, BMP, GIF, TIFF or WebP)"
    except Exception:
        return "not an image (or a format Pillow cannot read)"


def _decode(fp, name: str, max_pixels: int) -> Image.Image:
    """Open, verify, decode and EXIF-transpose one image from a seekable binary file."""
    img = _open_checked(fp, name, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.verify()  # checksums and structure (PNG CRCs), without decoding pixels
    except Exception as e:
        raise fail(name, "corrupt or truncated image", e) from None
    fp.seek(0)  # verify() leaves the image unusable: open again to decode
    img = _open_checked(fp, name, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Truncated File Read" / EXIF warnings
            img.load()
    except Exception as e:  # OSError "image file is truncated", decoder errors, MemoryError...
        raise fail(name, "corrupt or truncated image", e) from None
    try:
        return ImageOps.exif_transpose(img)  # camera photos: rotate as the camera was held
    except Exception:  # a corrupt EXIF block must not refuse an image that decodes fine
        return img.copy()


def load_image(source: str | os.PathLike | bytes, name: str | None = None,
               max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open, verify and EXIF-transpose an image from a path or from raw bytes (stdin, an HTTP body).

    `name` is what error messages call the image (default: the path, or "<stdin>" for bytes).
    Every problem (missing path, directory, empty file, not an image, truncated or corrupt data,
    unsupported format, more than `max_pixels` pixels) raises `ImageError` with one line
    "NAME: problem". The returned image is fully decoded and no longer tied to any file.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        name = "<stdin>" if name is None else name
        data = bytes(source)
        if not data:
            raise fail(name, "empty input (0 bytes)")
        return _decode(io.BytesIO(data), name, max_pixels)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"load_image needs a path or bytes, not {type(source).__name__}")
    path = os.fspath(source)
    name = str(path) if name is None else name
    try:
        if os.path.isdir(path):
            raise fail(name, "is a directory, not an image file")
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0 and not f.peek(1):  # peek: pipes report size 0
                raise fail(name, "empty file (0 bytes)")
            return _decode(f, name, max_pixels)
    except (FileNotFoundError, NotADirectoryError):
        raise fail(name, "no such file") from None
    except PermissionError:
        raise fail(name, "permission denied") from None
    except IsADirectoryError:
        raise fail(name, "is a directory, not an image file") from None
    except OSError as e:  # EIO, ENAMETOOLONG...: a read error, not a decoding error
        raise fail(name, "cannot read the file", e.strerror or e) from None
    except ValueError as e:  # e.g. an embedded NUL byte in the path
        raise fail(name, "invalid path", e) from None
