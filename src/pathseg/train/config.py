"""Typed trainer and schedule settings shared by every pipeline (light: no torch import)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pathseg.errors import ConfigError

ScheduleName = Literal["cosine", "constant", "poly", "step", "plateau"]


@dataclass
class TrainerConfig:
    """Lightning trainer settings (see docs/pretraining.md for multi-GPU and multi-node).

    Args:
        max_epochs: Epochs (ignored when ``max_steps`` > 0).
        max_steps: Optimiser steps (-1: use ``max_epochs``).
        accelerator: ``auto``, ``cpu``, ``gpu``...
        devices: ``auto``, a count (``"4"``) or a list (``"0,1"``).
        num_nodes: Machines.
        strategy: ``auto``, ``ddp``, ``ddp_spawn``, ``ddp_find_unused_parameters_true``...
        precision: ``32-true``, ``16-mixed`` (AMP on GPU), ``bf16-mixed``.
        accumulate_grad_batches: Gradient accumulation.
        log_every_n_steps: Logging interval.
        deterministic: ``torch.use_deterministic_algorithms`` (exact reproducibility, slower on GPU).
        sync_batchnorm: Convert BatchNorm to SyncBatchNorm under DDP (GPU).
        gradient_clip_val: Clip gradients by norm (0: off).
        progress_bar: Show Lightning's progress bar.
    """

    max_epochs: int = 200
    max_steps: int = -1
    accelerator: str = "auto"
    devices: str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    accumulate_grad_batches: int = 1
    log_every_n_steps: int = 50
    deterministic: bool = False
    sync_batchnorm: bool = False
    gradient_clip_val: float = 0.0
    progress_bar: bool = True

    def validate(self) -> None:
        """Check counts."""
        if self.num_nodes < 1 or self.accumulate_grad_batches < 1 or self.log_every_n_steps < 1:
            raise ConfigError("trainer: num_nodes, accumulate_grad_batches and log_every_n_steps must be >= 1")
        if self.gradient_clip_val < 0:
            raise ConfigError("trainer.gradient_clip_val must be >= 0")


@dataclass
class ScheduleConfig:
    """Learning-rate schedule, stepped per optimiser step (``plateau``: per epoch on the training loss).

    Args:
        name: ``cosine`` (linear warm-up, then cosine to ``final_factor``), ``constant`` (warm-up, then flat),
            ``poly`` (``(1 - t/T)^power``), ``step`` (× ``gamma`` at each milestone) or ``plateau``
            (``ReduceLROnPlateau`` on ``train/loss``: × ``gamma`` after ``patience`` epochs without improvement).
        warmup_steps: Linear warm-up steps (cosine, constant, step).
        final_factor: Cosine end value as a fraction of the peak.
        power: Exponent of ``poly``.
        milestones: Steps of ``step``.
        gamma: Factor of ``step`` and ``plateau``.
        patience: Epochs of ``plateau``.
    """

    name: ScheduleName = "cosine"
    warmup_steps: int = 0
    final_factor: float = 0.0
    power: float = 0.9
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    patience: int = 10

    def validate(self) -> None:
        """Check ranges."""
        if self.warmup_steps < 0 or not 0.0 <= self.final_factor <= 1.0 or self.power <= 0:
            raise ConfigError("schedule: need warmup_steps >= 0, 0 <= final_factor <= 1, power > 0")
        if not 0.0 < self.gamma <= 1.0 or self.patience < 0:
            raise ConfigError("schedule: need 0 < gamma <= 1 and patience >= 0")
