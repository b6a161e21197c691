"""Helpers of the transfer/evaluation tests: tiny synthetic canonical data sets and encoder files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pathseg.data.layout import ClassInfo, DatasetInfo, write_dataset_info
from pathseg.io import atomic_write_text, write_png

COLOURS = [(200, 170, 200), (120, 40, 120), (60, 60, 180)]


def make_segmentation_set(
    root: Path, splits: dict[str, int] | None = None, size: tuple[int, int] = (72, 90), seed: int = 0
) -> Path:
    """Random rectangles and discs of classes 1 and 2 on background 0; colour follows class; a few ignore pixels."""
    rng = np.random.default_rng(seed)
    splits = splits or {"train": 6, "val": 2, "test": 2}
    info = DatasetInfo(name="synth", task="segmentation",
                       classes=[ClassInfo(n, i, COLOURS[i]) for i, n in enumerate(["bg", "gland", "nucleus"])])
    write_dataset_info(root, info)
    h, w = size
    for split, n in splits.items():
        for i in range(n):
            mask = np.zeros((h, w), np.uint8)
            for _ in range(3):
                y, x = rng.integers(0, h - 10), rng.integers(0, w - 10)
                mask[y : y + rng.integers(8, 24), x : x + rng.integers(8, 24)] = 1
            yy, xx = np.mgrid[:h, :w]
            cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(5, 12)
            mask[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 2
            image = np.array(COLOURS, np.float32)[mask] + rng.normal(0, 12, (h, w, 3))
            mask[0, :3] = 255
            write_png(root / split / "images" / f"img{i}.png", image.clip(0, 255).astype(np.uint8))
            write_png(root / split / "masks" / f"img{i}.png", mask)
    return root


def make_classification_set(root: Path, splits: dict[str, int] | None = None, size: int = 40, seed: int = 0) -> Path:
    """Tiles whose colour depends on the class (3 classes), labels.csv with class names."""
    rng = np.random.default_rng(seed)
    splits = splits or {"train": 12, "test": 6}
    names = ["tumor", "stroma", "lympho"]
    write_dataset_info(root, DatasetInfo(name="synthcls", task="classification",
                                         classes=[ClassInfo(n, i, COLOURS[i]) for i, n in enumerate(names)]))
    for split, n in splits.items():
        lines = ["id,label"]
        for i in range(n):
            label = i % 3
            image = np.array(COLOURS[label], np.float32) + rng.normal(0, 15, (size, size, 3))
            write_png(root / split / "images" / f"t{i}.png", image.clip(0, 255).astype(np.uint8))
            lines.append(f"t{i},{names[label] if i % 2 else label}")
        atomic_write_text(root / split / "labels.csv", "\n".join(lines) + "\n")
    return root


def write_encoder_file(
    path: Path, name: str = "resnet18", mean: Any = (0.5, 0.5, 0.5), std: Any = (0.2, 0.2, 0.2)
) -> Path:
    """An encoder file as 'pathseg export' writes it (random timm weights, timm name and normalisation)."""
    import timm

    from pathseg.models import save_encoder

    model = timm.create_model(name, pretrained=False, num_classes=0)
    return save_encoder(path, model.state_dict(), name, mean, std)
