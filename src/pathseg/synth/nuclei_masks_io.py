"""On-disk contract of the UNIT pseudo nucleus masks (``pathseg synth --kind nuclei-masks``), §1.1 of the spec::

    OUT/cell_mask/<ID>.npy            int32 instance map of the whole canvas (0 = background)
    OUT/cell_type/<ID>.npy            int8 type per id (index = id; 1 = G channel, 2 = B channel)
    OUT/<mag>x_<tile>/<ID>_<xi>_<yi>.png  rendered mask image of tile (xi, yi): box (xi*tile, yi*tile, +tile, +tile)
    OUT/nuclei_masks.json             generator parameters, counts

``<mag>`` is ``round(10 / mpp)`` (0.25 µm/px -> ``40x``). The ground truth of a tile is the canvas map cropped to
its box with ids renumbered 1..K (:func:`read_mask_tile`), as the original loader does.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import numpy as np

from pathseg.errors import DataError
from pathseg.io import read_rgb, staging_dir, write_png
from pathseg.runs import write_json
from pathseg.synth.nuclei_masks import MaskParams, RenderMode, generate_masks, render, renumber

TILE_NAME = re.compile(r"^(?P<id>.+)_(?P<xi>\d+)_(?P<yi>\d+)\.png$")


def scale_tag(mpp: float, tile: int) -> str:
    """The folder name ``<mag>x_<tile>`` of the original (``40x_256`` at 0.25 µm/px)."""
    return f"{round(10.0 / mpp)}x_{tile}"


def write_nuclei_masks(out: str | os.PathLike[str], n: int, tile: int, grid: int, params: MaskParams,
                       mode: RenderMode = "multichannel", seed: int = 0, overwrite: bool = False) -> dict[str, int]:
    """Write ``n`` canvases of ``grid x grid`` tiles of ``tile`` px (see the module docstring).

    Returns:
        Counts: ``canvases``, ``tiles``, ``nuclei``.
    """
    rng = np.random.default_rng(seed)
    tag = scale_tag(params.mpp, tile)
    nuclei = tiles = 0
    with staging_dir(out, overwrite=overwrite) as tmp:
        for sub in ("cell_mask", "cell_type", tag):
            (tmp / sub).mkdir()
        for i in range(n):
            name = f"mask{i:05d}"
            m = generate_masks((tile * grid, tile * grid), params, rng)
            np.save(tmp / "cell_mask" / f"{name}.npy", m.instances)
            np.save(tmp / "cell_type" / f"{name}.npy", m.types)
            image = render(m.instances, m.types, m.texture, mode)
            for yi in range(grid):
                for xi in range(grid):
                    box = (slice(yi * tile, (yi + 1) * tile), slice(xi * tile, (xi + 1) * tile))
                    write_png(tmp / tag / f"{name}_{xi}_{yi}.png", np.ascontiguousarray(image[box]))
                    tiles += 1
            nuclei += int(len(m.types) - 1)
        counts = {"canvases": n, "tiles": tiles, "nuclei": nuclei}
        write_json(tmp / "nuclei_masks.json", {"params": dataclasses.asdict(params), "render": mode, "tile": tile,
                                               "grid": grid, "seed": seed, "folder": tag, "counts": counts})
    return counts


def list_mask_tiles(root: str | os.PathLike[str]) -> list[Path]:
    """Every tile PNG of a mask set (``<mag>x_<tile>/*.png``), sorted.

    Raises:
        DataError: No tile found.
    """
    base = Path(root)
    found = sorted(p for d in base.glob("*x_*") if d.is_dir() for p in d.glob("*.png") if TILE_NAME.match(p.name))
    if not found:
        raise DataError("no pseudo-mask tiles (<mag>x_<size>/<ID>_<xi>_<yi>.png) found", base)
    return found


def read_mask_tile(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """A tile's mask image ``uint8 [T, T, 3]`` and its instances ``int32 [T, T]`` (cropped, renumbered 1..K).

    Raises:
        DataError: Bad name, missing ``cell_mask`` file, or a box outside the canvas.
    """
    p = Path(path)
    match = TILE_NAME.match(p.name)
    if match is None:
        raise DataError("not a mask tile name (<ID>_<xi>_<yi>.png)", p)
    image = read_rgb(p)
    npy = p.parent.parent / "cell_mask" / f"{match['id']}.npy"
    if not npy.is_file():
        raise DataError("instance map of this tile not found", npy)
    canvas = np.load(npy, allow_pickle=False)
    t = image.shape[0]
    y0, x0 = int(match["yi"]) * t, int(match["xi"]) * t
    crop = canvas[y0:y0 + t, x0:x0 + t]
    if crop.shape != image.shape[:2]:
        raise DataError(f"tile box ({x0}, {y0}, +{t}) lies outside the {canvas.shape} canvas", p)
    return image, renumber(crop)
