"""Turn any image a person has into what an MNIST model was trained on, the way MNIST itself was made.

MNIST (LeCun et al.): each NIST digit, light ink on black, was scaled so that its longest side fits a
20x20 box (keeping the aspect ratio, anti-aliased), then pasted into 28x28 so that its intensity-weighted
centre of mass sits at the centre. `to_mnist` redoes exactly that for a photo, a scan or a drawing:
grayscale -> polarity (ink light on black) -> remove the paper -> crop to the ink -> 20-px box -> 28x28
by centre of mass. Mean/std normalisation is not done here: the caller applies the model's own metadata
(`mnist_edge.core.metadata.normalize`). numpy and Pillow only: this is on the light predict/serve path.
Decoding the file safely is edge/image.py's job; the array helpers are in edge/arrays.py.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from mnist_edge.core.metadata import INPUT_SHAPE
from mnist_edge.edge import arrays
from mnist_edge.edge.image import MAX_PIXELS, fail, load_image

CANVAS = INPUT_SHAPE[-1]  # 28: the model's input is CANVAS x CANVAS
DIGIT_BOX = 20  # MNIST: the digit's longest side is fitted in 20x20, its centre of mass centred in 28x28
# MNIST's centre of mass lies in [13.5, 14.5] (0-based pixel index; measured on the 10k test set), i.e.
# it was placed by an integer shift that brings the centre of mass to 14.
COM_TARGET = CANVAS / 2
COM_SLACK = 0.6  # a 28x28 MNIST-like digit whose centre of mass is this close to 14 is not moved

WORK_SIZE = 800  # big photos are analysed at this longest side (BOX-reduced): plenty for a 20-px result
MIN_CONTRAST = 12.0  # ink must stand this far (0..255) above the paper, else the image is blank
NOISE_SIGMAS = 4.0  # paper noise below this many robust sigmas is not ink
REL_THRESHOLD = 0.1  # nor is anything below 10% of the ink contrast (JPEG ringing, shading residue)
SPECK_FRACTION = 0.02  # ink separated from the digit at an edge, holding < 2% of its mass, is a speck
# Stroke width in 20-box pixels, 2*area/total-variation: MNIST's median is 2.0; measured after our own
# paper removal, 99.5% of MNIST test digits are above 1.0. A fine pen in a big image would shrink to a
# faint hairline: strokes under MIN_STROKE are thickened to MNIST's median first.
MIN_STROKE = 1.0
TARGET_STROKE = 2.0
FAST_BORDER = 16  # a 28x28 image whose border is darker than this is treated as MNIST-like


def preprocess(source: str | os.PathLike | bytes, name: str | None = None,
               max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """load_image + to_mnist: a path or bytes -> uint8 (28, 28), light ink on black."""
    return to_mnist(load_image(source, name, max_pixels))


def to_mnist(img: Image.Image) -> np.ndarray:
    """Any PIL image of one digit -> uint8 (28, 28), light ink (up to 255) on black (0), like MNIST.

    Steps: grayscale (alpha composited onto the paper), polarity (dark ink on light paper is
    inverted), a 28x28 MNIST-like image is returned as it is (re-centred at most), otherwise the
    paper is removed (local background, noise threshold), the ink is cropped, scaled to a 20-px box
    (thin strokes thickened) and pasted into 28x28 by its centre of mass. No ink -> all zeros.
    """
    gray = _to_gray(img)  # float32 (H, W), 0..255, at most WORK_SIZE on the long side
    gray = _ink_light(gray)
    if _mnist_like(gray):
        return _center(gray)
    ink = _remove_paper(gray)  # float32 (H, W), 0..1, exactly 0 on paper
    if ink is None:
        return np.zeros((CANVAS, CANVAS), np.uint8)
    ink = _crop_to_ink(ink)
    box = _fit_box(ink)  # float32 (h, w), max(h, w) == DIGIT_BOX
    if not box.max() > 0:
        return np.zeros((CANVAS, CANVAS), np.uint8)
    return _paste_by_com(box)


def _to_gray(img: Image.Image) -> np.ndarray:
    """Any mode -> float32 (H, W) in 0..255, transparency composited onto the paper colour."""
    img = _normalize_mode(img)
    img = _reduce(img)
    if img.mode == "LA":
        la = np.asarray(img, dtype=np.float32)  # (H, W, 2)
        return _composite(la[..., 0], la[..., 1] / 255.0)
    a = np.asarray(img, dtype=np.float32)
    if img.mode in ("I", "F"):
        a = _scale_range(a, img.mode)
    return a


def _normalize_mode(img: Image.Image) -> Image.Image:
    """Bring every Pillow mode to L, LA (with alpha), I (16/32-bit integers) or F (floats)."""
    mode = img.mode
    try:
        if mode in ("L", "F", "I"):
            if "transparency" in img.info and mode == "L":
                return img.convert("LA")  # a tRNS colour key: that gray level is transparent
            return img
        if mode.startswith("I;16") or mode.startswith("I;"):
            return img.convert("I")  # 16-bit: scaled to 0..255 by its actual range later
        if mode == "LAB":
            return img.getchannel("L")  # lightness is the gray level
        has_alpha = "A" in mode or "a" in mode or "transparency" in img.info
        if mode in ("LA", "La"):
            return img.convert("LA")
        if has_alpha:
            return img.convert("RGBA").convert("LA")  # L = ITU-R 601 luma, alpha kept
        if mode in ("1", "P", "RGB"):
            return img.convert("L")
        return img.convert("RGB").convert("L")  # CMYK, YCbCr, HSV, RGBX...
    except (ValueError, OSError) as e:
        raise fail(getattr(img, "filename", "") or "image", f"unsupported image mode {mode}",
                    e) from None


def _reduce(img: Image.Image) -> Image.Image:
    """Area-average big images down to WORK_SIZE: cheaper, and it averages away sensor noise."""
    w, h = img.size
    if max(w, h) <= WORK_SIZE:
        return img
    s = WORK_SIZE / max(w, h)
    # LA is resized with premultiplied alpha by Pillow, so transparent pixels do not bleed.
    return img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BOX)


def _scale_range(a: np.ndarray, mode: str) -> np.ndarray:
    """16/32-bit or float pixels -> 0..255 by their actual range (a 12-bit scan uses 0..4095)."""
    lo, hi = float(a.min()), float(a.max())
    if mode == "F" and lo >= 0 and hi <= 1:
        return a * 255.0  # float images in 0..1
    if lo >= 0 and hi <= 255:
        return a  # already 8-bit values
    lo = min(lo, 0.0)  # keep black black: scale by the maximum, not by the darkest pixel
    return (a - lo) * np.float32(255.0 / (hi - lo))


def _composite(lum: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Put a transparent image on its paper: the opaque border's colour, else what contrasts the ink.

    Transparent pixels' colour is meaningless (often black), so the paper is estimated: where the
    border is mostly opaque (a photo with an alpha channel), its median; where it is transparent
    (a drawing on a transparent canvas), white under dark ink and black under light ink.
    """
    border = arrays.border(lum.shape)
    opaque = alpha >= 0.5
    if opaque[border].mean() >= 0.5:
        paper = float(np.median(lum[border & opaque]))
    elif opaque.any():
        paper = 255.0 if float(np.average(lum, weights=alpha)) < 128 else 0.0
    else:
        paper = 255.0  # fully transparent: blank either way
    return alpha * lum + (1.0 - alpha) * np.float32(paper)


