"""MoCo v2 (Chen et al., 2020): momentum encoder, queue of negatives, MLP projection head, InfoNCE with τ = 0.2.

As in MoCo v2 the loss is *not* symmetrised by default (query from view 1, key from view 2); ``symmetric: true``
adds the swapped term (as in MoCo v3 / many re-implementations) and averages the two.

As the official code (``moco/builder.py``): keys go through shuffling BatchNorm (:mod:`pathseg.ssl.shuffle_bn`;
``shuffle_bn: false`` turns it off) and the MLP head keeps PyTorch's default initialisation.
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
from pathseg.ssl.shuffle_bn import shuffled_key_forward, step_generator


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
        shuffle_bn: Shuffle the key batch for BatchNorm (MoCo's shuffle-BN; see :mod:`pathseg.ssl.shuffle_bn`).
        shuffle_groups: In one process, the number of virtual devices the key batch is split into (the original
            ran 8 GPUs × 32 images); capped so that every group has at least two samples.
        views: Augmentation of the two views (``views.preset=paper``: the official recipe).
    """

    queue_size: int = 65536
    momentum: float = 0.999
    temperature: float = 0.2
    proj_dim: int = 128
    hidden_dim: int = 0
    symmetric: bool = False
    shuffle_bn: bool = True
    shuffle_groups: int = 8
    views: ViewConfig = field(default_factory=ViewConfig)

    def validate(self) -> None:
        """Check ranges."""
        if self.queue_size < 1 or not 0 <= self.momentum < 1 or self.temperature <= 0:
            raise ConfigError("mocov2: need queue_size >= 1, 0 <= momentum < 1, temperature > 0")
        if self.shuffle_groups < 1:
            raise ConfigError(f"mocov2: shuffle_groups must be >= 1, got {self.shuffle_groups}")


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
        shuffle_bn: Shuffling BatchNorm for the keys.
        shuffle_groups: Virtual devices of the key batch in one process.
        seed: Run seed; with the step it fixes the shuffle (exact resumption).
    """

    def __init__(self, backbone: str, queue_size: int = 65536, momentum: float = 0.999, temperature: float = 0.2,
                 proj_dim: int = 128, hidden_dim: int = 0, symmetric: bool = False, shuffle_bn: bool = True,
                 shuffle_groups: int = 8, seed: int = 0) -> None:
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
        self.shuffle_bn = shuffle_bn
        self.shuffle_groups = shuffle_groups
        self.seed = seed
        self.step = 0

    def on_step_start(self, step: int, max_steps: int) -> None:
        """Momentum update of the key encoder and head (before the step's keys are computed)."""
        self.step = step
        ema_update(self.key_backbone, self.backbone, self.momentum)
        ema_update(self.key_head, self.head, self.momentum)

    def embed(self, x: Tensor) -> Tensor:
        """Query embeddings ``[N, proj_dim]``, L2-normalised."""
        return F.normalize(self.head(self.backbone(x)), dim=1)

    def embed_key(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Key embeddings ``[N, proj_dim]``, L2-normalised, without gradient (shuffled BatchNorm batches, the
        permutation drawn from ``generator``: default, the one of the current step)."""

        def fn(t: Tensor) -> Tensor:
            return F.normalize(self.key_head(self.key_backbone(t)), dim=1)

        with torch.no_grad():
            if not self.shuffle_bn:
                return fn(x)
            return shuffled_key_forward(fn, x, self.shuffle_groups, generator or step_generator(self.seed, self.step))

    def training_loss(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """``batch["view1"]``, ``batch["view2"]``: ``[N, 3, H, W]``. Returns ``{"loss"}``."""
        x1, x2 = batch["view1"], batch["view2"]
        negatives = self.queue.queue.clone().detach()
        gen = step_generator(self.seed, self.step)
        q1, k2 = self.embed(x1), self.embed_key(x2, gen)
        loss = self.criterion(q1, k2, negatives)
        keys = [k2]
        if self.symmetric:
            q2, k1 = self.embed(x2), self.embed_key(x1, gen)
            loss = (loss + self.criterion(q2, k1, negatives)) / 2
            keys.append(k1)
        for k in keys:
            self.queue.enqueue(gather_nograd(k))
        return {"loss": loss}


def _build(cfg: MoCoV2Config, ctx: BuildContext) -> MoCoV2:
    return MoCoV2(ctx.backbone, queue_size=cfg.queue_size, momentum=cfg.momentum, temperature=cfg.temperature,
                  proj_dim=cfg.proj_dim, hidden_dim=cfg.hidden_dim, symmetric=cfg.symmetric,
                  shuffle_bn=cfg.shuffle_bn, shuffle_groups=cfg.shuffle_groups, seed=ctx.seed)


def _transform(cfg: MoCoV2Config, ctx: BuildContext) -> Any:
    return two_views(cfg.views, ctx.crop_size, ctx.mean, ctx.std)


METHODS.add("mocov2", MethodSpec(MoCoV2Config, _build, _transform,
                                 description="MoCo v2: momentum encoder, 65,536-key queue, MLP head, τ 0.2"))
