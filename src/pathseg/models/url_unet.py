"""URL's own U-Net (Gao et al., IEEE TMI 2022, ``models.py`` of ZeyuGaoAi/URL_His_TissueSeg): transposed-conv
up-sampling and decoder widths 512-256-128-64 on a ResNet trunk.

With a ResNet-18 trunk split as the original (layer0 = conv1+bn1+relu at H/2, layer1 = maxpool+layer1 at H/4,
layer2 H/8, layer3 H/16, layer4 H/32; exactly timm's ``features_only`` levels):

    up(512→512) ⊕ layer3 → cbr(768→512) → cbr(512→512) → up(512→512) ⊕ layer2 → cbr(640→256) → cbr(256→256)
    → up(256→256) ⊕ layer1 → cbr(320→128) → cbr(128→128) → up(128→128) ⊕ layer0 → cbr(192→64) → cbr(64→64)

(``up`` = ``ConvTranspose2d(k=2, s=2)``, ``cbr`` = Conv3×3 with bias + BatchNorm + ReLU, ``⊕`` = channel concat),
ending at H/2 with 64 channels: this part is :class:`PaperUNetDecoder` (what URL's stage 2 trains and exports
as ``decoder.*``). The segmentation network ``ResNetUNet(n)`` adds ``up(64→64) → cbr(64→64)`` at H and a 1×1
convolution to ``n`` classes (22,288,582 parameters for n = 6 on ResNet-18, as the original).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pathseg.models.encoders import TimmFeatures

PAPER_WIDTHS = (512, 256, 128, 64)


def conv_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    """The original's ``cbr``: Conv3×3 (padding 1, with bias) → BatchNorm → ReLU."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class PaperUNetDecoder(nn.Module):
    """URL's U-Net decoder from the deepest level to stride 2 (see the module docstring).

    Args:
        encoder_channels: Channels of the encoder levels, finest first (ResNet-18: 64, 64, 128, 256, 512).
        widths: Output widths of the decoder stages (the original: 512, 256, 128, 64).
        narrowing_ups: ``False`` (URL): each transposed convolution keeps its input width; ``True`` (PLM's
            shallow U-Net, :mod:`pathseg.models.plm_unet`): it already narrows to the stage's width, so the
            stage's first convolution reads ``width + skip`` channels.
    """

    def __init__(self, encoder_channels: Sequence[int], widths: Sequence[int] = PAPER_WIDTHS,
                 narrowing_ups: bool = False) -> None:
        super().__init__()
        skips = list(encoder_channels[:-1])[::-1]
        if len(skips) != len(widths):
            raise ValueError(f"{len(encoder_channels)} encoder levels need {len(skips)} decoder widths, got {widths}")
        self.ups = nn.ModuleList()
        self.convs = nn.ModuleList()
        ch = int(encoder_channels[-1])
        for skip, width in zip(skips, widths):
            up = int(width) if narrowing_ups else ch
            self.ups.append(nn.ConvTranspose2d(ch, up, kernel_size=2, stride=2))
            self.convs.append(nn.Sequential(conv_bn_relu(up + skip, width), conv_bn_relu(width, width)))
            ch = int(width)
        self.out_channels = ch

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        """``feats``: encoder maps finest first; returns ``[N, widths[-1], H/2, W/2]``."""
        x = feats[-1]
        for up, conv, skip in zip(self.ups, self.convs, list(feats[:-1])[::-1]):
            x = up(x)
            if x.shape[-2:] != skip.shape[-2:]:
                x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            x = conv(torch.cat([x, skip], dim=1))
        return x


class PaperUNet(nn.Module):
    """URL's ``ResNetUNet``: timm trunk + :class:`PaperUNetDecoder` (+ the full-resolution top when ``num_classes``).

    Args:
        encoder: timm name of the trunk (the original: ``resnet18``).
        num_classes: Output classes; ``None`` builds encoder + decoder only (URL's pretraining network).

    Attributes:
        encoder: :class:`TimmFeatures` (the timm model at ``encoder.model``, as smp's ``tu-`` encoders).
        decoder: :class:`PaperUNetDecoder` (stride 2).
    """

    def __init__(self, encoder: str = "resnet18", num_classes: int | None = None) -> None:
        super().__init__()
        self.encoder = TimmFeatures(encoder)
        if len(self.encoder.out_channels) != 5:
            from pathseg.errors import ConfigError

            raise ConfigError(f"the URL paper U-Net needs a trunk with 5 feature levels, '{encoder}' has "
                              f"{len(self.encoder.out_channels)}")
        self.decoder = PaperUNetDecoder(self.encoder.out_channels)
        self.num_classes = num_classes
        if num_classes is not None:
            width = self.decoder.out_channels
            self.upsample = nn.ConvTranspose2d(width, width, kernel_size=2, stride=2)
            self.conv_original_size = conv_bn_relu(width, width)
            self.conv_last = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[N, num_classes, H, W]`` (or the stride-2 decoder map without a top)."""
        out = self.decoder(self.encoder(x))
        if self.num_classes is None:
            return out
        out = self.conv_original_size(self.upsample(out))
        if out.shape[-2:] != x.shape[-2:]:
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv_last(out)
