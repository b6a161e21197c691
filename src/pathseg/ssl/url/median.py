"""Exact median filter from a pruned sorting network (element-wise ``minimum``/``maximum`` of shifted images).

``torch.median`` over an ``unfold`` of ``k × k`` windows sorts every window; a sorting network only needs a fixed
list of compare-exchange steps on whole images. Batcher's odd-even merge sort over the next power of two is
pruned to the steps whose outputs can reach the middle rank (steps touching the ``+∞`` padding lines are no-ops),
which leaves 24 steps for 3 × 3 and 113 for 5 × 5 windows. The result is the same value as ``torch.median``: a
median is an order statistic, no arithmetic is involved.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor


def _batcher(n: int) -> Iterator[tuple[int, int]]:
    """Compare-exchange pairs ``(i, j)`` (min to ``i``) of Batcher's odd-even merge sort of ``n = 2^m`` lines."""
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        yield i + j, i + j + k
            k //= 2
        p *= 2


@functools.cache
def median_network(n: int) -> tuple[tuple[int, int, bool, bool], ...]:
    """Steps ``(i, j, keep_min, keep_max)`` that put the median of ``n`` (odd) values on line ``n // 2``."""
    if n < 1 or n % 2 == 0:
        raise ValueError(f"median_network needs an odd number of values, got {n}")
    size = 1 << max(0, (n - 1).bit_length())
    steps = [(i, j) for i, j in _batcher(size) if j < n]  # lines >= n hold +inf: their steps change nothing
    live, kept = {n // 2}, []
    for i, j in reversed(steps):
        lo, hi = i in live, j in live
        if lo or hi:
            kept.append((i, j, lo, hi))
            live |= {i, j}
    return tuple(reversed(kept))


def median_of(values: list[Tensor]) -> Tensor:
    """Element-wise median of an odd number of same-shaped tensors."""
    lines = list(values)
    for i, j, lo, hi in median_network(len(lines)):
        a, b = lines[i], lines[j]
        if lo:
            lines[i] = torch.minimum(a, b)
        if hi:
            lines[j] = torch.maximum(a, b)
    return lines[len(lines) // 2]


def median_blur(img: Tensor, k: int, rows: int = 0) -> Tensor:
    """``k × k`` median filter of ``[..., C, H, W]`` with reflect padding (``cv2.medianBlur``'s border rule).

    On the CPU the network runs on blocks of ``rows`` output rows (default 8) so that its ``k²`` lines stay in
    cache (twice as fast); on a GPU on the whole tensor at once.
    """
    if k == 1:
        return img
    pad = k // 2
    shape = img.shape
    flat = img.reshape(-1, *shape[-3:])
    padded = F.pad(flat, (pad, pad, pad, pad), mode="reflect")
    h, w = shape[-2], shape[-1]
    rows = rows or (h if img.is_cuda else 8)
    out = torch.empty_like(flat)
    for r0 in range(0, h, rows):
        n = min(rows, h - r0)
        block = padded[..., r0:r0 + n + k - 1, :].contiguous()
        out[..., r0:r0 + n, :] = median_of([block[..., dy:dy + n, dx:dx + w] for dy in range(k) for dx in range(k)])
    return out.reshape(shape)
