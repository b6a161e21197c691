"""Write pyramidal tiled TIFFs that OpenSlide (generic-tiff) and tiffslide both open.

The file is a plain tiled TIFF: one IFD per level in the main chain, each level half the size of the previous one
(rounded up), until the longest side is below ``min_size``. The resolution is stored in the TIFF tags
(``ResolutionUnit = centimeter``, ``XResolution = YResolution = 1e4 / mpp`` of that level), which is where OpenSlide
reads ``openslide.mpp-x`` for generic TIFFs and tiffslide ``tiffslide.mpp-x``.

RGB images are JPEG-compressed (lossy, ``quality``); 2-D ``uint8`` label images are stored losslessly (deflate or
uncompressed) and downsampled by nearest neighbour so that label values never mix.

Example:
    >>> import numpy as np
    >>> write_pyramidal_tiff("slide.tiff", np.full((2048, 3072, 3), 240, np.uint8), mpp=0.5)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Literal

import numpy as np

from pathseg.io.atomic import atomic_path

Compression = Literal["auto", "jpeg", "deflate", "none"]


def _halve_rgb(img: np.ndarray) -> np.ndarray:
    """2x2 box average, padding odd sides by edge replication (output size = ceil(size / 2))."""
    h, w = img.shape[:2]
    if h % 2 or w % 2:
        pad = ((0, h % 2), (0, w % 2)) + ((0, 0),) * (img.ndim - 2)
        img = np.pad(img, pad, mode="edge")
    acc = img[0::2, 0::2].astype(np.uint16) + img[1::2, 0::2] + img[0::2, 1::2] + img[1::2, 1::2]
    return ((acc + 2) // 4).astype(np.uint8)


def _halve_labels(img: np.ndarray) -> np.ndarray:
    """Nearest-neighbour halving for label images (output size = ceil(size / 2))."""
    return np.ascontiguousarray(img[0::2, 0::2])


def pyramid_shapes(height: int, width: int, min_size: int = 512) -> list[tuple[int, int]]:
    """Level sizes ``(h, w)`` of the pyramid :func:`write_pyramidal_tiff` writes for an image of this size.

    Level 0 is the image; each next level halves it (rounding up) while the current level's longest side is at
    least ``min_size``. There is always at least one level.
    """
    shapes = [(height, width)]
    while max(shapes[-1]) >= min_size and max(shapes[-1]) > 1:
        h, w = shapes[-1]
        shapes.append(((h + 1) // 2, (w + 1) // 2))
    return shapes


def write_pyramidal_tiff(
    path: str | os.PathLike[str],
    rgb: np.ndarray,
    mpp: float,
    tile_size: int = 256,
    quality: int = 90,
    min_size: int = 512,
    compression: Compression = "auto",
) -> None:
    """Write ``rgb`` as a tiled pyramidal TIFF with its µm/px in the resolution tags, atomically.

    Args:
        path: Destination (``.tif``/``.tiff``); written under a temporary name and renamed on success.
        rgb: ``[H, W, 3]`` uint8 RGB image, or ``[H, W]`` uint8 label image (label pyramid).
        mpp: Micrometres per pixel of level 0 (> 0).
        tile_size: Tile edge in pixels (multiple of 16).
        quality: JPEG quality (1-100), for RGB images.
        min_size: Levels are added by factor 2 until the longest side is below this.
        compression: ``"auto"`` (JPEG for RGB, deflate for labels), ``"jpeg"``, ``"deflate"`` or ``"none"``.
            JPEG is refused for label images (it would change label values).

    Raises:
        ValueError: Bad array shape/dtype, ``mpp``, ``tile_size`` or compression.
    """
    import tifffile

    arr = np.ascontiguousarray(rgb)
    if arr.dtype != np.uint8:
        raise ValueError(f"write_pyramidal_tiff expects uint8, got {arr.dtype}")
    is_rgb = arr.ndim == 3 and arr.shape[2] == 3
    if not is_rgb and arr.ndim != 2:
        raise ValueError(f"expected [H, W, 3] RGB or [H, W] labels, got shape {arr.shape}")
    if not (mpp > 0 and np.isfinite(mpp)):
        raise ValueError(f"mpp must be a positive number, got {mpp}")
    if tile_size <= 0 or tile_size % 16:
        raise ValueError(f"tile_size must be a positive multiple of 16, got {tile_size}")
    comp = ("jpeg" if is_rgb else "deflate") if compression == "auto" else compression
    if comp not in ("jpeg", "deflate", "none"):
        raise ValueError(f"unknown compression {compression!r}")
    if comp == "jpeg" and not is_rgb:
        raise ValueError("JPEG compression would alter label values; use 'deflate' or 'none' for label images")

    kwargs: dict[str, object] = {"photometric": "rgb" if is_rgb else "minisblack"}
    if comp == "jpeg":
        kwargs["compression"] = "jpeg"
        kwargs["compressionargs"] = {"level": int(quality)}
    elif comp == "deflate":
        kwargs["compression"] = "zlib"
        kwargs["predictor"] = 2  # horizontal differencing
    height, width = arr.shape[:2]
    halve = _halve_rgb if is_rgb else _halve_labels
    n_levels = len(pyramid_shapes(height, width, min_size))

    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=arr.nbytes > 2**31) as tif:
        level = arr
        for i in range(n_levels):
            if i:
                level = halve(level)
            level_mpp = mpp * width / level.shape[1]
            res = 1e4 / level_mpp  # pixels per centimetre
            tif.write(
                level,
                tile=(tile_size, tile_size),
                resolution=(res, res),
                resolutionunit="CENTIMETER",
                subfiletype=1 if i else 0,
                metadata=None,
                software="pathseg",
                **kwargs,  # type: ignore[arg-type]
            )
