"""The generic LightningModule that trains any :class:`~pathseg.ssl.base.SSLMethod`.

Automatic optimisation (one optimiser over ``method.trainable_parameters()``, one schedule) is the default. A
method with ``manual_optimization = True`` (GANs such as UNIT) builds its own optimisers and runs its own update in
``manual_step``; the module still calls ``on_step_start`` once per step and ``on_epoch_start`` once per epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
from torch import Tensor

from pathseg.ssl.base import SSLMethod
from pathseg.train.schedules import make_optimizer, make_scheduler


class SSLModule(L.LightningModule):
    """Trains ``method`` with SGD or AdamW and a per-step schedule (warm-up + cosine by default).

    Args:
        method: The method (``training_loss``, ``on_step_start``, ``trainable_parameters``).
        optimizer: ``sgd``, ``adamw`` or ``adam``.
        lr: Peak learning rate.
        weight_decay: Weight decay.
        momentum: SGD momentum.
        warmup_steps: Warm-up optimiser steps.
        max_steps: Total optimiser steps.
        schedule: ``cosine``, ``constant``, ``poly``, ``step`` or ``plateau`` (see :mod:`pathseg.train.schedules`).
        schedule_args: Further plain values of the schedule (``power``, ``milestones``, ``gamma``, ``patience``).
    """

    def __init__(self, method: SSLMethod, optimizer: str = "sgd", lr: float = 0.03, weight_decay: float = 1e-4,
                 momentum: float = 0.9, warmup_steps: int = 0, max_steps: int = 1, schedule: str = "cosine",
                 schedule_args: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.method = method
        self.optimizer_name = optimizer
        self.lr, self.weight_decay, self.sgd_momentum = lr, weight_decay, momentum
        self.warmup_steps, self.max_steps = warmup_steps, max_steps
        self.schedule, self.schedule_args = schedule, dict(schedule_args or {})
        self.automatic_optimization = not getattr(method, "manual_optimization", False)
        self._last_step = -1

    def on_train_epoch_start(self) -> None:
        """Tell the method the 0-based epoch (ramps such as SGCL's spatial weight)."""
        hook = getattr(self.method, "on_epoch_start", None)
        if callable(hook):
            hook(int(self.current_epoch))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """One micro-batch: ``method.on_step_start`` on a new optimiser step, then the method's losses."""
        if self.global_step != self._last_step:
            self.method.on_step_start(self.global_step, self.max_steps)
            self._last_step = self.global_step
        if self.automatic_optimization:
            losses = self.method.training_loss(batch)
        else:
            opts = self.optimizers()
            opt_list: list[Any] = list(opts) if isinstance(opts, Sequence) else [opts]
            losses = self.method.manual_step(batch, opt_list, int(self.global_step), self.manual_backward)
        n = _batch_size(batch)
        self.log_dict({f"train/{k}": v.detach().float() for k, v in losses.items()}, prog_bar=True,
                      batch_size=n, sync_dist=True)  # mean over ranks (a no-op in one process)
        self.log("train/loss_epoch", losses["loss"].detach().float(), on_step=False, on_epoch=True, batch_size=n,
                 sync_dist=True)  # watched by the plateau schedule
        opt0: Any = self.optimizers()
        first = opt0[0] if isinstance(opt0, Sequence) else opt0
        self.log("train/lr", first.param_groups[0]["lr"], batch_size=n)
        return losses["loss"]

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Record the loader position (saved in checkpoints for exact mid-epoch resume).

        Set at the start of the batch because checkpoint callbacks run before the module's ``on_train_batch_end``.
        """
        loader: Any = self.trainer.train_dataloader
        if hasattr(loader, "consumed"):
            loader.consumed = batch_idx + 1

    def configure_optimizers(self) -> Any:
        """The optimiser over ``method.trainable_parameters()`` and its schedule (or the method's own)."""
        if not self.automatic_optimization:
            return self.method.build_optimizers(self.lr, self.weight_decay)
        opt = make_optimizer(list(self.method.trainable_parameters()), self.optimizer_name, self.lr,
                             self.weight_decay, self.sgd_momentum)
        sched = make_scheduler(opt, self.max_steps, self.schedule, warmup_steps=self.warmup_steps,
                               **self.schedule_args)
        return {"optimizer": opt, "lr_scheduler": sched}


def _batch_size(batch: Any) -> int:
    if isinstance(batch, dict):
        for v in batch.values():
            if isinstance(v, Tensor) and v.ndim > 0:
                return int(v.shape[0])
    return 1
