"""Hand-drawn-like strokes of the ten digits, shared by the preprocessing and the browser tests.

Each digit is a list of strokes, each stroke a polyline in 0..1 canvas coordinates (x right, y down),
drawn the way a person writes it; `render` draws them with Pillow as the page's canvas does.
"""

from __future__ import annotations

import math

from PIL import Image, ImageDraw

Stroke = list[tuple[float, float]]


def arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, n: int = 24) -> Stroke:
    """Points on an ellipse from angle `start` to `end` (degrees, 0 = right, 90 = down)."""
    return [(cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
            for a in (start + (end - start) * i / n for i in range(n + 1))]


DIGITS: dict[str, list[Stroke]] = {
    "0": [arc(0.5, 0.5, 0.2, 0.31, -90, 270)],
    "1": [[(0.44, 0.26), (0.55, 0.17), (0.55, 0.83)]],
    "2": [arc(0.5, 0.33, 0.17, 0.15, 190, 380, 12) + [(0.3, 0.8), (0.72, 0.8)]],
    "3": [arc(0.48, 0.32, 0.16, 0.14, 200, 450, 12) + arc(0.48, 0.64, 0.19, 0.18, -90, 150, 12)],
    "4": [[(0.58, 0.17), (0.28, 0.6), (0.75, 0.6)], [(0.6, 0.38), (0.6, 0.85)]],
    "5": [[(0.68, 0.18), (0.36, 0.18), (0.33, 0.46)] + arc(0.49, 0.63, 0.19, 0.18, -120, 150, 14)],
    "6": [[(0.62, 0.16), (0.47, 0.28), (0.37, 0.45)] + arc(0.5, 0.66, 0.16, 0.17, 180, 540, 18)],
    "7": [[(0.27, 0.2), (0.73, 0.2), (0.43, 0.84)]],
    "8": [arc(0.5, 0.31, 0.14, 0.14, 90, 450), arc(0.5, 0.66, 0.17, 0.18, -90, 270)],
    "9": [arc(0.5, 0.33, 0.16, 0.15, 0, 360) + [(0.64, 0.55), (0.6, 0.84)]],
}


def render(strokes: list[Stroke], size: int = 280, width: int = 22, ink: int | tuple = 255,
           paper: int | tuple = 0, mode: str = "L", scale: float = 1.0,
           shift: tuple[float, float] = (0.0, 0.0)) -> Image.Image:
    """The strokes drawn with round ends and joints; `scale` about the centre, then `shift` (0..1 units)."""
    img = Image.new(mode, (size, size), paper)
    d = ImageDraw.Draw(img)
    for stroke in strokes:
        pts = [(((x - 0.5) * scale + 0.5 + shift[0]) * size, ((y - 0.5) * scale + 0.5 + shift[1]) * size)
               for x, y in stroke]
        d.line(pts, fill=ink, width=width, joint="curve")
        r = width / 2  # round caps: Pillow's lines end square
        for x, y in (pts[0], pts[-1]):
            d.ellipse((x - r, y - r, x + r, y + r), fill=ink)
    return img
