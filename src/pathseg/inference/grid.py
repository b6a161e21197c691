"""The window grid of one slide at the model's resolution, its tissue windows, bands and batches.

Model pixel ``(i, j)`` covers level-0 pixels from ``(j * ds, i * ds)`` with ``ds = model_mpp / slide_mpp``. Windows
start at :func:`~pathseg.tasks.sliding.window_starts` of each axis (stride ``floor(window * (1 - overlap))``, the
last one flush with the edge), exactly as ``evaluate``'s sliding window does on a whole image.

Windows are processed in row-major order. Once every window of grid row ``r`` is done, the model rows
``[ys[r], ys[r + 1])`` are final: they form **band** ``r`` (the last band reaches the bottom). A band is cut into
**cells** (tile blocks) every few window columns (``edges``, about ``cell`` pixels), so that nothing full-width needs
float32 memory: a cell is final as soon as the windows of its grid row have moved past its right edge. Cells are
the unit of blending, progress files and object tracing; bands are the unit of resuming. Batches are cut from the
global list of tissue windows, so a resumed run forms the same batches as an uninterrupted one (and gives
bit-identical numbers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pathseg.slides.tissue import box_fractions, integral
from pathseg.tasks.sliding import window_starts


@dataclass
class SlidePlan:
    """Grid of one slide.

    Args:
        width0: Level-0 width.
        height0: Level-0 height.
        ds: Level-0 pixels per model pixel.
        window: Window side (model pixels).
        stride: Step between windows.
        width: Model-resolution width.
        height: Model-resolution height.
        ys: Window row starts.
        xs: Window column starts.
        windows: Tissue windows ``[n, 3]`` as (grid row, y, x), row-major.
        mask: Tissue mask (boolean) at ``mask_ds`` level-0 pixels per mask pixel.
        mask_ds: Level-0 pixels per mask pixel.
        batch: Windows per batch.
        edges: Cell column starts at the model resolution, then ``width`` (``edges[j]:edges[j + 1]`` = cell ``j``).
    """

    width0: int
    height0: int
    ds: float
    window: int
    stride: int
    width: int
    height: int
    ys: list[int]
    xs: list[int]
    windows: np.ndarray
    mask: np.ndarray
    mask_ds: float
    batch: int
    edges: list[int]

    @property
    def num_bands(self) -> int:
        """Number of bands (= window rows)."""
        return len(self.ys)

    def band_rows(self, r: int) -> tuple[int, int]:
        """Model rows ``[start, stop)`` of band ``r``."""
        stop = self.ys[r + 1] if r + 1 < len(self.ys) else self.height
        return min(self.ys[r], self.height), min(stop, self.height)

    @property
    def num_cells(self) -> int:
        """Cells per band."""
        return len(self.edges) - 1

    @property
    def num_chunks(self) -> int:
        """Number of batches."""
        return math.ceil(len(self.windows) / self.batch)

    def chunk(self, c: int) -> np.ndarray:
        """Windows ``[n, 3]`` of batch ``c``."""
        return self.windows[c * self.batch : (c + 1) * self.batch]

    def first_chunk_for_band(self, band: int) -> int:
        """The first batch that contributes to band ``band`` (where a resumed run starts)."""
        if band <= 0:
            return 0
        top = self.ys[band]
        rows = [i for i, y in enumerate(self.ys) if y + self.window > top]
        first_row = rows[0] if rows else len(self.ys)
        k = int(np.searchsorted(self.windows[:, 0], first_row, side="left")) if len(self.windows) else 0
        return k // self.batch

    def tissue_rows(self, y0: int, y1: int, x0: int = 0, x1: int | None = None) -> np.ndarray:
        """Tissue mask sampled at the centres of model pixels of rows ``[y0, y1)``, columns ``[x0, x1)`` (default:
        to the right edge): boolean ``[y1 - y0, x1 - x0]``."""
        scale = self.ds / self.mask_ds
        mh, mw = self.mask.shape
        ri = np.clip(((np.arange(y0, y1) + 0.5) * scale).astype(np.int64), 0, mh - 1)
        ci = np.clip(((np.arange(x0, self.width if x1 is None else x1) + 0.5) * scale).astype(np.int64), 0, mw - 1)
        if len(ri) and len(ci) and not self.mask[ri[0] : ri[-1] + 1, ci[0] : ci[-1] + 1].any():  # glass: no gather
            return np.zeros((len(ri), len(ci)), bool)
        return np.asarray(self.mask[np.ix_(ri, ci)])


def plan_slide(dims0: tuple[int, int], slide_mpp: float, mpp: float, window: int, overlap: float,
               mask: np.ndarray, mask_ds: float, min_tissue: float, batch: int, cell: int = 2048) -> SlidePlan:
    """Grid, tissue windows (tissue fraction > ``min_tissue``; every window when it is negative), batches and cells
    (about ``cell`` model pixels wide: a whole number of window columns)."""
    width0, height0 = dims0
    ds = mpp / slide_mpp
    width, height = max(1, round(width0 / ds)), max(1, round(height0 / ds))
    stride = max(1, math.floor(window * (1.0 - overlap)))
    ys = window_starts(max(height, window), window, stride)
    xs = window_starts(max(width, window), window, stride)
    gx, gy = np.meshgrid(np.asarray(xs, np.float64), np.asarray(ys, np.float64))
    if min_tissue < 0:
        keep = np.ones(gx.shape, bool)
    else:
        frac = box_fractions(integral(mask), gx * ds / mask_ds, gy * ds / mask_ds, window * ds / mask_ds)
        keep = frac > min_tissue
    rr, cc = np.nonzero(keep)  # row-major
    windows = np.stack([rr, np.asarray(ys)[rr], np.asarray(xs)[cc]], axis=1).astype(np.int64).reshape(-1, 3)
    per_cell = max(1, round(cell / stride))
    edges = [0, *xs[per_cell::per_cell]]
    edges = [e for e in edges if e < width] + [width]
    return SlidePlan(width0, height0, ds, window, stride, width, height, ys, xs, windows, mask, mask_ds, batch,
                     edges)
