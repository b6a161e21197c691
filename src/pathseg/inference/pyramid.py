"""Streaming pyramidal tiled TIFF writer for 2-D ``uint8`` maps (class maps, probabilities).

Same file layout as :func:`pathseg.slides.write.write_pyramidal_tiff` (one IFD per level in the main chain,
``subfiletype = 1`` below level 0, µm/px in the resolution tags, deflate tiles, nearest-neighbour halving
``img[0::2, 0::2]`` so that class values never mix), which OpenSlide (generic-tiff), tiffslide and QuPath open.
Here level 0 arrives as an iterator of tile rows and is handed to tifffile tile by tile; each level's halved rows
go to a raw scratch file beside the output, which is streamed again for the next level. Memory holds a tile row
and tifffile's compression buffer, capped at :data:`BUFFER_TILES` tiles.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from pathseg.io.atomic import atomic_path
from pathseg.slides.write import pyramid_shapes

BUFFER_TILES = 16  # tiles tifffile compresses at a time (its default buffer, 512 MB, would grow with the slide)


def _tiles(rows: np.ndarray, tile: int) -> Iterator[np.ndarray]:
    """Full-size tiles (zero-padded at the right and bottom) of one tile row, left to right."""
    h, w = rows.shape
    for x in range(0, w, tile):
        t = rows[:, x : x + tile]
        if t.shape != (tile, tile):
            padded = np.zeros((tile, tile), np.uint8)
            padded[:h, : t.shape[1]] = t
            t = padded
        yield np.ascontiguousarray(t)


def _level_tiles(rows: Iterator[np.ndarray], tile: int, halved: BinaryIO | None) -> Iterator[np.ndarray]:
    """Tiles of one level from its tile rows; the rows' nearest-neighbour halving is appended to ``halved``."""
    for band in rows:
        if halved is not None:
            halved.write(np.ascontiguousarray(band[0::2, 0::2]).tobytes())
        yield from _tiles(band, tile)


def _raw_rows(path: Path, height: int, width: int, tile: int) -> Iterator[np.ndarray]:
    """Tile rows of a raw ``uint8`` scratch file."""
    with path.open("rb") as fh:
        for y in range(0, height, tile):
            n = min(tile, height - y)
            yield np.frombuffer(fh.read(n * width), np.uint8).reshape(n, width)


def write_streamed_pyramid(
    path: str | os.PathLike[str], height: int, width: int, rows: Iterator[np.ndarray], mpp: float,
    tile: int = 256, min_size: int = 512,
) -> list[tuple[int, int]]:
    """Write a pyramidal TIFF from level-0 tile rows, atomically.

    Args:
        path: Destination.
        height: Level-0 height.
        width: Level-0 width.
        rows: Level-0 tile rows ``uint8 [tile, width]`` top to bottom (the last may be shorter).
        mpp: Level-0 µm/px, written in the resolution tags of every level (scaled).
        tile: Tile side (multiple of 16).
        min_size: Levels are added by halving while the longest side is at least this.

    Returns:
        The ``(height, width)`` of each level written.
    """
    import tifffile

    shapes = pyramid_shapes(height, width, min_size)
    kwargs: dict[str, object] = dict(photometric="minisblack", compression="zlib", predictor=2, metadata=None,
                                     software="pathseg", resolutionunit="CENTIMETER", dtype=np.uint8,
                                     tile=(tile, tile))
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=height * width > 2**31) as tif:
        scratch = [tmp.with_name(f"{tmp.name}.level{i}.raw") for i in range(len(shapes))]
        try:
            source: Iterator[np.ndarray] = rows
            for i, (h, w) in enumerate(shapes):
                last = i + 1 == len(shapes)
                res = 1e4 / (mpp * width / w)
                with open(os.devnull if last else scratch[i + 1], "wb") as halved:
                    tif.write(_level_tiles(source, tile, None if last else halved), shape=(h, w),
                              resolution=(res, res), subfiletype=1 if i else 0,
                              buffersize=BUFFER_TILES * tile * tile, **kwargs)  # type: ignore[arg-type]
                if i:
                    scratch[i].unlink(missing_ok=True)
                if not last:
                    source = _raw_rows(scratch[i + 1], *shapes[i + 1], tile)
        finally:
            for s in scratch:
                s.unlink(missing_ok=True)
    return shapes
