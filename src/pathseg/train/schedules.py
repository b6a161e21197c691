"""Learning-rate schedules as small pure functions of the optimiser step, and their torch scheduler.

Each factor multiplies the peak learning rate; all are stepped once per optimiser step (``interval: step``)
except ``plateau``, which watches the epoch's mean training loss as the URL reference code does.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any

import torch

from pathseg.train.config import ScheduleConfig


def warmup_cosine(step: int, warmup_steps: int, max_steps: int, final_factor: float = 0.0) -> float:
    """Linear warm-up ``(step + 1) / warmup`` then cosine from 1 to ``final_factor`` at ``max_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return final_factor + (1.0 - final_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_constant(step: int, warmup_steps: int) -> float:
    """Linear warm-up, then 1."""
    return (step + 1) / warmup_steps if warmup_steps > 0 and step < warmup_steps else 1.0


def poly(step: int, max_steps: int, power: float = 0.9) -> float:
    """Poly decay ``(1 - step / max_steps) ** power`` (0 from ``max_steps`` on; 1 when ``max_steps <= 0``)."""
    if max_steps <= 0:
        return 1.0
    return max(0.0, 1.0 - step / max_steps) ** power


def step_decay(step: int, milestones: Sequence[int], gamma: float = 0.1, warmup_steps: int = 0) -> float:
    """Warm-up, then ``gamma ** (number of milestones <= step)``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    return float(gamma ** bisect.bisect_right(sorted(milestones), step))


def lr_factor(cfg: ScheduleConfig, step: int, max_steps: int) -> float:
    """The factor of ``cfg`` at ``step`` (``plateau`` has none: 1)."""
    if cfg.name == "cosine":
        return warmup_cosine(step, cfg.warmup_steps, max_steps, cfg.final_factor)
    if cfg.name == "poly":
        return poly(step, max_steps, cfg.power)
    if cfg.name == "step":
        return step_decay(step, cfg.milestones, cfg.gamma, cfg.warmup_steps)
    if cfg.name == "constant":
        return warmup_constant(step, cfg.warmup_steps)
    return 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, max_steps: int,
                    monitor: str = "train/loss_epoch") -> dict[str, Any]:
    """The ``lr_scheduler`` entry of ``configure_optimizers`` for ``cfg``.

    Args:
        optimizer: The optimiser.
        cfg: The schedule (a LightningModule receives plain values: see :func:`schedule_values`).
        max_steps: Total optimiser steps of the run.
        monitor: Logged value watched by ``plateau`` (an epoch mean).
    """
    if cfg.name == "plateau":
        sched: Any = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=cfg.gamma,
                                                                patience=cfg.patience)
        return {"scheduler": sched, "interval": "epoch", "monitor": monitor}
    # A closure, not a callable object: LambdaLR would pickle an object's attributes into the checkpoint,
    # which a weights-only resume then refuses.
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(cfg, step, max_steps))
    return {"scheduler": sched, "interval": "step"}


def schedule_values(cfg: ScheduleConfig) -> dict[str, Any]:
    """``cfg`` as plain keyword values (what modules receive instead of the config object)."""
    return {"name": cfg.name, "warmup_steps": cfg.warmup_steps, "final_factor": cfg.final_factor,
            "power": cfg.power, "milestones": list(cfg.milestones), "gamma": cfg.gamma, "patience": cfg.patience}


def make_scheduler(optimizer: torch.optim.Optimizer, max_steps: int, name: str = "cosine", warmup_steps: int = 0,
                   final_factor: float = 0.0, power: float = 0.9, milestones: Sequence[int] = (), gamma: float = 0.1,
                   patience: int = 10, monitor: str = "train/loss_epoch") -> dict[str, Any]:
    """:func:`build_scheduler` from plain values (see :class:`~pathseg.train.config.ScheduleConfig`)."""
    cfg = ScheduleConfig(name=name, warmup_steps=warmup_steps, final_factor=final_factor,  # type: ignore[arg-type]
                         power=power, milestones=list(milestones), gamma=gamma, patience=patience)
    return build_scheduler(optimizer, cfg, max_steps, monitor)


def make_optimizer(params: Any, name: str = "sgd", lr: float = 0.03, weight_decay: float = 1e-4,
                   momentum: float = 0.9) -> torch.optim.Optimizer:
    """SGD (with ``momentum``) or AdamW over parameters or parameter groups.

    Raises:
        ValueError: Unknown name.
    """
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer '{name}' (sgd, adamw, adam)")
