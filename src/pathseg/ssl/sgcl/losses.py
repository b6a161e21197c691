"""Losses of SGCL (Lin et al., MedIA 2023; reference code ``SpatialCLMcrop``): the merged multi-positive loss,
instance discrimination against a memory bank, and the ramp-up of the spatial/semantic term.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

#: Added inside the log by the reference implementation (``parity=True``).
PARITY_EPS = 1e-7


def rampup_weight(epoch: float, length: int = 10) -> float:
    """Sigmoid-shaped ramp-up ``w(e) = exp(−5 (1 − min(e, R)/R)²)`` of the 0-based epoch (``R = length``).

    ``w(0) = 0.0067``, ``w(5) = 0.2865``, ``w(e ≥ R) = 1``; ``length <= 0`` gives 1.
    """
    if length <= 0:
        return 1.0
    phase = 1.0 - min(max(float(epoch), 0.0), float(length)) / length
    return math.exp(-5.0 * phase * phase)


def merged_positive_loss(
    sims: Tensor, positives: Tensor, negatives: Tensor, temperature: float = 0.07, parity: bool = False,
    detach_negatives: bool = True,
) -> Tensor:
    """Merged multi-positive InfoNCE of SGCL: the positive *sum* inside the log (a bag of positives).

    Default (``parity=False``), over the anchors that have at least one positive (the others are left out)::

        L = −mean_i log( Σ_{p∈P(i)} e^{s_ip/τ} / (Σ_{p∈P(i)} e^{s_ip/τ} + Σ_k e^{n_ik/τ}) )

    computed with log-sum-exp (no overflow of ``e^{1/0.07}`` in fp16/fp32). ``parity=True`` reproduces the
    reference code exactly (quirk Q1): the mask is applied before the exponential, so every non-positive bank column
    adds ``e⁰ = 1`` to the denominator, ``1e-7`` is added inside the log, and an anchor without positives contributes
    ``−log 1e-7 ≈ 16.12`` (all anchors are averaged).

    Args:
        sims: Cosine similarities of each query with the whole bank ``[B, N]``.
        positives: Boolean ``[B, N]``: spatial ∪ semantic positives (the anchor itself excluded).
        negatives: Cosine similarities with the mined negatives ``[B, K]`` (``-inf`` marks an unused slot).
        temperature: τ (0.07).
        parity: Reproduce the reference formula (see above).
        detach_negatives: Quirk Q2 of the reference: no gradient through the hard negatives (default, as the
            original); ``False`` lets them be pushed away too.

    Returns:
        Scalar loss (0, with a graph, when no anchor has a positive and ``parity`` is off).
    """
    if detach_negatives:
        negatives = negatives.detach()
    if parity:
        num = (torch.exp(sims / temperature) * positives).sum(1)
        den = torch.exp(sims * positives / temperature).sum(1) + torch.exp(negatives / temperature).sum(1)
        return -torch.log(num / den + PARITY_EPS).mean()
    has = positives.any(1)
    if not bool(has.any()):
        return sims.sum() * 0.0
    pos_logits = (sims / temperature).masked_fill(~positives, float("-inf"))[has]
    neg_logits = (negatives / temperature)[has]
    pos = torch.logsumexp(pos_logits, 1)
    total = torch.logsumexp(torch.cat([pos_logits, neg_logits], 1), 1)
    return (total - pos).mean()


def instance_nce(pos: Tensor, neg: Tensor, temperature: float = 0.2) -> Tensor:
    """Cross-entropy with the positive in column 0: ``pos`` ``[M]`` and ``neg`` ``[M, K]`` cosine similarities.

    SGCL's instance-discrimination (NPID) and multi-crop losses (``ContrastiveHead``, τ_h = 0.2).
    """
    logits = torch.cat([pos[:, None], neg], 1) / temperature
    return F.cross_entropy(logits, torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device))
