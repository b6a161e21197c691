"""G (pseudo mask image -> H&E) of UNIT (Song et al., IEEE TMI 2024): a co-modulated style generator.

Plain PyTorch re-design of the CoModGAN / StyleGAN2 generator the paper builds on (Zhao et al., ICLR 2021; Karras
et al., CVPR 2020): a mask encoder (stride-2 conv blocks down to 4x4, skip features, a global code ``e``), a mapping
MLP ``z -> w``, per-layer styles ``A([e, w])``, modulated/demodulated 3x3 convolutions (grouped conv, no custom CUDA
ops, nearest upsampling instead of upfirdn2d), per-pixel noise inputs and the skip-RGB output architecture. The
output is not squashed (the original S decoder and our G both emit unbounded values, targets in [-1, 1]).
``ResNetGenerator`` is the CycleGAN generator of the ablation ``baseline``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def channels_at(res: int, width: int, max_channels: int) -> int:
    """Channels at resolution ``res``: ``width * 256 / res`` clipped to ``[8, max_channels]`` (StyleGAN-like)."""
    return int(min(max_channels, max(8, width * 256 // res)))


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution: ``w'_{oik} = s_i w_{oik}``, demodulated by ``1/sqrt(sum_{ik} w'^2 + eps)``.

    Args:
        in_ch: Input channels.
        out_ch: Output channels.
        kernel: Kernel size (odd).
        style_dim: Size of the style input (``[e, w]``).
        demodulate: Divide each output filter by its norm (False for toRGB).
        upsample: Nearest 2x upsampling before the convolution.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, style_dim: int, demodulate: bool = True,
                 upsample: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.scale = 1.0 / math.sqrt(in_ch * kernel * kernel)  # equalised learning rate
        self.affine = nn.Linear(style_dim, in_ch)
        nn.init.ones_(self.affine.bias)
        self.demodulate, self.upsample, self.padding = demodulate, upsample, kernel // 2

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        """``x`` ``[B, in, H, W]``, ``style`` ``[B, style_dim]`` -> ``[B, out, H', W']``."""
        b, c, h, w = x.shape
        s = self.affine(style)  # [B, in]
        weight = self.scale * self.weight[None] * s[:, None, :, None, None]  # [B, out, in, k, k]
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            h, w = 2 * h, 2 * w
        out = F.conv2d(x.reshape(1, b * c, h, w), weight.reshape(-1, c, *weight.shape[3:]), padding=self.padding,
                       groups=b)
        return out.reshape(b, -1, h, w)


class StyledLayer(nn.Module):
    """Modulated conv + per-pixel noise (learned strength) + bias + leaky ReLU (gain sqrt 2)."""

    def __init__(self, in_ch: int, out_ch: int, style_dim: int, upsample: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, style_dim, upsample=upsample)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(out_ch))

    def forward(self, x: Tensor, style: Tensor, noise: bool = True) -> Tensor:
        """One styled layer; ``noise=False`` gives the deterministic output."""
        x = self.conv(x, style)
        if noise:
            x = x + self.noise_strength * torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
        return F.leaky_relu(x + self.bias[None, :, None, None], 0.2) * math.sqrt(2)


class ToRGB(nn.Module):
    """1x1 modulated conv without demodulation (StyleGAN2 skip architecture)."""

    def __init__(self, in_ch: int, style_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(3))

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        """RGB contribution ``[B, 3, H, W]``."""
        return self.conv(x, style) + self.bias[None, :, None, None]


class MaskEncoder(nn.Module):
    """CoModGAN's conditional encoder: fromRGB, stride-2 blocks down to 4x4, skip features and a global code."""

    def __init__(self, size: int, width: int, max_channels: int, code_dim: int) -> None:
        super().__init__()
        self.from_rgb = nn.Conv2d(3, channels_at(size, width, max_channels), 1)
        self.blocks = nn.ModuleList()
        res = size
        while res > 4:
            cin, cout = channels_at(res, width, max_channels), channels_at(res // 2, width, max_channels)
            self.blocks.append(nn.Sequential(nn.Conv2d(cin, cin, 3, padding=1), nn.LeakyReLU(0.2),
                                             nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.LeakyReLU(0.2)))
            res //= 2
        c4 = channels_at(4, width, max_channels)
        self.to_code = nn.Sequential(nn.Flatten(), nn.Linear(c4 * 16, code_dim), nn.LeakyReLU(0.2))

    def forward(self, x: Tensor) -> tuple[dict[int, Tensor], Tensor]:
        """Features per resolution (``{res: [B, C, res, res]}``, 4 included) and the global code ``[B, code]``."""
        h = F.leaky_relu(self.from_rgb(x), 0.2)
        feats = {h.shape[-1]: h}
        for block in self.blocks:
            h = block(h)
            feats[h.shape[-1]] = h
        return feats, self.to_code(h)


class MappingNetwork(nn.Module):
    """StyleGAN's mapping MLP ``z -> w`` (z normalised to unit second moment)."""

    def __init__(self, z_dim: int, w_dim: int, layers: int) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        for i in range(layers):
            mods += [nn.Linear(z_dim if i == 0 else w_dim, w_dim), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*mods)

    def forward(self, z: Tensor) -> Tensor:
        """``[B, z_dim] -> [B, w_dim]``."""
        return self.net(z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8))


