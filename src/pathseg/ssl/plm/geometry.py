"""Cell boxes of a view's output grid and their exact overlaps (PLM, Zhang et al., IPMI 2023, spec §1.2-1.3).

A view is recorded as ``crops[b] = (top, left, height, width, hflip[, vflip, rot90])``: the crop box as fractions of
the source image, then the flips and the number ``k`` of ``torch.rot90(img, k, dims=(-2, -1))`` quarter turns applied
after the resize, in this order: horizontal flip, vertical flip, rotation. The original records only the first five
(PLM has no vertical flip or rotation); the last two are pathseg extensions and default to 0 when absent.

Boxes are ``(top, left, bottom, right)`` in source-image fractions. Cell ``i = r·G + c`` of a view is the ``s × s``
block of output pixels (``s`` = input side / G) at row ``r``, column ``c`` of the *final* (flipped, rotated) view.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pathseg.errors import ConfigError


def _source_cells(crops: Tensor, grid: int) -> tuple[Tensor, Tensor]:
    """Row and column ``[B, G, G]`` in the un-flipped, un-rotated crop grid of each final output cell ``(r, c)``."""
    b = crops.shape[0]
    ar = torch.arange(grid, device=crops.device)
    r = ar.view(1, grid, 1).expand(b, grid, grid)
    c = ar.view(1, 1, grid).expand(b, grid, grid)
    last = grid - 1
    k = (crops[:, 6].round().long() % 4 if crops.shape[1] > 6 else torch.zeros(b, dtype=torch.long,
                                                                               device=crops.device))
    k = k.view(b, 1, 1)
    # invert the rotation: out[r, c] = in[c, G-1-r] (k=1), in[G-1-r, G-1-c] (k=2), in[G-1-c, r] (k=3)
    r1 = torch.where(k == 1, c, torch.where(k == 2, last - r, torch.where(k == 3, last - c, r)))
    c1 = torch.where(k == 1, last - r, torch.where(k == 2, last - c, torch.where(k == 3, r, c)))
    if crops.shape[1] > 5:
        r1 = torch.where(crops[:, 5].view(b, 1, 1) > 0.5, last - r1, r1)  # vertical flip
    c1 = torch.where(crops[:, 4].view(b, 1, 1) > 0.5, last - c1, c1)  # horizontal flip
    return r1, c1


def grid_boxes(crops: Tensor, grid: int) -> Tensor:
    """Box of every output cell of each view, in source-image fractions.

    Args:
        crops: ``[B, 5]`` = (top, left, height, width, flipped) as fractions of the source image (the original's
            record), or ``[B, 7]`` with (vflip, rot90 quarter turns) appended (pathseg).
        grid: Side ``G`` of the output grid (the backbone's feature map).

    Returns:
        ``[B, G·G, 4]`` boxes (top, left, bottom, right), cells in row-major order of the final view: with a
        horizontal flip the column order is reversed, with a vertical flip the row order, and a rotation permutes
        the cells as ``torch.rot90`` permutes pixels.
    """
    if crops.ndim != 2 or crops.shape[1] not in (5, 7):
        raise ValueError(f"crops must be [B, 5] or [B, 7], got {tuple(crops.shape)}")
    if grid < 1:
        raise ValueError(f"grid must be >= 1, got {grid}")
    crops = crops.float()
    rows, cols = _source_cells(crops, grid)  # [B, G, G]
    top, left = crops[:, 0].view(-1, 1, 1), crops[:, 1].view(-1, 1, 1)
    dy, dx = (crops[:, 2] / grid).view(-1, 1, 1), (crops[:, 3] / grid).view(-1, 1, 1)
    boxes = torch.stack([top + rows * dy, left + cols * dx, top + (rows + 1) * dy, left + (cols + 1) * dx], dim=-1)
    return boxes.reshape(crops.shape[0], grid * grid, 4)


def overlap_fractions(boxes_q: Tensor, boxes_k: Tensor) -> tuple[Tensor, Tensor]:
    """Exact pairwise overlap of the two views' cells, as fractions of either cell's area.

    Args:
        boxes_q: ``[B, N, 4]`` query-view cell boxes (top, left, bottom, right).
        boxes_k: ``[B, M, 4]`` key-view cell boxes.

    Returns:
        ``(pq, pk)``: ``pq[b, i, j] = area(qᵢ ∩ kⱼ) / area(qᵢ)`` ``[B, N, M]`` and
        ``pk[b, j, i] = area(qᵢ ∩ kⱼ) / area(kⱼ)`` ``[B, M, N]``. Row sums are the coverages ``ω`` (the share of a
        cell inside the other view's crop, when the other view's cells tile its crop).
    """
    tl = torch.maximum(boxes_q[:, :, None, :2], boxes_k[:, None, :, :2])
    br = torch.minimum(boxes_q[:, :, None, 2:], boxes_k[:, None, :, 2:])
    inter = (br - tl).clamp_min(0).prod(dim=-1)  # [B, N, M]
    area_q = (boxes_q[..., 2:] - boxes_q[..., :2]).clamp_min(0).prod(dim=-1)
    area_k = (boxes_k[..., 2:] - boxes_k[..., :2]).clamp_min(0).prod(dim=-1)
    pq = inter / area_q.clamp_min(1e-12)[:, :, None]
    pk = inter.transpose(1, 2) / area_k.clamp_min(1e-12)[:, :, None]
    return pq, pk


def row_normalize(p: Tensor) -> tuple[Tensor, Tensor]:
    """Matching matrix and coverage: ``(p / p.sum(-1), p.sum(-1))``; rows that sum to 0 stay all-zero.

    Args:
        p: ``[B, N, M]`` overlap fractions (:func:`overlap_fractions`).

    Returns:
        ``M`` ``[B, N, M]`` (rows sum to 1 or 0) and the coverage ``w`` ``[B, N]``.
    """
    w = p.sum(dim=-1)
    safe = torch.where(w > 0, w, torch.ones_like(w))
    return p / safe[..., None], w


def check_grid(fmap_hw: tuple[int, int], input_hw: tuple[int, int], reduction: int | None, grid_size: int) -> int:
    """The grid side ``G`` of a feature map, checked against the view size (each cell = one ``s × s`` block).

    Args:
        fmap_hw: Height and width of the backbone's last feature map.
        input_hw: Height and width of the views.
        reduction: The backbone's stride (``None``: unknown, only divisibility is checked).
        grid_size: The configured ``G`` (0: any).

    Raises:
        ConfigError: Non-square map, a view side that is not ``G × stride``, or ``G != grid_size``.
    """
    (gh, gw), (h, w) = fmap_hw, input_hw
    if gh != gw or h != w:
        raise ConfigError(f"plm needs square views and feature maps, got view {h}x{w}, map {gh}x{gw}")
    if h % gh or (reduction is not None and h != gh * reduction):
        raise ConfigError(f"plm: view side {h} is not the feature map side {gh} x the backbone's stride "
                          f"{reduction}: choose crop_size as a multiple of {reduction or gh}")
    if grid_size and gh != grid_size:
        raise ConfigError(f"plm: method_args.grid_size is {grid_size} but the backbone gives a {gh}x{gh} map "
                          f"for {h} px views (set grid_size=0 to take it from the backbone)")
    return gh
