"""Blending overlapping window probabilities cell by cell (never a whole-slide array, nor a full-width float row).

The arithmetic is that of :func:`~pathseg.tasks.sliding.sliding_window_predict`: each window adds
``probabilities * weight`` (float32) to an accumulator and ``weight`` to a normaliser, in row-major window order;
a pixel's probability is the ratio. Windows arrive in row-major order, so while grid row ``r`` runs only the cells
(:mod:`~pathseg.inference.grid`) that its current windows touch are held as float32 arrays (``window`` rows high,
one cell wide). A cell is final (:meth:`CellBlender.add` hands it on) once the windows have moved past its right
edge. The rows of a cell that the next grid row still reaches (``window - stride`` rows) are its *pending* part:
kept in a small file in ``spill`` (or in memory without one) and added back when the cell of the next row starts.
Pending parts that no window touched are not kept. Float32 memory is therefore about
``(K + 1) * window * 2 * cell * 4`` bytes, whatever the slide's width and height.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

Cell = tuple[int, int, int, np.ndarray, np.ndarray]  # (band, cell, x0, classes [h, w], probs uint8 [K, h, w])


class CellBlender:
    """Accumulates windows given in row-major order and emits every cell of every band in order.

    Args:
        width: Map width (model pixels).
        height: Map height.
        num_classes: Probability channels ``K``.
        weight: ``[window, window]`` blend weights (float32).
        ys: Window row starts (one per band).
        edges: Cell column starts, then ``width``.
        emit: Called with each finished cell ``(band, cell, x0, classes, probs)``: class map ``uint8 [h, w]``
            (argmax; 0 where no window ran) and probabilities quantised to ``uint8 [K, h, w]`` (``round(255 p)``;
            0 where no window ran).
        first_band: Bands before it are computed (their pending rows are needed) but not emitted (resumed runs).
        spill: Folder for pending rows (default: kept in memory).
    """

    def __init__(self, width: int, height: int, num_classes: int, weight: np.ndarray, ys: list[int],
                 edges: list[int], emit: Callable[[Cell], None], first_band: int = 0,
                 spill: Path | None = None) -> None:
        self.width, self.height, self.k = width, height, num_classes
        self.weight = np.ascontiguousarray(weight, np.float32)
        self.window = self.weight.shape[0]
        self.ys, self.edges, self.emit_cb = list(ys), list(edges), emit
        self.first_band, self.spill = first_band, spill
        self.row = 0  # grid row being accumulated
        self.next_cell = 0  # first cell of that row not emitted yet
        self.active: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # cell -> (acc [K, h, w], norm [h, w])
        self.pending: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # in memory when there is no spill folder

    def _rows(self, r: int) -> tuple[int, int]:
        """Model rows a window of grid row ``r`` reaches."""
        return self.ys[r], min(self.ys[r] + self.window, self.height)

    def _pending_path(self, j: int) -> Path:
        assert self.spill is not None
        return self.spill / f"pending_{j:04d}.npz"

    def _take_pending(self, j: int) -> tuple[np.ndarray, np.ndarray] | None:
        if self.spill is None:
            return self.pending.pop(j, None)
        path = self._pending_path(j)
        if not path.is_file():
            return None
        with np.load(path) as data:
            out = data["acc"], data["norm"]
        path.unlink()
        return out

    def _put_pending(self, j: int, acc: np.ndarray, norm: np.ndarray) -> None:
        if self.spill is None:
            self.pending[j] = (acc.copy(), norm.copy())
            return
        with self._pending_path(j).open("wb") as fh:
            np.savez(fh, acc=acc, norm=norm)

    def _cell(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """The accumulator of cell ``j`` in the current row (created with its pending rows added)."""
        if j not in self.active:
            y0, y1 = self._rows(self.row)
            w = self.edges[j + 1] - self.edges[j]
            acc = np.zeros((self.k, y1 - y0, w), np.float32)
            norm = np.zeros((y1 - y0, w), np.float32)
            prev = self._take_pending(j)
            if prev is not None:
                acc[:, : prev[1].shape[0]] += prev[0]
                norm[: prev[1].shape[0]] += prev[1]
            self.active[j] = (acc, norm)
        return self.active[j]

    def _has_pending(self, j: int) -> bool:
        return self._pending_path(j).is_file() if self.spill is not None else j in self.pending

    def _finish_cell(self, j: int) -> None:
        """Emit cell ``j`` of the current row and keep its pending rows."""
        r = self.row
        y0 = self.ys[r]
        h = min(self.ys[r + 1] if r + 1 < len(self.ys) else self.height, self.height) - y0
        w = self.edges[j + 1] - self.edges[j]
        if j not in self.active and not self._has_pending(j):  # nothing reached this cell
            if r >= self.first_band:
                self.emit_cb((r, j, self.edges[j], np.zeros((h, w), np.uint8), np.zeros((self.k, h, w), np.uint8)))
            return
        self._cell(j)
        acc, norm = self.active.pop(j)
        if r + 1 < len(self.ys) and norm.shape[0] > h and norm[h:].any():
            self._put_pending(j, acc[:, h:], norm[h:])
        if r >= self.first_band:
            self.emit_cb((r, j, self.edges[j], *_ratio(acc[:, :h], norm[:h])))

    def _finish_row(self) -> None:
        for j in range(self.next_cell, len(self.edges) - 1):
            self._finish_cell(j)
        self.row, self.next_cell = self.row + 1, 0

    def add(self, r: int, y: int, x: int, weighted: np.ndarray) -> None:
        """Add one window of grid row ``r`` whose top-left is ``(y, x)``: ``weighted`` = probabilities x weight,
        ``[K, window, window]``. Windows must come in row-major order."""
        if r < self.row or (r == self.row and self.next_cell > 0 and x < self.edges[self.next_cell]):
            raise ValueError(f"window ({r}, {x}) is out of order")
        while self.row < r:
            self._finish_row()
        while self.next_cell < len(self.edges) - 1 and self.edges[self.next_cell + 1] <= x:
            self._finish_cell(self.next_cell)
            self.next_cell += 1
        y0, y1 = self._rows(r)
        rows = min(y + self.window, y1) - y0
        for j in range(self.next_cell, len(self.edges) - 1):
            a, b = self.edges[j], self.edges[j + 1]
            if a >= x + self.window:
                break
            c0, c1 = max(a, x), min(b, x + self.window)
            if c1 <= c0:
                continue
            acc, norm = self._cell(j)
            acc[:, :rows, c0 - a : c1 - a] += weighted[:, :rows, c0 - x : c1 - x]
            norm[:rows, c0 - a : c1 - a] += self.weight[:rows, c0 - x : c1 - x]

    def finish(self) -> None:
        """Emit every cell still due, to the last band."""
        while self.row < len(self.ys):
            self._finish_row()


def _ratio(acc: np.ndarray, norm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class map and uint8 probabilities of accumulated rows (0 where no window ran)."""
    covered = norm > 0
    probs = np.divide(acc, norm, out=np.zeros_like(acc), where=covered)
    classes = probs.argmax(axis=0).astype(np.uint8)
    classes[~covered] = 0
    np.rint(probs * 255.0, out=probs)
    return classes, probs.clip(0, 255, out=probs).astype(np.uint8)
