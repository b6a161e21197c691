"""Progressive dropout attention (PDA) and its schedule (spec §1.2).

With ``F`` the last feature map and ``W`` the 1x1 classifier weights:

1. ``M_c = ReLU(W_c · F)`` for every class;
2. ``M̂_c = 0`` where ``M_c > γ · max_p M_c`` (strictly), else ``M_c``;
3. ``A = Σ_c M̂_c / divisor`` (the original divides by the constant 4; the fixed version by the class count);
4. ``F̃ = F ⊙ A`` (nothing detached).

Schedule: off for epochs ``< start_epoch`` (3); γ starts at γ0 (1.0) and after every epoch
``γ ← decay · γ`` while ``γ > floor`` (0.98, 0.65). So γ during epoch e is ``0.98^e`` until the floor binds
(after epoch 21, at 0.6412).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PARITY_DIVISOR = 4.0
"""The constant the original code divides the summed class maps by, whatever the number of classes."""


def pda_gamma(epoch: int, gamma0: float = 1.0, decay: float = 0.98, floor: float = 0.65) -> float:
    """The drop ratio γ in force during ``epoch`` (0-based).

    The original updates γ after every epoch, PDA on or off: ``if γ > floor: γ *= decay``.

    Example:
        >>> round(pda_gamma(3), 4)
        0.9412
    """
    gamma = gamma0
    for _ in range(max(epoch, 0)):
        if gamma > floor:
            gamma *= decay
    return gamma


def pda_active(epoch: int, start_epoch: int = 3) -> bool:
    """Whether PDA is on during ``epoch`` (the original: ``epoch > 2``)."""
    return epoch >= start_epoch


def class_maps(features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``M = ReLU(W · F)``: ``[N, C, h, w]`` from features ``[N, K, h, w]`` and weights ``[C, K]``."""
    return F.relu(torch.einsum("nkhw,ck->nchw", features, weight))


def dropout_attention(features: torch.Tensor, weight: torch.Tensor, gamma: float, divisor: float) -> torch.Tensor:
    """Re-weight ``features`` by the peak-dropped mean class map (steps 1-4 above).

    Args:
        features: ``[N, K, h, w]``.
        weight: Classifier weights ``[C, K]`` (the current tensor; gradients flow through it).
        gamma: Drop ratio; values strictly above ``gamma`` times the map's maximum are zeroed.
        divisor: The sum over classes is divided by this (4 in the original, ``C`` in the fixed version).

    Returns:
        ``F ⊙ A`` with the same shape as ``features``.
    """
    maps = class_maps(features, weight)
    peak = maps.amax(dim=(2, 3), keepdim=True)
    dropped = torch.where(maps > gamma * peak, torch.zeros_like(maps), maps)
    attention = dropped.sum(dim=1, keepdim=True) / divisor
    return features * attention
