"""Tile datasets read on the fly from slides through a tile index, and export to the canonical unlabeled layout.

The tile index is the ``tiles.csv`` written by ``pathseg tile`` (columns: ``slide_id, slide_path, x, y, size0,
size, mpp, slide_mpp, mpp_source, row, col, tissue_fraction``; ``x, y`` and ``size0`` in level-0 pixels, ``size``
in pixels at ``mpp``, ``row``/``col`` the tile's grid position).

:class:`TileDataset` opens slides lazily in the process that reads (so each DataLoader worker opens its own
handles after fork/spawn; nothing is shared) and keeps at most ``cache_size`` open slides per process in an LRU
cache, so memory stays bounded over an epoch.
"""

from __future__ import annotations

import csv
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pathseg.errors import DataError


@dataclass(frozen=True)
class TileRecord:
    """One row of a tile index."""

    slide_id: str
    slide_path: str
    x: int
    y: int
    size0: int
    size: int
    mpp: float
    slide_mpp: float
    mpp_source: str
    row: int
    col: int
    tissue_fraction: float

    @property
    def tile_id(self) -> str:
        """``<slide_id>_<row>_<col>``: unique within an index."""
        return f"{self.slide_id}_{self.row:05d}_{self.col:05d}"


def read_tile_index(path: str | os.PathLike[str]) -> list[TileRecord]:
    """Read a ``tiles.csv`` (or the directory holding it).

    Raises:
        DataError: Missing file, missing columns or unparsable values (naming the file and line).
    """
    p = Path(path)
    if p.is_dir():
        p = p / "tiles.csv"
    if not p.is_file():
        raise DataError("tile index not found (run 'pathseg tile' first)", p)
    records = []
    with p.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        needed = {"slide_id", "slide_path", "x", "y", "size0", "size", "mpp", "slide_mpp", "row", "col"}
        lacking = needed - set(reader.fieldnames or [])
        if lacking:
            raise DataError(f"not a tile index: missing columns {sorted(lacking)}", p)
        for line, r in enumerate(reader, start=2):
            try:
                records.append(TileRecord(
                    r["slide_id"], r["slide_path"], int(r["x"]), int(r["y"]), int(r["size0"]), int(r["size"]),
                    float(r["mpp"]), float(r["slide_mpp"]), r.get("mpp_source", ""), int(r["row"]), int(r["col"]),
                    float(r.get("tissue_fraction") or "nan"),
                ))
            except (TypeError, ValueError) as exc:
                raise DataError(f"line {line}: {exc}", p) from None
    return records


@dataclass
class _SlideCache:
    """LRU cache of open slides, owned by one process (rebuilt empty in a new process)."""

    size: int
    backend: str
    pid: int = field(default_factory=os.getpid)
    slides: OrderedDict[tuple[str, float], Any] = field(default_factory=OrderedDict)

    def get(self, path: str, slide_mpp: float) -> Any:
        from pathseg.slides.reader import open_slide

        if self.pid != os.getpid():  # forked copy: never use the parent's handles
            self.slides = OrderedDict()
            self.pid = os.getpid()
        key = (path, slide_mpp)
        slide = self.slides.get(key)
        if slide is not None:
            self.slides.move_to_end(key)
            return slide
        slide = open_slide(path, self.backend, mpp=slide_mpp, mpp_source="tile index (slide_mpp)")  # type: ignore[arg-type]
        self.slides[key] = slide
        while len(self.slides) > self.size:
            _, old = self.slides.popitem(last=False)
            old.close()
        return slide

    def close(self) -> None:
        if self.pid == os.getpid():
            for slide in self.slides.values():
                slide.close()
        self.slides = OrderedDict()


