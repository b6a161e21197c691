"""ResNet-38d, the wide residual network "model A1" of Wu, Shen & van den Hengel (Pattern Recognition 2019,
"Wider or deeper: revisiting the ResNet model for visual recognition"), as used by MLPS (Han et al., MedIA 2022,
``network/resnet38d.py`` of ChuHan89/WSSS-Tissue, itself from PSA / SEAM) for its stage-1 classifier.

Pre-activation residual blocks (BatchNorm → ReLU *before* each convolution), output stride 8:

========================  ==========================  ====================  =========
block(s)                  in → out channels (mid)     stride / dilation     output
========================  ==========================  ====================  =========
conv1a 3×3                3 → 64                      1                     H
b2, b2_1, b2_2            64 → 128                    b2 stride 2           H/2
b3, b3_1, b3_2            128 → 256                   b3 stride 2           H/4
b4, b4_1 … b4_5           256 → 512                   b4 stride 2           H/8
b5, b5_1, b5_2            512 → 1024 (mid 512)        dil 2 (b5's 1st: 1)   H/8
b6 (bottleneck)           1024 → 2048                 dil 4, Dropout2d 0.3  H/8
b7 (bottleneck)           2048 → 4096                 dil 4, Dropout2d 0.5  H/8
bn7 + ReLU                4096                        —                     H/8
========================  ==========================  ====================  =========

The module and parameter names are the original's (``conv1a``, ``b4_5.conv_branch2b1``, ``bn7``, ...), so a
converted ImageNet file of the original (``ilsvrc-cls_rna-a1_cls1000_ep-0001.params`` through its
``convert_mxnet_to_torch``, or PSA's ``res38_cls.pth``) loads by name with :func:`pathseg.models.load_weights`.
:meth:`ResNet38d.forward` returns the feature levels like a timm ``features_only`` model; MLPS's three Grad-CAM
layers are the last three: ``b4_5`` and ``b5_2`` (raw residual sums, no BN/ReLU after them) and ``bn7`` after ReLU.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

#: Feature levels returned by :meth:`ResNet38d.forward`: (module, channels, stride).
LEVELS = (("conv1a", 64, 1), ("b2_2", 128, 2), ("b3_2", 256, 4), ("b4_5", 512, 8), ("b5_2", 1024, 8),
          ("bn7", 4096, 8))


class ResBlock(nn.Module):
    """Pre-activation basic block: ``x + conv(relu(bn(conv(relu(bn(x))))))`` (1×1 projection when the shape changes).

    Args:
        in_ch: Input channels.
        mid_ch: Channels after the first 3×3 convolution.
        out_ch: Output channels.
        stride: Stride of the first convolution (and the projection).
        dilation: Dilation of the second convolution.
        first_dilation: Dilation of the first convolution (default: ``dilation``).
    """

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, stride: int = 1, dilation: int = 1,
                 first_dilation: int | None = None) -> None:
        super().__init__()
        first = dilation if first_dilation is None else first_dilation
        self.same_shape = in_ch == out_ch and stride == 1
        self.bn_branch2a = nn.BatchNorm2d(in_ch)
        self.conv_branch2a = nn.Conv2d(in_ch, mid_ch, 3, stride, padding=first, dilation=first, bias=False)
        self.bn_branch2b1 = nn.BatchNorm2d(mid_ch)
        self.conv_branch2b1 = nn.Conv2d(mid_ch, out_ch, 3, padding=dilation, dilation=dilation, bias=False)
        if not self.same_shape:
            self.conv_branch1 = nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """``[N, in, H, W]`` → ``[N, out, H/stride, W/stride]`` (a raw residual sum)."""
        pre = F.relu(self.bn_branch2a(x))
        shortcut = x if self.same_shape else self.conv_branch1(pre)
        branch = self.conv_branch2b1(F.relu(self.bn_branch2b1(self.conv_branch2a(pre))))
        return shortcut + branch


class ResBlockBottleneck(nn.Module):
    """Pre-activation bottleneck ``1×1 (out/4) → 3×3 (out/2, dilated) → 1×1 (out)`` with Dropout2d inside.

    Args:
        in_ch: Input channels.
        out_ch: Output channels.
        dilation: Dilation of the 3×3 convolution.
        dropout: Dropout2d probability after each inner BN-ReLU.
    """

    def __init__(self, in_ch: int, out_ch: int, dilation: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn_branch2a = nn.BatchNorm2d(in_ch)
        self.conv_branch2a = nn.Conv2d(in_ch, out_ch // 4, 1, bias=False)
        self.bn_branch2b1 = nn.BatchNorm2d(out_ch // 4)
        self.dropout_2b1 = nn.Dropout2d(dropout)
        self.conv_branch2b1 = nn.Conv2d(out_ch // 4, out_ch // 2, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn_branch2b2 = nn.BatchNorm2d(out_ch // 2)
        self.dropout_2b2 = nn.Dropout2d(dropout)
        self.conv_branch2b2 = nn.Conv2d(out_ch // 2, out_ch, 1, bias=False)
        self.conv_branch1 = nn.Conv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """``[N, in, H, W]`` → ``[N, out, H, W]``."""
        pre = F.relu(self.bn_branch2a(x))
        b = self.dropout_2b1(F.relu(self.bn_branch2b1(self.conv_branch2a(pre))))
        b = self.dropout_2b2(F.relu(self.bn_branch2b2(self.conv_branch2b1(b))))
        return self.conv_branch1(pre) + self.conv_branch2b2(b)


class _LevelInfo:
    """The part of timm's ``feature_info`` that pathseg uses: ``channels()``, ``reduction()``, ``module_name(i)``."""

    def channels(self) -> list[int]:
        return [c for _, c, _ in LEVELS]

    def reduction(self) -> list[int]:
        return [s for _, _, s in LEVELS]

    def module_name(self, i: int) -> str:
        return LEVELS[i][0]


