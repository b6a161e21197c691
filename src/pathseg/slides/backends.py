"""Slide backends: OpenSlide, tiffslide and plain images behind one small interface.

A backend only reads in-bounds rectangles of one level and returns RGB ``uint8``; clipping, padding, alpha and
resampling are done once, identically, by :class:`pathseg.slides.reader.Slide`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pathseg.errors import DataError

BackendName = Literal["auto", "openslide", "tiffslide", "image"]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
TIFF_SUFFIXES = {".tif", ".tiff"}


def composite(rgba: np.ndarray, background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """RGB of an RGBA ``uint8`` array (straight alpha) composited over ``background``."""
    alpha = rgba[..., 3:4].astype(np.uint16)
    bg = np.asarray(background, np.uint16)
    out = (rgba[..., :3].astype(np.uint16) * alpha + bg * (255 - alpha) + 127) // 255
    return out.astype(np.uint8)


def to_rgb(arr: np.ndarray) -> np.ndarray:
    """Grey, grey+alpha, RGB or RGBA ``uint8`` array -> contiguous RGB."""
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=2)
    if arr.shape[2] == 4:
        return composite(arr) if arr[..., 3].min() < 255 else np.ascontiguousarray(arr[..., :3])
    if arr.shape[2] == 2:
        return composite(np.concatenate([arr[..., :1]] * 3 + [arr[..., 1:]], axis=2))
    return np.ascontiguousarray(arr[..., :3])


class Backend:
    """Base class: level geometry, properties and in-bounds reads in level pixel coordinates."""

    name = "base"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.level_dimensions: list[tuple[int, int]] = []
        self.level_downsamples: list[float] = []
        self.properties: dict[str, Any] = {}

    def read(self, level: int, lx: int, ly: int, w: int, h: int) -> np.ndarray:
        """Read ``[ly:ly+h, lx:lx+w]`` of ``level`` (in bounds) as RGB ``uint8``."""
        raise NotImplementedError

    def level0_location(self, level: int, lx: int) -> int:
        """Level-0 coordinate whose floor-division by the level downsample gives level pixel ``lx``."""
        if level == 0:
            return lx
        x0 = math.ceil(lx * self.level_downsamples[level])
        while int(x0 / self.level_downsamples[level]) < lx:  # guard float round-off
            x0 += 1
        return x0

    def close(self) -> None:
        """Release the file."""


class OpenSlideBackend(Backend):
    """OpenSlide (openslide-python + openslide-bin)."""

    name = "openslide"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        import openslide

        try:
            self._osr = openslide.OpenSlide(str(path))
        except Exception as exc:  # OpenSlideError, OpenSlideUnsupportedFormatError, OSError
            raise DataError(f"OpenSlide cannot open it ({type(exc).__name__}: {exc})", path) from None
        self.level_dimensions = [tuple(d) for d in self._osr.level_dimensions]  # type: ignore[misc]
        self.level_downsamples = list(self._osr.level_downsamples)
        self.properties = dict(self._osr.properties)

    def read(self, level: int, lx: int, ly: int, w: int, h: int) -> np.ndarray:
        """OpenSlide read; levels > 0 with non-integer downsamples may be sub-pixel resampled by OpenSlide."""
        img = self._osr.read_region((self.level0_location(level, lx), self.level0_location(level, ly)), level, (w, h))
        alpha: Any = img.getchannel("A").getextrema()
        if alpha[0] < 255:  # transparent pixels (outside the scanned area): composite like every backend
            return composite(np.asarray(img))
        return np.array(img.convert("RGB"))  # np.array: a writable copy

    def close(self) -> None:
        """Close the OpenSlide handle."""
        self._osr.close()


class TiffSlideBackend(Backend):
    """tiffslide (pure Python, tifffile + zarr)."""

    name = "tiffslide"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        import tiffslide

        try:
            self._ts = tiffslide.TiffSlide(str(path))
            self.level_dimensions = [tuple(d) for d in self._ts.level_dimensions]  # type: ignore[misc]
            self.level_downsamples = list(self._ts.level_downsamples)
            self.properties = {k: v for k, v in self._ts.properties.items() if v is not None}
        except DataError:
            raise
        except Exception as exc:  # tifffile/zarr raise many types
            raise DataError(f"tiffslide cannot open it ({type(exc).__name__}: {exc})", path) from None

    def read(self, level: int, lx: int, ly: int, w: int, h: int) -> np.ndarray:
        """tiffslide read of an in-bounds rectangle."""
        loc = (self.level0_location(level, lx), self.level0_location(level, ly))
        arr = self._ts.read_region(loc, level, (w, h), as_array=True)
        return to_rgb(np.asarray(arr))

    def close(self) -> None:
        """Close the tiffslide handle."""
        self._ts.close()


class ImageBackend(Backend):
    """A plain image (PNG, JPEG, strip TIFF) as a one-level slide, decoded once into memory."""

    name = "image"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        if path.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            try:
                arr = np.asarray(tifffile.imread(path, key=0))
            except Exception as exc:
                raise DataError(f"cannot decode TIFF ({type(exc).__name__}: {exc})", path) from None
            if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
                raise DataError(f"expected an 8-bit grey/RGB TIFF, got {arr.dtype} {arr.shape}", path)
            self.properties = {"image.format": "TIFF"}
        else:
            from PIL import Image

            try:
                with Image.open(path) as img:
                    img.load()
                    self.properties = {"image.format": str(img.format)}
                    arr = np.asarray(img.convert("RGBA" if "A" in img.getbands() else "RGB"))
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
                raise DataError(f"not a slide or image ({exc})", path) from None
        self._rgb = to_rgb(arr)
        h, w = self._rgb.shape[:2]
        self.level_dimensions = [(w, h)]
        self.level_downsamples = [1.0]

    def read(self, level: int, lx: int, ly: int, w: int, h: int) -> np.ndarray:
        """Crop of the in-memory image."""
        return self._rgb[ly : ly + h, lx : lx + w].copy()

    def close(self) -> None:
        """Drop the pixels."""
        self._rgb = np.zeros((0, 0, 3), np.uint8)


TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence library warnings (tifffile's logger, PIL's UserWarnings) while probing a file's format."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _tiff_probe(path: Path) -> tuple[bool, str]:
    """(is a tiled or pyramidal TIFF, tifffile's error message or '')."""
    import tifffile

    try:
        with _quiet(), tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            return len(series.levels) > 1 or tif.pages.first.is_tiled, ""
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"


def open_backend(path: str | os.PathLike[str], backend: BackendName = "auto") -> Backend:
    """Open ``path`` with the requested backend, or choose one.

    ``auto``: PNG/JPEG/... -> ``image``; a format OpenSlide recognises -> ``openslide``; another tiled or pyramidal
    TIFF -> ``tiffslide``; a plain TIFF -> ``image``.

    Raises:
        DataError: Missing file, unknown backend or a file the backend cannot open (naming the file).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError("slide not found", p)
    if backend == "openslide":
        return OpenSlideBackend(p)
    if backend == "tiffslide":
        return TiffSlideBackend(p)
    if backend == "image":
        return ImageBackend(p)
    if backend != "auto":
        raise DataError(f"unknown backend {backend!r} (choose auto, openslide, tiffslide or image)", p)
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return ImageBackend(p)
    import openslide

    try:
        vendor = openslide.OpenSlide.detect_format(str(p))
    except Exception:
        vendor = None
    if vendor is not None:
        return OpenSlideBackend(p)
    with p.open("rb") as fh:
        is_tiff = fh.read(4) in TIFF_MAGIC
    tiled, tiff_error = _tiff_probe(p) if is_tiff else (False, "")
    if tiled:
        return TiffSlideBackend(p)
    try:
        with _quiet():
            return ImageBackend(p)
    except DataError:
        if is_tiff:
            raise DataError(f"corrupt or truncated TIFF/slide file ({tiff_error or 'unreadable image data'})",
                            p) from None
        raise DataError("not a slide or image that OpenSlide, tiffslide or PIL can read", p) from None
