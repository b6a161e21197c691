"""The URL network (spec §2.1): a U-Net on a timm backbone with a global head and a dense head.

- stage 1 uses ``encoder → GAP → Linear(C→128, no bias)`` (:meth:`URLNet.embed_global`);
- stage 2 uses ``encoder (frozen, BatchNorm in eval mode) → U-Net decoder → 2× average pool →
  Conv1×1(→64) → Conv1×1(→32)`` with no nonlinearity between the two convolutions (:meth:`URLNet.embed_dense`);
- the joint variant uses both from one encoder pass (:meth:`URLNet.forward`).

Two decoders (``decoder``):

- ``smp`` (default): segmentation-models-pytorch's ``Unet`` with a ``tu-<timm name>`` encoder (the model that
  ``pathseg finetune`` builds with :func:`pathseg.models.create_segmentation_model`), so the exported encoder file
  of a stage-2 run (timm keys + ``decoder.*``) loads into it by name: encoder *and* decoder. Its widths are
  256-128-64-32-16; the dense head reads the output of the **last decoder block at least as wide as the dense
  embedding** (32 channels at H/2 for a 32-d embedding), not the 16-channel full-resolution block, which would cap
  the embedding's rank at 16. That last block is then not pretrained (fine-tuning trains it from its init).
- ``paper``: the original's decoder (:class:`pathseg.models.url_unet.PaperUNetDecoder`: transposed-conv
  up-sampling, 512-256-128-64, ending at H/2 with 64 channels), 22,240,928 parameters with the dense head on
  ResNet-18 as the original ``ResNetUNetHead``; its export loads into ``create_segmentation_model("url_unet", ...)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def build_unet(encoder: str) -> nn.Module:
    """The U-Net that fine-tuning builds (``create_segmentation_model("unet", ...)``), without its segmentation head."""
    from pathseg.models import create_segmentation_model

    unet = create_segmentation_model("unet", encoder, num_classes=1)
    unet.segmentation_head = nn.Identity()
    return unet


def smp_decode(decoder: Any, feats: Sequence[Tensor], blocks: int) -> Tensor:
    """The first ``blocks`` blocks of an smp ``UnetDecoder`` (its ``forward`` stopped early; all blocks = forward)."""
    shapes = [f.shape[2:] for f in feats][::-1]
    deep_first = list(feats[1:])[::-1]
    x = decoder.center(deep_first[0])
    skips = deep_first[1:]
    for i, block in enumerate(list(decoder.blocks)[:blocks]):
        h, w = shapes[i + 1]
        x = block(x, h, w, skip_connection=skips[i] if i < len(skips) else None)
    return x


def _freeze_bn(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


class URLNet(nn.Module):
    """U-Net with URL's global and dense projection heads.

    Args:
        encoder: timm model name of the backbone (``resnet18``).
        global_dim: Output size of the image-level head (128).
        dense_dim: Channels of the dense embedding (32).
        dense_hidden: Channels of the first 1×1 convolution of the dense head (64).
        dense_stride: Resolution of the dense embedding, H / stride (2 → H/2, as in the spec); the decoder output
            is average-pooled down to it.
        decoder: ``smp`` (smp's U-Net, what ``pathseg finetune`` builds) or ``paper`` (the original decoder).
    """

    def __init__(
        self,
        encoder: str = "resnet18",
        global_dim: int = 128,
        dense_dim: int = 32,
        dense_hidden: int = 64,
        dense_stride: int = 2,
        decoder: Literal["smp", "paper"] = "smp",
    ) -> None:
        super().__init__()
        from pathseg.errors import ConfigError

        self.encoder_name = encoder
        self.decoder_kind = decoder
        self.dense_blocks = 0  # smp: decoder blocks run for the dense head
        if decoder == "paper":
            from pathseg.models.url_unet import PaperUNet

            self.unet: nn.Module = PaperUNet(encoder, num_classes=None)
            decoder_out, decoder_stride = int(self.decoder.out_channels), 2
        else:
            self.unet = build_unet(encoder)
            widths = [int(b.conv2[0].out_channels) for b in self.decoder.blocks]
            wide = [i for i, w in enumerate(widths) if w >= dense_dim]
            if not wide:
                raise ConfigError(f"url: no U-Net decoder block is as wide as dense_dim={dense_dim} (widths {widths})")
            self.dense_blocks = wide[-1] + 1
            decoder_out, decoder_stride = widths[wide[-1]], 2 ** (len(widths) - self.dense_blocks)
        if dense_stride % decoder_stride:
            raise ConfigError(f"url: dense_stride {dense_stride} is finer than the decoder output (stride "
                              f"{decoder_stride})")
        width = int(self.encoder.out_channels[-1])
        self.global_head = nn.Linear(width, global_dim, bias=False)
        self.dense_head = nn.Sequential(nn.Conv2d(decoder_out, dense_hidden, 1), nn.Conv2d(dense_hidden, dense_dim, 1))
        self.dense_stride = dense_stride
        self.dense_pool = dense_stride // decoder_stride
        self.encoder_frozen = False
        self.freeze_bn_stats = True

    @property
    def encoder(self) -> Any:
        """The U-Net's encoder (smp ``TimmUniversalEncoder``)."""
        return self.unet.encoder

    @property
    def decoder(self) -> Any:
        """The U-Net's decoder."""
        return self.unet.decoder

    def freeze_encoder(self, bn_eval: bool = True) -> None:
        """Stop gradients to the encoder; with ``bn_eval`` its BatchNorm statistics stay frozen too.

        ``bn_eval=False`` is the original's behaviour (running statistics kept updating in stage 2).
        """
        self.encoder_frozen = True
        self.freeze_bn_stats = bn_eval
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> URLNet:
        """Like :meth:`nn.Module.train`, but a frozen encoder keeps its BatchNorm layers in eval mode."""
        super().train(mode)
        if self.encoder_frozen and self.freeze_bn_stats:
            _freeze_bn(self.encoder)
        return self

    def features(self, x: Tensor) -> list[Tensor]:
        """Encoder feature pyramid (no gradient when the encoder is frozen)."""
        if self.encoder_frozen:
            with torch.no_grad():
                return list(self.encoder(x))
        return list(self.encoder(x))

    def global_from(self, feats: list[Tensor]) -> Tensor:
        """Image-level embedding ``[N, global_dim]`` from the deepest features."""
        return self.global_head(feats[-1].mean(dim=(2, 3)))

    def dense_from(self, feats: list[Tensor]) -> Tensor:
        """Dense embedding ``[N, dense_dim, H/stride, W/stride]`` from the feature pyramid."""
        out = self.decoder(feats) if self.decoder_kind == "paper" else smp_decode(self.decoder, feats,
                                                                                  self.dense_blocks)
        if self.dense_pool > 1:
            out = F.avg_pool2d(out, self.dense_pool)
        return self.dense_head(out)

    def embed_global(self, x: Tensor) -> Tensor:
        """Stage 1: ``[N, 3, H, W]`` → ``[N, global_dim]``."""
        return self.global_from(self.features(x))

    def embed_dense(self, x: Tensor) -> Tensor:
        """Stage 2: ``[N, 3, H, W]`` → ``[N, dense_dim, H/stride, W/stride]``."""
        return self.dense_from(self.features(x))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Joint variant: (dense, global) embeddings from one encoder pass."""
        feats = self.features(x)
        return self.dense_from(feats), self.global_from(feats)

    def export_state(self, with_decoder: bool) -> dict[str, Tensor]:
        """Encoder tensors under the keys of ``timm.create_model(name, num_classes=0)`` (what every pathseg
        encoder file holds), plus the U-Net decoder as ``decoder.*`` when ``with_decoder``."""
        state = {k: v.detach().cpu().clone() for k, v in self.encoder.model.state_dict().items()}
        if with_decoder:
            state.update({f"decoder.{k}": v.detach().cpu().clone() for k, v in self.decoder.state_dict().items()})
        return state