class CoModGenerator(nn.Module):
    """Co-modulated generator: styles of every layer from ``[e(mask), w(z)]``, skips from the mask encoder.

    Args:
        size: Image side (power of two, >= 8).
        width: Channels at 256 px; they double per halving of the resolution up to ``max_channels``
            (:func:`channels_at`).
        max_channels: Channel cap.
        z_dim: Noise code size (also ``w`` and the global mask code size).
        mapping_layers: Layers of the mapping MLP (StyleGAN2: 8).
        skip_resolution: Encoder features are added to the decoder at resolutions <= this (final config: 64).
    """

    def __init__(self, size: int = 256, width: int = 32, max_channels: int = 512, z_dim: int = 512,
                 mapping_layers: int = 8, skip_resolution: int = 64) -> None:
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"generator size must be a power of two >= 8, got {size}")
        self.size, self.z_dim, self.skip_resolution = size, z_dim, skip_resolution
        self.encoder = MaskEncoder(size, width, max_channels, z_dim)
        self.mapping = MappingNetwork(z_dim, z_dim, mapping_layers)
        style = 2 * z_dim
        c4 = channels_at(4, width, max_channels)
        self.first = StyledLayer(c4, c4, style)
        self.first_rgb = ToRGB(c4, style)
        self.ups, self.convs, self.rgbs = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        res = 8
        while res <= size:
            cin, cout = channels_at(res // 2, width, max_channels), channels_at(res, width, max_channels)
            self.ups.append(StyledLayer(cin, cout, style, upsample=True))
            self.convs.append(StyledLayer(cout, cout, style))
            self.rgbs.append(ToRGB(cout, style))
            res *= 2

    def forward(self, mask: Tensor, z: Tensor | None = None, noise: bool = True) -> Tensor:
        """``mask`` ``[B, 3, S, S]`` in [-1, 1] and ``z`` ``[B, z_dim]`` (drawn when ``None``) -> ``[B, 3, S, S]``."""
        if z is None:
            z = torch.randn(mask.shape[0], self.z_dim, device=mask.device, dtype=mask.dtype)
        feats, code = self.encoder(mask)
        style = torch.cat([code, self.mapping(z)], dim=1)  # co-modulation
        x = self.first(feats[4], style, noise)
        rgb = self.first_rgb(x, style)
        for up, conv, to_rgb in zip(self.ups, self.convs, self.rgbs):
            x = up(x, style, noise)
            if x.shape[-1] <= self.skip_resolution:
                x = x + feats[x.shape[-1]]
            x = conv(x, style, noise)
            rgb = F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False) + to_rgb(x, style)
        return rgb


class ResNetGenerator(nn.Module):
    """CycleGAN's ResNet generator (Zhu et al., ICCV 2017): c7s1-w, two stride-2 downs, residual blocks, two
    upsamplings, c7s1-3; InstanceNorm; output not squashed. ``z`` is ignored (the ablation ``baseline``)."""

    def __init__(self, width: int = 64, blocks: int = 9) -> None:
        super().__init__()
        w = width
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(3, w, 7), nn.InstanceNorm2d(w), nn.ReLU(True)]
        for m in (1, 2):
            layers += [nn.Conv2d(w * m, w * m * 2, 3, 2, 1), nn.InstanceNorm2d(w * m * 2), nn.ReLU(True)]
        layers += [_ResBlock(w * 4) for _ in range(blocks)]
        for m in (4, 2):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w * m, w * m // 2, 3, 1, 1),
                       nn.InstanceNorm2d(w * m // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(w, 3, 7)]
        self.net = nn.Sequential(*layers)
        self.z_dim = 0

    def forward(self, mask: Tensor, z: Tensor | None = None, noise: bool = True) -> Tensor:
        """``[B, 3, S, S] -> [B, 3, S, S]``."""
        return self.net(mask)


class _ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch), nn.ReLU(True),
                                  nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)
