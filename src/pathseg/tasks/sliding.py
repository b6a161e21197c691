"""Sliding-window inference: overlapping tiles, blended class probabilities.

Each window's logits are turned into probabilities (softmax), weighted by a Gaussian (or flat) window and summed;
the sum is divided by the summed weights. Images smaller than the window are padded (reflect where possible) and
the result is cropped back. For a translation-equivariant model the output equals a full-image forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

Blend = Literal["gaussian", "mean"]


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Start offsets covering ``[0, size)`` with windows of ``window`` (``size >= window``), last one flush."""
    if size <= window:
        return [0]
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


def blend_weights(window: int, blend: Blend = "gaussian", sigma_scale: float = 0.125) -> torch.Tensor:
    """``[window, window]`` weights: a Gaussian (σ = ``sigma_scale`` · window, floor 1e-3 of its peak) or ones."""
    if blend == "mean":
        return torch.ones(window, window)
    if blend != "gaussian":
        raise ValueError(f"unknown blend '{blend}' (gaussian or mean)")
    centre = (window - 1) / 2.0
    coords = torch.arange(window, dtype=torch.float64) - centre
    g = torch.exp(-(coords**2) / (2 * (sigma_scale * window) ** 2))
    w = torch.outer(g, g)
    w = w / w.max()
    return w.clamp_min(1e-3).float()


def _pad_to(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    ph, pw = h - x.shape[-2], w - x.shape[-1]
    if ph <= 0 and pw <= 0:
        return x
    ph, pw = max(ph, 0), max(pw, 0)
    mode = "reflect" if ph < x.shape[-2] and pw < x.shape[-1] else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


@torch.no_grad()
def sliding_window_predict(
    model: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    window: int,
    overlap: float = 0.25,
    num_classes: int | None = None,
    batch_size: int = 4,
    blend: Blend = "gaussian",
    activation: Literal["softmax", "sigmoid", "none"] = "softmax",
) -> torch.Tensor:
    """Class probabilities of a whole image by overlapping windows.

    Args:
        model: Maps ``[N, C, window, window]`` to logits ``[N, K, window, window]`` (put it in eval mode first).
        image: ``[C, H, W]`` or ``[B, C, H, W]`` (normalised like the training data).
        window: Window side in pixels (e.g. the training crop size).
        overlap: Fraction of the window shared by neighbours, in ``[0, 1)``.
        num_classes: Expected ``K`` (checked); default: taken from the model output.
        batch_size: Windows per forward pass.
        blend: ``"gaussian"`` (centre-weighted, fewer seams) or ``"mean"`` (plain average).
        activation: Applied to each window's logits before blending.

    Returns:
        ``[B, K, H, W]`` float32 probabilities on the image's device.
    """
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    x = image.unsqueeze(0) if image.dim() == 3 else image
    if x.dim() != 4:
        raise ValueError(f"image must be [C, H, W] or [B, C, H, W], got {tuple(image.shape)}")
    b, _, h, w = x.shape
    ph, pw = max(h, window), max(w, window)
    x = _pad_to(x, ph, pw)
    stride = max(1, math.floor(window * (1.0 - overlap)))
    ys, xs = window_starts(ph, window, stride), window_starts(pw, window, stride)
    coords = [(bi, y0, x0) for bi in range(b) for y0 in ys for x0 in xs]
    weight = blend_weights(window, blend).to(x.device)
    out: torch.Tensor | None = None
    norm = torch.zeros(1, 1, ph, pw, device=x.device)
    for y0 in ys:
        for x0 in xs:
            norm[..., y0 : y0 + window, x0 : x0 + window] += weight
    for i in range(0, len(coords), batch_size):
        chunk = coords[i : i + batch_size]
        tiles = torch.stack([x[bi, :, y0 : y0 + window, x0 : x0 + window] for bi, y0, x0 in chunk])
        logits = model(tiles).float()
        if logits.shape[-2:] != (window, window):
            logits = F.interpolate(logits, size=(window, window), mode="bilinear", align_corners=False)
        if activation == "softmax":
            probs = logits.softmax(dim=1)
        elif activation == "sigmoid":
            probs = logits.sigmoid()
        else:
            probs = logits
        if out is None:
            k = probs.shape[1]
            if num_classes is not None and k != num_classes:
                raise ValueError(f"model gives {k} channels, expected num_classes={num_classes}")
            out = torch.zeros(b, k, ph, pw, device=x.device)
        for (bi, y0, x0), p in zip(chunk, probs):
            out[bi, :, y0 : y0 + window, x0 : x0 + window] += p * weight
    assert out is not None
    return (out / norm)[:, :, :h, :w]
