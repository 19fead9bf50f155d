"""Array helpers of the preprocessing: masks, centre of mass, smoothing, the paper's level (numpy only)."""

from __future__ import annotations

import numpy as np


def border(shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of the outer ring, 2% of the short side wide (at least one pixel)."""
    h, w = shape
    b = max(1, round(0.02 * min(h, w)))
    mask = np.ones((h, w), bool)
    mask[b:h - b, b:w - b] = False
    return mask


def com(a: np.ndarray) -> tuple[float, float]:
    """Intensity-weighted centre of mass (row, col) in pixel-index coordinates; a must not be blank."""
    m = a.sum()
    ys = np.arange(a.shape[0], dtype=np.float64)
    xs = np.arange(a.shape[1], dtype=np.float64)
    return float(a.sum(1) @ ys / m), float(a.sum(0) @ xs / m)


def box_blur(a: np.ndarray, k: int) -> np.ndarray:
    """Mean over a (2k+1) x (2k+1) window (edge-padded); k = 0 returns `a`."""
    if k <= 0:
        return a
    n = 2 * k + 1
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (k + 1, k)
        c = np.cumsum(np.pad(a, pad, mode="edge"), axis=axis, dtype=np.float64)
        a = (np.take(c, range(n, c.shape[axis]), axis=axis)
             - np.take(c, range(0, c.shape[axis] - n), axis=axis)) / n
    return a.astype(np.float32)


def fine_noise(a: np.ndarray) -> float:
    """Robust sigma of pixel noise, from neighbour differences: blind to slow shading and to ink,
    which only the few pixels on stroke edges see."""
    d = np.diff(a, axis=1).ravel()
    if d.size == 0:
        return 0.0
    return 1.4826 * float(np.median(np.abs(d - np.median(d)))) / np.sqrt(2.0)


def background(gray: np.ndarray, ink: str = "light", cells: int = 16) -> np.ndarray:
    """The paper's level under the ink: a smooth quadratic surface fitted to a grid of cell medians.

    The image is cut into about `cells` cells along its long side; each cell's median is the paper
    there, unless ink covers most of it. A quadratic in (x, y) follows a light gradient and
    vignetting (also where they rise towards the image's edges). It is fitted to border cells
    first, then to every cell that does not stand out of it (above it for "light" ink, on either
    side when the ink may be "either"), until that set settles: a bold digit that covers most of
    the image does not lift the paper.
    """
    h, w = gray.shape
    c = max(1, -(-max(h, w) // cells))  # cell side, pixels
    gh, gw = -(-h // c), -(-w // c)
    padded = np.pad(gray, ((0, gh * c - h), (0, gw * c - w)), mode="edge")
    grid = np.median(padded.reshape(gh, c, gw, c).transpose(0, 2, 1, 3).reshape(gh, gw, c * c),
                     axis=2).ravel()
    # Cell centres, in pixels, scaled to about -1..1 for a well-conditioned fit.
    yc, xc = np.meshgrid((np.arange(gh) + 0.5) * c, (np.arange(gw) + 0.5) * c, indexing="ij")
    scale = max(h, w) / 2.0
    basis = lambda y, x: np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1)  # noqa: E731
    a = basis((yc.ravel() - h / 2) / scale, (xc.ravel() - w / 2) / scale)
    # Start from the paper most likely to be bare: the ring of border cells, less its lighter half
    # (light ink touching the edge) or, when the ink may be either, less both its quarters.
    ring = border((gh, gw)).ravel()
    q25, q50, q75 = np.percentile(grid[ring], [25, 50, 75])
    keep = ring & ((grid <= q50) if ink == "light" else (grid >= q25) & (grid <= q75))
    coef = np.zeros(6)
    for _ in range(6):
        if keep.sum() < 6:
            break
        coef = np.linalg.lstsq(a[keep], grid[keep], rcond=None)[0]
        err = grid - a @ coef
        spread = 1.4826 * float(np.median(np.abs(err[keep])))
        tol = max(3.0 * spread, 2.0)
        # Light ink lies above the paper (shadows below it are paper); ink of either kind may not.
        new = err <= tol if ink == "light" else np.abs(err) <= tol
        if (new == keep).all():
            break
        keep = new
    if keep.sum() < 6:  # (nearly) every cell inked: a flat paper at the darkest cells' level
        return np.full((h, w), float(np.percentile(grid, 10)), np.float32)
    ys = ((np.arange(h, dtype=np.float64) - h / 2 + 0.5) / scale)[:, None]
    xs = ((np.arange(w, dtype=np.float64) - w / 2 + 0.5) / scale)[None, :]
    bg = (coef[0] + coef[1] * xs + coef[2] * ys + coef[3] * xs * xs + coef[4] * xs * ys
          + coef[5] * ys * ys)
    return bg.astype(np.float32)


def window(a: np.ndarray, k: int, reduce) -> np.ndarray:
    """Min or max over a k x k window (edge-padded): separable, with numpy's sliding windows."""
    lo, hi = k // 2, k - 1 - k // 2
    a = np.pad(a, ((lo, hi), (0, 0)), mode="edge")
    a = reduce(np.lib.stride_tricks.sliding_window_view(a, k, axis=0), axis=-1)
    a = np.pad(a, ((0, 0), (lo, hi)), mode="edge")
    return reduce(np.lib.stride_tricks.sliding_window_view(a, k, axis=1), axis=-1)
