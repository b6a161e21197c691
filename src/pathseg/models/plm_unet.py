"""PLM's "shallow" U-Net (Zhang, Kapse et al., IPMI 2023, ``semantic_seg/resnet_unet.py`` of
cvlab-stonybrook/PLM_SSL, class ``SResUnet18``): the network of the paper's frozen-encoder BCSS experiment.

On a ResNet-18 trunk split as the original (block1 = conv1+bn1+relu at H/2, block2 = maxpool+layer1 at H/4,
layer2 H/8, layer3 H/16, layer4 H/32; timm's ``features_only`` levels):

    up(512→512) ⊕ layer3 → cbr(768→512) → cbr(512→512) → up(512→256) ⊕ layer2 → cbr(384→256) → cbr(256→256)
    → up(256→128) ⊕ layer1 → cbr(192→128) → cbr(128→128) → up(128→64) ⊕ block1 → cbr(128→64) → cbr(64→64)
    → up(64→32) → 1×1 conv to the classes, at input resolution

(``up`` = ``ConvTranspose2d(k=2, s=2)`` that narrows to the stage's width, unlike URL's U-Net whose ups keep the
width; ``cbr`` = Conv3×3 with bias + BatchNorm + ReLU). There is no convolution after the last up-sampling.
Freezing the encoder (requires_grad off, BatchNorm in eval mode) is the fine-tuning task's ``freeze_encoder``.

The decoder keeps PyTorch's default initialisation, as the original does whenever it loads encoder weights (its
Kaiming fan-out init runs only for a network built without any weights).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from pathseg.errors import ConfigError
from pathseg.models.encoders import TimmFeatures
from pathseg.models.url_unet import PAPER_WIDTHS, PaperUNetDecoder

TOP_WIDTH = 32


class ShallowUNet(nn.Module):
    """PLM's ``SResUnet18``: timm trunk + narrowing :class:`PaperUNetDecoder` + ``up(64→32)`` + 1×1 classifier.

    Args:
        encoder: timm name of the trunk (the original: ``resnet18``).
        num_classes: Output classes.

    Attributes:
        encoder: :class:`TimmFeatures` (the timm model at ``encoder.model``, as smp's ``tu-`` encoders).
        decoder: :class:`PaperUNetDecoder` with ``narrowing_ups`` (stride 2, 64 channels).
    """

    def __init__(self, encoder: str = "resnet18", num_classes: int = 2) -> None:
        super().__init__()
        self.encoder = TimmFeatures(encoder)
        if len(self.encoder.out_channels) != 5:
            raise ConfigError(f"the PLM shallow U-Net needs a trunk with 5 feature levels, '{encoder}' has "
                              f"{len(self.encoder.out_channels)}")
        self.decoder = PaperUNetDecoder(self.encoder.out_channels, PAPER_WIDTHS, narrowing_ups=True)
        self.upsample = nn.ConvTranspose2d(self.decoder.out_channels, TOP_WIDTH, kernel_size=2, stride=2)
        self.classifier = nn.Conv2d(TOP_WIDTH, num_classes, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[N, num_classes, H, W]``."""
        out = self.upsample(self.decoder(self.encoder(x)))
        if out.shape[-2:] != x.shape[-2:]:
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(out)  # type: ignore[no-any-return]
