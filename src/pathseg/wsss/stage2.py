"""Stage 2: DeepLabV3+ (smp) trained on the multi-layer pseudo masks, and gated evaluation (spec §3).

Loss ``L = Σ_l w_l · CE(s, PM_l)`` with ``w = {deep: 0.6, mid: 0.2, shallow: 0.2}`` by default.

* Fixed: background / exclude pixels (and 255) are ignored; plain mean over the remaining pixels.
* ``parity``: the original: a 5th logit channel ``100·[PM_deep = bg]`` (zeros without background), CE averaged
  over all pixels and then **divided again by the batch size**.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from pathseg.metrics import ConfusionMatrix
from pathseg.train.best import BestWeights
from pathseg.train.schedules import make_optimizer, make_scheduler
from pathseg.wsss.config import Stage2Config
from pathseg.wsss.data import IMAGENET_MEAN, IMAGENET_STD, MaskedSet
from pathseg.wsss.gate import gate_predictions

PARITY_BG_LOGIT = 100.0


def pm_loss(
    logits: torch.Tensor, targets: dict[str, torch.Tensor], weights: dict[str, float], bg_index: int | None,
    ignore_index: int = 255, parity: bool = False,
) -> torch.Tensor:
    """The weighted multi-layer pseudo-mask loss.

    Args:
        logits: ``[N, C, H, W]`` for the C foreground classes.
        targets: ``{layer: [N, H, W]}`` pseudo masks (values 0..C-1, ``bg_index``, ``ignore_index``).
        weights: ``{layer: weight}``; layers with weight 0 are skipped.
        bg_index: The background / exclude value (``C``), or ``None``.
        ignore_index: Never-scored value.
        parity: The original loss (5th channel trick and double division by the batch size).
    """
    n = logits.shape[0]
    total = logits.new_zeros(())
    primary = targets["deep"] if "deep" in targets else next(iter(targets.values()))
    for name, w in weights.items():
        if w == 0:
            continue
        t = targets[name]
        if parity:
            extra = (primary == bg_index).to(logits.dtype) * PARITY_BG_LOGIT if bg_index is not None else \
                torch.zeros_like(primary, dtype=logits.dtype)
            scores = torch.cat([logits, extra[:, None]], dim=1)
            ce = F.cross_entropy(scores, t, ignore_index=ignore_index) / n
        else:
            t = t.masked_fill(t == bg_index, ignore_index) if bg_index is not None else t
            valid = (t != ignore_index).sum()
            ce = F.cross_entropy(logits, t, ignore_index=ignore_index, reduction="sum") / valid.clamp(min=1)
        total = total + w * ce
    return total


def normalize_batch(x: torch.Tensor, normalize: str) -> torch.Tensor:
    """Apply ImageNet mean/std to a ``[0, 1]`` batch when ``normalize='imagenet'``."""
    if normalize != "imagenet":
        return x
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def padded_logits(model: nn.Module, x: torch.Tensor, multiple: int = 32) -> torch.Tensor:
    """Logits of an image of any size: replicate-pad to a multiple of ``multiple``, then crop back."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
    return model(xp)[..., :h, :w]


