"""Blending overlapping window probabilities into a rolling band of rows (never a whole-slide array).

The arithmetic is that of :func:`~pathseg.tasks.sliding.sliding_window_predict`: each window adds
``probabilities * weight`` (float32) to an accumulator and ``weight`` to a normaliser, in row-major window order;
a pixel's probability is the ratio. Only ``window`` rows are held: rows that no later window can reach are taken
out with :meth:`RowBlender.emit` (in column chunks, so temporaries stay small) and the buffer slides down. Memory is
``(K + 1) * window * width * 4`` bytes: flat in the slide's height, proportional to its width.
"""

from __future__ import annotations

import numpy as np

COLUMN_CHUNK = 2048


class RowBlender:
    """Rolling accumulator over full-width rows of the model-resolution map.

    Args:
        width: Map width (model pixels).
        height: Map height.
        num_classes: Probability channels ``K``.
        weight: ``[window, window]`` blend weights (float32).
        top: First row held (rows above it are ignored: they were finished before a resume).
    """

    def __init__(self, width: int, height: int, num_classes: int, weight: np.ndarray, top: int = 0) -> None:
        self.width, self.height, self.k = width, height, num_classes
        self.weight = np.ascontiguousarray(weight, np.float32)
        self.window = self.weight.shape[0]
        self.cap = self.window
        self.top = top
        self.emitted = top
        self.acc = np.zeros((num_classes, self.cap, width), np.float32)
        self.norm = np.zeros((self.cap, width), np.float32)

    def _slide_to(self, new_top: int) -> None:
        shift = new_top - self.top
        if shift <= 0:
            return
        if shift < self.cap:
            self.acc[:, : self.cap - shift] = self.acc[:, shift:]
            self.norm[: self.cap - shift] = self.norm[shift:]
        keep = max(self.cap - shift, 0)
        self.acc[:, keep:] = 0.0
        self.norm[keep:] = 0.0
        self.top = new_top

    def add(self, y: int, x: int, weighted: np.ndarray) -> None:
        """Add one window whose top-left is ``(y, x)``: ``weighted`` = probabilities x weight, ``[K, w, w]``."""
        w = self.window
        if y + w > self.top + self.cap:
            self._slide_to(self.emitted)
            if y + w > self.top + self.cap:
                raise ValueError(f"window at row {y} is out of order (rows from {self.top} are held)")
        r0, r1 = max(y, self.top), min(y + w, self.height)
        c1 = min(x + w, self.width)
        if r1 <= r0 or c1 <= x:
            return
        src = weighted[:, r0 - y : r1 - y, : c1 - x]
        self.acc[:, r0 - self.top : r1 - self.top, x:c1] += src
        self.norm[r0 - self.top : r1 - self.top, x:c1] += self.weight[r0 - y : r1 - y, : c1 - x]

    def emit(self, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
        """Finished rows ``[y0, y1)``: class map ``uint8 [h, W]`` (argmax; 0 where no window ran) and probabilities
        quantised to ``uint8 [K, h, W]`` (``round(255 p)``; 0 where no window ran)."""
        if y1 > self.top + self.cap and y0 >= self.emitted:
            self._slide_to(y0)  # rows without windows of their own: move the buffer down to them
        if y0 < self.top or y1 > self.top + self.cap:
            raise ValueError(f"rows {y0}:{y1} are not held (rows {self.top}:{self.top + self.cap} are)")
        a, b = y0 - self.top, y1 - self.top
        classes = np.zeros((b - a, self.width), np.uint8)
        quantised = np.zeros((self.k, b - a, self.width), np.uint8)
        for c0 in range(0, self.width, COLUMN_CHUNK):
            c1 = min(c0 + COLUMN_CHUNK, self.width)
            norm = self.norm[a:b, c0:c1]
            covered = norm > 0
            acc = self.acc[:, a:b, c0:c1]
            probs = np.divide(acc, norm, out=np.zeros_like(acc), where=covered)
            classes[:, c0:c1] = np.where(covered, probs.argmax(axis=0), 0)
            quantised[:, :, c0:c1] = np.rint(probs * 255.0).clip(0, 255)
        self.emitted = max(self.emitted, y1)
        return classes, quantised
