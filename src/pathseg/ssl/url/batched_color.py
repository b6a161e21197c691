"""The photometric part of URL's views for a batch of views, with per-view parameters (spec §2.3).

The same steps as :func:`pathseg.ssl.url.views.apply_photometric`, on ``[N, S, 3, H, W]`` (N views of S scales):
each view's blur (grouped by kernel), its noise (a generator seeded with the view's ``noise_seed`` on the
device), a clamp, then hue, saturation, brightness and contrast in the view's own order, clamped after every step.
Hue and saturation are written here for tensors of factors (torchvision takes one factor per call).
"""

from __future__ import annotations

import torch
from torch import Tensor

from pathseg.ssl.url.median import median_blur


def rgb_hue_shift(img: Tensor, shift: Tensor) -> Tensor:
    """Rotate the HSV hue of RGB images ``[..., 3, H, W]`` in 0..1 by ``shift`` (turns, broadcast to ``[..., 1,
    1, 1]``), keeping saturation and value: ``c_n = max − (max − min) · clamp(min(k, 4 − k), 0, 1)`` with
    ``k = (n + 6 h′) mod 6``, ``n = 5, 3, 1`` for R, G, B."""
    r, g, b = img.unbind(dim=-3)
    minc, maxc = torch.aminmax(img, dim=-3)
    span = maxc - minc
    safe = torch.where(span > 0, span, torch.ones_like(span))
    hue = torch.where(maxc == r, ((g - b) / safe) % 6,
                      torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4)) / 6
    hue = (hue + shift.squeeze(-3)) % 1.0
    out = []
    for n in (5.0, 3.0, 1.0):
        k = (n + 6 * hue) % 6
        out.append(maxc - span * torch.minimum(k, 4 - k).clamp(0, 1))
    return torch.stack(out, dim=-3)


def saturate(img: Tensor, factor: Tensor) -> Tensor:
    """Blend RGB images in 0..1 with their grey levels (ITU-R 601-2 luma): ``factor · img + (1 − factor) · grey``,
    clamped to 0..1."""
    r, g, b = img.unbind(dim=-3)
    grey = r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).unsqueeze(-3)
    return (img * factor + grey * (1.0 - factor)).clamp_(0, 1)


def _gaussian(x: Tensor, kernel: tuple[int, int]) -> Tensor:
    from torchvision.transforms.v2 import functional as TF

    return TF.gaussian_blur(x.flatten(0, 1), kernel_size=[kernel[0], kernel[1]]).view_as(x)


def blur_and_noise(x: Tensor, photo: Tensor, seeds: Tensor) -> Tensor:
    """Each view's blur or noise (``photo`` rows on the CPU), then clamp to 0..255."""
    op, kx, ky = photo[:, 0].long(), photo[:, 1].long(), photo[:, 2].long()
    x = x.clone()
    gauss = (op == 0) & (torch.maximum(kx, ky) > 1)
    for pair in sorted({(int(a), int(b)) for a, b in zip(kx[gauss], ky[gauss])}):
        idx = torch.nonzero(gauss & (kx == pair[0]) & (ky == pair[1])).flatten().to(x.device)
        x[idx] = _gaussian(x[idx], pair)
    median = (op == 1) & (kx > 1)
    for k in sorted({int(k) for k in kx[median]}):
        idx = torch.nonzero(median & (kx == k)).flatten().to(x.device)
        x[idx] = median_blur(x[idx], k)
    for i in torch.nonzero((op == 2) & (photo[:, 3] > 0)).flatten().tolist():
        channels = x.shape[2] if photo[i, 4] > 0.5 else 1
        gen = torch.Generator(device=x.device).manual_seed(int(seeds[i]))
        size = (x.shape[1], channels, *x.shape[3:])
        x[i] = x[i] + torch.randn(size, generator=gen, device=x.device) * float(photo[i, 3])
    return x.clamp_(0, 255)


def _factor(photo: Tensor, idx: Tensor, col: int, like: Tensor) -> Tensor:
    return photo[idx, col].to(like.device, like.dtype).view(-1, 1, 1, 1, 1)


def colour_steps(x: Tensor, photo: Tensor, order: Tensor, parity: bool) -> Tensor:
    """Hue (0), saturation (1), brightness (2) and contrast (3, a no-op with ``parity``) in each view's order."""
    for slot in range(order.shape[1]):
        for step in range(4):
            mask = order[:, slot] == step
            if step == 0:
                mask &= photo[:, 5] != 0
            if step == 3 and parity:
                continue
            idx = torch.nonzero(mask).flatten()
            if idx.numel() == 0:
                continue
            dev_idx = idx.to(x.device)
            part = x[dev_idx]
            if step == 0:
                part = rgb_hue_shift(part / 255.0, _factor(photo, idx, 5, part)) * 255.0
            elif step == 1:
                part = saturate(part / 255.0, _factor(photo, idx, 6, part)) * 255.0
            elif step == 2:
                part = part + _factor(photo, idx, 7, part)
            else:
                mean = part.mean(dim=(-2, -1), keepdim=True)
                part = (part - mean) * _factor(photo, idx, 8, part) + mean
            x[dev_idx] = part
        x = x.clamp_(0, 255)
    return x


def photometric_batch(x: Tensor, photo: Tensor, order: Tensor, seeds: Tensor, parity: bool = False) -> Tensor:
    """Apply every view's photometric draw to ``x`` ``[N, S, 3, H, W]`` (0..255).

    Args:
        x: Warped views (float, any device).
        photo: ``[N, 9]`` rows of :mod:`pathseg.ssl.url.canvas` (any device; read on the CPU).
        order: ``[N, 4]`` step orders.
        seeds: ``[N]`` noise seeds.
        parity: The original's no-op contrast.

    Returns:
        ``[N, S, 3, H, W]`` in 0..255.
    """
    photo, order, seeds = photo.cpu(), order.cpu(), seeds.cpu()
    return colour_steps(blur_and_noise(x, photo, seeds), photo, order, parity)
