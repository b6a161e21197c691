"""The SGCL model (reference ``SpatialCLMcrop`` of HHHedo/SGCL): ResNet + MLP projector, six NPID memory banks,
spatial and semantic positives, Beta-sampled semi-hard negatives and the loss ``L_IR + w(e)·L_SP + L_MC``.

Lin, Yu, Xu, Hu, Xu, Chen, "SGCL: Spatial guided contrastive learning on whole-slide pathological images", Medical
Image Analysis 2023 (preliminary version: SSLP, Li et al., MICCAI 2021). Spec: ``docs/methods/sgcl.md``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from pathseg.models import create_encoder
from pathseg.ssl.base import MLPHead, SSLMethod, gather_nograd, is_distributed
from pathseg.ssl.sgcl.bank import BufferedGenerator, MemoryBank
from pathseg.ssl.sgcl.losses import instance_nce, merged_positive_loss, rampup_weight
from pathseg.ssl.sgcl.negatives import beta_rank_pdf, mine_negatives
from pathseg.ssl.sgcl.semantic import kmeans, semantic_positives
from pathseg.ssl.sgcl.spatial import SpatialGrid, spatial_neighbors

QUADRANTS = ("tl", "tr", "bl", "br")


def _projector(in_dim: int, hidden_dim: int, out_dim: int) -> MLPHead:
    """512-512-128 MLP without BatchNorm, Kaiming-normal (fan_in, ReLU) weights and zero biases (``SwAVNeck``)."""
    head = MLPHead(in_dim, hidden_dim, out_dim)
    for m in head.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return head


def _sims_at(q: Tensor, bank: Tensor, idx: Tensor) -> Tensor:
    """``q[m] · bank[idx[m, k]]`` ``[M, K]`` by a full product or a gather, whichever needs less memory."""
    if bank.shape[0] <= idx.shape[1] * bank.shape[1]:
        return (q @ bank.T).gather(1, idx)
    return torch.einsum("md,mkd->mk", q, bank[idx])


class SGCL(SSLMethod):
    """SGCL pretraining model (see the module docstring; arguments as :class:`~pathseg.ssl.sgcl.config.SGCLConfig`).

    Args:
        backbone: timm name (reference: ``resnet18``).
        bank_slide: Slide index of every tile ``[N]`` (the memory-bank rows are the dataset indices).
        bank_xy: Grid position (row, col) of every tile ``[N, 2]`` in tile units.
        seed: Seed of the banks' initial rows, the method's own generator and the k-means runs.
        steps_per_epoch: Optimiser steps per epoch, used to derive the epoch from the step when the engine does
            not call :meth:`on_epoch_start` (0: ``N // global batch``).
    """

    bank_slide: Tensor
    bank_xy: Tensor
    labels: Tensor
    clustered_epoch: Tensor
    rank_pdf: Tensor

    def __init__(self, backbone: str, bank_slide: Tensor, bank_xy: Tensor, seed: int = 0, proj_dim: int = 128,
                 hidden_dim: int = 0, bank_momentum: float = 0.5, num_negatives: int = 65536,
                 temperature: float = 0.07, head_temperature: float = 0.2, dis_threshold: float = 3.0,
                 semantic: bool = True, aux_num: int = 1, nei_k: int = 4096, kmeans_k: int = 1000,
                 kmeans_runs: int = 3, kmeans_iters: int = 20, hard_fraction: float = 0.2,
                 beta: tuple[float, float] = (5.0, 15.0), rampup_epochs: int = 10, parity: bool = False,
                 detach_hard_negatives: bool = True, steps_per_epoch: int = 0) -> None:
        super().__init__()
        self.timm_name = backbone
        self.backbone = create_encoder(backbone)
        feat = int(self.backbone.num_features)  # type: ignore[arg-type]
        self.head = _projector(feat, hidden_dim or feat, proj_dim)
        n = int(bank_slide.shape[0])
        self.n, self.seed, self.steps_per_epoch = n, int(seed), int(steps_per_epoch)
        self.num_negatives, self.temperature, self.head_temperature = num_negatives, temperature, head_temperature
        self.dis_threshold, self.semantic, self.aux_num, self.nei_k = dis_threshold, semantic, aux_num, nei_k
        self.kmeans_k, self.kmeans_iters = kmeans_k, kmeans_iters
        self.rampup_epochs, self.parity, self.detach_hard_negatives = rampup_epochs, parity, detach_hard_negatives
        self.top = int(hard_fraction * n)
        g = torch.Generator().manual_seed(self.seed)
        self.bank_global = MemoryBank(n, proj_dim, bank_momentum, g)
        self.bank_backbone = MemoryBank(n, feat, bank_momentum, g)
        self.bank_local = nn.ModuleList([MemoryBank(n, proj_dim, bank_momentum, g) for _ in QUADRANTS])
        self.register_buffer("bank_slide", bank_slide.long().clone())
        self.register_buffer("bank_xy", bank_xy.float().clone())
        first = torch.randint(max(1, kmeans_k), (n,), generator=g)
        self.register_buffer("labels", first[None].repeat(kmeans_runs, 1))
        self.register_buffer("clustered_epoch", torch.tensor(-1, dtype=torch.long))
        self.register_buffer("rank_pdf", beta_rank_pdf(max(1, self.top), *beta).float(), persistent=False)
        self.rng = BufferedGenerator(self.seed + 1)
        self._epoch: int | None = None
        self._step = 0
        self._grid: tuple[torch.device, SpatialGrid] | None = None

    # -- schedule -----------------------------------------------------------------------------------------------
    def on_epoch_start(self, epoch: int) -> None:
        """The engine's 0-based epoch (drives the ramp-up and the per-epoch k-means)."""
        self._epoch = int(epoch)

    def on_step_start(self, step: int, max_steps: int) -> None:
        """Remember the optimiser step (fallback epoch = step // steps per epoch)."""
        self._step = int(step)

    def epoch(self, batch_size: int) -> int:
        """The current 0-based epoch: the engine's if it called :meth:`on_epoch_start`, else derived from the step."""
        if self._epoch is not None:
            return self._epoch
        world = dist.get_world_size() if is_distributed() else 1
        spe = self.steps_per_epoch or max(1, self.n // (batch_size * world))
        return self._step // spe

    @torch.no_grad()
    def cluster(self, epoch: int) -> None:
        """Three k-means labellings of the global bank, seeded by ``(seed, epoch, run)``, identical on every rank
        (computed everywhere from the identical bank, then broadcast from rank 0 against float non-determinism)."""
        bank = self.bank_global.bank
        runs = self.labels.shape[0]
        labels = torch.stack([kmeans(bank, self.kmeans_k, self.kmeans_iters, (self.seed * 1_000_003 + epoch) * 7 + r)
                              for r in range(runs)])
        if is_distributed():
            dist.broadcast(labels, 0)
        self.labels.copy_(labels)
        self.clustered_epoch.fill_(epoch)

    # -- loss ---------------------------------------------------------------------------------------------------
    def spatial_grid(self) -> SpatialGrid:
        """The bank's grid lookup on the current device (built once per device)."""
        if self._grid is None or self._grid[0] != self.bank_xy.device:
            self._grid = (self.bank_xy.device, SpatialGrid(self.bank_slide, self.bank_xy))
        return self._grid[1]

    @torch.no_grad()
    def positives(self, z: Tensor, index: Tensor, slide: Tensor, pos: Tensor, sims: Tensor) -> tuple[Tensor, Tensor]:
        """``(spatial, spatial ∪ semantic)`` masks ``[B, N]``, the anchor itself excluded."""
        spatial = spatial_neighbors(slide, pos, self.bank_slide, self.bank_xy, self.dis_threshold,
                                    grid=self.spatial_grid())
        both = spatial.clone()
        if self.semantic:
            both |= semantic_positives(z, index, sims, spatial, self.bank_global.bank, self.labels, self.aux_num,
                                       self.nei_k)
        both[torch.arange(both.shape[0], device=both.device), index] = False
        return spatial, both

    @torch.no_grad()
    def hard_negatives(self, hb: Tensor, index: Tensor, positives: Tensor) -> tuple[Tensor, Tensor]:
        """Beta-sampled semi-hard negatives ``(indices, valid)`` ranked in backbone space (one rank draw per step)."""
        exclude = positives.clone()
        exclude[torch.arange(exclude.shape[0], device=exclude.device), index] = True
        ranks = self.rng.multinomial(self.rank_pdf, self.nei_k, device=hb.device)
        return mine_negatives(hb @ self.bank_backbone.bank.T, exclude, ranks, self.top)

    def multicrop_loss(self, zl: Tensor, index: Tensor, neg_idx: Tensor) -> Tensor:
        """L_MC: each quadrant crop against its own quadrant bank row; negatives looked up in all four banks."""
        b = index.shape[0]
        banks = [m.bank.clone() for m in self.bank_local]  # type: ignore[operator,union-attr]  # snapshot
        pos = torch.cat([(zl[s * b:(s + 1) * b] * banks[s][index]).sum(1) for s in range(len(banks))])
        neg = torch.cat([_sims_at(zl, bank, neg_idx) for bank in banks], 1)
        return instance_nce(pos, neg, self.head_temperature)

    def training_loss(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """``batch``: ``global [B, 3, S, S]``, ``local [B, 4, 3, s, s]``, ``index``, ``slide`` ``[B]``, ``pos [B, 2]``.

        Returns ``loss`` = L_IR + w(epoch)·L_SP + L_MC and its terms, for the logs.
        """
        g, loc = batch["global"], batch["local"]
        b, dev = g.shape[0], g.device
        index = batch["index"].long().to(dev)
        epoch = self.epoch(b)
        if self.semantic and int(self.clustered_epoch) != epoch:
            self.cluster(epoch)
        h = self.backbone(g)
        z, hb = F.normalize(self.head(h), dim=1), F.normalize(h.detach(), dim=1)
        zl = F.normalize(self.head(self.backbone(loc.transpose(0, 1).reshape(-1, *loc.shape[2:]))), dim=1)
        sims = z @ self.bank_global.bank.clone().T  # a snapshot: the bank is updated in place below
        spatial, positives = self.positives(z.detach(), index, batch["slide"].long().to(dev),
                                            batch["pos"].float().to(dev), sims.detach())
        neg_idx, valid = self.hard_negatives(hb, index, positives)
        hard = sims.gather(1, neg_idx).masked_fill(~valid, float("-inf"))
        l_sp = merged_positive_loss(sims, positives, hard, self.temperature, self.parity, self.detach_hard_negatives)
        rand = self.rng.randint(self.n, (b, self.num_negatives), device=dev)
        l_ir = instance_nce(sims[torch.arange(b, device=dev), index], sims.gather(1, rand), self.head_temperature)
        l_mc = self.multicrop_loss(zl, index, rand.view(4 * b, self.num_negatives // 4))
        w = rampup_weight(epoch, self.rampup_epochs)
        self.update_banks(index, z, hb, zl)
        return {"loss": l_ir + w * l_sp + l_mc, "loss_ir": l_ir.detach(), "loss_sp": l_sp.detach(),
                "loss_mc": l_mc.detach(), "sp_weight": torch.tensor(w, device=dev),
                "epoch": torch.tensor(float(epoch), device=dev),
                "spatial_pos": spatial.sum(1).float().mean(), "all_pos": positives.sum(1).float().mean(),
                "no_positive": (~positives.any(1)).sum().float()}

    @torch.no_grad()
    def update_banks(self, index: Tensor, z: Tensor, hb: Tensor, zl: Tensor) -> None:
        """NPID momentum update of all six banks with the all-gathered batch."""
        b = index.shape[0]
        idx = gather_nograd(index)
        self.bank_global.update(idx, gather_nograd(z.detach()))
        self.bank_backbone.update(idx, gather_nograd(hb))
        for s, bank in enumerate(self.bank_local):
            bank.update(idx, gather_nograd(zl[s * b:(s + 1) * b].detach()))  # type: ignore[operator]
