"""The URL original's per-batch Dice/IoU (``calc_sl_loss_val`` of ZeyuGaoAi/URL_His_TissueSeg), kept only to show
how far it departs from pathseg's data-set-level metric. Never use it to report results on its own.

The original cut every test image into 256² tiles (the centres of 512² windows at step 256 over the mirror-padded
image, so the tiles cover the image without overlap except for a flush last row/column), went through them in
batches of 32 and, **per batch**, pooled the pixels of the batch for every class ``c``:

    Dice_c = 2 |P_c ∩ G_c| / (|P_c| + |G_c| + 1e-8),   IoU_c = |P_c ∩ G_c| / (|P_c ∪ G_c| + 1e-8)

A class absent from both the prediction and the ground truth of a batch scores **0** (not left out). The
per-batch values were averaged over batches weighted by the batch size, and mDice / mIoU are the means over
classes. pathseg's metric (:mod:`pathseg.metrics.segmentation`) pools one confusion matrix over the whole data
set and leaves absent classes out instead. Pixels whose ground truth is ``ignore_index`` are left out here too
(the original had no ignore label).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from pathseg.data.patchify import patch_starts

__all__ = ["LEGACY_PREFIX", "LegacyPerBatchScores", "legacy_per_batch_metrics", "legacy_tiles"]

LEGACY_PREFIX = "legacy_per_batch_"
EPS = 1e-8


def legacy_tiles(pred: np.ndarray, target: np.ndarray, tile: int = 256) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The original's evaluation tiles of one image, row by row (the whole image when a side is below ``tile``)."""
    h, w = target.shape
    ys = patch_starts(h, tile, tile) or [0]
    xs = patch_starts(w, tile, tile) or [0]
    for y in ys:
        for x in xs:
            yield pred[y : y + tile, x : x + tile], target[y : y + tile, x : x + tile]


class LegacyPerBatchScores:
    """Streaming version of the original's per-batch metric over tiles given in evaluation order.

    Args:
        num_classes: ``K``.
        batch_size: Tiles per batch (the original: 32).
        ignore_index: Ground-truth value left out (``None``: none).
    """

    def __init__(self, num_classes: int, batch_size: int = 32, ignore_index: int | None = 255) -> None:
        self.k = int(num_classes)
        self.batch_size = int(batch_size)
        self.ignore_index = ignore_index
        self._counts = np.zeros((3, self.k), np.int64)  # intersection, |P|, |G| of the open batch
        self._correct = self._pixels = self._tiles = 0
        self._sums = np.zeros((3, self.k))  # batch-size-weighted sums of Dice_c, IoU_c; row 2: accuracy
        self.num_batches = self.num_tiles = 0

    def update(self, pred: Any, target: Any) -> None:
        """Add one tile (integer arrays of one shape)."""
        p, t = np.asarray(pred).ravel().astype(np.int64), np.asarray(target).ravel().astype(np.int64)
        if p.shape != t.shape:
            raise ValueError(f"pred and target shapes differ: {np.shape(pred)} vs {np.shape(target)}")
        if self.ignore_index is not None:
            keep = t != self.ignore_index
            p, t = p[keep], t[keep]
        self._counts[0] += np.bincount(t[p == t], minlength=self.k)[: self.k]
        self._counts[1] += np.bincount(p, minlength=self.k)[: self.k]
        self._counts[2] += np.bincount(t, minlength=self.k)[: self.k]
        self._correct += int((p == t).sum())
        self._pixels += int(t.size)
        self._tiles += 1
        self.num_tiles += 1
        if self._tiles == self.batch_size:
            self._close_batch()

    def _close_batch(self) -> None:
        inter, ps, gs = self._counts.astype(np.float64)
        n = self._tiles
        self._sums[0] += n * 2 * inter / (ps + gs + EPS)
        self._sums[1] += n * inter / (ps + gs - inter + EPS)
        self._sums[2, 0] += n * (self._correct / self._pixels if self._pixels else 0.0)
        self.num_batches += 1
        self._counts[:] = 0
        self._correct = self._pixels = self._tiles = 0

    def compute(self) -> dict[str, Any]:
        """``legacy_per_batch_{mdice, miou, dice_per_class, iou_per_class, pixel_accuracy, batches, batch_size}``
        (the last, partial batch counts with its own size, as the original's last loader batch did)."""
        if self._tiles:
            self._close_batch()
        total = max(self.num_tiles, 1)
        dice, iou = self._sums[0] / total, self._sums[1] / total
        out: dict[str, Any] = {
            "mdice": float(dice.mean()) if self.num_tiles else None,
            "miou": float(iou.mean()) if self.num_tiles else None,
            "dice_per_class": [float(v) for v in dice],
            "iou_per_class": [float(v) for v in iou],
            "pixel_accuracy": float(self._sums[2, 0] / total) if self.num_tiles else None,
            "batches": self.num_batches,
            "batch_size": self.batch_size,
        }
        return {LEGACY_PREFIX + k: v for k, v in out.items()}


def legacy_per_batch_metrics(
    tiles: Iterable[tuple[Any, Any]], num_classes: int, batch_size: int = 32, ignore_index: int | None = 255
) -> dict[str, Any]:
    """The original's per-batch metric over ``(pred, target)`` tiles in evaluation order (see the module doc)."""
    acc = LegacyPerBatchScores(num_classes, batch_size, ignore_index)
    for p, t in tiles:
        acc.update(p, t)
    return acc.compute()
