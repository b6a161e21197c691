"""Stage 1 training: multi-label soft-margin loss, PDA schedule, poly SGD, flips (spec §1.3), with Lightning.

The original's optimiser passes ``weight_decay`` where SGD expects ``momentum`` (momentum 5e-4); the fixed
version uses momentum 0.9 (``stage1.momentum``), ``parity`` the original 5e-4.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from pathseg.data.layout import DatasetInfo
from pathseg.train.config import TrainerConfig
from pathseg.train.lifecycle import fit
from pathseg.train.schedules import make_optimizer, make_scheduler
from pathseg.wsss.classifier import MultiLabelClassifier, build_multilabel_classifier, param_groups
from pathseg.wsss.config import Stage1Config
from pathseg.wsss.data import PatchLabelSet, foreground_indices
from pathseg.wsss.pda import PARITY_DIVISOR, pda_active, pda_gamma

log = logging.getLogger(__name__)
PARITY_MOMENTUM = 5e-4
CLASSIFIER_FILE = "classifier.safetensors"
TRAIN_SPLIT = "train"


def stage1_normalize(cfg: Stage1Config) -> str:
    """Input normalisation of stage 1: none (divide by 255) under ``parity``."""
    return "none" if cfg.parity else cfg.normalize


def label_metrics(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Exact match (predicted set = label set, σ > 0.5) and mean Jaccard ``|P∩G| / |P∪G|`` over the batch."""
    pred = torch.sigmoid(logits) > 0.5
    gt = labels > 0.5
    exact = (pred == gt).all(dim=1).float().mean().item()
    inter = (pred & gt).sum(dim=1).float()
    union = (pred | gt).sum(dim=1).float()
    jac = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)).mean().item()
    return exact, jac


