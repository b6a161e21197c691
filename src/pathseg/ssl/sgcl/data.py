"""SGCL data: tiles with their slide and grid position, read from a tile index, never from file names.

Sources (``--data``):

- a tile index ``tiles.csv`` written by ``pathseg tile`` (columns ``slide_id, slide_path, …, row, col``; tiles are
  read from the slides on the fly), or its folder;
- a coordinates CSV with ``slide_id, row, col`` and ``path`` (image file, relative to the CSV) or ``id`` (image
  ``images/<id>.<ext>`` beside the CSV), e.g. the ``<split>/tiles.csv`` written by ``pathseg tiles export``;
- a canonical data set directory whose splits hold such a ``tiles.csv`` (all splits, or ``--splits``).

Each item holds the global view, the four quadrant crops (tl, tr, bl, br: the inner invariance of SGCL), the tile's
index (its memory-bank row), its slide index (rank of the slide id among the sorted ids) and its grid position.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pathseg.errors import DataError

log = logging.getLogger(__name__)
TILE_INDEX_COLUMNS = {"slide_id", "slide_path", "x", "y", "size0", "size", "mpp", "slide_mpp", "row", "col"}


@dataclass(frozen=True)
class TileTable:
    """Where every tile lies: ``slide_ids[i]``, ``rows[i]``, ``cols[i]``; ``images[i]`` is a file or None
    (read from the slide through ``index``)."""

    slide_ids: list[str]
    rows: list[int]
    cols: list[int]
    images: list[Path | None]
    index: Path | None = None

    def __len__(self) -> int:
        return len(self.slide_ids)

    @property
    def slide_names(self) -> list[str]:
        """Sorted unique slide ids (a tile's slide index is the rank of its id here)."""
        return sorted(set(self.slide_ids))

    def slide_indices(self) -> list[int]:
        """Slide index of every tile."""
        rank = {name: i for i, name in enumerate(self.slide_names)}
        return [rank[s] for s in self.slide_ids]


def _header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as fh:
        return next(csv.reader(fh), [])


def _coordinates_csv(path: Path) -> TileTable:
    from pathseg.data.layout import IMAGE_SUFFIXES

    slides, rows, cols, images = [], [], [], []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = set(reader.fieldnames or [])
        if not {"slide_id", "row", "col"} <= fields or not fields & {"path", "id"}:
            raise DataError("coordinates CSV needs columns slide_id, row, col and path or id", path)
        for line, r in enumerate(reader, start=2):
            try:
                rows.append(int(r["row"]))
                cols.append(int(r["col"]))
            except (TypeError, ValueError):
                raise DataError(f"line {line}: row/col must be integers (grid positions)", path) from None
            slides.append(r["slide_id"])
            if r.get("path"):
                images.append(path.parent / r["path"])
            else:
                folder = path.parent / "images"
                found = [folder / (r["id"] + s) for s in IMAGE_SUFFIXES if (folder / (r["id"] + s)).exists()]
                images.append(found[0] if found else folder / (r["id"] + ".png"))
    return TileTable(slides, rows, cols, list(images))


def _read_csv(path: Path) -> TileTable:
    if set(_header(path)) >= TILE_INDEX_COLUMNS:
        from pathseg.data.tiles import read_tile_index

        recs = read_tile_index(path)
        geometries = {(r.mpp, r.size) for r in recs}
        if len(geometries) > 1:  # grid distances are in tile units: they mean different lengths per geometry
            log.warning("%s mixes tile geometries (µm/px, size) %s: spatial distances are in tiles of each",
                        path, sorted(geometries))
        return TileTable([r.slide_id for r in recs], [r.row for r in recs], [r.col for r in recs],
                         [None] * len(recs), index=path)
    return _coordinates_csv(path)


def load_tile_table(data: str | Path, splits: Sequence[str] = ()) -> TileTable:
    """The tiles of ``data`` (see the module docstring), in dataset order.

    Raises:
        DataError: No such file, a CSV without the needed columns, or no tiles.
    """
    p = Path(data)
    if p.is_dir() and (p / "tiles.csv").is_file():
        p = p / "tiles.csv"
    if p.is_file():
        table = _read_csv(p)
    elif p.is_dir():
        from pathseg.data.layout import list_splits

        names = list(splits) or list_splits(p)
        csvs = [p / s / "tiles.csv" for s in names]
        lacking = [c for c in csvs if not c.is_file()]
        if not csvs or lacking:
            raise DataError("sgcl needs tile coordinates: a tiles.csv per split (pathseg tiles export writes it)",
                            lacking[0] if lacking else p)
        parts = [_coordinates_csv(c) for c in csvs]
        table = TileTable([s for t in parts for s in t.slide_ids], [r for t in parts for r in t.rows],
                          [c for t in parts for c in t.cols], [i for t in parts for i in t.images])
    else:
        raise DataError("sgcl data not found (give a tiles.csv, a coordinates CSV or a data set directory)", p)
    if len(table) == 0:
        raise DataError("no tiles", p)
    return table


class SGCLDataset:
    """Map-style dataset: ``views(image)`` plus ``index``, ``slide`` and ``pos`` (grid ``[row, col]``, float32).

    Args:
        table: The tiles (:func:`load_tile_table`).
        views: Maps a ``uint8 [H, W, 3]`` tile to ``{"global": [3, S, S], "local": [4, 3, s, s]}``.
    """

    def __init__(self, table: TileTable, views: Callable[[np.ndarray], dict[str, Any]]) -> None:
        self.table = table
        self.views = views
        self.slides = table.slide_indices()
        self._tiles: Any = None
        if table.index is not None:
            from pathseg.data.tiles import TileDataset

            self._tiles = TileDataset(table.index)

    def __len__(self) -> int:
        return len(self.table)

    def read(self, i: int) -> np.ndarray:
        """The pixels of tile ``i``."""
        if self._tiles is not None:
            return self._tiles.read(i)  # type: ignore[no-any-return]
        from pathseg.io import read_rgb

        return read_rgb(self.table.images[i])  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        out = dict(self.views(self.read(i)))
        out.update(index=i, slide=self.slides[i],
                   pos=torch.tensor([self.table.rows[i], self.table.cols[i]], dtype=torch.float32))
        return out


def quadrants(img: Any) -> list[Any]:
    """The four non-overlapping corner crops of side ``min(H, W) // 2`` of ``img [..., H, W]`` (tl, tr, bl, br;
    torchvision ``FiveCrop`` without its centre crop)."""
    h, w = img.shape[-2:]
    s = min(h, w) // 2
    return [img[..., :s, :s], img[..., :s, w - s:], img[..., h - s:, :s], img[..., h - s:, w - s:]]


class SGCLViews:
    """One global view of the whole tile and one local view of each quadrant (randomness: torch's global RNG).

    Args:
        global_view: Pipeline of the global view (uint8 ``[3, H, W]`` tensor → normalised tensor).
        local_view: Pipeline applied to each quadrant.
    """

    def __init__(self, global_view: Callable[[Any], Any], local_view: Callable[[Any], Any]) -> None:
        self.global_view = global_view
        self.local_view = local_view

    def __call__(self, image: np.ndarray) -> dict[str, Any]:
        """``image``: uint8 ``[H, W, 3]``."""
        import torch

        img = torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1)
        return {"global": self.global_view(img), "local": torch.stack([self.local_view(q) for q in quadrants(img)])}
