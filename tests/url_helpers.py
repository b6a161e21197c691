"""Tiny synthetic data sets for the URL tests (canonical layout, written into ``tmp_path``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pathseg.data.layout import DatasetInfo, write_dataset_info
from pathseg.io import write_png


def make_dataset(tmp_path: Path, n: int = 3, size: int = 72, split: str = "train") -> Path:
    """``n`` RGB images of smooth random colour blobs (so SLIC finds regions) in ``tmp_path/data``."""
    root = tmp_path / "data"
    write_dataset_info(root, DatasetInfo(name="synthetic", task="unlabeled"))
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        img = np.zeros((size, size, 3))
        for _ in range(6):
            cy, cx = rng.uniform(0, size, 2).tolist()
            r = rng.uniform(size / 8, size / 3)
            blob = ((yy - cy) ** 2 + (xx - cx) ** 2 < r**2)[..., None]
            img = np.where(blob, rng.uniform(30, 230, 3), img)
        img = img + rng.normal(0, 8, img.shape)
        write_png(root / split / "images" / f"slide{i}_{i:03d}.png", np.clip(img, 0, 255).astype(np.uint8))
    return root
