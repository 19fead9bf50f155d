"""preprocess: any image -> an MNIST-like 28x28 digit; every bad input -> one ImageError line.

Every image is drawn here, small, with PIL/numpy; nothing is read from the repository.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnist_edge.core.errors import ImageError
from mnist_edge.edge.preprocess import DIGIT_BOX, MAX_PIXELS, load_image, preprocess, to_mnist

from .conftest import needs_real_data

CENTRE = 14.0  # MNIST's centre of mass lies in [13.5, 14.5]


# ------------------------------------------------------------------------------------- helpers

def seven(size=(400, 300), at=(150, 60), width=25, ink=0, paper=255) -> Image.Image:
    """A '7' (two strokes, no anti-aliasing), dark ink on light paper unless told otherwise."""
    im = Image.new("L", size, paper)
    d = ImageDraw.Draw(im)
    x, y = at
    d.line([(x, y), (x + 100, y)], fill=ink, width=width)
    d.line([(x + 100, y), (x + 40, y + 180)], fill=ink, width=width)
    return im


def zero(size=(200, 200), box=(20, 10, 90, 120), width=12, ink=0, paper=255) -> Image.Image:
    im = Image.new("L", size, paper)
    ImageDraw.Draw(im).ellipse(box, outline=ink, width=width)
    return im


def com(a: np.ndarray) -> tuple[float, float]:
    a = a.astype(np.float64)
    ys, xs = np.arange(a.shape[0]), np.arange(a.shape[1])
    return float(a.sum(1) @ ys / a.sum()), float(a.sum(0) @ xs / a.sum())


def bbox(a: np.ndarray) -> tuple[int, int]:
    """(height, width) of the nonzero pixels."""
    rows, cols = np.nonzero(a)
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def border(a: np.ndarray) -> np.ndarray:
    return np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])


def diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def png_bytes(im: Image.Image) -> bytes:
    b = io.BytesIO()
    im.save(b, "PNG")
    return b.getvalue()


def assert_mnist_like(out: np.ndarray) -> None:
    """The output contract: uint8 (28, 28), full-bright ink on a black border, fitted and centred."""
    assert out.dtype == np.uint8 and out.shape == (28, 28)
    assert out.max() == 255
    assert border(out).max() == 0
    assert DIGIT_BOX - 1 <= max(bbox(out)) <= DIGIT_BOX
    cy, cx = com(out)
    assert abs(cy - CENTRE) <= 1.0 and abs(cx - CENTRE) <= 1.0


def assert_one_line(exc: pytest.ExceptionInfo, name: str, *words: str) -> None:
    msg = str(exc.value)
    assert msg.startswith(f"{name}: "), msg
    assert "\n" not in msg, msg
    for w in words:
        assert w in msg, msg


# ------------------------------------------------------------------------------ the geometry

def test_dark_ink_on_white_becomes_light_on_black():
    out = to_mnist(seven())
    assert_mnist_like(out)
    assert 0.05 < (out > 127).mean() < 0.35  # a stroke, not a filled box nor a speck
    # The same digit already light on black gives the same result: only polarity differed.
    assert diff(to_mnist(seven(ink=255, paper=0)), out) < 1.0


def test_off_centre_digit_is_fitted_and_centred_by_mass():
    out = to_mnist(zero(box=(5, 5, 75, 115)))  # in the top-left corner of 200x200
    assert_mnist_like(out)
    h, w = bbox(out)
    assert h == DIGIT_BOX and 11 <= w <= 14  # aspect 70:110 kept


def test_a_7_is_centred_by_mass_not_by_box():
    out = to_mnist(seven(at=(20, 10)))
    assert_mnist_like(out)
    rows, _ = np.nonzero(out)
    # Its mass is high up (the bar), so the box sits lower than a box-centred 4..23.
    assert rows.min() >= 14 - DIGIT_BOX // 2 + 2


def test_large_thin_1_stays_thin():
    im = Image.new("L", (400, 300), 255)
    ImageDraw.Draw(im).line([(300, 40), (300, 260)], fill=0, width=20)
    out = to_mnist(im)
    assert_mnist_like(out)
    assert bbox(out) == (DIGIT_BOX, 2)  # 20x220 -> 2x20, not stretched to a square


def test_fine_pen_on_big_canvas_is_thickened_not_lost():
    out = to_mnist(seven(size=(800, 800), at=(300, 250), width=2))
    assert_mnist_like(out)
    assert (out > 127).sum() >= 30  # a 2-px line at 1/40 scale would otherwise be a faint haze


def test_speck_of_dirt_far_from_the_digit_is_ignored():
    clean = seven()
    dirty = clean.copy()
    ImageDraw.Draw(dirty).ellipse([380, 280, 386, 286], fill=0)
    assert diff(to_mnist(dirty), to_mnist(clean)) < 1.0


@pytest.mark.parametrize("blank", [
    Image.new("L", (100, 80), 255),
    Image.new("L", (28, 28), 0),
    Image.new("RGBA", (50, 50), (0, 0, 0, 0)),
    Image.fromarray(np.random.default_rng(0).normal(200, 8, (120, 160)).clip(0, 255)
                    .astype(np.uint8)),
], ids=["white", "black-28", "transparent", "noisy-paper"])
def test_blank_image_gives_zeros(blank):
    out = to_mnist(blank)
    assert out.dtype == np.uint8 and out.shape == (28, 28) and out.max() == 0


# ------------------------------------------------------------------------------ MNIST itself

def mnist_like_zero() -> np.ndarray:
    """A 28x28 '0' as MNIST has them: 20 px tall, centre of mass at 13.5, light on black."""
    im = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(im).ellipse([8, 4, 19, 23], outline=255, width=3)
    a = np.asarray(im)
    assert bbox(a) == (20, 12) and com(a) == (13.5, 13.5)
    return a


def test_already_mnist_image_goes_through_unchanged():
    m = mnist_like_zero()
    assert diff(to_mnist(Image.fromarray(m)), m) < 10  # the contract...
    assert np.array_equal(to_mnist(Image.fromarray(m)), m)  # ...and what the fast path does
    assert np.array_equal(to_mnist(Image.fromarray(255 - m)), m)  # an inverted one too


def test_own_output_is_a_fixed_point():
    out = to_mnist(seven())
    assert np.array_equal(to_mnist(Image.fromarray(out)), out)


def test_mnist_like_digit_shifted_in_28x28_is_recentred():
    m = mnist_like_zero()
    within = np.roll(np.roll(m, 1, axis=0), 1, axis=1)  # centre of mass 14.5: MNIST has those
    assert np.array_equal(to_mnist(Image.fromarray(within)), within)
    off = np.roll(np.roll(m, 2, axis=0), -1, axis=1)  # (15.5, 12.5): moved by whole pixels...
    assert np.array_equal(to_mnist(Image.fromarray(off)), np.roll(m, 1, axis=1))  # ...to 13.5/14.5
    far = np.roll(np.roll(m, 3, axis=0), -6, axis=1)  # (16.5, 7.5): refitted like any image
    assert np.array_equal(to_mnist(Image.fromarray(far)), m)
    small = np.zeros((28, 28), np.uint8)
    small[2:12, 2:8] = np.asarray(Image.fromarray(m[4:24, 8:20]).resize((6, 10)))
    assert_mnist_like(to_mnist(Image.fromarray(small)))  # a small digit in a corner: refitted


def test_upscaled_mnist_like_digit_comes_back_close():
    m = mnist_like_zero()
    out = to_mnist(Image.fromarray(m).resize((280, 280), Image.BILINEAR))
    assert_mnist_like(out)
    assert diff(out, m) < 15


@needs_real_data
@pytest.mark.slow
def test_real_mnist_test_set_as_png_comes_back_bit_for_bit():
    """The 10k test digits saved as PNG (and every 10th inverted) go through unchanged, so a
    model predicting from image files scores its test accuracy."""
    from mnist_edge.core.data import load_test_split

    images = load_test_split(os.environ["MNIST_EDGE_DATA"]).images
    changed = [i for i, a in enumerate(images)
               if not np.array_equal(preprocess(png_bytes(Image.fromarray(a))), a)]
    changed += [i for i, a in enumerate(images[::10])
                if not np.array_equal(to_mnist(Image.fromarray(255 - a)), a)]
    assert changed == []


# ------------------------------------------------------------------------------------ photos

def photo(seed: int = 1, ink=90, paper=130, noise=5.0, quality=80) -> bytes:
    """A dim JPEG photo: light from the right (x0.6..1), vignetting, sensor noise."""
    rng = np.random.default_rng(seed)
    a = np.asarray(seven(at=(210, 30), ink=ink, paper=paper), np.float32)
    yy, xx = np.mgrid[:300, :400]
    a = a * (1 - 0.15 * (((xx - 200) / 200) ** 2 + ((yy - 150) / 150) ** 2))
    a = (a + rng.normal(0, noise, a.shape)) * (0.6 + 0.4 * xx / 400)
    b = io.BytesIO()
    Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(b, "JPEG", quality=quality)
    return b.getvalue()


@pytest.mark.parametrize("ink,paper,noise,quality", [
    (90, 130, 5.0, 80),  # gray pencil on gray paper, ink darker than the lit paper on the left
    (150, 220, 6.0, 70),
    (40, 200, 20.0, 50),  # heavy noise, strong JPEG
])
def test_uneven_light_and_noisy_paper_give_a_clean_digit(ink, paper, noise, quality):
    out = preprocess(photo(1, ink, paper, noise, quality))
    assert_mnist_like(out)
    clean = to_mnist(seven(at=(210, 30)))
    inter = ((out > 64) & (clean > 64)).sum()
    union = ((out > 64) | (clean > 64)).sum()
    assert inter / union > 0.6  # the same 7, not the shading


# ------------------------------------------------------------------------------------- modes

def to_mode(im: Image.Image, mode: str) -> Image.Image:
    """The binary L drawing `im` in another mode, with the same picture."""
    a = np.asarray(im)
    if mode == "1":
        return im.convert("1", dither=Image.Dither.NONE)
    if mode == "P":
        return im.convert("RGB").convert("P")
    if mode == "P-transparent":  # the paper's palette entry is transparent (GIF-style)
        p = im.convert("RGB").convert("P")
        p.info["transparency"] = p.getpixel((0, 0))
        return p
    if mode == "I;16":
        return Image.fromarray(a.astype(np.uint16) * 257)
    if mode == "I;16-12bit":  # a 12-bit scan: 0..4095 in 16-bit pixels
        return Image.fromarray(a.astype(np.uint16) * 16)
    if mode == "I":
        return Image.fromarray(a.astype(np.int32) * 1000)
    if mode == "F":
        return Image.fromarray(a.astype(np.float32) / 255)
    if mode == "RGB-blue":  # blue ballpoint
        rgb = np.stack([a, a, np.full_like(a, 255)], axis=-1)
        return Image.fromarray(rgb)
    return im.convert(mode)


@pytest.mark.parametrize("mode", ["1", "P", "P-transparent", "RGB", "RGB-blue", "CMYK", "LA",
                                  "RGBA", "I;16", "I;16-12bit", "I", "F"])
def test_every_mode_gives_the_same_digit(mode):
    im = zero()
    ref = to_mnist(im)
    other = to_mode(im, mode)
    assert other.mode == mode.split("-")[0]
    out = to_mnist(other)
    assert_mnist_like(out)
    assert diff(out, ref) < 3


@pytest.mark.parametrize("ink_rgb", [(0, 0, 0), (255, 255, 255), (20, 40, 200)])
def test_rgba_on_transparent_background(ink_rgb):
    """Ink on a transparent canvas (whose invisible pixels are black): composited onto paper."""
    ref = to_mnist(zero())
    rgba = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
    ImageDraw.Draw(rgba).ellipse((20, 10, 90, 120), outline=ink_rgb + (255,), width=12)
    out = to_mnist(rgba)
    assert_mnist_like(out)
    assert diff(out, ref) < 3


def test_rgba_with_opaque_paper_uses_the_paper():
    rgba = zero().convert("RGBA")
    a = np.asarray(rgba).copy()
    a[90:110, 150:170, 3] = 0  # a transparent hole in the paper (colour black underneath)
    out = to_mnist(Image.fromarray(a))
    assert diff(out, to_mnist(zero())) < 3


# -------------------------------------------------------------------------------------- EXIF

@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation_is_applied(tmp_path, orientation):
    im = Image.new("L", (120, 60), 255)
    ImageDraw.Draw(im).line([(10, 30), (110, 30)], fill=0, width=10)  # a horizontal bar
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "phone.jpg"
    im.save(path, "JPEG", exif=exif, quality=95)
    loaded = load_image(path)
    assert loaded.size == (60, 120)
    assert loaded.getexif().get(0x0112, 1) == 1  # not applied twice by a later reader
    h, w = bbox(to_mnist(loaded))
    assert h == DIGIT_BOX and w <= 3  # now vertical


# -------------------------------------------------------------------------------- loading

def test_load_image_path_and_bytes(tmp_path):
    path = tmp_path / "seven.png"
    seven().save(path)
    from_path = preprocess(path)
    from_str = preprocess(str(path))
    from_bytes = preprocess(path.read_bytes())
    assert_mnist_like(from_path)
    assert np.array_equal(from_path, from_str) and np.array_equal(from_path, from_bytes)
    img = load_image(path)
    img.load()  # decoded and detached from the (closed) file
    assert img.size == (400, 300)


def test_missing_path(tmp_path):
    path = tmp_path / "nope.png"
    with pytest.raises(ImageError) as e:
        load_image(path)
    assert_one_line(e, str(path), "no such file")


def test_directory(tmp_path):
    with pytest.raises(ImageError) as e:
        load_image(tmp_path)
    assert_one_line(e, str(tmp_path), "directory")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageError) as e:
        load_image(path)
    assert_one_line(e, str(path), "empty")


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture\n" * 10)
    with pytest.raises(ImageError) as e:
        preprocess(path)
    assert_one_line(e, str(path), "not an image")


def noisy_png() -> bytes:
    a = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)  # incompressible
    return png_bytes(Image.fromarray(a))


def test_truncated_png(tmp_path):
    data = noisy_png()
    path = tmp_path / "half.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as e:
        preprocess(path)
    assert_one_line(e, str(path), "truncated")


@pytest.mark.parametrize("where", ["pixels", "crc"])
def test_corrupt_png(where):
    data = bytearray(noisy_png())
    iend = data.rindex(b"IEND")
    # A flipped byte inside IDAT's compressed pixels, or in its CRC (the pixels still inflate:
    # only verify() notices).
    data[len(data) // 2 if where == "pixels" else iend - 5] ^= 0xFF
    with pytest.raises(ImageError) as e:
        load_image(bytes(data), name="upload")
    assert_one_line(e, "upload", "corrupt")


def png_claiming(width: int, height: int) -> bytes:
    """A tiny valid PNG whose IHDR (CRC fixed) claims width x height: a decompression bomb."""
    data = bytearray(png_bytes(Image.new("L", (4, 4))))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.mark.parametrize("w,h", [
    (7_000, 7_000),  # 49 Mpx: over our limit, under Pillow's
    (10_000, 10_000),  # 100 Mpx: Pillow warns (DecompressionBombWarning)
    (30_000, 30_000),  # 900 Mpx: Pillow refuses (DecompressionBombError)
])
def test_bomb_is_refused_before_decoding(tmp_path, w, h):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(w, h))
    assert w * h > MAX_PIXELS
    with pytest.raises(ImageError) as e:
        preprocess(path)
    assert_one_line(e, str(path), "too large")


def test_max_pixels_argument():
    data = png_bytes(seven())  # 400 x 300 = 120,000 pixels
    with pytest.raises(ImageError) as e:
        preprocess(data, max_pixels=100_000)
    assert_one_line(e, "<stdin>", "too large", "120,000")
    assert preprocess(data, max_pixels=120_000).max() == 255


def test_bytes_errors_are_named_stdin_or_as_told():
    with pytest.raises(ImageError) as e:
        load_image(b"")
    assert_one_line(e, "<stdin>", "empty")
    with pytest.raises(ImageError) as e:
        load_image(b"GIF89a but not really")
    assert_one_line(e, "<stdin>")
    with pytest.raises(ImageError) as e:
        load_image(b"hello", name="body of POST /predict")
    assert_one_line(e, "body of POST /predict", "not an image")


def test_unsupported_format_is_named(tmp_path):
    path = tmp_path / "digit.xbm"
    seven().convert("1").save(path, "XBM")  # Pillow reads XBM, we do not
    with pytest.raises(ImageError) as e:
        load_image(path)
    assert_one_line(e, str(path), "unsupported image format XBM")


def test_import_is_light():
    """The predict path must not pay for torch (~3 s): numpy and Pillow only."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", "import mnist_edge.edge.preprocess"],
                       capture_output=True, text=True, check=True)
    modules = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in r.stderr.splitlines()
               if line.startswith("import time:")}
    assert not modules & {"torch", "torchvision", "onnx", "onnxruntime", "matplotlib"}
    total_us = int(next(line for line in r.stderr.splitlines()
                        if line.rstrip().endswith("mnist_edge.edge.preprocess")).split("|")[1])
    assert total_us < 1_000_000  # ~0.15 s on an idle machine; generous for busy CI
