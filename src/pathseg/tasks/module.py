"""Lightning modules for fine-tuning: segmentation (pixel cross-entropy) and classification (cross-entropy).

Both take a built ``nn.Module`` (never a config) and plain hyper-parameters. Validation metrics come from
:mod:`pathseg.metrics`; the engine's :class:`~pathseg.train.best.BestWeights` keeps the best weights (by the
module's ``monitor``: ``val_miou`` or ``val_balanced_accuracy``) in memory, so no pickled checkpoint is written.
Optimiser and schedule come from :mod:`pathseg.train.schedules`.
"""

from __future__ import annotations

import copy
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pathseg.metrics import ConfusionMatrix, classification_metrics, metrics_from_confusion
from pathseg.tasks.common import encoder_of
from pathseg.tasks.sliding import sliding_window_predict
from pathseg.train.schedules import make_optimizer, make_scheduler


class _TransferModule(L.LightningModule):
    """Shared optimiser set-up of the transfer modules: encoder and decoder groups, frozen encoder.

    Args:
        model: Network with an ``.encoder``.
        num_classes: Output classes.
        lr: Decoder/head learning rate.
        encoder_lr_mult: Encoder learning rate = ``lr`` × this.
        weight_decay: Weight decay.
        optimizer: ``adamw``, ``adam`` or ``sgd`` (momentum 0.9).
        warmup_steps: Linear warm-up steps.
        max_steps: Total steps of the schedule.
        freeze_encoder: Train the decoder/head only; the encoder (BatchNorm statistics included) stays fixed.
        schedule: Schedule name (:mod:`pathseg.train.schedules`); ``plateau`` watches ``train_loss_epoch``.
        patience: Epochs of ``plateau``.
    """

    monitor = ""

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        lr: float = 1e-3,
        encoder_lr_mult: float = 1.0,
        weight_decay: float = 1e-4,
        optimizer: str = "adamw",
        warmup_steps: int = 50,
        max_steps: int = 1000,
        freeze_encoder: bool = False,
        schedule: str = "cosine",
        patience: int = 10,
    ) -> None:
        super().__init__()
        self.model = model
        self.num_classes = num_classes
        self.lr = lr
        self.encoder_lr_mult = encoder_lr_mult
        self.weight_decay = weight_decay
        self.optimizer_name = optimizer
        self.warmup_steps = warmup_steps
        self.max_steps = max_steps
        self.freeze_encoder = freeze_encoder
        self.schedule = schedule
        self.patience = patience
        self.history: list[dict[str, Any]] = []
        if freeze_encoder:
            for p in encoder_of(model).parameters():
                p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The wrapped model's logits."""
        return self.model(x)  # type: ignore[no-any-return]

    def on_train_epoch_start(self) -> None:
        """A frozen encoder also keeps its batch-norm statistics."""
        if self.freeze_encoder:
            encoder_of(self.model).eval()

    def param_groups(self) -> list[dict[str, Any]]:
        """Decoder/head parameters at ``lr``, trainable encoder parameters at ``lr × encoder_lr_mult``."""
        enc_ids = {id(p) for p in encoder_of(self.model).parameters()}
        enc = [p for p in self.model.parameters() if id(p) in enc_ids and p.requires_grad]
        rest = [p for p in self.model.parameters() if id(p) not in enc_ids and p.requires_grad]
        groups: list[dict[str, Any]] = [{"params": rest, "lr": self.lr}]
        if enc:
            groups.append({"params": enc, "lr": self.lr * self.encoder_lr_mult})
        return groups

    def configure_optimizers(self) -> Any:
        """The optimiser over :meth:`param_groups` and the per-step schedule."""
        opt = make_optimizer(self.param_groups(), self.optimizer_name, self.lr, self.weight_decay, 0.9)
        sched = make_scheduler(opt, self.max_steps, self.schedule, warmup_steps=self.warmup_steps,
                               patience=self.patience, monitor="train_loss_epoch")
        return {"optimizer": opt, "lr_scheduler": sched}

    def log_loss(self, loss: torch.Tensor, batch_size: int) -> None:
        """``train_loss`` per step, and its epoch mean ``train_loss_epoch`` when ``plateau`` watches it."""
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=batch_size)
        if self.schedule == "plateau":
            self.log("train_loss_epoch", loss, on_step=False, on_epoch=True, batch_size=batch_size)

    def last_state(self) -> dict[str, torch.Tensor]:
        """A CPU copy of the current weights."""
        return copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})