@torch.no_grad()
def evaluate(
    model: nn.Module, root: Path, split: str, num_classes: int, exclude_index: int | None, normalize: str,
    classifier: nn.Module | None = None, classifier_normalize: str = "none", gate_threshold: float = 0.1,
    gate_mode: str = "fixed", device: str = "cpu", max_images: int = 0,
) -> dict[str, Any]:
    """WSSS metrics (per-class IoU, mIoU, FwIoU, pixel accuracy) over one split, ungated and (with a
    ``classifier``) gated, from one forward pass per image.

    Pixels whose true class is ``exclude_index`` are left out (the original sets the prediction to the truth
    there, which is the same for the confusion matrix); the exclude class is left out of the means.

    Returns:
        ``{"no_gate": metrics}`` plus ``"gate": metrics`` when a classifier is given.
    """
    model.eval()
    cms = {"no_gate": ConfusionMatrix(num_classes, ignore_index=255, exclude_index=exclude_index)}
    if classifier is not None:
        classifier.eval()
        cms["gate"] = ConfusionMatrix(num_classes, ignore_index=255, exclude_index=exclude_index)
    data = MaskedSet(root, split, normalize="none")
    picks = list(range(len(data)))
    if 0 < max_images < len(data):  # spread evenly over the sorted ids
        picks = sorted({round(i * (len(data) - 1) / max(max_images - 1, 1)) for i in range(max_images)})
    count = len(picks)
    for i in picks:
        item = data[i]
        x = item["image"][None].to(device)  # type: ignore[index]
        logits = padded_logits(model, normalize_batch(x, normalize))
        cms["no_gate"].update(logits.argmax(dim=1)[0].cpu(), item["mask"])
        if classifier is not None:
            probs = torch.sigmoid(classifier(normalize_batch(x, classifier_normalize)))
            cms["gate"].update(gate_predictions(logits, probs, gate_threshold, gate_mode)[0].cpu(), item["mask"])
    out = {}
    for key, cm in cms.items():
        out[key] = cm.compute()
        out[key]["num_images"] = count
    return out


log = logging.getLogger(__name__)


class Stage2Module(L.LightningModule):
    """Lightning wrapper: multi-layer PM loss, poly SGD (head 10x), best-val-mIoU model selection."""

    def __init__(
        self, model: nn.Module, weights: dict[str, float], bg_index: int | None, parity: bool, lr: float,
        head_lr_mult: float, momentum: float, weight_decay: float, poly_power: float, total_steps: int,
        val: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.weights, self.bg_index, self.parity = weights, bg_index, parity
        self.lr, self.head_lr_mult, self.momentum = lr, head_lr_mult, momentum
        self.weight_decay, self.poly_power, self.total_steps = weight_decay, poly_power, total_steps
        self.val = val
        self.best = BestWeights("val_miou")  # step = epoch here
        self._losses: list[float] = []

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        logits = self.model(batch["image"])
        targets = {name: batch[f"pm_{name}"] for name in self.weights}
        loss = pm_loss(logits, targets, self.weights, self.bg_index, parity=self.parity)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"stage 2 loss is {loss.item()} at step {self.global_step} (try a lower lr)")
        self._losses.append(loss.item())
        every = max(self.total_steps // 10, 1)
        if (self.global_step + 1) % every == 0:
            log.info("  stage2 step %d/%d: loss %.4f", self.global_step + 1, self.total_steps, loss.item())
        return loss

    def on_train_epoch_end(self) -> None:
        mean = sum(self._losses) / max(len(self._losses), 1)
        self._losses = []
        msg = f"  stage2 epoch {self.current_epoch}: loss {mean:.4f}"
        if self.val is not None:
            m = evaluate(self.model, device=str(self.device.type), **self.val)["no_gate"]["miou"]
            self.model.train()
            msg += f" val mIoU {m if m is None else round(m, 4)}"
            self.best.consider(m, self.current_epoch, self.model)
        log.info(msg)

    def configure_optimizers(self) -> Any:
        encoder: Any = self.model.encoder
        enc = list(encoder.parameters())
        enc_ids = {id(p) for p in enc}
        head = [p for p in self.model.parameters() if id(p) not in enc_ids]
        groups = [{"params": enc, "lr": self.lr}, {"params": head, "lr": self.lr * self.head_lr_mult}]
        opt = make_optimizer(groups, "sgd", self.lr, self.weight_decay, self.momentum)
        return {"optimizer": opt, "lr_scheduler": make_scheduler(opt, self.total_steps, "poly",
                                                                 power=self.poly_power)}


def stage2_normalize(cfg: Stage2Config) -> str:
    """Input normalisation of stage 2: none (divide by 255) under ``parity``."""
    return "none" if cfg.parity else cfg.normalize


def make_loader(ds: Any, cfg: Stage2Config) -> DataLoader:
    """Shuffled training loader (drop_last only when there is at least one full batch)."""
    return DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, drop_last=len(ds) >= cfg.batch_size,
                      num_workers=cfg.num_workers)
