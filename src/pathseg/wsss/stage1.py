"""Stage 1 training: multi-label soft-margin loss, PDA schedule, poly SGD, flips (spec §1.3), with Lightning.

The original's optimiser passes ``weight_decay`` where SGD expects ``momentum`` (momentum 5e-4); the fixed
version uses momentum 0.9 (``stage1.momentum``), ``parity`` the original 5e-4.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from pathseg.data.layout import DatasetInfo
from pathseg.io import atomic_path
from pathseg.wsss.classifier import MultiLabelClassifier, param_groups
from pathseg.wsss.config import Stage1Config
from pathseg.wsss.data import PatchLabelSet, foreground_indices
from pathseg.wsss.pda import PARITY_DIVISOR, pda_active, pda_gamma

PARITY_MOMENTUM = 5e-4
TRAIN_SPLIT = "train"


def poly_factor(step: int, total: int, power: float = 0.9) -> float:
    """Poly decay ``(1 − t/T)^power`` (0 once ``t >= T``)."""
    if total <= 0:
        return 1.0
    return max(0.0, 1.0 - step / total) ** power


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
            print(f"  stage1 step {self.global_step + 1}/{self.total_steps}: loss {loss.item():.4f}", flush=True)
        self.history.append({"step": float(self.global_step), "loss": loss.item(), "exact": exact, "jaccard": jac})
        return loss

    def on_train_epoch_end(self) -> None:
        recent = self._epoch_sums
        gamma = self.current_gamma()
        mean = sum(recent) / max(len(recent), 1)
        print(f"  stage1 epoch {self.current_epoch}: loss {mean:.4f} pda_gamma {gamma if gamma else 'off'}",
              flush=True)
        self._epoch_sums = []

    def configure_optimizers(self) -> Any:
        opt = torch.optim.SGD(
            param_groups(self.model, self.lr, self.weight_decay), lr=self.lr, momentum=self.momentum
        )
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda t: poly_factor(t, self.total_steps, self.poly_power)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def build_classifier(cfg: Stage1Config, num_classes: int) -> MultiLabelClassifier:
    """The stage-1 network from its config section (fields unpacked)."""
    return MultiLabelClassifier(
        cfg.backbone, num_classes, dropout=cfg.dropout,
        pda_divisor=PARITY_DIVISOR if cfg.parity else float(num_classes),
        weights=cfg.weights, freeze_pretrained=cfg.freeze_pretrained,
    )


def trainer_kwargs(device: str, epochs: int, max_steps: int) -> dict[str, Any]:
    """Common Lightning Trainer arguments (no logger, checkpoints or progress bar: we print and save)."""
    accelerator = "gpu" if device == "cuda" else "cpu"
    return dict(
        accelerator=accelerator, devices=1, max_epochs=epochs, max_steps=max_steps, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0,
    )


def train_stage1(cfg: Stage1Config, root: Path, info: DatasetInfo, out: Path, device: str) -> dict[str, Any]:
    """Train the classifier on ``root/train`` and save ``out/classifier.pt``.

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
    print(f"stage1: {len(ds)} patches, {num_classes} classes, {total} steps", flush=True)
    trainer = L.Trainer(**trainer_kwargs(device, cfg.epochs, cfg.max_steps))
    trainer.fit(module, loader)
    save_classifier(out / "classifier.pt", model, cfg, num_classes)
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
    """Save the weights with what is needed to rebuild the network, atomically."""
    meta = {"backbone": cfg.backbone, "num_classes": num_classes, "dropout": cfg.dropout,
            "pda_divisor": model.pda_divisor, "normalize": stage1_normalize(cfg)}
    with atomic_path(path) as tmp:
        torch.save({"meta": meta, "state_dict": model.state_dict()}, tmp)


def load_classifier(path: str | os.PathLike[str]) -> tuple[MultiLabelClassifier, dict[str, Any]]:
    """Rebuild a saved classifier (eval mode) and return it with its metadata."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    meta = ckpt["meta"]
    model = MultiLabelClassifier(meta["backbone"], int(meta["num_classes"]), dropout=float(meta["dropout"]),
                                 pda_divisor=float(meta["pda_divisor"]))
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    if not math.isfinite(float(meta["pda_divisor"])):
        raise ValueError("corrupt classifier metadata")
    return model, meta
