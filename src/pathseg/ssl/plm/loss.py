"""The dense term of PLM: overlap-weighted positives instead of DenseCL's argmax matching (spec §2.3).

Zhang, Kapse et al., "Precise Location Matching Improves Dense Contrastive Learning in Digital Pathology",
IPMI 2023 (arXiv 2212.12105).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pathseg.ssl.plm.geometry import row_normalize

Normalize = Literal["mean", "coverage"]


def queue_nce_per_anchor(anchors: Tensor, positives: Tensor, queue: Tensor, temperature: float) -> Tensor:
    """``-log(exp(a·p/τ) / (exp(a·p/τ) + Σ_u exp(a·u/τ)))`` per anchor.

    Args:
        anchors: ``[R, D]`` L2-normalised.
        positives: ``[R, D]`` L2-normalised.
        queue: ``[K, D]`` L2-normalised negatives.
        temperature: τ.

    Returns:
        ``[R]`` losses (at least float32).
    """
    l_pos = (anchors * positives).sum(dim=1, keepdim=True)
    l_neg = anchors @ queue.t().to(anchors.dtype)
    logits = torch.cat([l_pos, l_neg], dim=1)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature  # fp16/bf16 -> fp32
    return torch.logsumexp(logits, dim=1) - logits[:, 0]


class DenseMatchingLoss(nn.Module):
    """PLM's dense loss over two sets of anchors (query cells and mixed query cells), negatives from a queue.

    With ``M`` the row-normalised overlap (all-zero rows stay zero) and ``w`` its coverage (row sum):

    * set A: anchor ``norm(zqᵢ)``, positive ``norm(φ_k(Σⱼ Mqᵢⱼ zkⱼ))`` (no gradient), weight ``wqᵢ``;
    * set B: anchor ``norm(φ_q(Σᵢ Mkⱼᵢ zqᵢ))``, positive ``norm(zkⱼ)``, weight ``wkⱼ``;

    ``ℓ`` is InfoNCE against the queue; the loss is ``Σ w·ℓ / (2·B·N)`` (``normalize="mean"``, the original) or
    ``Σ w·ℓ / Σ w`` (``"coverage"``). Rows with ``w = 0`` add nothing in either mode and are not computed.

    Args:
        temperature: τ (0.2).
        normalize: ``"mean"`` or ``"coverage"``.

    Shapes:
        zq, zk: ``[B, N, D]`` raw (unnormalised) dense projections of the query and key views (``zk`` no grad).
        pq, pk: ``[B, N, N]`` from :func:`~pathseg.ssl.plm.overlap_fractions`.
        phi_q, phi_k: the matching layer (``D → D``) and its momentum copy.
        queue: ``[K, D]`` L2-normalised pooled dense keys.
        output: scalar.
    """

    def __init__(self, temperature: float = 0.2, normalize: Normalize = "mean") -> None:
        super().__init__()
        if normalize not in ("mean", "coverage"):
            raise ValueError(f"normalize must be 'mean' or 'coverage', got {normalize!r}")
        self.temperature = temperature
        self.normalize = normalize

    def forward(self, zq: Tensor, zk: Tensor, pq: Tensor, pk: Tensor, phi_q: nn.Module, phi_k: nn.Module,
                queue: Tensor) -> Tensor:
        """The weighted loss (see the class docstring)."""
        zk = zk.detach()
        mq, wq = row_normalize(pq.to(zq.dtype))
        mk, wk = row_normalize(pk.to(zq.dtype))
        keep_a, keep_b = wq > 0, wk > 0  # [B, N]
        with torch.no_grad():
            pos_a = F.normalize(phi_k(torch.bmm(mq, zk)[keep_a]), dim=-1)
        anc_a = F.normalize(zq[keep_a], dim=-1)
        anc_b = F.normalize(phi_q(torch.bmm(mk, zq)[keep_b]), dim=-1)
        pos_b = F.normalize(zk[keep_b], dim=-1)
        anchors, positives = torch.cat([anc_a, anc_b]), torch.cat([pos_a, pos_b])
        weights = torch.cat([wq[keep_a], wk[keep_b]])
        losses = queue_nce_per_anchor(anchors, positives, queue.detach(), self.temperature)
        total = (weights.to(losses.dtype) * losses).sum()
        if self.normalize == "coverage":
            return total / weights.sum().clamp_min(1e-12)
        return total / (2 * zq.shape[0] * zq.shape[1])
