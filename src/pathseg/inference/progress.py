"""Per-slide progress for resuming: finished bands as small files in ``OUT/.work/<slide_id>/``.

``meta.json`` holds what the bands depend on (model file, resolution, window grid, tissue settings, slide); a work
folder made with other settings is discarded. ``band_<r>.npz`` (class rows and uint8 probabilities of band ``r``) is
written atomically once the band is final, so a killed run restarts at the first missing band. The folder is removed
when the slide's outputs are in place.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from pathseg.io import atomic_path, atomic_write_text


def open_work(folder: Path, key: dict[str, Any], fresh: bool = False) -> Path:
    """Create (or reuse, if made with the same ``key``) the work folder of one slide."""
    meta = folder / "meta.json"
    key = json.loads(json.dumps(key))
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


def band_path(folder: Path, r: int) -> Path:
    """File of band ``r``."""
    return folder / f"band_{r:05d}.npz"


def first_missing(folder: Path, num_bands: int) -> int:
    """The first band without a file (bands after a gap are recomputed)."""
    for r in range(num_bands):
        if not band_path(folder, r).is_file():
            return r
    return num_bands


def save_band(folder: Path, r: int, classes: np.ndarray, probs: np.ndarray) -> None:
    """Write band ``r`` atomically."""
    with atomic_path(band_path(folder, r)) as tmp, tmp.open("wb") as fh:
        np.savez_compressed(fh, classes=classes, probs=probs)


def load_band(folder: Path, r: int) -> tuple[np.ndarray, np.ndarray]:
    """``(classes [h, W], probs [K, h, W])`` of band ``r``."""
    with np.load(band_path(folder, r)) as data:
        return data["classes"], data["probs"]