class ResNet38d(nn.Module):
    """ResNet-38d trunk returning its feature levels (see the module docstring and :data:`LEVELS`).

    ``feature_info`` mimics timm's: ``module_name(1)`` is ``b2_2``, so freezing "the stem and the first stage"
    freezes ``conv1a, b2, b2_1, b2_2`` as the original's ``not_training`` list.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1a = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        self.b2 = ResBlock(64, 128, 128, stride=2)
        self.b2_1 = ResBlock(128, 128, 128)
        self.b2_2 = ResBlock(128, 128, 128)
        self.b3 = ResBlock(128, 256, 256, stride=2)
        self.b3_1 = ResBlock(256, 256, 256)
        self.b3_2 = ResBlock(256, 256, 256)
        self.b4 = ResBlock(256, 512, 512, stride=2)
        self.b4_1 = ResBlock(512, 512, 512)
        self.b4_2 = ResBlock(512, 512, 512)
        self.b4_3 = ResBlock(512, 512, 512)
        self.b4_4 = ResBlock(512, 512, 512)
        self.b4_5 = ResBlock(512, 512, 512)
        self.b5 = ResBlock(512, 512, 1024, dilation=2, first_dilation=1)
        self.b5_1 = ResBlock(1024, 512, 1024, dilation=2)
        self.b5_2 = ResBlock(1024, 512, 1024, dilation=2)
        self.b6 = ResBlockBottleneck(1024, 2048, dilation=4, dropout=0.3)
        self.b7 = ResBlockBottleneck(2048, 4096, dilation=4, dropout=0.5)
        self.bn7 = nn.BatchNorm2d(4096)
        self.feature_info = _LevelInfo()

    def forward(self, x: Tensor) -> list[Tensor]:
        """``[N, 3, H, W]`` → the six levels of :data:`LEVELS` (``bn7`` after its ReLU)."""
        out = [self.conv1a(x)]
        h = out[0]
        for stage in (("b2", "b2_1", "b2_2"), ("b3", "b3_1", "b3_2"),
                      ("b4", "b4_1", "b4_2", "b4_3", "b4_4", "b4_5"), ("b5", "b5_1", "b5_2")):
            for name in stage:
                h = getattr(self, name)(h)
            out.append(h)
        out.append(F.relu(self.bn7(self.b7(self.b6(h)))))
        return out
