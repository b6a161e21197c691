"""Online kNN monitor: accuracy of a weighted kNN classifier on backbone features, logged each epoch."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pathseg.data.layout import image_path, labels_path, read_labels_csv
from pathseg.errors import DataError
from pathseg.io import read_rgb
from pathseg.train.knn import knn_accuracy

__all__ = ["KNNMonitor", "knn_accuracy", "load_labelled"]


def load_labelled(root: str | os.PathLike[str], split: str, size: int, max_images: int,
                  mean: Sequence[float], std: Sequence[float]) -> tuple[Tensor, list[str]]:
    """Images ``[N, 3, size, size]`` (normalised) and their label strings from ``labels.csv`` (first column)."""
    header, rows = read_labels_csv(labels_path(root, split))
    if len(header) < 2:
        raise DataError("labels.csv needs an id and a label column", labels_path(root, split))
    ids = list(rows)[:max_images]
    images = []
    for sample_id in ids:
        img = torch.from_numpy(np.array(read_rgb(image_path(root, split, sample_id)))).permute(2, 0, 1).float() / 255
        images.append(F.interpolate(img[None], size=(size, size), mode="bilinear", antialias=True)[0])
    x = (torch.stack(images) - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    return x, [rows[i][header[1]] for i in ids]


class KNNMonitor(L.Callback):
    """Logs ``monitor/knn_acc`` every ``every_n_epochs`` from ``pl_module.method.backbone`` features.

    Args:
        data: Classification data set directory.
        train_split: Memory split.
        val_split: Evaluated split.
        k: Neighbours.
        temperature: Vote temperature.
        every_n_epochs: Interval.
        max_images: Images per split.
        image_size: Resize size.
        mean: Normalisation mean.
        std: Normalisation std.
    """

    def __init__(self, data: str, train_split: str = "train", val_split: str = "test", k: int = 20,
                 temperature: float = 0.07, every_n_epochs: int = 1, max_images: int = 1000, image_size: int = 224,
                 mean: Sequence[float] = (0.485, 0.456, 0.406), std: Sequence[float] = (0.229, 0.224, 0.225)) -> None:
        self.k, self.temperature, self.every = k, temperature, max(1, every_n_epochs)
        xtr, ytr = load_labelled(Path(data), train_split, image_size, max_images, mean, std)
        xte, yte = load_labelled(Path(data), val_split, image_size, max_images, mean, std)
        names = sorted(set(ytr) | set(yte))
        self.xtr, self.xte = xtr, xte
        self.ytr = torch.tensor([names.index(y) for y in ytr])
        self.yte = torch.tensor([names.index(y) for y in yte])
        self.history: list[float] = []

    @torch.no_grad()
    def _features(self, backbone: Any, x: Tensor, device: torch.device) -> Tensor:
        return torch.cat([backbone(x[i:i + 64].to(device)).float().cpu() for i in range(0, len(x), 64)])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Evaluate on rank 0 every ``every`` epochs and log the accuracy."""
        if (trainer.current_epoch + 1) % self.every:
            return
        backbone: Any = getattr(pl_module, "method").backbone  # noqa: B009
        was_training = backbone.training
        backbone.eval()
        acc = knn_accuracy(self._features(backbone, self.xtr, pl_module.device), self.ytr,
                           self._features(backbone, self.xte, pl_module.device), self.yte, self.k, self.temperature)
        backbone.train(was_training)
        self.history.append(acc)
        pl_module.log("monitor/knn_acc", acc, rank_zero_only=True)


