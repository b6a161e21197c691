"""Picture grids of UNIT: mask -> G(mask) -> S(G(mask)) | real -> S(real) -> G(S(real)), one row per sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pathseg.io import write_png

COLUMNS = ("x", "fake_y", "rec_x", "y", "fake_x", "rec_y")


def to_uint8(image: Tensor) -> np.ndarray:
    """``[3, H, W]`` in [-1, 1] (values outside are clipped) -> ``uint8 [H, W, 3]``."""
    t = ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return t.permute(1, 2, 0).cpu().numpy()


def grid(images: dict[str, Tensor], rows: int = 4, gap: int = 2) -> np.ndarray:
    """The grid ``uint8 [rows * (S + gap), 6 * (S + gap), 3]`` of the first ``rows`` samples (white gaps)."""
    n = min(rows, images["x"].shape[0])
    s = images["x"].shape[-1]
    out = np.full((n * (s + gap), len(COLUMNS) * (s + gap), 3), 255, dtype=np.uint8)
    for r in range(n):
        for c, key in enumerate(COLUMNS):
            out[r * (s + gap):r * (s + gap) + s, c * (s + gap):c * (s + gap) + s] = to_uint8(images[key][r])
    return out


def write_grid(path: Path, images: dict[str, Tensor]) -> None:
    """Write :func:`grid` as PNG (directories created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(path, grid(images))
