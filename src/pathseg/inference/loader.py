"""Reading and normalising window batches in data-loader worker processes.

Each item is one batch of the plan (:meth:`~pathseg.inference.grid.SlidePlan.chunk`), read with
:meth:`~pathseg.slides.reader.Slide.read_scaled` at the model's resolution and normalised with the model's mean and
std. A worker opens the slide once. A read error becomes an ``error`` item (one line) instead of a traceback, so
the caller can fail this slide and go on with the next.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pathseg.slides.reader import Slide, open_slide


class WindowBatches(Dataset[dict[str, Any]]):
    """Batches of windows of one slide, from batch ``first`` on.

    Args:
        path: Slide file.
        backend: Slide reader.
        slide_mpp: Level-0 µm/px (as resolved by the caller, so that workers agree with it).
        chunks: ``[n, 3]`` (row, y, x) window arrays, one per batch.
        first: Index of the first batch (for resumed runs).
        window: Window side in model pixels.
        ds: Level-0 pixels per model pixel.
        mean: Normalisation mean (RGB, 0-1 scale).
        std: Normalisation std.
    """

    def __init__(self, path: str, backend: str, slide_mpp: float, chunks: list[np.ndarray], first: int,
                 window: int, ds: float, mean: list[float], std: list[float]) -> None:
        self.path, self.backend, self.slide_mpp = path, backend, slide_mpp
        self.chunks, self.first, self.window, self.ds = chunks, first, window, ds
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self._slide: Slide | None = None

    def __len__(self) -> int:
        return len(self.chunks)

    def _open(self) -> Slide:
        if self._slide is None:
            self._slide = open_slide(self.path, self.backend, mpp=self.slide_mpp)  # type: ignore[arg-type]
        return self._slide

    def __getitem__(self, i: int) -> dict[str, Any]:
        coords = self.chunks[i]
        try:
            slide = self._open()
            w = self.window
            tiles = np.stack([slide.read_scaled(x * self.ds, y * self.ds, w, w, self.ds) for _, y, x in coords])
        except Exception as exc:  # corrupt tile data, truncated file: reported for this slide only
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            return {"index": self.first + i, "error": str(message).splitlines()[0]}
        x_t = torch.from_numpy(tiles).permute(0, 3, 1, 2).float().div_(255.0)
        return {"index": self.first + i, "coords": torch.from_numpy(coords), "x": (x_t - self.mean) / self.std}


def batch_loader(dataset: WindowBatches, workers: int, pin: bool) -> DataLoader[dict[str, Any]]:
    """In-order loader over already-batched items (``batch_size=None``), ``workers`` processes reading ahead."""
    return DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers, pin_memory=pin,
                      prefetch_factor=4 if workers else None)
