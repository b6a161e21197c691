"""Classical tissue detection on a low-resolution overview of a slide.

Steps (all on an RGB overview at ``TissueParams.mpp`` µm/px, default 8):

1. **Pen marks and black areas** are found first: pixels whose HSV hue lies in ``pen_hue`` (green, cyan and
   blue, 60-235 degrees, where H&E stains have no colour) with saturation above ``pen_saturation``, or whose
   value (brightness) is below ``black_value`` (black marker, scanner borders). The pen mask is dilated by
   ``pen_dilate_um`` so that the pale rims of strokes go too.
2. **Tissue** is what remains with saturation above an Otsu threshold computed on the saturation of the
   non-pen pixels, clamped to ``[min_saturation, max_saturation]`` (so an all-white slide gives no tissue and an
   all-tissue slide is not split in two), and with optical density (mean over RGB of ``-log10(I/255)``) above
   ``min_od`` (rejects faint colour casts of the glass).
3. **Cleaning**: binary closing with a disk of ``close_um``, removal of objects smaller than
   ``min_area_um2`` and filling of holes smaller than ``max_hole_um2``.

Red and dark-purple pen marks overlap H&E colours and are not reliably excluded; that is a limit of classical
methods.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger("pathseg.slides")


@dataclass
class TissueParams:
    """Parameters of :func:`detect_tissue` (lengths in µm, areas in µm²).

    Args:
        mpp: Resolution of the overview the mask is computed on.
        min_saturation: Lower clamp of the Otsu saturation threshold.
        max_saturation: Upper clamp of the Otsu saturation threshold.
        min_od: Minimum mean optical density of tissue.
        pen_hue: Hue range in degrees treated as pen ink when saturated.
        pen_saturation: Saturation above which a pen-hued pixel is ink.
        black_value: HSV value below which a pixel is black ink or border.
        pen_dilate_um: Dilation of the pen mask.
        close_um: Radius of the closing disk.
        min_area_um2: Smallest tissue object kept.
        max_hole_um2: Largest hole filled.
    """

    mpp: float = 8.0
    min_saturation: float = 0.05
    max_saturation: float = 0.15
    min_od: float = 0.03
    pen_hue: tuple[float, float] = (60.0, 235.0)
    pen_saturation: float = 0.25
    black_value: float = 0.16
    pen_dilate_um: float = 16.0
    close_um: float = 16.0
    min_area_um2: float = 20000.0
    max_hole_um2: float = 40000.0


def _otsu(values: np.ndarray) -> float:
    from skimage.filters import threshold_otsu

    if values.size == 0 or float(values.max()) - float(values.min()) < 1e-6:
        return float(values.max()) if values.size else 1.0
    return float(threshold_otsu(values))


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return np.asarray(xx**2 + yy**2 <= radius**2)


def _remove_small(mask: np.ndarray, min_pixels: float, border_kept: bool = False) -> np.ndarray:
    """Drop 8-connected components with fewer than ``min_pixels`` pixels (those touching the border are kept
    when ``border_kept``, so that background connected to the slide edge is never filled as a hole)."""
    from scipy import ndimage as ndi

    if min_pixels <= 0 or not mask.any():
        return mask
    labels, n = ndi.label(mask, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_pixels
    if border_kept:
        edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        keep[edge] = True
    keep[0] = False
    return np.asarray(keep[labels])


def pen_mask(rgb: np.ndarray, params: TissueParams) -> np.ndarray:
    """Boolean mask of pen ink (green/cyan/blue, saturated) and black areas, before dilation."""
    from skimage.color import rgb2hsv

    hsv = rgb2hsv(rgb)
    hue = hsv[..., 0] * 360.0
    lo, hi = params.pen_hue
    coloured = (hue >= lo) & (hue <= hi) & (hsv[..., 1] > params.pen_saturation)
    black = hsv[..., 2] < params.black_value
    return np.asarray(coloured | black)


def detect_tissue(rgb: np.ndarray, params: TissueParams | None = None) -> np.ndarray:
    """Boolean tissue mask of an RGB overview taken at ``params.mpp`` µm/px.

    Returns an all-false mask (and logs a warning) when nothing looks like tissue.
    """
    from scipy import ndimage as ndi
    from skimage.color import rgb2hsv

    p = params or TissueParams()
    px = p.mpp
    rgbf = rgb.astype(np.float32)
    sat = rgb2hsv(rgb)[..., 1]
    od = (-np.log10(np.clip(rgbf, 1.0, 255.0) / 255.0)).mean(axis=2)
    pen = pen_mask(rgb, p)
    r_pen = max(round(p.pen_dilate_um / px), 0)
    if pen.any() and r_pen:
        pen = ndi.binary_dilation(pen, structure=_disk(r_pen))
    candidates = sat[~pen]
    thr = float(np.clip(_otsu(candidates), p.min_saturation, p.max_saturation))
    tissue = (sat > thr) & (od > p.min_od) & ~pen
    r_close = max(round(p.close_um / px), 0)
    if r_close:
        padded = np.pad(tissue, r_close)  # closing without border effects
        tissue = ndi.binary_closing(padded, structure=_disk(r_close))[r_close:-r_close, r_close:-r_close] & ~pen
    tissue = _remove_small(tissue, p.min_area_um2 / px**2)
    background = _remove_small(~tissue & ~pen, p.max_hole_um2 / px**2, border_kept=True)  # small holes dropped
    tissue = ~background & ~pen
    return np.asarray(tissue, dtype=bool)


def integral(mask: np.ndarray) -> np.ndarray:
    """Summed-area table with a zero first row/column: ``S[i, j] = mask[:i, :j].sum()``."""
    s = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), np.float64)
    s[1:, 1:] = np.cumsum(np.cumsum(mask.astype(np.float64), axis=0), axis=1)
    return s


def _sample(s: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of a summed-area table: exact area sums of a piecewise-constant mask."""
    y = np.clip(y, 0, s.shape[0] - 1)
    x = np.clip(x, 0, s.shape[1] - 1)
    y0 = np.minimum(np.floor(y).astype(int), s.shape[0] - 2)
    x0 = np.minimum(np.floor(x).astype(int), s.shape[1] - 2)
    fy, fx = y - y0, x - x0
    return (s[y0, x0] * (1 - fy) * (1 - fx) + s[y0 + 1, x0] * fy * (1 - fx) + s[y0, x0 + 1] * (1 - fy) * fx
            + s[y0 + 1, x0 + 1] * fy * fx)


def box_fractions(s: np.ndarray, x0: np.ndarray, y0: np.ndarray, size: np.ndarray | float) -> np.ndarray:
    """Fraction of mask area inside square boxes (mask-pixel coordinates, fractional), from its table ``s``."""
    x1, y1 = x0 + size, y0 + size
    area = _sample(s, y1, x1) - _sample(s, y0, x1) - _sample(s, y1, x0) + _sample(s, y0, x0)
    return np.clip(area / np.maximum(np.asarray(size, np.float64) ** 2, 1e-12), 0.0, 1.0)
