"""``pathseg probe``: linear or kNN evaluation of a frozen encoder on image-level labels.

Features are extracted once (encoder in eval mode, global average pooled, ``[N, D]``) for the train and test
splits and cached in ``RUN/features.safetensors``; each seed then picks its label-fraction subset of the train
features and fits the probe.

* ``linear``: multinomial logistic regression on standardised features (train mean/std), full batch, Adam,
  L2 penalty ``weight_decay``.
* ``knn``: cosine similarity to the train features; the ``k`` nearest vote with weight ``exp(sim / T)``
  (the weighted kNN monitor of InstDisc/DINO); class scores normalised to sum to one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from pathseg.errors import ConfigError
from pathseg.tasks.config import ProbeConfig


@torch.no_grad()
def extract_features(
    encoder: nn.Module, dataset: Any, device: torch.device, batch_size: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features ``[N, D]`` (float32, CPU) and labels ``[N]`` of a classification data set."""
    encoder = encoder.to(device).eval()
    feats, labels = [], []
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        f = encoder(x.to(device))
        if f.dim() == 4:  # a feature map: global average pool
            f = f.mean(dim=(2, 3))
        feats.append(f.float().cpu())
        labels.append(torch.as_tensor(y))
    return torch.cat(feats), torch.cat(labels).long()


def knn_predict(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, num_classes: int, k: int = 20,
    temperature: float = 0.07,
) -> torch.Tensor:
    """Weighted kNN class probabilities ``[M, C]``: :func:`pathseg.train.knn.knn_predict`'s votes, normalised."""
    from pathseg.train.knn import knn_predict as votes

    scores = votes(train_x, train_y, test_x, num_classes, k, temperature)
    return scores / scores.sum(dim=1, keepdim=True)


def linear_probe(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, num_classes: int, epochs: int = 100,
    lr: float = 0.1, weight_decay: float = 1e-4, seed: int = 0,
) -> torch.Tensor:
    """Logistic-regression class probabilities ``[M, C]`` fitted on standardised train features."""
    mean = train_x.mean(0, keepdim=True)
    std = train_x.std(0, keepdim=True, unbiased=False).clamp_min(1e-6)
    xs, xt = (train_x - mean) / std, (test_x - mean) / std
    gen = torch.Generator().manual_seed(seed)
    layer = nn.Linear(xs.shape[1], num_classes)
    with torch.no_grad():
        layer.weight.normal_(0, 0.01, generator=gen)
        layer.bias.zero_()
    opt = torch.optim.Adam(layer.parameters(), lr=lr)
    for _ in range(epochs):
        opt.zero_grad()
        loss = F.cross_entropy(layer(xs), train_y) + weight_decay * layer.weight.pow(2).sum()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return layer(xt).softmax(1)


def probe_command(cfg: ProbeConfig) -> int:
    """Extract features once, fit the probe for every seed, write mean ± std metrics to ``RUN/metrics.json``."""
    from safetensors.torch import save_file

    from pathseg import models
    from pathseg.data.datasets import ClassificationDataset
    from pathseg.data.layout import read_dataset_info
    from pathseg.data.split import resolve_ids, subset_ids
    from pathseg.io import atomic_path, staging_dir
    from pathseg.metrics import classification_metrics
    from pathseg.runs import RunDir, write_json
    from pathseg.tasks.common import aggregate_seeds, pick_device, resolve_encoder
    from pathseg.tasks.pictures import plot_confusion

    data, out = Path(cfg.data), Path(cfg.out)
    info = read_dataset_info(data)
    if info.task != "classification":
        raise ConfigError(f"probe needs a classification data set (labels.csv), this one is '{info.task}'", data)
    enc = resolve_encoder(cfg.encoder, cfg.backbone)
    from pathseg.data.check import validate_for_training

    validate_for_training(data, [cfg.train_split, cfg.test_split], task="classification")
    train_folder, train_ids = resolve_ids(data, cfg.train_split)
    test_folder, test_ids = resolve_ids(data, cfg.test_split)
    device = pick_device(cfg.device)
    torch.manual_seed(min(cfg.seeds))  # random init of a 'random' encoder
    encoder = models.create_encoder(enc.timm_name, weights=enc.weights)
    size = cfg.image_size or None
    kw: dict[str, Any] = dict(mean=enc.mean, std=enc.std, crop_size=size)
    tr_x, tr_y = extract_features(encoder, ClassificationDataset(data, train_folder, ids=train_ids, **kw),
                                  device, cfg.batch_size)
    te_x, te_y = extract_features(encoder, ClassificationDataset(data, test_folder, ids=test_ids, **kw),
                                  device, cfg.batch_size)
    print(f"probe {cfg.kind}: {enc.timm_name} features {tuple(tr_x.shape)} train, {tuple(te_x.shape)} test")
    position = {sid: i for i, sid in enumerate(train_ids)}
    with staging_dir(out, cfg.overwrite) as tmp:
        run = RunDir(tmp, cfg, seed=cfg.seeds[0])
        with atomic_path(tmp / "features.safetensors") as f:
            save_file({"train_x": tr_x.contiguous(), "train_y": tr_y, "test_x": te_x.contiguous(), "test_y": te_y},
                      str(f), metadata={"train_ids": ",".join(train_ids), "test_ids": ",".join(test_ids)})
        per_seed: dict[str, dict[str, Any]] = {}
        for seed in cfg.seeds:
            ids = train_ids
            if cfg.label_fraction < 1:
                ids = subset_ids(data, cfg.train_split, cfg.label_fraction, seed)
            rows = torch.tensor([position[i] for i in ids])
            if cfg.kind == "knn":
                probs = knn_predict(tr_x[rows], tr_y[rows], te_x, info.num_classes, cfg.k, cfg.temperature)
            else:
                probs = linear_probe(tr_x[rows], tr_y[rows], te_x, info.num_classes, cfg.epochs, cfg.lr,
                                     cfg.weight_decay, seed)
            m = classification_metrics(te_y.numpy(), probs.numpy(), info.num_classes)
            m["num_train_images"] = len(ids)
            per_seed[str(seed)] = m
        result = aggregate_seeds(per_seed)
        result.update(kind=cfg.kind, test_split=cfg.test_split, label_fraction=cfg.label_fraction,
                      encoder=str(cfg.encoder), backbone=enc.timm_name, class_names=info.class_names)
        write_json(tmp / "features_info.json", {"dim": int(tr_x.shape[1]), "train": len(train_ids),
                                                "test": len(test_ids)})
        plot_confusion(np.asarray(result["confusion_matrix"]), info.class_names, tmp / "confusion_matrix.png",
                       title=f"{cfg.kind} probe, {cfg.test_split} (rows normalised, summed over seeds)")
        run.finish(result)
    shown = ", ".join(f"{k} {result[k]:.4f}" for k in ("accuracy", "balanced_accuracy") if result.get(k) is not None)
    print(f"{cfg.test_split}: {shown}; wrote {out / 'metrics.json'}")
    return 0