class SegmentationModule(_TransferModule):
    """Pixel-wise cross-entropy training; validation by sliding window over whole images (batch size 1).

    Args:
        model: Segmentation network mapping ``[N, 3, H, W]`` to logits ``[N, K, H, W]``.
        num_classes: ``K``.
        ignore_index: Mask value that is not trained on or scored.
        window: Sliding-window size for validation.
        overlap: Sliding-window overlap.
        blend: Sliding-window blending.
        window_batch: Windows per forward pass.
        **kwargs: Optimiser settings of the base class.
    """

    monitor = "val_miou"

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        ignore_index: int = 255,
        window: int = 256,
        overlap: float = 0.25,
        blend: str = "gaussian",
        window_batch: int = 4,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, num_classes, **kwargs)
        self.ignore_index = ignore_index
        self.window = window
        self.overlap = overlap
        self.blend = blend
        self.window_batch = window_batch
        self.val_cm = ConfusionMatrix(num_classes, ignore_index=ignore_index)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Cross-entropy over labelled pixels (a crop without any gives a zero loss)."""
        x, y = batch
        logits = self.model(x)
        valid = y != self.ignore_index
        if not bool(valid.any()):
            loss = logits.sum() * 0.0
        else:
            loss = F.cross_entropy(logits, y, ignore_index=self.ignore_index)
        self.log_loss(loss, x.shape[0])
        return loss

    def predict_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Sliding-window class probabilities ``[B, K, H, W]``."""
        return sliding_window_predict(
            self.model, x, window=self.window, overlap=self.overlap, num_classes=self.num_classes,
            batch_size=self.window_batch, blend=self.blend,  # type: ignore[arg-type]
        )

    def on_validation_epoch_start(self) -> None:
        """Reset the validation confusion matrix."""
        self.val_cm.reset()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """Accumulate the confusion matrix of one whole image."""
        x, y = batch
        self.val_cm.update(self.predict_probs(x).argmax(1).cpu(), y.cpu())

    def on_validation_epoch_end(self) -> None:
        """Log ``val_miou``/``val_mdice``/``val_pixel_accuracy`` (the engine keeps the best weights)."""
        if self.trainer.sanity_checking:
            return
        matrix = self.val_cm.matrix
        if self.trainer.world_size > 1:  # sum the ranks' confusion matrices
            total = self.trainer.strategy.reduce(torch.as_tensor(matrix, device=self.device), reduce_op="sum")
            matrix = total.cpu().numpy()
        m = metrics_from_confusion(matrix)
        for key in ("miou", "mdice", "pixel_accuracy"):
            if m[key] is not None:
                self.log(f"val_{key}", float(m[key]), prog_bar=key == "miou")
        self.history.append({"step": int(self.global_step), **{k: m[k] for k in ("miou", "mdice")}})


class ClassificationModule(_TransferModule):
    """Image-level cross-entropy training; validation with :func:`classification_metrics`."""

    monitor = "val_balanced_accuracy"

    def __init__(self, model: nn.Module, num_classes: int, **kwargs: Any) -> None:
        super().__init__(model, num_classes, **kwargs)
        self._scores: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Cross-entropy of the image labels."""
        x, y = batch
        loss = F.cross_entropy(self.model(x), y)
        self.log_loss(loss, x.shape[0])
        return loss

    def on_validation_epoch_start(self) -> None:
        """Reset the collected scores."""
        self._scores, self._labels = [], []

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """Collect softmax scores and labels."""
        x, y = batch
        self._scores.append(self.model(x).softmax(1).float().cpu().numpy())
        self._labels.append(y.cpu().numpy())

    def on_validation_epoch_end(self) -> None:
        """Log accuracy, balanced accuracy, macro F1 and AUC (the engine keeps the best weights)."""
        if self.trainer.sanity_checking or not self._scores:
            return
        m = classification_metrics(np.concatenate(self._labels), np.concatenate(self._scores), self.num_classes)
        for key in ("accuracy", "balanced_accuracy", "macro_f1", "auc"):
            if m[key] is not None:
                self.log(f"val_{key}", float(m[key]), prog_bar=key == "balanced_accuracy")
        self.history.append({"step": int(self.global_step), "balanced_accuracy": m["balanced_accuracy"]})
