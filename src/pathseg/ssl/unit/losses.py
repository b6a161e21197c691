"""Losses of UNIT (Song et al., IEEE TMI 2024; §2.2 of docs/methods/unit.md).

Generator step (G and S together, the legacy loop's structure with the stage-1 config weights)::

    L_GS = λ_adv ½ (L_adv(G) + L_adv(S)) + λ_cyc ½ (|S(G(x)) - x|₁ + |G(S(y)) - y|₁) + λ_seg L_seg

with StyleGAN2's non-saturating logistic loss for G/D_G, LSGAN (or logistic) for S/D_S, and L_seg = the instance
guidance on the generated image against the pseudo mask's instances (proposal-free: BCE on foreground + MSE of the
distance map on foreground pixels).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class LossWeights:
    """λ_adv, λ_cyc, λ_seg (stage_1.yaml: 1, 10, 6)."""

    adv: float = 1.0
    cycle: float = 10.0
    seg: float = 6.0


def g_logistic(fake_logits: Tensor) -> Tensor:
    """StyleGAN2 non-saturating generator loss ``softplus(-D(G(x)))``."""
    return F.softplus(-fake_logits).mean()


def d_logistic(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """StyleGAN2 discriminator loss ``softplus(D(fake)) + softplus(-D(real))``."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def g_lsgan(fake_logits: Tensor) -> Tensor:
    """LSGAN generator loss ``(D(G(y)) - 1)²``."""
    return (fake_logits - 1).pow(2).mean()


def d_lsgan(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """LSGAN discriminator loss ``½ ((D(real) - 1)² + D(fake)²)``."""
    return 0.5 * ((real_logits - 1).pow(2).mean() + fake_logits.pow(2).mean())


def instance_guidance(pred: Tensor, fg: Tensor, dist: Tensor) -> Tensor:
    """Proposal-free instance loss: ``BCE(pred₀, fg) + mean_{fg pixels} (pred₁ - dist)²``.

    Args:
        pred: ``[B, 2, H, W]`` (foreground logit, distance).
        fg: ``[B, H, W]`` 0/1 nucleus pixels of the pseudo mask.
        dist: ``[B, H, W]`` distance to the instance boundary normalised to [0, 1] per instance.
    """
    fgf = fg.to(pred.dtype)
    bce = F.binary_cross_entropy_with_logits(pred[:, 0], fgf)
    mse = ((pred[:, 1] - dist.to(pred.dtype)).pow(2) * fgf).sum() / fgf.sum().clamp(min=1.0)
    return bce + mse


def combine(terms: dict[str, Tensor], w: LossWeights) -> Tensor:
    """``L_GS`` from the terms ``adv_g``, ``adv_s``, ``cyc_x``, ``cyc_y``, ``seg`` (a missing term counts 0)."""
    zero = torch.zeros((), device=next(iter(terms.values())).device)

    def t(key: str) -> Tensor:
        return terms.get(key, zero)

    return w.adv * 0.5 * (t("adv_g") + t("adv_s")) + w.cycle * 0.5 * (t("cyc_x") + t("cyc_y")) + w.seg * t("seg")
