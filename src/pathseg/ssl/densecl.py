"""DenseCL (Wang et al., 2021): MoCo v2 plus a dense projection head, a second queue and a dense InfoNCE term.

For every location of the query's dense projection, the positive key is the key location whose *backbone* feature is
most similar (cosine, argmax); negatives come from a queue of pooled dense key projections. The total loss is
``(1 - λ) · L_global + λ · L_dense`` with λ = 0.5 and τ = 0.2 for both terms. CNN backbones only.

As the official code (``openselfsup/models/densecl.py``, ``necks.py::DenseCLNeck``): the dense queue receives
``normalize(avgpool(raw dense key projections))`` (pooled *before* normalising), the key batch goes through
shuffling BatchNorm (:mod:`pathseg.ssl.shuffle_bn`), and the linear layers of the global head are Kaiming-normal
(fan-in) initialised while the 1×1 convolutions keep PyTorch's default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pathseg.data.augment import ViewConfig, two_views
from pathseg.errors import ConfigError
from pathseg.models import create_encoder
from pathseg.ssl.api import METHODS, BuildContext, MethodSpec
from pathseg.ssl.base import ConvHead, MLPHead, Queue, SSLMethod, ema_update, gather_nograd, momentum_copy
from pathseg.ssl.losses import QueueInfoNCE
from pathseg.ssl.shuffle_bn import shuffled_key_forward_many, step_generator


@dataclass
class DenseCLConfig:
    """Hyper-parameters of DenseCL.

    Args:
        queue_size: Length of each of the two queues (65,536).
        momentum: Key-encoder momentum (0.999).
        temperature: τ of both InfoNCE terms (0.2).
        loss_lambda: Weight λ of the dense term (0.5).
        proj_dim: Embedding size of both heads (128).
        hidden_dim: Hidden width of both heads (0: the backbone's feature size).
        shuffle_bn: Shuffle the key batch for BatchNorm (MoCo's shuffle-BN; see :mod:`pathseg.ssl.shuffle_bn`).
        shuffle_groups: In one process, the number of virtual devices the key batch is split into (the original
            ran 8 GPUs × 32 images); capped so that every group has at least two samples.
        views: Augmentation of the two views (``views.preset=paper``: the official recipe).
    """

    queue_size: int = 65536
    momentum: float = 0.999
    temperature: float = 0.2
    loss_lambda: float = 0.5
    proj_dim: int = 128
    hidden_dim: int = 0
    shuffle_bn: bool = True
    shuffle_groups: int = 8
    views: ViewConfig = field(default_factory=ViewConfig)

    def validate(self) -> None:
        """Check ranges."""
        if not 0 <= self.loss_lambda <= 1 or self.queue_size < 1 or self.temperature <= 0:
            raise ConfigError("densecl: need 0 <= loss_lambda <= 1, queue_size >= 1, temperature > 0")
        if self.shuffle_groups < 1:
            raise ConfigError(f"densecl: shuffle_groups must be >= 1, got {self.shuffle_groups}")


def dense_positives(q_feat: Tensor, k_feat: Tensor, k_proj: Tensor) -> Tensor:
    """For each query location, the key projection at the most similar key location (backbone-feature cosine).

    Args:
        q_feat: Query backbone features ``[N, C, S]`` (S = H·W).
        k_feat: Key backbone features ``[N, C, S]``.
        k_proj: Key dense projections ``[N, D, S]``, L2-normalised.

    Returns:
        ``[N, D, S]``: column ``s`` holds the key projection matched to query location ``s``.
    """
    sim = torch.einsum("ncs,nct->nst", F.normalize(q_feat, dim=1), F.normalize(k_feat, dim=1))
    idx = sim.argmax(dim=2)  # [N, S]
    return torch.gather(k_proj, 2, idx.unsqueeze(1).expand(-1, k_proj.shape[1], -1))


class DenseCLLoss(nn.Module):
    """``(1 - λ) · InfoNCE(q, k, queue) + λ · InfoNCE(q_dense, k_dense_matched, queue_dense)``.

    Args:
        temperature: τ of both terms.
        loss_lambda: λ.

    Shapes:
        q, k: ``[N, D]`` normalised global embeddings; queue: ``[K, D]``.
        q_dense, k_matched: ``[N, D, S]`` normalised dense embeddings; queue_dense: ``[K, D]``.
        output: dict with scalars ``loss``, ``loss_global``, ``loss_dense``.
    """

    def __init__(self, temperature: float = 0.2, loss_lambda: float = 0.5) -> None:
        super().__init__()
        self.nce = QueueInfoNCE(temperature)
        self.loss_lambda = loss_lambda

    def forward(self, q: Tensor, k: Tensor, queue: Tensor, q_dense: Tensor, k_matched: Tensor,
                queue_dense: Tensor) -> dict[str, Tensor]:
        """The weighted sum and both terms."""
        d = q_dense.shape[1]
        qd = q_dense.permute(0, 2, 1).reshape(-1, d)
        kd = k_matched.permute(0, 2, 1).reshape(-1, d)
        lg = self.nce(q, k, queue)
        ld = self.nce(qd, kd, queue_dense)
        return {"loss": (1 - self.loss_lambda) * lg + self.loss_lambda * ld, "loss_global": lg, "loss_dense": ld}


class DenseCL(SSLMethod):
    """DenseCL model: backbone, global MLP head and dense 1×1-conv head, their momentum copies and two queues.

    Args:
        backbone: timm name of a CNN.
        queue_size: Length of each queue.
        momentum: Key-encoder momentum.
        temperature: τ.
        loss_lambda: λ.
        proj_dim: Embedding size.
        hidden_dim: Hidden width of the heads (0: backbone feature size).
        shuffle_bn: Shuffling BatchNorm for the keys.
        shuffle_groups: Virtual devices of the key batch in one process.
        seed: Run seed; with the step it fixes the shuffle (exact resumption).
    """

    def __init__(self, backbone: str, queue_size: int = 65536, momentum: float = 0.999, temperature: float = 0.2,
                 loss_lambda: float = 0.5, proj_dim: int = 128, hidden_dim: int = 0, shuffle_bn: bool = True,
                 shuffle_groups: int = 8, seed: int = 0) -> None:
        super().__init__()
        if backbone.startswith(("vit", "deit", "eva", "beit")):
            raise ConfigError(f"densecl needs a CNN backbone with a feature map, not '{backbone}'")
        self.timm_name = backbone
        self.backbone = create_encoder(backbone)
        dim = int(self.backbone.num_features)  # type: ignore[arg-type]
        hidden = hidden_dim or dim
        self.head = MLPHead(dim, hidden, proj_dim, init="kaiming")
        self.dense_head = ConvHead(dim, hidden, proj_dim)
        self.key_backbone = momentum_copy(self.backbone)
        self.key_head = momentum_copy(self.head)
        self.key_dense_head = momentum_copy(self.dense_head)
        self.queue = Queue(queue_size, proj_dim)
        self.dense_queue = Queue(queue_size, proj_dim)
        self.criterion = DenseCLLoss(temperature, loss_lambda)
        self.momentum = momentum
        self.shuffle_bn = shuffle_bn
        self.shuffle_groups = shuffle_groups
        self.seed = seed
        self.step = 0

    def on_step_start(self, step: int, max_steps: int) -> None:
        """Momentum update of the key backbone and both key heads."""
        self.step = step
        for key, query in ((self.key_backbone, self.backbone), (self.key_head, self.head),
                           (self.key_dense_head, self.dense_head)):
            ema_update(key, query, self.momentum)

    @staticmethod
    def _forward(x: Tensor, backbone: nn.Module, head: nn.Module, dense_head: nn.Module
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Global embedding ``[N, D]``, dense embeddings ``[N, D, S]``, backbone features ``[N, C, S]`` and the
        pooled dense embedding ``[N, D]`` (the official neck's ``avgpool2`` of the raw projections, then
        normalised), all but the features L2-normalised."""
        fmap = backbone.forward_features(x)  # type: ignore[operator]
        pooled = backbone.forward_head(fmap, pre_logits=True)  # type: ignore[operator]
        g = F.normalize(head(pooled), dim=1)
        raw = dense_head(fmap).flatten(2)  # [N, D, S]
        return g, F.normalize(raw, dim=1), fmap.flatten(2), F.normalize(raw.mean(dim=2), dim=1)

    def _keys(self, x: Tensor) -> tuple[Tensor, ...]:
        def fn(t: Tensor) -> tuple[Tensor, ...]:
            return self._forward(t, self.key_backbone, self.key_head, self.key_dense_head)

        with torch.no_grad():
            if self.shuffle_bn:
                return shuffled_key_forward_many(fn, x, self.shuffle_groups, step_generator(self.seed, self.step))
            return fn(x)

    def training_loss(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """``batch["view1"]``, ``batch["view2"]``: ``[N, 3, H, W]``. Returns loss, loss_global, loss_dense."""
        negatives, dense_negatives = self.queue.queue.clone().detach(), self.dense_queue.queue.clone().detach()
        q, q_dense, q_feat, _ = self._forward(batch["view1"], self.backbone, self.head, self.dense_head)
        k, k_dense, k_feat, k_pooled = self._keys(batch["view2"])
        with torch.no_grad():
            k_matched = dense_positives(q_feat.detach(), k_feat, k_dense)
        out = self.criterion(q, k, negatives, q_dense, k_matched, dense_negatives)
        self.queue.enqueue(gather_nograd(k))
        self.dense_queue.enqueue(gather_nograd(k_pooled))
        return out


def _build(cfg: DenseCLConfig, ctx: BuildContext) -> DenseCL:
    return DenseCL(ctx.backbone, queue_size=cfg.queue_size, momentum=cfg.momentum, temperature=cfg.temperature,
                   loss_lambda=cfg.loss_lambda, proj_dim=cfg.proj_dim, hidden_dim=cfg.hidden_dim,
                   shuffle_bn=cfg.shuffle_bn, shuffle_groups=cfg.shuffle_groups, seed=ctx.seed)


def _transform(cfg: DenseCLConfig, ctx: BuildContext) -> Any:
    return two_views(cfg.views, ctx.crop_size, ctx.mean, ctx.std)


METHODS.add("densecl", MethodSpec(DenseCLConfig, _build, _transform,
                                  description="DenseCL: MoCo v2 + dense head, two queues, λ 0.5, τ 0.2"))
