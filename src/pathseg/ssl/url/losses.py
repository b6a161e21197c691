"""URL's three contrastive losses (``docs/methods/url.md``, spec ``methods/url.md`` §1.2, §1.5, §1.6).

All three are vectorised over the batch: superpixel prototypes are segment means computed with
``index_add_`` over a per-image compact id space, and every per-image quantity is padded to the largest number of
superpixels in the batch and masked. All negatives come from the same image (spec §1.1).

Ids below zero in a superpixel map are ignored (padding from geometric transforms).
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_NEG = -1e9  # finite "minus infinity" for masked logits (keeps gradients finite when a row is fully masked)


def _check_dense(f: Tensor, sp: Tensor, name: str) -> None:
    if f.ndim != 4 or sp.ndim != 3 or f.shape[0] != sp.shape[0] or f.shape[2:] != sp.shape[1:]:
        raise ValueError(
            f"{name}: expected features [B, C, H, W] and superpixel ids [B, H, W] of the same size, "
            f"got {tuple(f.shape)} and {tuple(sp.shape)}"
        )


def compact_ids(sps: list[Tensor]) -> tuple[list[Tensor], int]:
    """Map each image's superpixel ids, jointly over several views, to ``0..K_b-1``.

    Args:
        sps: Id maps ``[B, H, W]`` (one per view, same ``B``); ids ``< 0`` are ignored.

    Returns:
        Per view, a ``[B, H*W]`` long tensor of compact indices (``-1`` where ignored), and ``K`` = the largest
        number of distinct ids of one image (at least 1). The same id of the same image gets the same index in
        every view, and indices follow the sorted order of the ids.
    """
    b = sps[0].shape[0]
    flat = [sp.reshape(b, -1).long() for sp in sps]
    valid = [x >= 0 for x in flat]
    top = max((int(x.max()) for x in flat if x.numel()), default=0)
    span = max(top, 0) + 1
    offsets = torch.arange(b, device=flat[0].device).unsqueeze(1) * span
    keys = [x + offsets for x in flat]
    present = torch.cat([k[v] for k, v in zip(keys, valid)])
    uniq = torch.unique(present)  # sorted: images are contiguous blocks
    first = torch.searchsorted(uniq, offsets.squeeze(1))
    per_image = torch.bincount(torch.div(uniq, span, rounding_mode="floor"), minlength=b)
    k_max = max(int(per_image.max()) if uniq.numel() else 0, 1)
    out = []
    for k, v in zip(keys, valid):
        local = torch.searchsorted(uniq, k) - first.unsqueeze(1)
        out.append(torch.where(v, local, torch.full_like(local, -1)))
    return out, k_max


def prototypes(f: Tensor, local: Tensor, k: int, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """Per-superpixel prototypes: mean of the *unnormalised* pixel embeddings, then L2-normalised (spec §1.5).

    Args:
        f: Dense embeddings ``[B, C, H, W]``.
        local: Compact indices ``[B, H*W]`` from :func:`compact_ids` (``-1`` ignored).
        k: Number of slots per image.
        eps: Floor of the norm in the normalisation.

    Returns:
        ``z`` ``[B, K, C]`` normalised prototypes (zero where absent), ``counts`` ``[B, K]`` pixel counts, and the
        pixel embeddings ``[B, H*W, C]``.
    """
    b, c = f.shape[:2]
    pix = f.flatten(2).transpose(1, 2)  # [B, N, C]
    valid = local >= 0
    slot = (local + torch.arange(b, device=f.device).unsqueeze(1) * k)[valid]
    sums = pix.new_zeros(b * k, c).index_add_(0, slot, pix[valid])
    counts = torch.bincount(slot, minlength=b * k).to(pix.dtype)
    mean = sums / counts.clamp_min(1).unsqueeze(1)
    z = F.normalize(mean, dim=1, eps=eps).view(b, k, c)
    return z, counts.view(b, k), pix


class ImageLevelLoss(nn.Module):
    """Image-level task ("component discrimination", spec §1.2).

    For image b, the 2S embeddings ``u_1..u_S`` (view 1, scales 1..S) and ``u_{S+1}..u_{2S}`` (view 2) are
    L2-normalised; ``s_ij = cos(u_i, u_j)/τ``; anchor i's positive is the same scale in the other view (``i±S``)
    and its negatives are the other scales of the same image in both views::

        ℓ_i = −log( exp(s_{i,p(i)}) / Σ_{j≠i} exp(s_ij) ),   L = (1/(B·S)) Σ_b Σ_{i=1..2S} ℓ_i

    With S = 1 the only term of the denominator is the positive: the loss is identically 0 (a warning is given
    once per instance).

    Args:
        temperature: τ.
        reduction: ``"spec"`` = sum over the 2S anchors divided by B·S (the spec's scale, twice the mean anchor
            loss); ``"mean"`` = mean anchor loss.
        eps: Floor of the norm in the L2 normalisation.
    """

    def __init__(self, temperature: float = 0.3, reduction: Literal["spec", "mean"] = "spec", eps: float = 1e-8):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature
        self.reduction = reduction
        self.eps = eps
        self._warned = False

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        """Loss of ``z1``, ``z2`` of shape ``[B, S, D]`` (view 1 and view 2 of each scale of each image)."""
        if z1.ndim != 3 or z1.shape != z2.shape:
            shapes = f"{tuple(z1.shape)}, {tuple(z2.shape)}"
            raise ValueError(f"ImageLevelLoss: expected two [B, S, D] tensors, got {shapes}")
        b, s, _ = z1.shape
        if s == 1 and not self._warned:
            warnings.warn(
                "ImageLevelLoss with a single scale is identically zero (no negatives): use several scales",
                stacklevel=2,
            )
            self._warned = True
        u = F.normalize(torch.cat([z1, z2], dim=1).float(), dim=-1, eps=self.eps)  # [B, 2S, D]
        logits = u @ u.transpose(1, 2) / self.temperature
        eye = torch.eye(2 * s, dtype=torch.bool, device=u.device)
        logits = logits.masked_fill(eye, _NEG)
        target = (torch.arange(2 * s, device=u.device) + s) % (2 * s)
        total = F.cross_entropy(logits.reshape(b * 2 * s, 2 * s), target.repeat(b), reduction="sum")
        return total / (b * s) if self.reduction == "spec" else total / (b * 2 * s)


class SuperpixelLoss(nn.Module):
    """Superpixel-level task ("prototype discrimination", spec §1.5).

    Prototypes ``z_{v,k}`` = normalised mean of the unnormalised embeddings of id k in view v. With
    ``Z = [z_{1,·}; z_{2,·}]`` and ``A = exp(Z Zᵀ/τ)``, an anchor a (id k of view 1 present in both views) with
    positive a′ (id k in view 2) has ``ℓ_a = −log(A[a,a′] / (Σ_j A[a,j] − A[a,a]))``: the denominator spans all
    other superpixels of both views of the same image. ``L_sp(1→2)`` is the mean over the anchors of view 1,
    ``L_sp(2→1)`` the symmetric one; the result is the mean over the batch of their sum.

    An image whose views share no superpixel contributes 0 (with a warning); the mean is still over all B.

    Args:
        temperature: τ.
        negatives: ``"both_views"`` (the spec's method) or ``"other_view"`` (the old ``calc_dc_loss_sp``
            ablation: only the other view's superpixels in the denominator).
        eps: Floor of the norm in the L2 normalisation.
    """

    def __init__(
        self,
        temperature: float = 0.3,
        negatives: Literal["both_views", "other_view"] = "both_views",
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature
        self.negatives = negatives
        self.eps = eps

    def forward(self, f1: Tensor, f2: Tensor, sp1: Tensor, sp2: Tensor) -> Tensor:
        """Loss of dense embeddings ``f1``, ``f2`` ``[B, C, H, W]`` with their ids ``sp1``, ``sp2`` ``[B, H, W]``."""
        _check_dense(f1, sp1, "SuperpixelLoss")
        _check_dense(f2, sp2, "SuperpixelLoss")
        if f1.shape[:2] != f2.shape[:2]:
            raise ValueError(f"SuperpixelLoss: views differ in batch or channels: {tuple(f1.shape)}, {tuple(f2.shape)}")
        (l1, l2), k = compact_ids([sp1, sp2])
        z1, c1, _ = prototypes(f1.float(), l1, k, self.eps)
        z2, c2, _ = prototypes(f2.float(), l2, k, self.eps)
        z = torch.cat([z1, z2], dim=1)  # [B, 2K, C]
        present = torch.cat([c1 > 0, c2 > 0], dim=1)  # [B, 2K]
        logits = z @ z.transpose(1, 2) / self.temperature  # [B, 2K, 2K]
        keep = present.unsqueeze(1) & ~torch.eye(2 * k, dtype=torch.bool, device=z.device)
        if self.negatives == "other_view":
            view = torch.arange(2 * k, device=z.device) // k
            keep = keep & (view.unsqueeze(0) != view.unsqueeze(1))
        logits = logits.masked_fill(~keep, _NEG)
        positive = (torch.arange(2 * k, device=z.device) + k) % (2 * k)
        pos_logit = logits.gather(2, positive.view(1, -1, 1).expand(z.shape[0], -1, 1)).squeeze(2)
        anchor_loss = torch.logsumexp(logits, dim=2) - pos_logit  # [B, 2K]
        shared = (c1 > 0) & (c2 > 0)  # [B, K]
        n_shared = shared.sum(1)
        if bool((n_shared == 0).any()):
            warnings.warn(
                f"SuperpixelLoss: {int((n_shared == 0).sum())} image(s) of the batch share no superpixel between "
                "the two views; they contribute 0",
                stacklevel=2,
            )
        mask = torch.cat([shared, shared], dim=1).to(anchor_loss.dtype)
        masked = torch.where(mask > 0, anchor_loss, torch.zeros_like(anchor_loss))
        denom = n_shared.clamp_min(1).to(anchor_loss.dtype)
        per_image = masked[:, :k].sum(1) / denom + masked[:, k:].sum(1) / denom
        return per_image.mean()


class PixelLoss(nn.Module):
    """Pixel-level task ("spatial smoothness", spec §1.6), for one view.

    For every superpixel i of the view, with normalised prototype ``z_i`` and normalised pixel embeddings p̂::

        e_sim(i) = mean_{p∈i} exp(cos(z_i, p̂)/τ)                  (mean of the exponentials)
        e_dis(i) = Σ_{j≠i} exp(cos(z_i, z_j)/τ)                      (negatives="prototype", the spec/code)
        e_dis(i) = Σ_{j≠i} mean_{q∈j} exp(cos(z_i, q̂)/τ)            (negatives="pixel", the figure's reading)
        ℓ_i = −log( e_sim / (e_sim + e_dis) ),   L_px = mean_i ℓ_i

    The result is the mean over the batch (an image without any valid pixel contributes 0). All exponentials are
    computed as ``exp((cos − 1)/τ)``; the common factor cancels in the ratio and nothing can overflow.

    Args:
        temperature: τ.
        negatives: ``"prototype"`` or ``"pixel"`` (see above).
        eps: Floor of the norm in the L2 normalisations.
    """

    def __init__(
        self, temperature: float = 0.3, negatives: Literal["prototype", "pixel"] = "prototype", eps: float = 1e-8
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if negatives not in ("prototype", "pixel"):
            raise ValueError(f"negatives must be 'prototype' or 'pixel', got {negatives!r}")
        self.temperature = temperature
        self.negatives = negatives
        self.eps = eps

    def forward(self, f: Tensor, sp: Tensor) -> Tensor:
        """Loss of dense embeddings ``f`` ``[B, C, H, W]`` with superpixel ids ``sp`` ``[B, H, W]``."""
        _check_dense(f, sp, "PixelLoss")
        (local,), k = compact_ids([sp])
        z, counts, pix = prototypes(f.float(), local, k, self.eps)
        p_hat = F.normalize(pix, dim=2, eps=self.eps)  # [B, N, C]
        present = counts > 0  # [B, K]
        valid = local >= 0
        inv_t = 1.0 / self.temperature
        b = f.shape[0]
        if self.negatives == "prototype":
            own = z.gather(1, local.clamp_min(0).unsqueeze(2).expand(-1, -1, z.shape[2]))  # [B, N, C]
            e_pix = torch.exp(((own * p_hat).sum(2) - 1.0) * inv_t) * valid  # [B, N]
            e_sim = e_pix.new_zeros(b, k).scatter_add_(1, local.clamp_min(0), e_pix) / counts.clamp_min(1)
            between = torch.exp((z @ z.transpose(1, 2) - 1.0) * inv_t)  # [B, K, K]
        else:
            e_all = torch.exp((z @ p_hat.transpose(1, 2) - 1.0) * inv_t) * valid.unsqueeze(1)  # [B, K, N]
            slot = local.clamp_min(0).unsqueeze(1).expand(-1, k, -1)
            between = e_all.new_zeros(b, k, k).scatter_add_(2, slot, e_all) / counts.clamp_min(1).unsqueeze(1)
            e_sim = between.diagonal(dim1=1, dim2=2)
        others = present.unsqueeze(1) & ~torch.eye(k, dtype=torch.bool, device=f.device)
        e_dis = (between * others).sum(2)
        e_sim = e_sim.clamp_min(torch.finfo(e_sim.dtype).tiny)
        loss_i = torch.log(e_sim + e_dis) - torch.log(e_sim)  # [B, K]
        loss_i = torch.where(present, loss_i, torch.zeros_like(loss_i))
        per_image = loss_i.sum(1) / present.sum(1).clamp_min(1)
        return per_image.mean()