class Stage1Module(L.LightningModule):
    """Lightning wrapper: PDA ratio from the epoch, multi-label soft-margin loss, poly-decayed SGD."""

    def __init__(
        self, model: MultiLabelClassifier, lr: float, weight_decay: float, momentum: float, poly_power: float,
        total_steps: int, pda: bool, pda_start_epoch: int, gamma0: float, decay: float, floor: float,
    ) -> None:
        super().__init__()
        self.model = model
        self.lr, self.weight_decay, self.momentum, self.poly_power = lr, weight_decay, momentum, poly_power
        self.total_steps = total_steps
        self.pda, self.pda_start_epoch = pda, pda_start_epoch
        self.gamma0, self.decay, self.floor = gamma0, decay, floor
        self.history: list[dict[str, float]] = []
        self._epoch_sums: list[float] = []

    def current_gamma(self) -> float | None:
        """The PDA ratio of the current epoch, or ``None`` while PDA is off."""
        epoch = self.current_epoch
        if not self.pda or not pda_active(epoch, self.pda_start_epoch):
            return None
        return pda_gamma(epoch, self.gamma0, self.decay, self.floor)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        logits = self.model(batch["image"], self.current_gamma())
        loss = F.multilabel_soft_margin_loss(logits, batch["labels"])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"stage 1 loss is {loss.item()} at step {self.global_step} (try a lower lr)")
        exact, jac = label_metrics(logits.detach(), batch["labels"])
        self._epoch_sums.append(loss.item())
        every = max(self.total_steps // 10, 1)
        if (self.global_step + 1) % every == 0:
            log.info("  stage1 step %d/%d: loss %.4f", self.global_step + 1, self.total_steps, loss.item())
        self.history.append({"step": float(self.global_step), "loss": loss.item(), "exact": exact, "jaccard": jac})
        return loss

    def on_train_epoch_end(self) -> None:
        recent = self._epoch_sums
        gamma = self.current_gamma()
        mean = sum(recent) / max(len(recent), 1)
        log.info("  stage1 epoch %d: loss %.4f pda_gamma %s", self.current_epoch, mean, gamma if gamma else "off")
        self._epoch_sums = []

    def configure_optimizers(self) -> Any:
        # weight decay is set per group by param_groups (none on the new layers' biases, as the original)
        opt = make_optimizer(param_groups(self.model, self.lr, self.weight_decay), "sgd", self.lr, 0.0,
                             self.momentum)
        return {"optimizer": opt, "lr_scheduler": make_scheduler(opt, self.total_steps, "poly",
                                                                 power=self.poly_power)}


def build_classifier(cfg: Stage1Config, num_classes: int) -> MultiLabelClassifier:
    """The stage-1 network from its config section (fields unpacked)."""
    return build_multilabel_classifier(
        cfg.backbone, num_classes, dropout=cfg.dropout,
        pda_divisor=PARITY_DIVISOR if cfg.parity else float(num_classes),
        weights=cfg.weights, freeze_pretrained=cfg.freeze_pretrained,
    )


def stage_trainer(device: str, epochs: int, max_steps: int) -> Any:
    """The engine's trainer for a WSSS stage (no logger or checkpoints: the stages log and save themselves)."""
    from pathseg.train.factory import build_trainer

    cfg = TrainerConfig(max_epochs=epochs, max_steps=max_steps, accelerator="gpu" if device == "cuda" else "cpu",
                        devices="1", progress_bar=False)
    return build_trainer(cfg, None, loggers=False)


def train_stage1(cfg: Stage1Config, root: Path, info: DatasetInfo, out: Path, device: str) -> dict[str, Any]:
    """Train the classifier on ``root/train`` and save ``out/classifier.safetensors``.

    Returns:
        Summary metrics (final loss, exact match, Jaccard, steps).
    """
    num_classes = len(foreground_indices(info))
    ds = PatchLabelSet(root, TRAIN_SPLIT, info, normalize=stage1_normalize(cfg), augment=True)
    drop_last = len(ds) >= cfg.batch_size
    loader = DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, drop_last=drop_last,
                        num_workers=cfg.num_workers)
    steps_per_epoch = max(len(loader), 1)
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps > 0:
        total = min(total, cfg.max_steps)
    model = build_classifier(cfg, num_classes)
    module = Stage1Module(
        model, cfg.lr, cfg.weight_decay, PARITY_MOMENTUM if cfg.parity else cfg.momentum, cfg.poly_power,
        total, cfg.pda, cfg.pda_start_epoch, cfg.pda_gamma0, cfg.pda_decay, cfg.pda_floor,
    )
    log.info("stage1: %d patches, %d classes, %d steps", len(ds), num_classes, total)
    fit(stage_trainer(device, cfg.epochs, cfg.max_steps), module, train_dataloaders=loader)
    save_classifier(out / CLASSIFIER_FILE, model, cfg, num_classes)
    last = module.history[-min(len(module.history), steps_per_epoch):] if module.history else []
    n = max(len(last), 1)
    return {
        "steps": int(module.global_step),
        "final_loss": sum(h["loss"] for h in last) / n if last else None,
        "train_exact_match": sum(h["exact"] for h in last) / n if last else None,
        "train_jaccard": sum(h["jaccard"] for h in last) / n if last else None,
        "pda_gamma_last": module.current_gamma(),
    }


def save_classifier(path: Path, model: MultiLabelClassifier, cfg: Stage1Config, num_classes: int) -> None:
    """Save the weights (safetensors) with what is needed to rebuild the network, atomically."""
    from pathseg.train.weights import save_safetensors

    meta = {"backbone": cfg.backbone, "num_classes": num_classes, "dropout": cfg.dropout,
            "pda_divisor": model.pda_divisor, "normalize": stage1_normalize(cfg)}
    save_safetensors(model.state_dict(), path, {"pathseg": json.dumps(meta, sort_keys=True)})


def load_classifier(path: str | os.PathLike[str]) -> tuple[MultiLabelClassifier, dict[str, Any]]:
    """Rebuild a saved classifier (eval mode) and return it with its metadata."""
    from pathseg.errors import DataError
    from pathseg.train.weights import load_safetensors

    state, raw = load_safetensors(path)
    try:
        meta = json.loads(raw["pathseg"])
    except (KeyError, json.JSONDecodeError):
        raise DataError("not a pathseg stage-1 classifier (metadata missing)", Path(path)) from None
    if not math.isfinite(float(meta["pda_divisor"])):
        raise DataError("corrupt classifier metadata", Path(path))
    model = build_multilabel_classifier(meta["backbone"], int(meta["num_classes"]), dropout=float(meta["dropout"]),
                                        pda_divisor=float(meta["pda_divisor"]))
    model.load_state_dict(state)
    model.eval()
    return model, meta
