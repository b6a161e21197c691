"""PLM: MoCo v2 + DenseCL-style dense term whose positives come from exact view geometry (spec §2).

Zhang, Kapse et al., "Precise Location Matching Improves Dense Contrastive Learning in Digital Pathology",
IPMI 2023 (arXiv 2212.12105). The loss is ``(1 - λ)·L_G + λ·L_D``: ``L_G`` is MoCo v2's InfoNCE on the pooled
features, ``L_D`` is :class:`~pathseg.ssl.plm.DenseMatchingLoss` on the dense projections, with the overlap of
the two views' feature cells (:func:`~pathseg.ssl.plm.grid_boxes`, :func:`~pathseg.ssl.plm.overlap_fractions`).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pathseg.errors import ConfigError
from pathseg.models import create_encoder
from pathseg.ssl.base import (
    ConvHead,
    HeadInit,
    MLPHead,
    Queue,
    SSLMethod,
    ema_update,
    gather_nograd,
    init_linear_layers,
    momentum_copy,
)
from pathseg.ssl.losses import QueueInfoNCE
from pathseg.ssl.plm.geometry import check_grid, grid_boxes, overlap_fractions
from pathseg.ssl.plm.loss import DenseMatchingLoss, Normalize
from pathseg.ssl.shuffle_bn import shuffled_key_forward_many

BackboneInit = Literal["timm", "original"]


def original_backbone_init(backbone: nn.Module) -> None:
    """The original's ResNet initialisation: convolutions Kaiming-normal (fan-in, ReLU), BatchNorm weight 1 and bias
    0, no zero-initialised residual branches (timm's default is fan-out with ``zero_init_last``)."""
    for m in backbone.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class PLM(SSLMethod):
    """Backbone, global MLP head, dense 1×1-conv head and matching layer φ; their momentum copies; two queues.

    Args:
        backbone: timm name of a CNN (its last feature map gives the G × G cells).
        queue_size: Length of each queue (16,384).
        momentum: Key-encoder momentum (0.999, constant).
        temperature: τ of both terms (0.2).
        loss_lambda: λ (0.5).
        proj_dim: Embedding size (128).
        hidden_dim: Hidden width of the heads (0: backbone feature size).
        grid_size: Expected G (0: any; the grid is always checked against the view size).
        dense_normalize: ``mean`` (original) or ``coverage``.
        matching_layer: Linear φ (D → D, with bias) after the mixing; ``False``: identity.
        shuffle_bn: Encode the keys with shuffling BatchNorm (:mod:`pathseg.ssl.shuffle_bn`).
        shuffle_groups: Virtual devices of the key batch in one process (the original: 4 GPUs).
        head_init: ``kaiming`` (the original's neck and φ: Kaiming-normal linear layers, zero biases) or ``default``.
        backbone_init: ``timm`` (timm's default, as pathseg's other methods) or ``original`` (see
            :func:`original_backbone_init`).
    """

    def __init__(self, backbone: str, queue_size: int = 16384, momentum: float = 0.999, temperature: float = 0.2,
                 loss_lambda: float = 0.5, proj_dim: int = 128, hidden_dim: int = 0, grid_size: int = 0,
                 dense_normalize: Normalize = "mean", matching_layer: bool = True, shuffle_bn: bool = True,
                 shuffle_groups: int = 4, head_init: HeadInit = "kaiming",
                 backbone_init: BackboneInit = "timm") -> None:
        super().__init__()
        if backbone.startswith(("vit", "deit", "eva", "beit")):
            raise ConfigError(f"plm needs a CNN backbone with a feature map, not '{backbone}'")
        self.timm_name = backbone
        self.backbone = create_encoder(backbone)
        if backbone_init == "original":
            original_backbone_init(self.backbone)
        dim = int(self.backbone.num_features)  # type: ignore[arg-type]
        hidden = hidden_dim or dim
        self.head = MLPHead(dim, hidden, proj_dim, init=head_init)
        self.dense_head = ConvHead(dim, hidden, proj_dim)  # 1x1 convs keep PyTorch's default, as the original
        self.phi: nn.Module = nn.Linear(proj_dim, proj_dim) if matching_layer else nn.Identity()
        init_linear_layers(self.phi, head_init)
        self.key_backbone = momentum_copy(self.backbone)
        self.key_head = momentum_copy(self.head)
        self.key_dense_head = momentum_copy(self.dense_head)
        self.key_phi = momentum_copy(self.phi)
        self.queue = Queue(queue_size, proj_dim)
        self.dense_queue = Queue(queue_size, proj_dim)
        self.global_loss = QueueInfoNCE(temperature)
        self.dense_loss = DenseMatchingLoss(temperature, dense_normalize)
        self.momentum, self.loss_lambda, self.grid_size = momentum, loss_lambda, grid_size
        info = getattr(self.backbone, "feature_info", None)
        self.reduction: int | None = int(info[-1]["reduction"]) if isinstance(info, list) and info else None
        self.shuffle_bn, self.shuffle_groups = shuffle_bn, shuffle_groups

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """``(key, query)`` module pairs of the momentum encoder: backbone, both heads and φ."""
        return [(self.key_backbone, self.backbone), (self.key_head, self.head),
                (self.key_dense_head, self.dense_head), (self.key_phi, self.phi)]

    def on_step_start(self, step: int, max_steps: int) -> None:
        """``θ_k ← m·θ_k + (1 - m)·θ_q`` for backbone, heads and φ (before the step's keys)."""
        for key, query in self.momentum_pairs():
            ema_update(key, query, self.momentum)

    def encode(self, x: Tensor, key: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """Global embedding ``[B, D]`` (normalised), raw dense projections ``[B, N, D]``, map ``[B, C, G, G]``."""
        backbone, head, dense_head = ((self.key_backbone, self.key_head, self.key_dense_head) if key
                                      else (self.backbone, self.head, self.dense_head))
        fmap = backbone.forward_features(x)  # type: ignore[operator]
        g = F.normalize(head(backbone.forward_head(fmap, pre_logits=True)), dim=1)  # type: ignore[operator]
        z = dense_head(fmap).flatten(2).transpose(1, 2)  # [B, N, D], row-major cells
        return g, z, fmap

    def _keys(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        def fn(v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            return self.encode(v, key=True)

        with torch.no_grad():
            if self.shuffle_bn:
                k, zk, fmap = shuffled_key_forward_many(fn, x, self.shuffle_groups)
                return k, zk, fmap
            return fn(x)

    def training_loss(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """``view1``/``view2`` ``[B, 3, S, S]``, ``crop1``/``crop2`` ``[B, 5 or 7]`` geometry records.

        Returns ``loss``, ``loss_global``, ``loss_dense`` and the mean query-cell ``coverage`` (all logged).
        """
        x1, x2 = batch["view1"], batch["view2"]
        negatives, dense_negatives = self.queue.queue.clone().detach(), self.dense_queue.queue.clone().detach()
        q, zq, fmap_q = self.encode(x1)
        k, zk, fmap_k = self._keys(x2)
        grid = check_grid((fmap_q.shape[-2], fmap_q.shape[-1]), (x1.shape[-2], x1.shape[-1]), self.reduction,
                          self.grid_size)
        check_grid((fmap_k.shape[-2], fmap_k.shape[-1]), (x2.shape[-2], x2.shape[-1]), self.reduction, grid)
        pq, pk = overlap_fractions(grid_boxes(batch["crop1"].to(x1.device), grid),
                                   grid_boxes(batch["crop2"].to(x2.device), grid))
        lg = self.global_loss(q, k, negatives)
        ld = self.dense_loss(zq, zk, pq, pk, self.phi, self.key_phi, dense_negatives)
        loss = (1 - self.loss_lambda) * lg + self.loss_lambda * ld
        self.queue.enqueue(gather_nograd(k))
        self.dense_queue.enqueue(gather_nograd(F.normalize(zk.mean(dim=1), dim=1)))
        return {"loss": loss, "loss_global": lg.detach(), "loss_dense": ld.detach(),
                "coverage": pq.sum(-1).mean().detach()}