def _ink_light(gray: np.ndarray) -> np.ndarray:
    """Invert dark ink on light paper, so that ink is light on dark like MNIST.

    The paper is a smooth surface fitted to the image (so a strong gradient of light does not
    count as ink); the ink is whichever tail of the residual lies further from it (0.05th /
    99.95th percentile, so even a thin stroke on a big page counts). Comparing the two tails, not
    "is the paper lighter than 128", also handles dim photos of gray paper. An image with a black
    background (MNIST itself) has no dark tail and is never inverted.
    """
    lo, hi = np.percentile(gray - arrays.background(gray, ink="either"), [0.05, 99.95])
    if -lo > hi:
        return 255.0 - gray
    return gray


def _mnist_like(gray: np.ndarray) -> bool:
    """A 28x28 image that is already a centred MNIST digit: leave its pixels alone.

    MNIST itself (all 10k test digits): black border, longest side of the ink 19-20 px, centre of
    mass within half a pixel of 14. Re-running the crop/scale on it would only blur it.
    """
    if gray.shape != (CANVAS, CANVAS) or float(np.median(gray[arrays.border(gray.shape)])) > FAST_BORDER:
        return False
    peak = float(gray.max())
    if peak <= 2 * FAST_BORDER:
        return False  # blank or faint: the general path decides
    rows, cols = np.nonzero(gray > max(FAST_BORDER, 0.1 * peak))  # the ink, not the JPEG haze
    side = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1
    cy, cx = arrays.com(np.clip(gray - FAST_BORDER, 0, None))
    return (DIGIT_BOX - 3 <= side <= DIGIT_BOX + 1
            and max(abs(cy - COM_TARGET), abs(cx - COM_TARGET)) <= 1.5)


