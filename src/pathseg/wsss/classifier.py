"""Stage-1 multi-label patch classifier: a timm backbone at output stride 8 + 1x1 classifier + PDA (spec §1).

The original uses ResNet-38d (``backbone: resnet38d``, :mod:`pathseg.models.resnet38d`, whose last three levels
are exactly the original's ``b4_5``, ``b5_2`` and ``bn7``); any timm backbone that supports ``output_stride=8``
works too (a dilated ResNet by default). The three Grad-CAM depths are the last three feature levels of the
backbone, which for a ResNet at output stride 8 are ``layer2`` (``shallow``, ResNet-38 ``b4_5``), ``layer3``
(``mid``, ``b5_2``) and ``layer4`` (``deep``, ``bn7`` after its ReLU): all at stride 8, i.e. different depths at
one resolution.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from pathseg.wsss.pda import dropout_attention

_NORM_TYPES = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.SyncBatchNorm)


class MultiLabelClassifier(nn.Module):
    """Backbone (output stride 8) → [PDA] → Dropout2d → global average pool → bias-free linear classifier.

    Args:
        backbone: A feature trunk (:func:`pathseg.models.feature_encoder`, output stride 8) returning a list of
            maps and exposing ``feature_info``; built and loaded by :func:`build_multilabel_classifier`.
        num_classes: Number of (foreground) classes C.
        dropout: Dropout2d probability applied to the (re-weighted) last feature map.
        pda_divisor: The attention map is the sum of the dropped class maps divided by this (original: 4).
        freeze_early: Freeze the stem + first stage and put every norm layer in eval mode with frozen affine
            parameters (as the original did with its ImageNet weights).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        dropout: float = 0.5,
        pda_divisor: float = 4.0,
        freeze_early: bool = False,
    ) -> None:
        super().__init__()
        from pathseg.errors import ConfigError

        self.backbone = backbone
        info: Any = self.backbone.feature_info
        if len(info.channels()) < 3:
            raise ConfigError("stage1.backbone has fewer than 3 feature levels")
        self.layer_channels = info.channels()[-3:]
        self.num_classes = num_classes
        self.pda_divisor = pda_divisor
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(self.layer_channels[-1], num_classes, kernel_size=1, bias=False)
        nn.init.xavier_uniform_(self.classifier.weight)
        self.frozen_norm = False
        if freeze_early:
            self._freeze_early(info.module_name(1) if len(info.channels()) > 1 else info.module_name(0))
            self.frozen_norm = True

    def _freeze_early(self, last_frozen: str) -> None:
        top = last_frozen.split(".")[0]
        for name, child in self.backbone.named_children():
            for p in child.parameters():
                p.requires_grad_(False)
            if name == top:
                break
        for module in self.backbone.modules():
            if isinstance(module, _NORM_TYPES):
                for p in module.parameters():
                    p.requires_grad_(False)

    def train(self, mode: bool = True) -> MultiLabelClassifier:
        """Set training mode; frozen norm layers stay in eval mode (fixed statistics)."""
        super().train(mode)
        if self.frozen_norm:
            for module in self.backbone.modules():
                if isinstance(module, _NORM_TYPES):
                    module.eval()
        return self

    @property
    def weight(self) -> torch.Tensor:
        """Classifier weights ``W`` as ``[C, K]``."""
        return self.classifier.weight.flatten(1)

    def feature_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The three Grad-CAM layers: ``{"shallow", "mid", "deep"}``, each ``[N, K_l, h, w]``."""
        feats = self.backbone(x)[-3:]
        return {"shallow": feats[0], "mid": feats[1], "deep": feats[2]}

    def head(self, deep: torch.Tensor, gamma: float | None = None) -> torch.Tensor:
        """Logits from the last feature map: optional PDA with ratio ``gamma``, dropout, pooling, classifier."""
        if gamma is not None:
            deep = dropout_attention(deep, self.weight, gamma, self.pda_divisor)
        pooled = self.dropout(deep).mean(dim=(2, 3))
        return pooled @ self.weight.t()

    def forward(self, x: torch.Tensor, gamma: float | None = None) -> torch.Tensor:
        """Logits ``[N, C]``; PDA is applied when ``gamma`` is given."""
        return self.head(self.feature_maps(x)["deep"], gamma)

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits without PDA plus the three feature maps (for Grad-CAM)."""
        maps = self.feature_maps(x)
        return self.head(maps["deep"]), maps


def param_groups(model: MultiLabelClassifier, lr: float, weight_decay: float) -> list[dict[str, object]]:
    """The original's four SGD groups: backbone weights (lr, wd), backbone biases and norm parameters
    (2·lr, no wd), classifier weights (10·lr, wd), classifier biases (20·lr, no wd; none exist).

    Frozen parameters are left out.
    """
    groups: list[list[nn.Parameter]] = [[], [], [], []]
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        head = name.startswith("classifier.")
        is_bias = p.ndim <= 1
        groups[(2 if head else 0) + (1 if is_bias else 0)].append(p)
    spec = [(1.0, weight_decay), (2.0, 0.0), (10.0, weight_decay), (20.0, 0.0)]
    return [
        {"params": ps, "lr": lr * mult, "initial_lr": lr * mult, "weight_decay": wd}
        for ps, (mult, wd) in zip(groups, spec)
        if ps
    ]


def build_multilabel_classifier(
    backbone: str, num_classes: int, dropout: float = 0.5, pda_divisor: float = 4.0,
    weights: str | os.PathLike[str] | None = None, freeze_pretrained: bool = True,
) -> MultiLabelClassifier:
    """The stage-1 classifier on ``feature_encoder(backbone, weights, output_stride=8)``.

    Args:
        backbone: timm name or a pathseg feature backbone (``resnet38d``).
        num_classes: Foreground classes.
        dropout: Dropout2d probability.
        pda_divisor: PDA divisor.
        weights: Optional local weights file for the trunk (never downloaded).
        freeze_pretrained: With ``weights``, freeze the early layers and the norm layers.

    Raises:
        ConfigError: The backbone cannot run at output stride 8.
    """
    from pathseg.errors import ConfigError, PathsegError
    from pathseg.models import feature_encoder

    try:
        trunk = feature_encoder(backbone, weights=weights, output_stride=8)
    except PathsegError:
        raise
    except (RuntimeError, ValueError, TypeError, AssertionError) as exc:
        raise ConfigError(f"stage1.backbone: cannot build '{backbone}' with output stride 8 ({exc})") from None
    return MultiLabelClassifier(trunk, num_classes, dropout=dropout, pda_divisor=pda_divisor,
                                freeze_early=weights is not None and freeze_pretrained)
