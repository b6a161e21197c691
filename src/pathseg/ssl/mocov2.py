"""MoCo v2 (Chen et al., 2020): momentum encoder, queue of negatives, MLP projection head, InfoNCE with τ = 0.2.

As in MoCo v2 the loss is *not* symmetrised by default (query from view 1, key from view 2); ``symmetric: true``
adds the swapped term (as in MoCo v3 / many re-implementations) and averages the two.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from pathseg.data.augment import ViewConfig, two_views
from pathseg.errors import ConfigError
from pathseg.models import create_encoder
from pathseg.ssl.api import METHODS, BuildContext, MethodSpec
from pathseg.ssl.base import MLPHead, Queue, SSLMethod, ema_update, gather_nograd, momentum_copy
from pathseg.ssl.losses import QueueInfoNCE


@dataclass
class MoCoV2Config:
    """Hyper-parameters of MoCo v2.

    Args:
        queue_size: Negatives kept in the queue (65,536).
        momentum: Momentum of the key encoder (0.999).
        temperature: InfoNCE temperature τ (0.2).
        proj_dim: Embedding size (128).
        hidden_dim: Hidden width of the MLP head (0: the backbone's feature size, e.g. 2048 for ResNet-50).
        symmetric: Add the swapped loss term (not in MoCo v2).
        views: Augmentation of the two views.
    """

    queue_size: int = 65536
    momentum: float = 0.999
    temperature: float = 0.2
    proj_dim: int = 128
    hidden_dim: int = 0
    symmetric: bool = False
    views: ViewConfig = field(default_factory=ViewConfig)

    def validate(self) -> None:
        """Check ranges."""
        if self.queue_size < 1 or not 0 <= self.momentum < 1 or self.temperature <= 0:
            raise ConfigError("mocov2: need queue_size >= 1, 0 <= momentum < 1, temperature > 0")


class MoCoV2(SSLMethod):
    """MoCo v2 model: query encoder + MLP head, momentum key encoder + head, queue.

    Args:
        backbone: timm name.
        queue_size: Queue length K.
        momentum: Key-encoder momentum m.
        temperature: τ.
        proj_dim: Embedding size.
        hidden_dim: MLP hidden width (0: backbone feature size).
        symmetric: Symmetrised loss.
    """

    def __init__(self, backbone: str, queue_size: int = 65536, momentum: float = 0.999, temperature: float = 0.2,
                 proj_dim: int = 128, hidden_dim: int = 0, symmetric: bool = False) -> None:
        super().__init__()
        self.timm_name = backbone
        self.backbone = create_encoder(backbone)
        dim = int(self.backbone.num_features)  # type: ignore[arg-type]
        self.head = MLPHead(dim, hidden_dim or dim, proj_dim)
        self.key_backbone = momentum_copy(self.backbone)
        self.key_head = momentum_copy(self.head)
        self.queue = Queue(queue_size, proj_dim)
        self.criterion = QueueInfoNCE(temperature)
        self.momentum = momentum
        self.symmetric = symmetric

    def on_step_start(self, step: int, max_steps: int) -> None:
        """Momentum update of the key encoder and head (before the step's keys are computed)."""
        ema_update(self.key_backbone, self.backbone, self.momentum)
        ema_update(self.key_head, self.head, self.momentum)

    def embed(self, x: Tensor) -> Tensor:
        """Query embeddings ``[N, proj_dim]``, L2-normalised."""
        return F.normalize(self.head(self.backbone(x)), dim=1)

    def embed_key(self, x: Tensor) -> Tensor:
        """Key embeddings ``[N, proj_dim]``, L2-normalised, without gradient."""
        with torch.no_grad():
            return F.normalize(self.key_head(self.key_backbone(x)), dim=1)

    def training_loss(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """``batch["view1"]``, ``batch["view2"]``: ``[N, 3, H, W]``. Returns ``{"loss"}``."""
        x1, x2 = batch["view1"], batch["view2"]
        negatives = self.queue.queue.clone().detach()
        q1, k2 = self.embed(x1), self.embed_key(x2)
        loss = self.criterion(q1, k2, negatives)
        keys = [k2]
        if self.symmetric:
            q2, k1 = self.embed(x2), self.embed_key(x1)
            loss = (loss + self.criterion(q2, k1, negatives)) / 2
            keys.append(k1)
        for k in keys:
            self.queue.enqueue(gather_nograd(k))
        return {"loss": loss}


def _build(cfg: MoCoV2Config, ctx: BuildContext) -> MoCoV2:
    return MoCoV2(ctx.backbone, queue_size=cfg.queue_size, momentum=cfg.momentum, temperature=cfg.temperature,
                  proj_dim=cfg.proj_dim, hidden_dim=cfg.hidden_dim, symmetric=cfg.symmetric)


def _transform(cfg: MoCoV2Config, ctx: BuildContext) -> Any:
    return two_views(cfg.views, ctx.crop_size, ctx.mean, ctx.std)


METHODS.add("mocov2", MethodSpec(MoCoV2Config, _build, _transform,
                                 description="MoCo v2: momentum encoder, 65,536-key queue, MLP head, τ 0.2"))
