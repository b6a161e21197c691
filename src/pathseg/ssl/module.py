"""The generic LightningModule that trains any :class:`~pathseg.ssl.base.SSLMethod`."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch import Tensor

from pathseg.ssl.base import SSLMethod


def warmup_cosine(step: int, warmup_steps: int, max_steps: int, cosine: bool = True) -> float:
    """Learning-rate factor: linear warm-up from ~0 to 1, then cosine decay to 0 (or constant)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if not cosine:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class SSLModule(L.LightningModule):
    """Trains ``method`` with SGD or AdamW and a per-step warm-up + cosine schedule.

    Args:
        method: The method (``training_loss``, ``on_step_start``, ``trainable_parameters``).
        optimizer: ``sgd`` or ``adamw``.
        lr: Peak learning rate.
        weight_decay: Weight decay.
        momentum: SGD momentum.
        warmup_steps: Warm-up optimiser steps.
        max_steps: Total optimiser steps.
        cosine: Cosine decay after the warm-up.
    """

    def __init__(self, method: SSLMethod, optimizer: str = "sgd", lr: float = 0.03, weight_decay: float = 1e-4,
                 momentum: float = 0.9, warmup_steps: int = 0, max_steps: int = 1, cosine: bool = True) -> None:
        super().__init__()
        self.method = method
        self.optimizer_name = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.sgd_momentum = momentum
        self.warmup_steps = warmup_steps
        self.max_steps = max_steps
        self.cosine = cosine
        self._last_step = -1

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """One micro-batch: ``method.on_step_start`` on a new optimiser step, then the method's losses."""
        if self.global_step != self._last_step:
            self.method.on_step_start(self.global_step, self.max_steps)
            self._last_step = self.global_step
        losses = self.method.training_loss(batch)
        n = _batch_size(batch)
        self.log_dict({f"train/{k}": v.detach().float() for k, v in losses.items()}, prog_bar=True,
                      batch_size=n, sync_dist=True)  # mean over ranks (a no-op in one process)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=n)
        return losses["loss"]

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Record the loader position (saved in checkpoints for exact mid-epoch resume).

        Set at the start of the batch because checkpoint callbacks run before the module's ``on_train_batch_end``.
        """
        loader: Any = self.trainer.train_dataloader
        if hasattr(loader, "consumed"):
            loader.consumed = batch_idx + 1

    def configure_optimizers(self) -> Any:
        """The optimiser over ``method.trainable_parameters()`` and a per-step LambdaLR."""
        params = list(self.method.trainable_parameters())
        if self.optimizer_name == "adamw":
            opt: torch.optim.Optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        else:
            opt = torch.optim.SGD(params, lr=self.lr, momentum=self.sgd_momentum, weight_decay=self.weight_decay)
        warmup, total, cosine = self.warmup_steps, self.max_steps, self.cosine
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, warmup, total, cosine))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _batch_size(batch: Any) -> int:
    if isinstance(batch, dict):
        for v in batch.values():
            if isinstance(v, Tensor) and v.ndim > 0:
                return int(v.shape[0])
    return 1
