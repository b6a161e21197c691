"""Torch data sets over the canonical layout (see :mod:`pathseg.data.layout`).

* :class:`SegmentationDataset` yields ``(image [3, H, W] float, mask [H, W] int64)``.
* :class:`ClassificationDataset` yields ``(image [3, H, W] float, label int)`` from ``labels.csv``.

Images are scaled to ``[0, 1]`` then normalised with the encoder's ``mean``/``std``. With ``train=True`` a random
crop of ``crop_size`` (padding smaller images: image with zeros, mask with ``ignore_index``), random flips and 90°
rotations are applied; evaluation returns whole images unchanged (sliding-window inference handles their size).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from pathseg.data.layout import image_path, labels_path, list_ids, mask_path, read_dataset_info
from pathseg.errors import DataError
from pathseg.io import read_mask, read_rgb

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalise(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``[H, W, 3]`` uint8 → ``[3, H, W]`` float32, scaled to [0, 1] and normalised per channel."""
    x = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1).div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    return (x - m) / s


def random_crop(
    image: np.ndarray, mask: np.ndarray | None, size: int, rng: np.random.Generator, ignore_index: int = 255
) -> tuple[np.ndarray, np.ndarray | None]:
    """A random ``size`` x ``size`` crop; smaller sides are padded (image 0, mask ``ignore_index``) first."""
    h, w = image.shape[:2]
    ph, pw = max(0, size - h), max(0, size - w)
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
        if mask is not None:
            mask = np.pad(mask, ((0, ph), (0, pw)), constant_values=ignore_index)
        h, w = image.shape[:2]
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    image = image[y : y + size, x : x + size]
    if mask is not None:
        mask = mask[y : y + size, x : x + size]
    return image, mask


def random_flip_rotate(
    image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """Random horizontal/vertical flips and a random multiple of 90° rotation, the same for image and mask."""
    k = int(rng.integers(0, 4))
    flip_h, flip_v = bool(rng.integers(0, 2)), bool(rng.integers(0, 2))

    def apply(a: np.ndarray) -> np.ndarray:
        a = np.rot90(a, k, axes=(0, 1))
        if flip_h:
            a = a[:, ::-1]
        if flip_v:
            a = a[::-1]
        return np.ascontiguousarray(a)

    return apply(image), None if mask is None else apply(mask)


class _Base(Dataset):
    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str,
        ids: Sequence[str] | None = None,
        crop_size: int | None = None,
        train: bool = False,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.info = read_dataset_info(root)
        self.ids = list(ids) if ids is not None else list_ids(root, split)
        if not self.ids:
            raise DataError(f"split '{split}' has no images", self.root)
        self.crop_size = crop_size
        self.train = train
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.seed = seed
        self._calls = 0

    def __len__(self) -> int:
        return len(self.ids)

    def _rng(self, index: int) -> np.random.Generator:
        # different per call and per worker, reproducible given the seed and torch's worker seeding
        self._calls += 1
        info = torch.utils.data.get_worker_info()
        worker_seed = info.seed if info is not None else torch.initial_seed()
        return np.random.default_rng([self.seed, index, self._calls, worker_seed % (2**32)])


class SegmentationDataset(_Base):
    """``(image, mask)`` pairs of a split; see the module docstring for the augmentation.

    Args:
        root: Data set directory (canonical layout).
        split: Split folder (``train``, ``val``, ``test``, ``testA``…).
        ids: Restrict to these sample ids (e.g. a label-fraction subset); default all.
        crop_size: Training crop size; ``None`` keeps whole images.
        train: Apply random crops, flips and rotations.
        mean: Per-channel normalisation mean (of [0, 1] pixel values).
        std: Per-channel normalisation standard deviation.
        seed: Seed of the augmentation randomness.
    """

    def __init__(self, root: str | os.PathLike[str], split: str, **kwargs: object) -> None:
        super().__init__(root, split, **kwargs)  # type: ignore[arg-type]
        self.ignore_index = self.info.ignore_index
        missing = [i for i in self.ids if not mask_path(self.root, split, i).is_file()]
        if missing:
            raise DataError(f"{len(missing)} image(s) of split '{split}' have no mask, e.g. '{missing[0]}'", self.root)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw ``uint8`` image and mask of sample ``index``."""
        sid = self.ids[index]
        image = read_rgb(image_path(self.root, self.split, sid))
        mask = read_mask(mask_path(self.root, self.split, sid))
        if mask.shape != image.shape[:2]:
            raise DataError(f"mask shape {mask.shape} differs from image shape {image.shape[:2]}",
                            mask_path(self.root, self.split, sid))
        return image, mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.read(index)
        if self.train:
            rng = self._rng(index)
            if self.crop_size:
                image, cropped = random_crop(image, mask, self.crop_size, rng, self.ignore_index)
                assert cropped is not None
                mask = cropped
            image, flipped = random_flip_rotate(image, mask, rng)
            assert flipped is not None
            mask = flipped
        return normalise(image, self.mean, self.std), torch.from_numpy(mask.astype(np.int64))


class ClassificationDataset(_Base):
    """``(image, label)`` pairs from ``<split>/labels.csv`` (``id,label``; label = class index or class name).

    Args as :class:`SegmentationDataset`. Images larger than ``crop_size`` are randomly cropped for training and
    centre-cropped for evaluation; smaller ones are kept whole (images of a split should then share one size).
    """

    def __init__(self, root: str | os.PathLike[str], split: str, **kwargs: object) -> None:
        super().__init__(root, split, **kwargs)  # type: ignore[arg-type]
        self.labels = read_class_labels(self.root, split, self.info.class_names)
        missing = [i for i in self.ids if i not in self.labels]
        if missing:
            raise DataError(f"{len(missing)} image(s) have no label, e.g. '{missing[0]}'", labels_path(root, split))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        sid = self.ids[index]
        image = read_rgb(image_path(self.root, self.split, sid))
        size = min(self.crop_size, *image.shape[:2]) if self.crop_size else 0
        if self.train:
            rng = self._rng(index)
            if size:
                image, _ = random_crop(image, None, size, rng)
            image, _ = random_flip_rotate(image, None, rng)
        elif size:
            image = center_crop(image, size)
        return normalise(image, self.mean, self.std), self.labels[sid]


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` x ``size`` region, zero-padding smaller sides."""
    h, w = image.shape[:2]
    ph, pw = max(0, size - h), max(0, size - w)
    if ph or pw:
        image = np.pad(image, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
        h, w = image.shape[:2]
    y, x = (h - size) // 2, (w - size) // 2
    return image[y : y + size, x : x + size]


def read_class_labels(root: str | os.PathLike[str], split: str, class_names: Sequence[str]) -> dict[str, int]:
    """``{id: class index}`` from ``<split>/labels.csv`` (column ``label``: an index or a class name).

    Raises:
        DataError: Missing file or column, or an unknown label (names the file).
    """
    from pathseg.data.layout import read_labels_csv

    path = labels_path(root, split)
    header, rows = read_labels_csv(path)
    if "label" not in header:
        raise DataError("labels.csv needs a 'label' column for classification", path)
    by_name = {n: i for i, n in enumerate(class_names)}
    out: dict[str, int] = {}
    for sid, row in rows.items():
        raw = row["label"]
        if raw in by_name:
            out[sid] = by_name[raw]
        elif raw.lstrip("-").isdigit() and 0 <= int(raw) < max(len(class_names), 1):
            out[sid] = int(raw)
        else:
            raise DataError(f"id '{sid}': unknown label '{raw}' (classes: {', '.join(class_names)})", path)
    return out