class TileDataset:
    """Map-style dataset of tiles read on the fly (usable with ``torch.utils.data.DataLoader``).

    Items are ``dict(image=HxWx3 uint8 array (or the transform's output), slide_id, row, col, x, y)``.

    Args:
        index: A tile index path (``tiles.csv`` or its directory) or a list of :class:`TileRecord`.
        transform: Applied to the image array.
        backend: Slide reader (``auto``, ``openslide``, ``tiffslide``, ``image``).
        cache_size: Open slides kept per process.
    """

    def __init__(
        self,
        index: str | os.PathLike[str] | Sequence[TileRecord],
        transform: Callable[[np.ndarray], Any] | None = None,
        backend: str = "auto",
        cache_size: int = 8,
    ) -> None:
        self.records = list(index) if isinstance(index, Sequence) and not isinstance(index, str) else \
            read_tile_index(index)  # type: ignore[arg-type]
        self.transform = transform
        self.backend = backend
        self.cache_size = max(1, int(cache_size))
        self._cache = _SlideCache(self.cache_size, backend)

    def __len__(self) -> int:
        return len(self.records)

    def read(self, i: int) -> np.ndarray:
        """The RGB pixels of tile ``i``."""
        r = self.records[i]
        slide = self._cache.get(r.slide_path, r.slide_mpp)
        return slide.read_region_mpp(r.x, r.y, r.size, r.mpp)  # type: ignore[no-any-return]

    def __getitem__(self, i: int) -> dict[str, Any]:
        r = self.records[i]
        image: Any = self.read(i)
        if self.transform is not None:
            image = self.transform(image)
        return {"image": image, "slide_id": r.slide_id, "row": r.row, "col": r.col, "x": r.x, "y": r.y}

    def close(self) -> None:
        """Close the slides opened by this process."""
        self._cache.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = _SlideCache(self.cache_size, self.backend)  # never pickle open handles
        return state


def export_tiles(
    index: str | os.PathLike[str] | Sequence[TileRecord],
    out_dir: str | os.PathLike[str],
    split: str = "train",
    backend: str = "auto",
    overwrite: bool = False,
    progress: bool = False,
) -> int:
    """Write every tile of ``index`` as ``out_dir/<split>/images/<tile_id>.png`` with ``dataset.yaml`` (task
    ``unlabeled``) and ``out_dir/<split>/tiles.csv`` (tile id, slide id, grid row/col, level-0 x/y, µm/px).

    The directory is built under a temporary name and renamed at the end (no partial output).

    Returns:
        The number of tiles written.
    """
    from pathseg.data.layout import DatasetInfo, write_dataset_info
    from pathseg.io import atomic_write_text, staging_dir, write_png

    ds = TileDataset(index, backend=backend)
    mpps = sorted({r.mpp for r in ds.records})
    out = Path(out_dir)
    lines = ["id,slide_id,row,col,x,y,size0,mpp"]
    with staging_dir(out, overwrite=overwrite) as tmp:
        images = tmp / split / "images"
        images.mkdir(parents=True)
        indices: Any = range(len(ds))
        if progress:
            from tqdm import tqdm

            indices = tqdm(indices, desc="tiles", unit="tile")
        for i in indices:
            r = ds.records[i]
            write_png(images / f"{r.tile_id}.png", ds.read(i))
            lines.append(f"{r.tile_id},{r.slide_id},{r.row},{r.col},{r.x},{r.y},{r.size0},{r.mpp}")
        ds.close()
        atomic_write_text(tmp / split / "tiles.csv", "\n".join(lines) + "\n")
        src = str(index) if isinstance(index, str | os.PathLike) else "tile records"
        write_dataset_info(tmp, DatasetInfo(name=out.name, task="unlabeled", mpp=mpps[0] if len(mpps) == 1 else None,
                                            source=f"pathseg tile index {src}"))
    return len(ds)


@dataclass
class ExportConfig:
    """Export the tiles of a tile index as PNGs in the canonical unlabeled layout."""

    index: str = field(metadata={"positional": True, "help": "tiles.csv written by 'pathseg tile' (or its folder)"})
    out: str = field(metadata={"help": "output data set directory"})
    split: str = field(default="train", metadata={"help": "split folder name"})
    backend: str = field(default="auto", metadata={"help": "slide reader"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing output directory"})


def export_command(cfg: ExportConfig) -> int:
    """Run ``pathseg tiles export``."""
    n = export_tiles(cfg.index, cfg.out, cfg.split, cfg.backend, cfg.overwrite, progress=True)
    print(f"{n} tiles written to {Path(cfg.out) / cfg.split / 'images'}")
    return 0
