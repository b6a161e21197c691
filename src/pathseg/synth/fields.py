"""Smooth random fields and irregular region layouts (domain-warped Voronoi cells)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise, rescaled to zero mean and unit standard deviation.

    Large ``sigma`` is computed on a coarser grid and upsampled bilinearly (same look, much faster).

    Args:
        rng: Random generator.
        shape: ``(H, W)`` of the output.
        sigma: Correlation length in pixels.

    Returns:
        ``[H, W]`` float32 field.
    """
    h, w = shape
    factor = max(1, int(sigma // 3))
    lh, lw = math.ceil(h / factor) + 2, math.ceil(w / factor) + 2
    low = rng.standard_normal((lh, lw), dtype=np.float32)
    low = ndimage.gaussian_filter(low, sigma / factor, mode="wrap")
    if factor > 1:
        low = ndimage.zoom(low, factor, order=1, grid_mode=False)
    field = low[:h, :w]
    std = float(field.std())
    return ((field - field.mean()) / (std if std > 0 else 1.0)).astype(np.float32)


def voronoi_labels(
    rng: np.random.Generator,
    shape: tuple[int, int],
    cell_classes: Sequence[int],
    warp: float,
    warp_sigma: float,
) -> np.ndarray:
    """A class map made of domain-warped Voronoi cells, so region borders are irregular curves.

    Args:
        rng: Random generator.
        shape: ``(H, W)``.
        cell_classes: The class of each cell (one seed point per entry).
        warp: Displacement amplitude of the coordinates in pixels.
        warp_sigma: Correlation length of the displacement field in pixels.

    Returns:
        ``[H, W]`` uint8 class map.
    """
    h, w = shape
    n = len(cell_classes)
    seeds_y = rng.uniform(-0.1 * h, 1.1 * h, n)
    seeds_x = rng.uniform(-0.1 * w, 1.1 * w, n)
    yy = np.arange(h, dtype=np.float32)[:, None] + warp * smooth_noise(rng, shape, warp_sigma)
    xx = np.arange(w, dtype=np.float32)[None, :] + warp * smooth_noise(rng, shape, warp_sigma)
    best = np.full(shape, np.inf, dtype=np.float32)
    out = np.zeros(shape, dtype=np.uint8)
    for sy, sx, cls in zip(seeds_y, seeds_x, cell_classes):
        d = (yy - np.float32(sy)) ** 2 + (xx - np.float32(sx)) ** 2
        closer = d < best
        best = np.where(closer, d, best)
        out[closer] = cls
    return out


def fibre_field(
    rng: np.random.Generator, shape: tuple[int, int], wavelength: float, waviness: float, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Wavy parallel streaks (collagen fibres) and their local direction.

    Args:
        rng: Random generator.
        shape: ``(H, W)``.
        wavelength: Distance between fibres in pixels.
        waviness: Amplitude of the phase perturbation in radians.
        sigma: Correlation length of the perturbation in pixels.

    Returns:
        ``(streaks, angle)``: streak intensity in ``[0, 1]`` and the fibre direction in radians (``[H, W]``).
    """
    h, w = shape
    theta = rng.uniform(0, math.pi)
    k = 2 * math.pi / wavelength
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    phase = k * (xx * math.cos(theta) + yy * math.sin(theta)) + waviness * smooth_noise(rng, shape, sigma)
    gy, gx = np.gradient(phase)
    angle = np.arctan2(gy, gx) + np.float32(math.pi / 2)  # fibres run across the phase gradient
    streaks = 0.5 + 0.5 * np.sin(phase)
    return streaks.astype(np.float32), angle.astype(np.float32)
