"""S (H&E -> mask image) of UNIT (Song et al., IEEE TMI 2024): the network whose trunk is transferred.

Trunk: a timm CNN as a multi-scale feature extractor (default ``resnet50_gn``: ResNet-50 with GroupNorm(32) in every
conv block, 7x7/2 stem + max-pool, torchvision key names). FPN (Lin et al., CVPR 2017) with GN, P2-P5 (+ P6 by
stride-2 subsampling of P5, kept for the Mask R-CNN variant). Mask-image decoder (``MODEL.GBA`` of the original):
P3-P5 upsampled bilinearly to P2 and summed with it, conv3x3 -> IN -> ReLU, 2x nearest, conv3x3 -> IN -> ReLU,
2x nearest, conv3x3 -> 3 channels, no tanh. Instance guidance ("ISG-lite", our design): a proposal-free head on
the same fused stride-4 map predicting a foreground logit and a normalised distance-to-boundary map; or the
faithful Mask R-CNN branch (:class:`pathseg.ssl.unit.guidance.MaskRCNNBranch`) on P2-P6, passed in as
``instance_branch``.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from pathseg.models import feature_encoder


def group_norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with ``groups`` groups, or the largest divisor of ``channels`` below it."""
    g = min(groups, channels)
    while channels % g:
        g -= 1
    return nn.GroupNorm(g, channels)


def _conv_gn(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), group_norm(cout))


class FPN(nn.Module):
    """Top-down FPN with GroupNorm on lateral and output convs (detectron2 ``FPN(norm="GN")``)."""

    def __init__(self, in_channels: list[int], dim: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(_conv_gn(c, dim, 1) for c in in_channels)
        self.output = nn.ModuleList(_conv_gn(dim, dim, 3) for _ in in_channels)

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        """C2..C5 -> P2..P6 (P6 = P5 subsampled by 2)."""
        lat = [m(f) for m, f in zip(self.lateral, feats)]
        outs = [lat[-1]]
        for x in reversed(lat[:-1]):
            outs.insert(0, x + F.interpolate(outs[0], size=x.shape[-2:], mode="nearest"))
        ps = [m(x) for m, x in zip(self.output, outs)]
        return [*ps, F.max_pool2d(ps[-1], 1, stride=2)]


class MaskDecoder(nn.Module):
    """The original's mask-image decoder on the fused stride-4 map (output at the input resolution)."""

    def __init__(self, dim: int, hidden: tuple[int, int]) -> None:
        super().__init__()
        h1, h2 = hidden
        self.block1 = nn.Sequential(nn.Conv2d(dim, h1, 3, padding=1), nn.InstanceNorm2d(h1), nn.ReLU(True))
        self.block2 = nn.Sequential(nn.Conv2d(h1, h2, 3, padding=1), nn.InstanceNorm2d(h2), nn.ReLU(True))
        self.out = nn.Conv2d(h2, 3, 3, padding=1)

    def forward(self, fused: Tensor) -> Tensor:
        """``[B, dim, H/4, W/4] -> [B, 3, H, W]`` (unbounded; targets in [-1, 1])."""
        x = F.interpolate(self.block1(fused), scale_factor=2, mode="nearest")
        x = F.interpolate(self.block2(x), scale_factor=2, mode="nearest")
        return self.out(x)


class InstanceHead(nn.Module):
    """Proposal-free instance head: channel 0 = foreground logit, channel 1 = distance map (both full size)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(dim, hidden, 3, padding=1), group_norm(hidden), nn.ReLU(True))
        self.out = nn.Conv2d(hidden, 2, 1)

    def forward(self, fused: Tensor, size: tuple[int, int]) -> Tensor:
        """``[B, 2, H, W]``."""
        return F.interpolate(self.out(self.body(fused)), size=size, mode="bilinear", align_corners=False)


class Segmenter(nn.Module):
    """S = trunk + FPN + mask-image decoder (+ instance head). ``trunk`` keys are timm's ``num_classes=0`` keys.

    Args:
        backbone: timm CNN name (``resnet50_gn`` in the paper's setting; any timm CNN with 4 stages of strides
            4-32 works, e.g. ``resnet18`` for CPU tests).
        fpn_dim: FPN channels (256).
        decoder_hidden: Channels of the decoder's two convs (128, 64).
        instance_head: Build the proposal-free instance head.
        instance_branch: Another instance branch on the pyramid (the Mask R-CNN branch); replaces the head.
    """

    def __init__(self, backbone: str = "resnet50_gn", fpn_dim: int = 256, decoder_hidden: tuple[int, int] = (128, 64),
                 instance_head: bool = True, instance_branch: nn.Module | None = None) -> None:
        super().__init__()
        self.trunk = feature_encoder(backbone, out_indices=(1, 2, 3, 4))
        info: Any = self.trunk.feature_info
        if list(info.reduction()) != [4, 8, 16, 32]:
            raise ValueError(f"{backbone}: UNIT's FPN needs stages of strides 4-32, got {info.reduction()}")
        self.fpn = FPN(list(info.channels()), fpn_dim)
        self.decoder = MaskDecoder(fpn_dim, decoder_hidden)
        self.instance: nn.Module | None = instance_branch
        if instance_branch is None and instance_head:
            self.instance = InstanceHead(fpn_dim, decoder_hidden[0])

    def pyramid(self, x: Tensor) -> list[Tensor]:
        """P2..P6 of ``x``."""
        return self.fpn(self.trunk(x))  # type: ignore[no-any-return]

    @staticmethod
    def fuse(ps: list[Tensor]) -> Tensor:
        """P2 + upsampled P3..P5 (``[B, fpn_dim, H/4, W/4]``)."""
        p2 = ps[0]
        return p2 + sum(F.interpolate(p, size=p2.shape[-2:], mode="bilinear", align_corners=False) for p in ps[1:4])

    def fused(self, x: Tensor) -> Tensor:
        """:meth:`fuse` of the pyramid of ``x``."""
        return self.fuse(self.pyramid(x))

    def mask_and_pyramid(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The mask image and P2..P6 from one backbone pass (for the Mask R-CNN branch)."""
        ps = self.pyramid(x)
        return self.decoder(self.fuse(ps)), ps

    def forward(self, x: Tensor, with_instance: bool = False) -> tuple[Tensor, Tensor | None]:
        """The mask image ``[B, 3, H, W]`` and, if asked (and built), the instance maps ``[B, 2, H, W]`` from the
        same backbone pass (the original's ``both`` mode)."""
        f = self.fused(x)
        mask = self.decoder(f)
        head = self.instance if isinstance(self.instance, InstanceHead) else None
        inst = head(f, (x.shape[-2], x.shape[-1])) if with_instance and head is not None else None
        return mask, inst
