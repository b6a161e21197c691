"""ViT encoders as fine-tuning backbones: the timm name of a weights file, and a DPT segmentation model.

A pathology foundation model usually ships as a plain safetensors file of a timm ``VisionTransformer`` state dict
(no pathseg metadata). :func:`detect_timm_name` reads the layout from the tensors: width from ``cls_token``,
depth from ``blocks.<i>.``, patch size from ``patch_embed.proj.weight`` and the training image size from the
``pos_embed`` grid (Dosovitskiy et al., ICLR 2021, Table 1: ViT-Ti/S/B/L/H have widths 192/384/768/1024/1280 and
depths 12/12/12/24/32). Layouts beyond a plain ViT (register tokens, LayerScale, no class token) are not guessed:
give the timm name as ``backbone=``.

:func:`create_dpt` builds smp's DPT (Ranftl et al., "Vision Transformers for Dense Prediction", ICCV 2021) on the
timm ViT, created with ``num_classes=0`` so that ``model.encoder.model`` has exactly the keys of
``timm.create_model(name, num_classes=0)`` (the keys of encoder files), and ``dynamic_img_size`` so that any crop
that is a multiple of the patch size works (position embeddings are interpolated).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from torch import nn

from pathseg.models.arch_guess import RESNETS, VIT_WIDTHS, guess_architecture

#: Depth of each standard ViT size (a file of another depth is not a standard timm ViT).
VIT_DEPTHS = {"tiny": 12, "small": 12, "base": 12, "large": 24, "huge": 32}
_BLOCK = re.compile(r"(?:^|\.)blocks\.(\d+)\.")


def is_vit(name: str) -> bool:
    """Whether a timm name is a plain-ViT family model (pooled or token features, no feature pyramid)."""
    return name.startswith(("vit_", "deit", "eva", "beit"))


def _find(state: Mapping[str, Any], suffix: str) -> Any:
    return next((v for k, v in state.items() if k == suffix or k.endswith("." + suffix)), None)


def vit_timm_name(state: Mapping[str, Any]) -> str | None:
    """``vit_<size>_patch<p>_<img>`` for a plain timm ViT state dict, or None when the layout is another one.

    Args:
        state: Tensors of the file (keys may carry a prefix such as ``model.``).
    """
    cls, pos, proj = _find(state, "cls_token"), _find(state, "pos_embed"), _find(state, "patch_embed.proj.weight")
    depth = {int(m.group(1)) for k in state if (m := _BLOCK.search(k))}
    if cls is None or pos is None or proj is None or not depth:
        return None
    if any(k.endswith(("reg_token", "ls1.gamma")) for k in state):
        return None
    size = VIT_WIDTHS.get(int(cls.shape[-1]))
    if size is None or max(depth) + 1 != VIT_DEPTHS[size]:
        return None
    patch = int(proj.shape[-1])
    grid = math.isqrt(int(pos.shape[1]) - 1)
    if grid * grid != int(pos.shape[1]) - 1:
        return None
    return f"vit_{size}_patch{patch}_{grid * patch}"


def detect_timm_name(state: Mapping[str, Any]) -> str | None:
    """The exact timm name of a plain ViT or standard ResNet state dict, or None (then ``backbone=`` is needed).

    The name is only returned when timm knows it.
    """
    name = vit_timm_name(state)
    if name is None:
        guess = guess_architecture(state)
        name = guess if guess in RESNETS.values() else None
    if name is None:
        return None
    import timm

    return name if timm.is_model(name) else None


def dpt_channels(embed_dim: int) -> tuple[list[int], int]:
    """DPT decoder widths for a ViT of width ``embed_dim``: reassemble channels ``[D/4, D/2, D, D]``, fusion 256.

    These are the widths of the DPT paper's ViT-Base model (96, 192, 384, 768 for D = 768); smp's default
    (256, 512, 1024, 1024) is its ViT-Large setting, four times larger than needed for a ViT-S.
    """
    return [embed_dim // 4, embed_dim // 2, embed_dim, embed_dim], 256


def create_dpt(encoder: str, num_classes: int) -> nn.Module:
    """smp DPT on a randomly initialised timm ViT (``model.encoder.model``, keys of ``num_classes=0``).

    Args:
        encoder: timm ViT name (``vit_small_patch16_224``, ...).
        num_classes: Output channels.

    Raises:
        ValueError: The encoder is not a timm ViT smp can read intermediate blocks of.
    """
    import segmentation_models_pytorch as smp
    import timm
    import torch

    with torch.device("meta"):  # only the width is read: no memory, no initialisation cost
        dim = int(getattr(timm.create_model(encoder, pretrained=False, num_classes=0), "embed_dim"))  # noqa: B009
    channels, fusion = dpt_channels(dim)
    model: nn.Module = smp.DPT(encoder_name=f"tu-{encoder}", encoder_weights=None, classes=num_classes,
                               decoder_intermediate_channels=channels, decoder_fusion_channels=fusion,
                               num_classes=0, dynamic_img_size=True)
    return model
