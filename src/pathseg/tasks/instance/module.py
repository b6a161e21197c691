"""Lightning module of the instance task: the model's own losses, validation with the instance metrics.

Works with any model exposing ``losses(images, targets) -> dict`` (summed), ``predict(images) -> list of``
:class:`~pathseg.tasks.instance.types.InstancePrediction` and an ``encoder`` attribute: :class:`ProposalFreeModel`
and :class:`MaskRCNNModel`. Optimiser, schedule and encoder freezing come from the semantic task's base module, so
the hyper-parameters are the same plain arguments. The engine's :class:`~pathseg.train.best.BestWeights` keeps the
best weights: ``BestWeights(module.monitor, module.monitor_mode)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pathseg.metrics.accumulate import InstanceMetricAccumulator
from pathseg.metrics.instance import KEYS
from pathseg.tasks.module import _TransferModule

Batch = tuple[torch.Tensor, list[dict[str, torch.Tensor]]]


class InstanceModule(_TransferModule):
    """Train an instance model; validate whole images and log ``val_<metric>`` for best-weights selection.

    Args:
        model: :class:`ProposalFreeModel` or :class:`MaskRCNNModel`.
        monitor: Metric of :func:`pathseg.metrics.instance_metrics` selecting the best weights (higher is better;
            ``object_hausdorff``: lower is better); logged as ``val_<monitor>`` (:attr:`monitor`, :attr:`monitor_mode`).
        legacy_dice: Validation ``dice`` with the UNIT +1 smoothing.
        **kwargs: ``lr``, ``encoder_lr_mult``, ``weight_decay``, ``optimizer``, ``warmup_steps``, ``max_steps``,
            ``freeze_encoder`` as the segmentation module.
    """

    def __init__(self, model: nn.Module, monitor: str = "aji", legacy_dice: bool = False, **kwargs: Any) -> None:
        if monitor not in KEYS and monitor != "object_f1_pooled":
            raise ValueError(f"unknown monitor '{monitor}' (one of {', '.join(KEYS)}, object_f1_pooled)")
        super().__init__(model, num_classes=2, **kwargs)
        self.monitor = f"val_{monitor}"
        self.monitor_mode = "min" if monitor == "object_hausdorff" else "max"
        self.monitor_key = monitor
        self.val_metrics = InstanceMetricAccumulator(legacy_dice=legacy_dice,
                                                     hausdorff=monitor == "object_hausdorff")

    def forward(self, x: torch.Tensor) -> Any:
        """The wrapped model's raw output."""
        return self.model(x)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """Sum of the model's losses; each one is logged as ``train_<name>``."""
        images, targets = batch
        model: Any = self.model
        losses = model.losses(images, targets)
        loss = torch.stack(list(losses.values())).sum()
        n = images.shape[0]
        for name, value in losses.items():
            self.log(f"train_{name}", value.detach(), on_step=True, on_epoch=False, batch_size=n)
        self.log("train_loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=False, batch_size=n)
        return loss

    def on_validation_epoch_start(self) -> None:
        """Forget the previous validation's images."""
        self.val_metrics.reset()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """Predict whole images and score them."""
        images, targets = batch
        model: Any = self.model
        for pred, target in zip(model.predict(images), targets):
            key = int(target["index"]) if "index" in target else None
            self.val_metrics.update(pred.instances, target["instances"].cpu().numpy(), key=key)

    def on_validation_epoch_end(self) -> None:
        """Gather every rank's images, log ``val_<metric>`` of the whole split (the same on every rank; infinite
        Hausdorff distances are not logged) and append to :attr:`history`."""
        if self.trainer.sanity_checking:
            return
        self.val_metrics.sync()
        if not self.val_metrics.per_image:
            return
        m = self.val_metrics.compute()
        for key in (*KEYS, "object_f1_pooled"):
            if m.get(key) is not None and abs(m[key]) != float("inf"):
                self.log(f"val_{key}", float(m[key]), prog_bar=key == self.monitor_key)
        self.history.append({"step": int(self.global_step), **{k: m[k] for k in ("aji", "pq", "object_dice")}})
