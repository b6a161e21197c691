"""Unlabeled images for self-supervised pretraining: every image of a canonical data set (any task, any splits).

Labels are ignored, so a segmentation, classification or ``unlabeled`` data set can all be used. Large images
can be cut into random square regions (``crop_size``) before the method's view transform; randomness comes from
torch's global RNG (the pretraining engine seeds it per sample).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pathseg.data.layout import image_path, list_ids, list_splits, read_dataset_info
from pathseg.errors import DataError
from pathseg.io import read_rgb


def random_region(image: np.ndarray, size: int) -> np.ndarray:
    """A random ``size x size`` region of ``image`` ``[H, W, 3]`` (reflect-padded when the image is smaller)."""
    h, w = image.shape[:2]
    if h < size or w < size:
        ph, pw = max(0, size - h), max(0, size - w)
        image = np.pad(image, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode="reflect")
        h, w = image.shape[:2]
    y = int(torch.randint(0, h - size + 1, ()))
    x = int(torch.randint(0, w - size + 1, ()))
    return np.ascontiguousarray(image[y:y + size, x:x + size])


class UnlabeledImages:
    """Map-style dataset over the images of a canonical data set.

    Items are ``transform(image)`` when a transform is given (a dict for pretraining methods), else
    ``{"image": uint8 [H, W, 3]}``.

    Args:
        root: Data set directory (with ``dataset.yaml``).
        splits: Splits to read; empty or ``None`` reads all of them.
        transform: Applied to the uint8 ``[H, W, 3]`` image (after the random region).
        crop_size: Cut a random ``crop_size`` square region first (0 or ``None``: whole image).

    Raises:
        DataError: Not a data set, unknown split, or no image found.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        splits: Sequence[str] | None = None,
        transform: Callable[[np.ndarray], Any] | None = None,
        crop_size: int | None = None,
    ) -> None:
        self.root = Path(root)
        read_dataset_info(self.root)
        chosen = list(splits) if splits else list_splits(self.root)
        self.items: list[tuple[str, str]] = [(s, i) for s in chosen for i in list_ids(self.root, s)]
        if not self.items:
            raise DataError(f"no images in split(s) {', '.join(chosen) or '(none)'}", self.root)
        self.transform = transform
        self.crop_size = crop_size or 0

    def __len__(self) -> int:
        return len(self.items)

    def path(self, i: int) -> Path:
        """File of item ``i``."""
        split, sample_id = self.items[i]
        return image_path(self.root, split, sample_id)

    def read(self, i: int) -> np.ndarray:
        """The image of item ``i`` (a random region of it when ``crop_size`` is set)."""
        image = read_rgb(self.path(i))
        return random_region(image, self.crop_size) if self.crop_size else image

    def __getitem__(self, i: int) -> Any:
        image = self.read(i)
        return self.transform(image) if self.transform is not None else {"image": image}
