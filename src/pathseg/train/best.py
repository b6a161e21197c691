"""Best-weights selection on a validation metric, kept in memory (no pickled checkpoint is ever written)."""

from __future__ import annotations

import math
from typing import Any, Literal

import lightning as L
import torch
from torch import nn


class BestWeights(L.Callback):
    """Keeps a CPU copy of ``pl_module.<attribute>``'s state whenever ``monitor`` improves.

    The metric is read from ``trainer.callback_metrics`` after each validation epoch (sanity checks skipped).

    Args:
        monitor: Logged metric, e.g. ``val_miou``.
        mode: ``max`` or ``min``.
        attribute: The sub-module whose weights are kept (``model``).
    """

    def __init__(self, monitor: str, mode: Literal["max", "min"] = "max", attribute: str = "model") -> None:
        self.monitor, self.mode, self.attribute = monitor, mode, attribute
        self.best_score: float | None = None
        self.best_step: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None

    def improves(self, score: float) -> bool:
        """Whether ``score`` beats the best so far (NaN never does)."""
        if math.isnan(score):
            return False
        if self.best_score is None:
            return True
        return score > self.best_score if self.mode == "max" else score < self.best_score

    def consider(self, score: float | None, step: int, model: nn.Module) -> bool:
        """Keep ``model``'s weights if ``score`` improves (for pipelines that validate outside Lightning's loop).

        Returns:
            Whether they were kept.
        """
        if score is None or not self.improves(float(score)):
            return False
        self.best_score, self.best_step = float(score), int(step)
        self.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        return True

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Copy the weights when the monitored value improved."""
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        self.consider(float(trainer.callback_metrics[self.monitor]), int(trainer.global_step),
                      getattr(pl_module, self.attribute))

    def restore(self, model: nn.Module) -> bool:
        """Load the best weights into ``model``; ``False`` when no validation ran."""
        if self.best_state is None:
            return False
        model.load_state_dict(self.best_state)
        return True

    def state_dict(self) -> dict[str, Any]:
        """The score and step (saved in Lightning checkpoints; the weights are not)."""
        return {"best_score": self.best_score, "best_step": self.best_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the score and step after a resume."""
        self.best_score, self.best_step = state_dict.get("best_score"), state_dict.get("best_step")
