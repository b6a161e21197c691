"""Weighted kNN classification on features (the online monitor and ``pathseg probe --kind knn``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def knn_predict(train_feat: Tensor, train_y: Tensor, test_feat: Tensor, num_classes: int, k: int = 20,
                temperature: float = 0.07) -> Tensor:
    """Class scores ``[M, num_classes]`` by weighted kNN (cosine similarity, votes ``exp(s / T)``, InstDisc).

    Shapes: ``train_feat [N, D]``, ``train_y [N]`` (int64), ``test_feat [M, D]``.
    """
    a, b = F.normalize(train_feat.float(), dim=1), F.normalize(test_feat.float(), dim=1)
    sim = b @ a.t()
    top, idx = sim.topk(min(k, a.shape[0]), dim=1)
    votes = torch.zeros(b.shape[0], num_classes, dtype=top.dtype)
    return votes.scatter_add_(1, train_y[idx], (top / temperature).exp())


def knn_accuracy(train_feat: Tensor, train_y: Tensor, test_feat: Tensor, test_y: Tensor, k: int = 20,
                 temperature: float = 0.07) -> float:
    """Accuracy of :func:`knn_predict` on ``test_y [M]``."""
    num_classes = int(max(int(train_y.max()), int(test_y.max()))) + 1
    scores = knn_predict(train_feat, train_y, test_feat, num_classes, k, temperature)
    return float((scores.argmax(1) == test_y).float().mean())
