"""Checked image reading and PNG writing.

Decoding errors are turned into :class:`~pathseg.errors.DataError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from pathseg.errors import DataError
from pathseg.io.atomic import atomic_path


def _open_fully(path: Path) -> Image.Image:
    if not path.is_file():
        raise DataError("file not found", path)
    try:
        img = Image.open(path)
        img.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot decode image ({exc})", path) from None
    return img


def read_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image as an RGB ``uint8`` array of shape ``[H, W, 3]``.

    Raises:
        DataError: The file is missing, truncated or not an image.
    """
    return np.asarray(_open_fully(Path(path)).convert("RGB"))


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a single-channel label image (class indices or instance ids) without any colour conversion.

    Palette PNGs give their indices; 16/32-bit images keep their values.

    Raises:
        DataError: The file cannot be decoded or has more than one channel.
    """
    p = Path(path)
    if p.suffix.lower() in {".tif", ".tiff"}:
        import tifffile

        try:
            arr = tifffile.imread(p)
        except Exception as exc:  # tifffile raises many types
            raise DataError(f"cannot decode TIFF ({exc})", p) from None
    else:
        img = _open_fully(p)
        if img.mode not in {"L", "P", "I", "I;16", "1", "I;16B", "I;16L"}:
            raise DataError(f"mask must be single-channel, got image mode {img.mode}", p)
        arr = np.asarray(img)
    if arr.ndim != 2:
        raise DataError(f"mask must be 2-D, got shape {arr.shape}", p)
    return arr


def write_png(
    path: str | os.PathLike[str], array: np.ndarray, palette: list[tuple[int, int, int]] | None = None
) -> None:
    """Write ``array`` as PNG atomically.

    Args:
        path: Destination.
        array: ``[H, W, 3]`` uint8 RGB, or ``[H, W]`` uint8 labels.
        palette: For label images, colours per index; the PNG is then a palette image whose pixel values
            are still the indices.
    """
    arr = np.ascontiguousarray(array)
    if arr.dtype != np.uint8:
        raise ValueError(f"write_png expects uint8, got {arr.dtype}")
    img = Image.fromarray(arr)
    if palette is not None:
        if arr.ndim != 2:
            raise ValueError("a palette needs a 2-D label array")
        img = img.convert("P") if img.mode != "P" else img
        flat = [c for rgb in palette for c in rgb]
        img.putpalette(flat + [0] * (768 - len(flat)))
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
