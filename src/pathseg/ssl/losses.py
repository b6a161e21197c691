"""Contrastive losses with documented shapes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class QueueInfoNCE(nn.Module):
    """InfoNCE with one positive and a queue of negatives (MoCo; DenseCL global and dense terms).

    ``loss = mean_i  -log( exp(q_i·k_i/τ) / (exp(q_i·k_i/τ) + Σ_j exp(q_i·n_j/τ)) )``

    Args:
        temperature: τ (MoCo v2 and DenseCL: 0.2).

    Shapes:
        query: ``[N, D]``, L2-normalised.
        positive: ``[N, D]``, L2-normalised (no gradient needed).
        negatives: ``[K, D]``, L2-normalised (the queue).
        output: scalar.
    """

    def __init__(self, temperature: float = 0.2) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, query: Tensor, positive: Tensor, negatives: Tensor) -> Tensor:
        """The mean loss over the N queries."""
        l_pos = (query * positive).sum(dim=1, keepdim=True)
        l_neg = query @ negatives.t().to(query.dtype)
        logits = torch.cat([l_pos, l_neg], dim=1) / self.temperature
        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits.float(), labels)
