"""Learnability check: a small U-Net trained briefly on synthetic images must segment held-out ones.

Torch and segmentation_models_pytorch are imported inside the functions (this module is imported by the demo).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class TrainResult:
    """Outcome of :func:`train_tiny_unet`."""

    model: Any
    epochs: int
    seconds: float
    final_loss: float


def build_tiny_unet(num_classes: int, encoder: str = "resnet18") -> Any:
    """A U-Net with a randomly initialised encoder (no download) and a slim decoder."""
    import segmentation_models_pytorch as smp

    return smp.Unet(encoder_name=encoder, encoder_weights=None, encoder_depth=4,
                    decoder_channels=(128, 64, 32, 16), classes=num_classes)


def _to_tensor(images: np.ndarray) -> Any:
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def train_tiny_unet(
    images: np.ndarray,
    masks: np.ndarray,
    num_classes: int,
    max_epochs: int = 40,
    time_limit_s: float = 60.0,
    batch_size: int = 8,
    lr: float = 3e-3,
    seed: int = 0,
    encoder: str = "resnet18",
    crop: int | None = None,
    log: Any = None,
) -> TrainResult:
    """Train a small U-Net with cross-entropy and random flips, for ``max_epochs`` or ``time_limit_s``.

    Without a binding time limit the run is deterministic for ``seed`` (CPU).

    Args:
        images: ``[N, H, W, 3]`` uint8 (H, W divisible by 16).
        masks: ``[N, H, W]`` class indices.
        num_classes: Number of output classes.
        max_epochs: Upper bound on epochs.
        time_limit_s: Wall-time budget: training stops at the first step after it, and the learning rate follows a
            cosine decay over the epochs or this budget, whichever runs out first.
        batch_size: Images per step.
        lr: AdamW peak learning rate.
        seed: Torch seed (weights and shuffling).
        encoder: smp encoder name.
        crop: Train on random square crops of this side (a multiple of 16; one offset per batch) to save time;
            prediction still runs on whole images.
        log: Optional callable receiving a progress line per epoch.
    """
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    model = build_tiny_unet(num_classes, encoder)
    x_all, y_all = _to_tensor(images), torch.from_numpy(masks.astype(np.int64))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    start = time.time()
    epoch, loss_value = 0, float("nan")
    model.train()
    done = False
    while not done and epoch < max_epochs:
        perm = torch.randperm(len(x_all), generator=gen)
        total, seen = 0.0, 0
        for s in range(0, len(perm), batch_size):
            # cosine decay over whichever runs out first, the epochs or the time budget (per-epoch steps
            # when time is not the limit, i.e. the closed form of CosineAnnealingLR(T_max=max_epochs))
            progress = max(epoch / max_epochs, (time.time() - start) / time_limit_s)
            if progress >= 1.0:
                done = True
                break
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * progress))
            idx = perm[s : s + batch_size]
            x, y = x_all[idx], y_all[idx]
            if crop is not None and crop < min(x.shape[-2:]):
                oy = int(torch.randint(0, x.shape[-2] - crop + 1, (1,), generator=gen))
                ox = int(torch.randint(0, x.shape[-1] - crop + 1, (1,), generator=gen))
                x, y = x[..., oy : oy + crop, ox : ox + crop], y[..., oy : oy + crop, ox : ox + crop]
            if torch.rand(1, generator=gen).item() < 0.5:
                x, y = x.flip(-1), y.flip(-1)
            if torch.rand(1, generator=gen).item() < 0.5:
                x, y = x.flip(-2), y.flip(-2)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        if seen:
            epoch += 1 if seen == len(perm) else 0
            loss_value = total / seen
            if log is not None:
                log(f"  epoch {epoch}{'' if seen == len(perm) else ' (partial)'}: loss {loss_value:.3f} "
                    f"({time.time() - start:.0f} s)")
    model.eval()
    return TrainResult(model=model, epochs=epoch, seconds=time.time() - start, final_loss=loss_value)


def predict(model: Any, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Class index per pixel, ``[N, H, W]`` uint8."""
    import torch

    out = []
    with torch.inference_mode():
        for s in range(0, len(images), batch_size):
            out.append(model(_to_tensor(images[s : s + batch_size])).argmax(1).to(torch.uint8).numpy())
    return np.concatenate(out, axis=0)


def stack_samples(seed: int, start: int, count: int, size: int, mpp: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Images and masks of synthetic samples ``start .. start + count - 1`` as arrays."""
    from pathseg.synth.render import generate_sample

    samples = [generate_sample(seed, i, size, mpp) for i in range(start, start + count)]
    return np.stack([s.image for s in samples]), np.stack([s.mask for s in samples])