def _center(gray: np.ndarray) -> np.ndarray:
    """Shift a 28x28 image by whole pixels so its centre of mass is near 14 (a no-op on MNIST).

    MNIST's own centres of mass spread a little past 13.5..14.5 (13.48 in the training set):
    within COM_SLACK of 14 nothing moves, so every MNIST digit comes back bit for bit.
    """
    cy, cx = arrays.com(gray)
    dy, dx = (round(d) if abs(d) > COM_SLACK else 0 for d in (COM_TARGET - cy, COM_TARGET - cx))
    out = np.zeros_like(gray)
    h, w = gray.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        gray[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _remove_paper(gray: np.ndarray) -> np.ndarray | None:
    """Light-ink image -> ink 0..1 on exactly 0, or None when there is no ink.

    The paper's level is a smooth surface (uneven lighting of a photo), subtracted; big images
    are lightly smoothed (a few pixels, invisible at 20 px) against sensor noise and JPEG artefacts.
    Ink is what stands NOISE_SIGMAS above the paper's fine-scale noise and REL_THRESHOLD of the
    ink's contrast, *and* lies near a solid ink core (hysteresis: paper texture and shading
    residue far from any stroke are dropped). Ink is scaled from the paper level (0) to its solid
    core (1); above the threshold nothing is shifted, so anti-aliased edges keep their gray.
    """
    side = max(gray.shape)
    r = arrays.box_blur(gray - arrays.background(gray), side // 300)
    med = float(np.median(r))  # the paper, after subtracting its local level
    noise = arrays.fine_noise(r)
    contrast = float(np.percentile(r, 99.95)) - med  # 99.95: a thin stroke on a page still counts
    if contrast < max(MIN_CONTRAST, 2 * NOISE_SIGMAS * noise):
        return None  # nothing stands out of the paper and its noise: blank
    weak = r > med + max(NOISE_SIGMAS * noise, REL_THRESHOLD * contrast)
    strong = r > med + 0.5 * contrast
    near = arrays.window(strong.astype(np.uint8), 2 * max(1, side // 40) + 1, np.max) > 0
    mask = weak & near
    solid = float(np.percentile(r[mask], 90))  # the ink's solid level (mask holds `strong`)
    ink = np.clip((r - med) / max(solid - med, 1e-6), 0.0, 1.0)
    ink[~mask] = 0.0
    return ink.astype(np.float32)


def _crop_to_ink(ink: np.ndarray) -> np.ndarray:
    """Crop to the ink's bounding box, leaving out specks separated from the digit at the edges."""
    r0, r1 = _ink_span(ink.sum(1))
    c0, c1 = _ink_span(ink[r0:r1].sum(0))
    return ink[r0:r1, c0:c1]


def _ink_span(profile: np.ndarray) -> tuple[int, int]:
    """[start, stop) of the inked rows (or columns), dropping small inked runs at either end.

    A run is a stretch of consecutive inked rows; an end run holding under SPECK_FRACTION of the
    ink and separated from the rest by empty rows is a speck of dirt or noise, not part of the digit.
    """
    inked = profile > 0
    edges = np.flatnonzero(np.diff(np.concatenate(([0], inked.astype(np.int8), [0]))))
    runs = list(zip(edges[::2], edges[1::2], strict=True))  # [start, stop) of each run of inked rows
    total = float(profile.sum())
    mass = [float(profile[a:b].sum()) for a, b in runs]
    i, j = 0, len(runs) - 1
    while i < j and (mass[i] < SPECK_FRACTION * total or mass[j] < SPECK_FRACTION * total):
        if mass[i] <= mass[j]:
            i += 1
        else:
            j -= 1
    return int(runs[i][0]), int(runs[j][1])


def _stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width in pixels: 2 * area / total variation (the length of the ink's edges)."""
    tv = np.abs(np.diff(ink, axis=0)).sum() + np.abs(np.diff(ink, axis=1)).sum()
    # Ink touching the crop's edge has its edge there too.
    tv += ink[0].sum() + ink[-1].sum() + ink[:, 0].sum() + ink[:, -1].sum()
    return float(2.0 * ink.sum() / tv) if tv > 0 else 0.0


def _fit_box(ink: np.ndarray) -> np.ndarray:
    """Scale the cropped ink so its longest side is DIGIT_BOX, keeping the aspect ratio.

    Downsampling is BOX (area average: each output pixel is the ink's coverage, like an
    anti-aliased rendering), upsampling LANCZOS. Strokes that would end up thinner than MIN_STROKE
    pixels (a fine pen in a big image) are first thickened to TARGET_STROKE, as MNIST's are.
    """
    h, w = ink.shape
    side = max(h, w)
    if _stroke_width(ink) * DIGIT_BOX / side < MIN_STROKE:
        ink = _thicken(ink)
        h, w = ink.shape
        side = max(h, w)
    size = (max(1, round(w * DIGIT_BOX / side)), max(1, round(h * DIGIT_BOX / side)))  # (w, h)
    method = Image.Resampling.BOX if side >= DIGIT_BOX else Image.Resampling.LANCZOS
    box = np.asarray(Image.fromarray(ink.astype(np.float32)).resize(size, method), np.float32)
    box = np.clip(box, 0.0, 1.0)
    peak = float(box.max())
    # MNIST digits all reach 254-255: stretch a faint result to full ink.
    return box / peak if peak > 0 else box


def _thicken(ink: np.ndarray, scale: int = 4) -> np.ndarray:
    """Grow thin strokes to TARGET_STROKE (in 20-box pixels) with a grayscale dilation.

    Works at `scale` x the box (80 px): big crops are first max-pooled to it, which keeps hairlines
    at full ink where an average would fade them.
    """
    side = max(ink.shape)
    f = side // (DIGIT_BOX * scale)
    if f >= 2:
        pad = np.pad(ink, ((0, (-ink.shape[0]) % f), (0, (-ink.shape[1]) % f)))
        ink = pad.reshape(pad.shape[0] // f, f, pad.shape[1] // f, f).max(axis=(1, 3))
        side = max(ink.shape)
    target = TARGET_STROKE * side / DIGIT_BOX  # pixels at this scale
    k = int(round(target - _stroke_width(ink))) + 1
    if k < 2:
        return ink
    # Room for the strokes to grow outwards, then crop to the grown ink again.
    return _crop_to_ink(arrays.window(np.pad(ink, k), k, np.max))


def _paste_by_com(box: np.ndarray) -> np.ndarray:
    """Paste the 20-box digit into 28x28 with its centre of mass at 14 (whole pixels, like MNIST).

    The digit may move off the canvas centre to do so, but never past its edges.
    """
    h, w = box.shape
    cy, cx = arrays.com(box)
    top = min(max(round(COM_TARGET - cy), 0), CANVAS - h)
    left = min(max(round(COM_TARGET - cx), 0), CANVAS - w)
    out = np.zeros((CANVAS, CANVAS), np.float32)
    out[top:top + h, left:left + w] = box
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
