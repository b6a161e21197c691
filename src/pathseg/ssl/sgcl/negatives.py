"""Semi-hard negatives of SGCL: Beta(5, 15)-distributed rank positions among the top 20 % (§1.5 of the spec).

Each anchor ranks the bank by backbone-space cosine similarity (excluded items last), keeps the first
``L = ⌊fraction · N⌋`` positions, and takes its items at ``nei_k`` rank positions drawn once per step (shared by the
batch, without replacement) from a distribution ``π`` over ``0..L−1`` shaped like Beta(a, b) (Lin et al., MedIA 2023).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: The reference builds π from a 100-bin histogram of 10⁶ Beta samples over [sample min, sample max].
BINS = 100
TAIL = 1e-6


def beta_rank_pdf(length: int, a: float = 5.0, b: float = 15.0, bins: int = BINS) -> Tensor:
    """Distribution ``π`` over the rank positions ``0..length−1`` (float64, sums to 1, every entry > 0).

    The reference histograms 10⁶ random samples over their [min, max] (≈ [0.006, 0.775] for Beta(5, 15)) and stretches
    the 100 bins to ``length`` with nearest-neighbour interpolation. Here the bin masses are the exact Beta
    probabilities over ``[q(1e-6), q(1 − 1e-6)]`` (``q`` the quantile function, the expected range of 10⁶ samples),
    so ``π`` is deterministic and does not depend on the RNG.
    """
    from scipy.special import betainc, betaincinv

    lo, hi = float(betaincinv(a, b, TAIL)), float(betaincinv(a, b, 1 - TAIL))
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    cdf = torch.from_numpy(betainc(a, b, edges.numpy()))
    mass = (cdf[1:] - cdf[:-1]).clamp_min(1e-300)
    pdf = F.interpolate(mass[None, None], size=length, mode="nearest")[0, 0]
    return pdf / pdf.sum()


def sample_ranks(pdf: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
    """``k`` distinct rank positions drawn from ``pdf`` (one draw per step, shared by the whole batch)."""
    if k > int((pdf > 0).sum()):
        raise ValueError(f"cannot draw {k} distinct ranks from {int((pdf > 0).sum())} positions")
    return torch.multinomial(pdf.float(), k, replacement=False, generator=generator)


def mine_negatives(scores: Tensor, exclude: Tensor, ranks: Tensor, length: int) -> tuple[Tensor, Tensor]:
    """Indices of the items at ``ranks`` in each anchor's ranking of the bank.

    Args:
        scores: Ranking score ``[B, N]`` (SGCL: backbone cosine ``ĥ_i·U_j``).
        exclude: Boolean ``[B, N]`` of items that are never negatives (the anchor, its spatial and semantic
            positives); they are masked with ``−∞`` (the reference multiplies by 0, so they could come back).
        ranks: Rank positions ``[K]`` (from :func:`sample_ranks`), each ``< length``.
        length: ``L``, the number of top positions kept.

    Returns:
        ``(indices [B, K], valid [B, K])``; ``valid`` is False where the rank fell on an excluded item (only when
        fewer than ``L`` items are left).
    """
    masked = scores.masked_fill(exclude, float("-inf"))
    values, order = torch.topk(masked, length, dim=1, sorted=True)
    ranks = ranks.to(order.device)
    return order[:, ranks], torch.isfinite(values[:, ranks])
