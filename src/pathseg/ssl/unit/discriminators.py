"""Discriminators of UNIT (Song et al., IEEE TMI 2024), R1 penalty and differentiable adaptive augmentation.

* ``StyleDiscriminator`` — D_G on H&E: a StyleGAN2-like residual discriminator (Karras et al., CVPR 2020) with a
  minibatch standard-deviation layer, plain convs (no upfirdn2d).
* ``PatchDiscriminator`` — D_S on mask images: the CycleGAN PatchGAN (4x4 stride-2 convs 64 -> 512, InstanceNorm
  after all but the first, LeakyReLU 0.2, a 1-channel conv; an H/16 map for 4 layers).
* ``AdaptiveAugment`` — ADA (Karras et al., NeurIPS 2020) reduced to differentiable ops in pure torch (DiffAugment
  style): horizontal flip, 90-degree rotation, integer translation, brightness, saturation, contrast, each applied
  per sample with probability ``p``; ``p`` follows ``sign(D(real))`` towards a target (0.6).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pathseg.ssl.unit.generator import channels_at


class _DBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cin, 3, padding=1)
        self.conv2 = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1, stride=2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = F.leaky_relu(self.conv2(F.leaky_relu(self.conv1(x), 0.2)), 0.2)
        return (h + self.skip(x)) / math.sqrt(2)


def minibatch_std(x: Tensor, group: int) -> Tensor:
    """Append the mean over features of the per-group standard deviation as one channel (StyleGAN)."""
    b, c, h, w = x.shape
    g = min(group, b)
    while b % g:
        g -= 1
    y = x.reshape(g, -1, c, h, w)
    std = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # [B/g]
    return torch.cat([x, std.repeat(g)[:, None, None, None].expand(b, 1, h, w)], dim=1)


class StyleDiscriminator(nn.Module):
    """D_G: fromRGB, residual blocks down to 4x4, minibatch std, conv, FC, one logit per image."""

    def __init__(self, size: int = 256, width: int = 32, max_channels: int = 512, mbstd_group: int = 4) -> None:
        super().__init__()
        self.from_rgb = nn.Conv2d(3, channels_at(size, width, max_channels), 1)
        blocks, res = [], size
        while res > 4:
            blocks.append(_DBlock(channels_at(res, width, max_channels), channels_at(res // 2, width, max_channels)))
            res //= 2
        self.blocks = nn.Sequential(*blocks)
        c4 = channels_at(4, width, max_channels)
        self.mbstd_group = mbstd_group
        self.conv = nn.Conv2d(c4 + 1, c4, 3, padding=1)
        self.fc = nn.Linear(c4 * 16, c4)
        self.out = nn.Linear(c4, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, 3, S, S] -> [B]`` logits."""
        h = self.blocks(F.leaky_relu(self.from_rgb(x), 0.2))
        h = F.leaky_relu(self.conv(minibatch_std(h, self.mbstd_group)), 0.2)
        return self.out(F.leaky_relu(self.fc(h.flatten(1)), 0.2)).squeeze(1)


class PatchDiscriminator(nn.Module):
    """D_S: CycleGAN PatchGAN on mask images (``layers`` stride-2 4x4 convs, then a 1-channel 4x4 conv)."""

    def __init__(self, width: int = 64, layers: int = 4) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        cin = 3
        for i in range(layers):
            cout = width * 2 ** min(i, 3)
            mods.append(nn.Conv2d(cin, cout, 4, stride=2, padding=1))
            if i > 0:
                mods.append(nn.InstanceNorm2d(cout))
            mods.append(nn.LeakyReLU(0.2, inplace=True))
            cin = cout
        mods.append(nn.Conv2d(cin, 1, 3, padding=1))
        self.net = nn.Sequential(*mods)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, 3, S, S] -> [B, 1, S / 2^layers, S / 2^layers]`` patch logits."""
        return self.net(x)


def r1_penalty(real_out: Tensor, real: Tensor) -> Tensor:
    """``E_batch ||grad_x D(x)||^2`` on real inputs (Mescheder et al., ICML 2018); ``real`` needs requires_grad."""
    (grad,) = torch.autograd.grad(real_out.sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


class AdaptiveAugment(nn.Module):
    """Differentiable augmentation with an adaptive probability ``p`` (a buffer, saved in checkpoints).

    Args:
        target: Target of ``E[sign(D(real))]`` (ADA: 0.6).
        speed: Change of ``p`` per update and per unit of the sign error (ADA: batch * interval / 500k images).
        enabled: ``False`` keeps ``p = 0`` (the ablation rungs before "+ADA").
    """

    p: Tensor

    def __init__(self, target: float = 0.6, speed: float = 0.01, enabled: bool = True) -> None:
        super().__init__()
        self.target, self.speed, self.enabled = target, speed, enabled
        self.register_buffer("p", torch.zeros(()))

    @torch.no_grad()
    def update(self, real_logits: Tensor) -> None:
        """``p += speed * sign(E[sign(D(real))] - target)``, clipped to [0, 1]."""
        if self.enabled:
            r = torch.sign(real_logits.detach().float()).mean()
            self.p.add_(self.speed * torch.sign(r - self.target)).clamp_(0.0, 1.0)

    def forward(self, x: Tensor) -> Tensor:
        """Augment ``x`` ``[B, 3, H, W]`` (values around [-1, 1]); identity while ``p = 0``."""
        p = float(self.p)
        if not self.enabled or p <= 0:
            return x
        b = x.shape[0]

        def pick() -> Tensor:
            return (torch.rand(b, 1, 1, 1, device=x.device) < p).to(x.dtype)

        x = torch.where(pick() > 0, x.flip(3), x)
        x = torch.where(pick() > 0, x.rot90(1, (2, 3)), x) if x.shape[2] == x.shape[3] else x
        x = _translate(x, pick(), 0.125)
        x = x + pick() * (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5) * 0.4
        mean = x.mean(dim=1, keepdim=True)
        x = mean + (x - mean) * (1 + pick() * (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5))
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return mean + (x - mean) * (1 + pick() * (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5))


def _translate(x: Tensor, on: Tensor, frac: float) -> Tensor:
    """Integer translation by up to ``frac`` of the size with zero padding, per sample where ``on`` is 1."""
    b, _, h, w = x.shape
    shift = (torch.rand(b, 2, device=x.device) * 2 - 1) * frac * torch.tensor([h, w], device=x.device)
    shift = torch.round(shift * on.view(b, 1)).long()
    yy = torch.arange(h, device=x.device)[None, :, None] - shift[:, 0, None, None]
    xx = torch.arange(w, device=x.device)[None, None, :] - shift[:, 1, None, None]
    valid = ((yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)).to(x.dtype)[:, None]
    idx = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).view(b, 1, -1).expand(-1, x.shape[1], -1)
    return torch.gather(x.flatten(2), 2, idx).view_as(x) * valid
