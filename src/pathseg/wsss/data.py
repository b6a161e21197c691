"""Small data sets for WSSS over the canonical layout.

* :class:`PatchLabelSet`: images + multi-hot labels from ``<split>/labels.csv`` (``id,<class>,<class>,...``).
* :class:`PseudoMaskSet`: images + the pseudo masks of several layers (stage 2).
* :class:`MaskedSet`: images + true masks of an evaluation split.

Labels cover the *foreground* classes: every class except the data set's ``exclude_index`` (the white
background of LUAD-HistoSeg / BCSS-WSSS), which must then be the largest class index.
"""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch.utils.data import Dataset

from pathseg.data.layout import DatasetInfo, image_path, labels_path, list_ids, mask_path
from pathseg.errors import DataError
from pathseg.io import read_mask, read_rgb

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def foreground_indices(info: DatasetInfo) -> list[int]:
    """Class indices the networks predict: all but ``exclude_index``, which must be the largest index.

    Raises:
        DataError: The exclude index is not the largest class index, or the indices are not ``0..C-1``.
    """
    indices = sorted(c.index for c in info.classes if c.index != info.exclude_index)
    if indices != list(range(len(indices))) or not indices:
        raise DataError(f"WSSS needs foreground class indices 0..C-1, got {indices}", "dataset.yaml")
    if info.exclude_index is not None and info.exclude_index != len(indices):
        raise DataError(f"WSSS needs the exclude class to be index {len(indices)}, got {info.exclude_index}")
    return indices


def to_tensor(rgb: np.ndarray, normalize: str) -> torch.Tensor:
    """``uint8 [H, W, 3]`` → ``float [3, H, W]`` in [0, 1], then ImageNet mean/std when ``normalize='imagenet'``."""
    x = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).float() / 255.0
    if normalize == "imagenet":
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        x = (x - mean) / std
    return x


def read_patch_labels(root: str | os.PathLike[str], split: str, info: DatasetInfo) -> tuple[list[str], np.ndarray]:
    """Read ``<split>/labels.csv`` into ids and a ``[N, C]`` 0/1 matrix over the foreground classes.

    Raises:
        DataError: Missing file, missing class column, or a value other than 0/1.
    """
    path = labels_path(root, split)
    if not path.is_file():
        raise DataError("labels.csv missing (a patch_labels data set needs it)", path)
    names = {c.index: c.name for c in info.classes}
    fg = [names[i] for i in foreground_indices(info)]
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        if "id" not in columns:
            raise DataError("labels.csv has no 'id' column", path)
        missing = [n for n in fg if n not in columns]
        if missing:
            raise DataError(f"labels.csv has no column for classes {missing} (columns: {columns})", path)
        ids, rows = [], []
        for line, row in enumerate(reader, start=2):
            try:
                values = [int(str(row[n]).strip()) for n in fg]
            except ValueError:
                raise DataError(f"line {line}: labels must be 0 or 1", path) from None
            if any(v not in (0, 1) for v in values):
                raise DataError(f"line {line}: labels must be 0 or 1, got {values}", path)
            ids.append(str(row["id"]))
            rows.append(values)
    if not ids:
        raise DataError("labels.csv lists no patch", path)
    return ids, np.asarray(rows, dtype=np.float32).reshape(len(ids), len(fg))


class PatchLabelSet(Dataset):
    """Training patches with multi-hot labels (stage 1), random h/v flips when ``augment``.

    Args:
        root: Data set directory.
        split: Split name.
        info: Its :class:`DatasetInfo`.
        normalize: ``imagenet`` or ``none`` (divide by 255 only).
        augment: Random horizontal and vertical flips (p 0.5 each), the original's only augmentation.
        max_items: Keep N patches spread evenly over the sorted ids (0: all).
    """

    def __init__(
        self, root: str | os.PathLike[str], split: str, info: DatasetInfo, normalize: str = "imagenet",
        augment: bool = False, max_items: int = 0,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.ids, self.labels = read_patch_labels(root, split, info)
        if 0 < max_items < len(self.ids):
            keep = np.unique(np.linspace(0, len(self.ids) - 1, max_items).round().astype(int))
            self.ids, self.labels = [self.ids[i] for i in keep], self.labels[keep]
        self.normalize = normalize
        self.augment = augment

    def __len__(self) -> int:
        return len(self.ids)

    def rgb(self, i: int) -> np.ndarray:
        """The ``i``-th image as uint8 RGB."""
        return read_rgb(image_path(self.root, self.split, self.ids[i]))

    def __getitem__(self, i: int) -> dict[str, object]:
        rgb = self.rgb(i)
        if self.augment:
            if random.random() < 0.5:
                rgb = rgb[:, ::-1]
            if random.random() < 0.5:
                rgb = rgb[::-1]
        return {"image": to_tensor(rgb, self.normalize), "labels": torch.from_numpy(self.labels[i]), "index": i}


class PseudoMaskSet(Dataset):
    """Training images with one pseudo mask per layer (stage 2).

    Args:
        root: The source data set (images).
        split: Its training split.
        ids: Sample ids.
        mask_roots: ``{layer: pseudo-mask data set directory}`` (canonical layout, same split and ids).
        normalize: ``imagenet`` or ``none``.
        blur: Probability of a Gaussian blur with radius ~ U(0, 1) (image only).
        augment: Joint random horizontal flip (p 0.5) and the blur.
    """

    def __init__(
        self, root: str | os.PathLike[str], split: str, ids: list[str], mask_roots: dict[str, Path],
        normalize: str = "imagenet", blur: float = 0.5, augment: bool = True,
    ) -> None:
        self.root, self.split, self.ids = Path(root), split, ids
        self.mask_roots = mask_roots
        self.normalize, self.blur, self.augment = normalize, blur, augment

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, object]:
        sid = self.ids[i]
        rgb = read_rgb(image_path(self.root, self.split, sid))
        masks = {name: read_mask(mask_path(r, self.split, sid)) for name, r in self.mask_roots.items()}
        if self.augment:
            if random.random() < 0.5:
                rgb = rgb[:, ::-1]
                masks = {k: v[:, ::-1] for k, v in masks.items()}
            if random.random() < self.blur:
                img = Image.fromarray(np.ascontiguousarray(rgb)).filter(ImageFilter.GaussianBlur(random.random()))
                rgb = np.asarray(img)
        out: dict[str, object] = {"image": to_tensor(rgb, self.normalize)}
        for name, m in masks.items():
            out[f"pm_{name}"] = torch.from_numpy(np.ascontiguousarray(m).astype(np.int64))
        return out


class MaskedSet(Dataset):
    """Images with true masks of one split (evaluation, batch size 1: sizes may differ)."""

    def __init__(self, root: str | os.PathLike[str], split: str, normalize: str = "imagenet") -> None:
        self.root, self.split, self.normalize = Path(root), split, normalize
        self.ids = [s for s in list_ids(root, split) if mask_path(root, split, s).is_file()]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, object]:
        sid = self.ids[i]
        rgb = read_rgb(image_path(self.root, self.split, sid))
        mask = read_mask(mask_path(self.root, self.split, sid)).astype(np.int64)
        return {"image": to_tensor(rgb, self.normalize), "mask": torch.from_numpy(mask), "id": sid}


def has_masks(root: str | os.PathLike[str], split: str) -> bool:
    """Whether ``split`` exists and has at least one true mask."""
    folder = Path(root) / split / "masks"
    return folder.is_dir() and any(folder.iterdir())
