"""Synthetic slides with a known tissue mask for the slide and tile tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pathseg.slides.write import write_pyramidal_tiff

BACKGROUND = (241, 239, 243)
TISSUE = (205, 120, 175)


def synthetic_slide(h: int = 2048, w: int = 2560, seed: int = 0, tissue: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """RGB image (white glass + pink tissue blobs, mild noise) and its boolean tissue mask."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((h, w), bool)
    if tissue:
        mask[300:1100, 250:1000] = True  # rectangle not aligned to a 256 grid
        mask[1300:1900, 1500:2400] = True
        yy, xx = np.mgrid[0:h, 0:w]
        mask |= (yy - 600) ** 2 + (xx - 1800) ** 2 < 420**2
    img = np.empty((h, w, 3), np.float32)
    img[:] = BACKGROUND
    img[mask] = TISSUE
    img += rng.normal(0, 3, size=(h, w, 1)).astype(np.float32)
    tissue_noise = rng.normal(0, 12, size=(h, w, 3)).astype(np.float32)
    img[mask] += tissue_noise[mask]
    return np.clip(img, 0, 255).astype(np.uint8), mask


def write_synthetic(path: Path, mpp: float = 0.5, **kwargs: object) -> np.ndarray:
    """Write a synthetic slide to ``path``; returns its tissue mask."""
    img, mask = synthetic_slide(**kwargs)  # type: ignore[arg-type]
    write_pyramidal_tiff(path, img, mpp=mpp)
    return mask
