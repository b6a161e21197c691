"""One reader interface over OpenSlide, tiffslide and plain images, reading at an explicit µm/px.

Coordinates follow OpenSlide: ``x, y`` are level-0 pixels; a level pixel ``(lx, ly)`` covers level-0 pixels from
``lx * downsample``. Regions that reach outside the slide are padded with the slide's background colour (white
unless ``openslide.background-color`` says otherwise); transparent pixels are composited over the same colour, so
every backend returns the same RGB for the same request.

Example:
    >>> with open_slide("slide.svs") as s:                       # doctest: +SKIP
    ...     tile = s.read_region_mpp(1000, 2000, 256, mpp=0.5)   # 256x256 RGB at 0.5 µm/px
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from types import TracebackType

import numpy as np
from PIL import Image

from pathseg.errors import DataError, PathsegError
from pathseg.slides.backends import Backend, BackendName, open_backend
from pathseg.slides.mpp import Mpp, choose_mpp, missing_mpp_error, mpp_from_properties, mpp_from_tiff_tags

log = logging.getLogger("pathseg.slides")

MAX_CHUNK = 4096  # level pixels per side read at once when building overviews
LEVEL_TOLERANCE = 1e-3  # a level whose downsample exceeds the wanted one by < 0.1 % still counts as "fine enough"


class Slide:
    """An open slide. Use :func:`open_slide` to create one; close it (or use ``with``) when done.

    Attributes:
        path: The slide file.
        backend: ``"openslide"``, ``"tiffslide"`` or ``"image"``.
        mpp: Level-0 µm/px, or ``None`` when unknown (then µm/px reads raise an error naming the slide).
        mpp_source: Where ``mpp`` came from (see :mod:`pathseg.slides.mpp`).
    """

    def __init__(self, backend: Backend, mpp: Mpp) -> None:
        self._b = backend
        self.path = backend.path
        self.backend = backend.name
        self.mpp = mpp.value
        self.mpp_source = mpp.source
        bg = str(self.properties.get("openslide.background-color") or "FFFFFF")
        try:
            self.background = (int(bg[0:2], 16), int(bg[2:4], 16), int(bg[4:6], 16))
        except ValueError:
            self.background = (255, 255, 255)

    # --- metadata -------------------------------------------------------------------------------------------
    @property
    def properties(self) -> dict[str, object]:
        """Backend properties (OpenSlide/tiffslide property names)."""
        return self._b.properties

    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 ``(width, height)``."""
        return self._b.level_dimensions[0]

    @property
    def level_dimensions(self) -> list[tuple[int, int]]:
        """``(width, height)`` of each level."""
        return self._b.level_dimensions

    @property
    def level_downsamples(self) -> list[float]:
        """Downsample of each level relative to level 0."""
        return self._b.level_downsamples

    @property
    def level_count(self) -> int:
        """Number of levels."""
        return len(self._b.level_dimensions)

    def level_mpp(self, level: int) -> float | None:
        """µm/px of ``level`` (``None`` when the slide's µm/px is unknown)."""
        return None if self.mpp is None else self.mpp * self.level_downsamples[level]

    @property
    def vendor(self) -> str:
        """Format vendor (``aperio``, ``generic-tiff``, ...; ``image`` for plain images)."""
        v = self.properties.get("openslide.vendor") or self.properties.get("tiffslide.vendor")
        return str(v) if v else ("image" if self.backend == "image" else "unknown")

    @property
    def objective_power(self) -> float | None:
        """Scanner objective magnification, if recorded."""
        for key in ("openslide.objective-power", "tiffslide.objective-power", "aperio.AppMag"):
            value = self.properties.get(key)
            if value not in (None, ""):
                try:
                    return float(value)  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    continue
        return None

    # --- reading ----------------------------------------------------------------------------------------------
    def _read_level(self, level: int, lx: int, ly: int, w: int, h: int) -> np.ndarray:
        """Level pixels ``[ly:ly+h, lx:lx+w]``, padded with the background outside the level."""
        lw, lh = self.level_dimensions[level]
        x0, y0, x1, y1 = max(lx, 0), max(ly, 0), min(lx + w, lw), min(ly + h, lh)
        try:
            if x0 == lx and y0 == ly and x1 == lx + w and y1 == ly + h:
                return self._b.read(level, lx, ly, w, h)
            out = np.empty((h, w, 3), np.uint8)
            out[:] = self.background
            if x1 > x0 and y1 > y0:
                out[y0 - ly : y1 - ly, x0 - lx : x1 - lx] = self._b.read(level, x0, y0, x1 - x0, y1 - y0)
            return out
        except PathsegError:
            raise
        except Exception as exc:  # backend errors: corrupt tile data, truncated file, ...
            raise DataError(f"cannot read level {level} at ({lx}, {ly}) ({type(exc).__name__}: {exc})",
                            self.path) from None

    def read_region(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """Read ``w x h`` pixels of ``level`` whose top-left is at level-0 ``(x, y)``, as RGB ``[h, w, 3]``."""
        if not 0 <= level < self.level_count:
            raise DataError(f"level {level} does not exist (the slide has {self.level_count})", self.path)
        ds = self.level_downsamples[level]
        return self._read_level(level, math.floor(x / ds), math.floor(y / ds), int(w), int(h))

    def best_level(self, downsample: float) -> int:
        """The coarsest level whose downsample is at most ``downsample`` (level 0 if none)."""
        best = 0
        for i, ds in enumerate(self.level_downsamples):
            if ds <= downsample * (1 + LEVEL_TOLERANCE):
                best = i
        return best

    def read_scaled(self, x0: float, y0: float, w: int, h: int, downsample: float) -> np.ndarray:
        """``w x h`` output pixels of ``downsample`` level-0 pixels each, from level-0 ``(x0, y0)``.

        Reads the best level and resamples (antialiased bilinear) only when its scale or offset differs from the
        request by half an output pixel or more over the region.
        """
        level = self.best_level(downsample)
        lds = self.level_downsamples[level]
        scale = downsample / lds  # level pixels per output pixel
        lx, ly = x0 / lds, y0 / lds
        ilx, ily = math.floor(lx + 1e-6), math.floor(ly + 1e-6)
        exact = abs(scale - 1) * max(w, h) < 0.5 and abs(lx - ilx) < 1e-3 and abs(ly - ily) < 1e-3
        if exact:
            return self._read_level(level, ilx, ily, w, h)
        lw, lh = w * scale, h * scale
        rw, rh = math.ceil(lx + lw) - ilx, math.ceil(ly + lh) - ily
        region = self._read_level(level, ilx, ily, max(rw, 1), max(rh, 1))
        box = (lx - ilx, ly - ily, lx - ilx + lw, ly - ily + lh)
        img = Image.fromarray(region).resize((w, h), Image.Resampling.BILINEAR, box=box)
        return np.asarray(img)

    def read_region_mpp(self, x0: int, y0: int, size_px: int | tuple[int, int], mpp: float) -> np.ndarray:
        """Read a region at ``mpp`` µm/px whose top-left is at level-0 ``(x0, y0)``.

        Args:
            x0: Level-0 x.
            y0: Level-0 y.
            size_px: Output size in pixels at ``mpp``: ``n`` for ``n x n`` or ``(width, height)``.
            mpp: Target resolution in µm/px.

        Returns:
            RGB ``uint8`` ``[height, width, 3]``.

        Raises:
            PathsegError: The slide's own µm/px is unknown.
        """
        if self.mpp is None:
            raise missing_mpp_error(self.path)
        w, h = (size_px, size_px) if isinstance(size_px, int) else size_px
        return self.read_scaled(x0, y0, int(w), int(h), mpp / self.mpp)

    def overview(self, downsample: float) -> np.ndarray:
        """The whole slide at ``downsample`` level-0 pixels per output pixel, read in bounded chunks."""
        width, height = self.dimensions
        ow, oh = max(1, round(width / downsample)), max(1, round(height / downsample))
        level = self.best_level(downsample)
        scale = downsample / self.level_downsamples[level]
        chunk = max(1, int(MAX_CHUNK / max(scale, 1.0)))
        out = np.empty((oh, ow, 3), np.uint8)
        for cy in range(0, oh, chunk):
            for cx in range(0, ow, chunk):
                cw, ch = min(chunk, ow - cx), min(chunk, oh - cy)
                out[cy : cy + ch, cx : cx + cw] = self.read_scaled(cx * downsample, cy * downsample, cw, ch,
                                                                   downsample)
        return out

    def thumbnail(self, max_size: int = 1024) -> np.ndarray:
        """The whole slide with its longest side at most ``max_size`` pixels (RGB)."""
        downsample = max(max(self.dimensions) / max_size, 1.0)
        return self.overview(downsample)

    def close(self) -> None:
        """Release the file."""
        self._b.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
                 ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Slide({str(self.path)!r}, backend={self.backend!r}, mpp={self.mpp}, levels={self.level_count})"


def open_slide(
    path: str | os.PathLike[str],
    backend: BackendName = "auto",
    mpp: float | None = None,
    mpp_source: str = "user (mpp=)",
) -> Slide:
    """Open a whole-slide image or a plain image and resolve its µm/px.

    The resolution comes from the slide metadata, then TIFF resolution tags, then ``mpp`` (labelled
    ``mpp_source``); see :mod:`pathseg.slides.mpp`. When none is known the slide still opens (``slide.mpp`` is
    ``None``) but µm/px reads raise an error naming the slide.

    Args:
        path: Slide or image file.
        backend: ``auto``, ``openslide``, ``tiffslide`` or ``image``.
        mpp: Fallback level-0 µm/px supplied by the user.
        mpp_source: How to describe ``mpp`` in logs and indexes (e.g. ``"user (--slide-mpp)"``).

    Raises:
        DataError: The file is missing, corrupt or not a slide/image (naming it).
    """
    p = Path(path)
    b = open_backend(p, backend)
    try:
        metadata = mpp_from_properties(b.properties, p)
        tags = mpp_from_tiff_tags(p) if metadata is None else None
        resolved = choose_mpp(p, metadata, tags, mpp, mpp_source)
    except BaseException:
        b.close()
        raise
    return Slide(b, resolved)
