"""Per-slide progress for resuming: finished bands as small files in ``OUT/.work/<slide_id>/``.

``meta.json`` holds what the bands depend on (model file, resolution, window grid, tissue settings, slide); a work
folder made with other settings is discarded. ``band_<r>_<j>.npz`` (class rows and uint8 probabilities of cell ``j``
of band ``r``) is written atomically once the cell is final, so a killed run restarts at the first band with a
missing cell. ``pending/`` holds the blender's pending rows (:mod:`~pathseg.inference.blend`; remade on resuming).
The folder is removed when the slide's outputs are in place.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from pathseg.io import atomic_path, atomic_write_text

CELL_FORMAT = 2  # 1: np.savez_compressed (zlib); 2: Zstandard-compressed arrays in an uncompressed .npz


def open_work(folder: Path, key: dict[str, Any], fresh: bool = False) -> Path:
    """Create (or reuse, if made with the same ``key``) the work folder of one slide."""
    meta = folder / "meta.json"
    key = json.loads(json.dumps({**key, "cell_format": CELL_FORMAT}))
    if folder.exists():
        try:
            same = json.loads(meta.read_text()) == key
        except (OSError, ValueError):
            same = False
        if fresh or not same:
            shutil.rmtree(folder)
    if not folder.exists():
        folder.mkdir(parents=True)
        atomic_write_text(meta, json.dumps(key, indent=2) + "\n")
    return folder


def cell_path(folder: Path, r: int, j: int) -> Path:
    """File of cell ``j`` of band ``r``."""
    return folder / f"band_{r:05d}_{j:04d}.npz"


def first_missing(folder: Path, num_bands: int, num_cells: int) -> int:
    """The first band with a missing cell file (bands after a gap are recomputed)."""
    names = {p.name for p in folder.glob("band_*.npz")}
    for r in range(num_bands):
        if any(cell_path(folder, r, j).name not in names for j in range(num_cells)):
            return r
    return num_bands


def save_cell(folder: Path, r: int, j: int, classes: np.ndarray, probs: np.ndarray) -> None:
    """Write cell ``j`` of band ``r`` atomically."""
    from imagecodecs import zstd_encode

    c, p = np.ascontiguousarray(classes, np.uint8), np.ascontiguousarray(probs, np.uint8)

    def pack(a: np.ndarray) -> np.ndarray:
        return np.frombuffer(zstd_encode(a.tobytes(), level=1), np.uint8)

    with atomic_path(cell_path(folder, r, j)) as tmp, tmp.open("wb") as fh:
        np.savez(fh, classes_zstd=pack(c), probs_zstd=pack(p), classes_shape=np.asarray(c.shape, np.int64),
                 probs_shape=np.asarray(p.shape, np.int64))


def load_cell(folder: Path, r: int, j: int, probs: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """``(classes [h, w], probs [K, h, w])`` of cell ``j`` of band ``r`` (``probs=False``: ``None`` for them)."""
    from imagecodecs import zstd_decode

    def unpack(data: Any, name: str) -> np.ndarray:
        shape = tuple(int(v) for v in data[f"{name}_shape"])
        return np.frombuffer(bytearray(zstd_decode(data[f"{name}_zstd"].tobytes())), np.uint8).reshape(shape)

    with np.load(cell_path(folder, r, j)) as data:
        return unpack(data, "classes"), (unpack(data, "probs") if probs else None)
