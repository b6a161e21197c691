"""Spatial positives of SGCL: tiles of the same slide within a Euclidean grid distance (intra-invariance, §1.3).

``S(i) = {j : slide(j) = slide(i) and 0 < ‖c(j) − c(i)‖₂ < δ}`` with grid coordinates ``c`` in tile units (Lin et al.,
"SGCL: Spatial guided contrastive learning on whole-slide pathological images", MedIA 2023). Two implementations
give identical masks: a ``B × N`` distance computation, and a per-slide grid lookup (sorted hash keys, O(B·|offsets|
·log N)) used when ``N`` is large and the coordinates are integers.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

#: ``B·N`` above which ``spatial_neighbors(..., method="auto")`` uses the grid lookup.
DENSE_LIMIT = 1 << 22


def _is_integral(xy: Tensor) -> bool:
    return bool(torch.isfinite(xy).all()) and bool((xy == xy.round()).all())


def grid_offsets(threshold: float, dtype: torch.dtype = torch.float32) -> Tensor:
    """Integer offsets ``[O, 2]`` with ``0 < ‖o‖₂ < threshold`` (distance in ``dtype``, as the dense version)."""
    r = max(0, math.ceil(threshold))
    ax = torch.arange(-r, r + 1)
    off = torch.stack(torch.meshgrid(ax, ax, indexing="ij"), -1).reshape(-1, 2)
    d = (off.to(dtype) ** 2).sum(-1).sqrt()
    return off[(d > 0) & (d < threshold)]


def dense_neighbors(slide: Tensor, xy: Tensor, bank_slide: Tensor, bank_xy: Tensor, threshold: float) -> Tensor:
    """The ``B × N`` version of :func:`spatial_neighbors` (explicit differences, exact for integer coordinates)."""
    xy = xy.to(bank_xy.dtype)
    d = ((xy[:, None, :] - bank_xy[None, :, :]) ** 2).sum(-1).sqrt()
    return (slide[:, None] == bank_slide[None, :]) & (d > 0) & (d < threshold)


class SpatialGrid:
    """Per-slide lookup table of a bank of integer grid coordinates (built once, reused every step).

    Args:
        bank_slide: Slide index of every bank entry ``[N]`` (integers ≥ 0).
        bank_xy: Grid coordinates ``[N, 2]`` (integer values, any dtype).
    """

    def __init__(self, bank_slide: Tensor, bank_xy: Tensor) -> None:
        if not _is_integral(bank_xy):
            raise ValueError("SpatialGrid needs integer grid coordinates")
        xy = bank_xy.round().long()
        self.n = int(xy.shape[0])
        self.dtype = bank_xy.dtype if bank_xy.is_floating_point() else torch.float32
        self.lo = xy.min(0).values
        self.hi = xy.max(0).values
        self.size = self.hi - self.lo + 1
        self.max_slide = int(bank_slide.max())
        keys = self._keys(bank_slide.long(), xy)
        self.sorted_keys, self.order = keys.sort()

    def _keys(self, slide: Tensor, xy: Tensor) -> Tensor:
        rel = xy - self.lo
        return (slide * self.size[0] + rel[..., 0]) * self.size[1] + rel[..., 1]

    def neighbors(self, slide: Tensor, xy: Tensor, threshold: float) -> Tensor:
        """Mask ``[B, N]`` of the bank entries within ``threshold`` of each query (same slide, distance > 0)."""
        if not _is_integral(xy):
            raise ValueError("SpatialGrid needs integer query coordinates")
        dev = self.sorted_keys.device
        b = int(xy.shape[0])
        off = grid_offsets(threshold, self.dtype).to(dev)
        cand = xy.round().long().to(dev)[:, None, :] + off[None]  # [B, O, 2]
        s = slide.long().to(dev)[:, None].expand(-1, off.shape[0])
        valid = ((cand >= self.lo) & (cand <= self.hi)).all(-1) & (s >= 0) & (s <= self.max_slide)
        keys = torch.where(valid, self._keys(s, cand), torch.full_like(s, -1))
        start = torch.searchsorted(self.sorted_keys, keys)
        stop = torch.where(valid, torch.searchsorted(self.sorted_keys, keys, right=True), start)
        counts = (stop - start).reshape(-1)
        rows = torch.arange(b, device=dev).repeat_interleave(off.shape[0]).repeat_interleave(counts)
        first = start.reshape(-1).repeat_interleave(counts)
        within = torch.arange(int(counts.sum()), device=dev) - (counts.cumsum(0) - counts).repeat_interleave(counts)
        mask = torch.zeros(b, self.n, dtype=torch.bool, device=dev)
        mask[rows, self.order[first + within]] = True
        return mask


def spatial_neighbors(
    slide: Tensor, xy: Tensor, bank_slide: Tensor, bank_xy: Tensor, threshold: float,
    method: Literal["auto", "dense", "grid"] = "auto", grid: SpatialGrid | None = None,
) -> Tensor:
    """Spatial neighbours of each query in the bank: same slide and ``0 < ‖xy_j − xy_i‖₂ < threshold``.

    Args:
        slide: Slide index of each query ``[B]``.
        xy: Grid coordinates of each query ``[B, 2]`` (tile units).
        bank_slide: Slide index of each bank entry ``[N]``.
        bank_xy: Grid coordinates of each bank entry ``[N, 2]``.
        threshold: δ (SGCL: 3, i.e. the 5 × 5 window without its centre).
        method: ``dense`` (B × N distances), ``grid`` (lookup; integer coordinates) or ``auto`` (grid when
            ``B·N > DENSE_LIMIT`` and the coordinates are integers, or when ``grid`` is given).
        grid: A prebuilt :class:`SpatialGrid` of the bank (saves the sort on every call).

    Returns:
        ``BoolTensor[B, N]``. Both methods give identical results.
    """
    if method == "dense":
        return dense_neighbors(slide, xy, bank_slide, bank_xy, threshold)
    integral = _is_integral(xy) and (grid is not None or _is_integral(bank_xy))
    if method == "grid" or (integral and (grid is not None or xy.shape[0] * bank_xy.shape[0] > DENSE_LIMIT)):
        grid = grid if grid is not None else SpatialGrid(bank_slide, bank_xy)
        return grid.neighbors(slide, xy, threshold)
    return dense_neighbors(slide, xy, bank_slide, bank_xy, threshold)
