"""Where URL's patches come from: a canonical data set directory, or a slide tile index read at its µm/px.

A tile index (``tiles.csv`` written by ``pathseg tile``) is the paper's set-up: patches of a fixed size read from
the slides at an explicit resolution (768 px at about 1 µm/px from TCGA slides, spec §3), here straight from the
slide through :class:`pathseg.data.tiles.TileDataset` instead of files written at native resolution. Superpixels
are computed once per tile on the pixels read at the index's µm/px and cached as for a data set (keyed by slide,
position, size and µm/px, so indexes of other resolutions never share a map).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from pathseg.errors import DataError, PathsegError
from pathseg.ssl.url.config import SuperpixelConfig


def is_tile_index(data: str | os.PathLike[str]) -> bool:
    """The engine's rule: a ``.csv`` file, or a folder with ``tiles.csv`` and no ``dataset.yaml``."""
    p = Path(data)
    return p.suffix.lower() == ".csv" or (p.is_dir() and (p / "tiles.csv").is_file()
                                          and not (p / "dataset.yaml").exists())


class PatchSource(Protocol):
    """The patches of a URL run and their superpixel maps."""

    def __len__(self) -> int: ...

    def read(self, index: int) -> np.ndarray:
        """RGB ``uint8`` ``[H, W, 3]`` of patch ``index``."""
        ...

    def superpixels(self, index: int, rgb: np.ndarray) -> np.ndarray:
        """The (cached) superpixel ids of patch ``index`` whose pixels are ``rgb``."""
        ...

    def ensure(self, progress: bool) -> int:
        """Compute and cache every missing superpixel map; returns how many were computed."""
        ...


class FolderSource:
    """The images of a canonical data set (labels unused), keyed by ``(split, id)``.

    Args:
        root: Data set directory.
        splits: Splits to use (empty = all).
        superpixels: Superpixel settings.
    """

    def __init__(self, root: str | os.PathLike[str], splits: Sequence[str], superpixels: SuperpixelConfig) -> None:
        from pathseg.data.layout import list_ids, list_splits

        self.root = root
        self.cfg = superpixels
        self.items = [(s, i) for s in (list(splits) or list_splits(root)) for i in list_ids(root, s)]
        if not self.items:
            raise DataError("no images to pretrain on", root)

    def __len__(self) -> int:
        return len(self.items)

    def read(self, index: int) -> np.ndarray:
        """The image of item ``index`` at its native resolution."""
        from pathseg.data.layout import image_path
        from pathseg.io import read_rgb

        split, sample_id = self.items[index]
        return read_rgb(image_path(self.root, split, sample_id))

    def superpixels(self, index: int, rgb: np.ndarray) -> np.ndarray:
        """Cached map of item ``index`` (computed from ``rgb`` when missing)."""
        from pathseg.ssl.url.superpixels import load_superpixels

        split, sample_id = self.items[index]
        return load_superpixels(self.root, split, sample_id, self.cfg, rgb)

    def ensure(self, progress: bool) -> int:
        """Compute the missing maps of every split."""
        from pathseg.ssl.url.superpixels import ensure_superpixels

        done = 0
        for split in sorted({s for s, _ in self.items}):
            done += ensure_superpixels(self.root, split, [i for s, i in self.items if s == split], self.cfg, progress)
        return done


class TileSource:
    """The tiles of a tile index, read from their slides at the index's µm/px.

    Maps are cached in ``superpixels.cache_dir`` when set, else in ``superpixels/`` beside the ``tiles.csv``.

    Args:
        index: ``tiles.csv`` or its folder.
        superpixels: Superpixel settings.
        backend: Slide reader (``auto``, ``openslide``, ``tiffslide``).
    """

    def __init__(self, index: str | os.PathLike[str], superpixels: SuperpixelConfig, backend: str = "auto") -> None:
        from pathseg.data.tiles import TileDataset

        self.tiles = TileDataset(index, backend=backend)
        if not len(self.tiles):
            raise DataError("the tile index lists no tiles", index)
        p = Path(index)
        self.cache_root = p if p.is_dir() else p.parent
        self.cfg = superpixels

    def __len__(self) -> int:
        return len(self.tiles)

    def read(self, index: int) -> np.ndarray:
        """Tile ``index``: ``size`` pixels at ``mpp`` µm/px, read from the slide."""
        return self.tiles.read(index)

    def key(self, index: int) -> str:
        """Cache name of a tile: slide id, level-0 position, size and µm/px."""
        r = self.tiles.records[index]
        return f"{r.slide_id}_x{r.x}_y{r.y}_{r.size}px_{r.mpp:g}mpp"

    def superpixels(self, index: int, rgb: np.ndarray) -> np.ndarray:
        """Cached map of tile ``index`` (computed from ``rgb`` when missing)."""
        from pathseg.ssl.url.superpixels import load_superpixels

        return load_superpixels(self.cache_root, "", self.key(index), self.cfg, rgb)

    def ensure(self, progress: bool) -> int:
        """Read every tile whose map is missing and compute it (once, before training)."""
        from tqdm import tqdm

        from pathseg.ssl.url.superpixels import cache_folder, cache_path

        if self.cfg.backend == "grid":
            return 0
        self.cfg.validate()
        try:
            cache_folder(self.cache_root, "", self.cfg).mkdir(parents=True, exist_ok=True)
        except OSError:
            raise PathsegError("cannot create the superpixel cache; set superpixels.cache_dir",
                               cache_folder(self.cache_root, "", self.cfg)) from None
        missing = [i for i in range(len(self)) if not cache_path(self.cache_root, "", self.key(i), self.cfg).is_file()]
        for i in tqdm(missing, desc="superpixels tiles", disable=not progress, unit="tile"):
            self.superpixels(i, self.read(i))
        self.tiles.close()  # workers open their own handles
        return len(missing)


def open_source(
    data: str | os.PathLike[str], splits: Sequence[str], superpixels: SuperpixelConfig
) -> FolderSource | TileSource:
    """A :class:`TileSource` for a tile index, else a :class:`FolderSource` (canonical data set directory).

    Raises:
        DataError: Neither exists, or no image/tile in it.
    """
    if is_tile_index(data):
        return TileSource(data, superpixels)
    if not Path(data).is_dir():
        raise DataError("url needs a data set directory or a tile index (tiles.csv)", data)
    return FolderSource(data, splits, superpixels)
