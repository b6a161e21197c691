"""DeepLabV3+ as MLPS's stage 2 ran it (Han et al., MedIA 2022; ``network/deeplab*.py`` of ChuHan89/WSSS-Tissue,
the layout of jfzhang95/pytorch-deeplab-xception; Chen et al., ECCV 2018).

* Backbone: a ResNet (the original: ResNet-101) at output stride 16 (layer4 dilated, multi-grid 1, 2, 4 →
  dilations 2, 4, 8) or 8 (layer3 dilation 2, layer4 multi-grid dilations 4, 8, 16). Low-level features: layer1.
* ASPP, 256 channels: a 1×1 branch, three 3×3 branches with rates **6, 12, 18 at stride 16** and **12, 24, 36 at
  stride 8** (the rates scale with the feature resolution; smp's ``DeepLabV3Plus`` keeps 12/24/36 at stride 16,
  too wide for 224-px patches whose stride-16 map is 14×14), and image pooling; concatenated (1280) → 1×1 to 256
  → BN → ReLU → Dropout 0.5. All convolutions without bias, each followed by BN + ReLU.
* Decoder: low-level 1×1 → 48 (BN, ReLU); ASPP output up-sampled bilinearly (align_corners=True) to the
  low-level size, concatenated (304) → [3×3, 256, BN, ReLU, Dropout 0.5] → [3×3, 256, BN, ReLU, Dropout 0.1]
  → 1×1 to the classes (with bias); up-sampled bilinearly (align_corners=True) to the input size.

With ResNet-101 and 21 classes this is the 59.34 M-parameter model of jfzhang95. The backbone is a timm ResNet at
``model.encoder.model`` (timm / torchvision ResNet keys), so ImageNet files a user has on disk load by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pathseg.errors import ConfigError
from pathseg.models.encoders import TimmFeatures

#: ASPP rates of the three 3×3 branches per output stride (jfzhang95's ``ASPP``).
ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}
#: Multi-grid unit of layer4 (jfzhang95's ``blocks=[1, 2, 4]``).
MULTI_GRID = (1, 2, 4)


def _cbr(in_ch: int, out_ch: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    pad = 0 if kernel == 1 else dilation
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel, padding=pad, dilation=dilation, bias=False),
                         nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1×1, three dilated 3×3 and an image-pooling branch, fused to ``out_ch``.

    Args:
        in_ch: Input channels (2048 for ResNet-101).
        rates: Dilations of the three 3×3 branches.
        out_ch: Channels of every branch and of the output (256).
        dropout: Dropout after the fusion (0.5).
    """

    def __init__(self, in_ch: int, rates: Sequence[int], out_ch: int = 256, dropout: float = 0.5) -> None:
        super().__init__()
        self.rates = tuple(int(r) for r in rates)
        self.branches = nn.ModuleList([_cbr(in_ch, out_ch, 1), *[_cbr(in_ch, out_ch, 3, r) for r in self.rates]])
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), _cbr(in_ch, out_ch, 1))
        self.project = _cbr(out_ch * (len(self.rates) + 2), out_ch, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``[N, in, h, w]`` → ``[N, out, h, w]``."""
        pooled = F.interpolate(self.image_pool(x), size=x.shape[-2:], mode="bilinear", align_corners=True)
        return self.dropout(self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1)))


class DeepLabDecoder(nn.Module):
    """The DeepLabV3+ decoder with the original's two 3×3 convolutions and their dropouts (0.5, 0.1).

    Args:
        low_ch: Channels of the low-level features (256 for a ResNet's layer1).
        aspp_ch: Channels of the ASPP output (256).
        num_classes: Output classes.
    """

    def __init__(self, low_ch: int, aspp_ch: int, num_classes: int) -> None:
        super().__init__()
        self.reduce = _cbr(low_ch, 48, 1)
        self.last_conv = nn.Sequential(_cbr(aspp_ch + 48, 256, 3), nn.Dropout(0.5), _cbr(256, 256, 3), nn.Dropout(0.1),
                                       nn.Conv2d(256, num_classes, 1))

    def forward(self, aspp: Tensor, low: Tensor) -> Tensor:
        """Logits at the low-level resolution."""
        low = self.reduce(low)
        up = F.interpolate(aspp, size=low.shape[-2:], mode="bilinear", align_corners=True)
        return self.last_conv(torch.cat([up, low], dim=1))


def set_multi_grid(trunk: nn.Module, output_stride: int) -> list[int]:
    """Set the 3×3 dilations of a ResNet's layer3/layer4 as jfzhang95's ResNet: layer4 ``grid × d`` (d = 2 at
    stride 16, 4 at stride 8), layer3 2 in every block at stride 8. Returns the layer4 dilations."""
    base = 2 if output_stride == 16 else 4
    block: Any
    if output_stride == 8:
        for block in trunk.get_submodule("layer3").children():
            block.conv2.dilation, block.conv2.padding = (2, 2), (2, 2)
    dilations = []
    for i, block in enumerate(trunk.get_submodule("layer4").children()):
        d = base * MULTI_GRID[i % len(MULTI_GRID)]
        block.conv2.dilation, block.conv2.padding = (d, d), (d, d)
        dilations.append(d)
    return dilations


class DeepLabV3PlusPaper(nn.Module):
    """DeepLabV3+ of MLPS's stage 2 (see the module docstring).

    Args:
        encoder: timm ResNet name (the original: ``resnet101``).
        num_classes: Output classes.
        output_stride: 16 (the original) or 8.
    """

    def __init__(self, encoder: str = "resnet101", num_classes: int = 4, output_stride: int = 16) -> None:
        super().__init__()
        if output_stride not in ASPP_RATES:
            raise ConfigError(f"deeplabv3plus_paper: output_stride must be 8 or 16, got {output_stride}")
        self.encoder = TimmFeatures(encoder, out_indices=(1, 4), output_stride=output_stride)
        try:
            self.layer4_dilations = set_multi_grid(self.encoder.model, output_stride)
        except (AttributeError, TypeError):
            raise ConfigError(f"deeplabv3plus_paper needs a ResNet encoder (layer1..layer4), not '{encoder}'") from None
        low_ch, high_ch = self.encoder.out_channels
        self.output_stride = output_stride
        self.aspp = ASPP(high_ch, ASPP_RATES[output_stride])
        self.decoder = DeepLabDecoder(low_ch, 256, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[N, num_classes, H, W]``."""
        low, high = self.encoder(x)
        out = self.decoder(self.aspp(high), low)
        return F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=True)
