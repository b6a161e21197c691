"""Fixed training windows and their label-fraction subset: the URL paper's fine-tuning data (spec §4).

The original cut every training image (mirror-padded by ``(size - stride) / 2``) into 512² windows at step 256,
stored them, trained on a folder of a share of these patches (``_5p``, ``_15p``; the script that chose them is not
in the repository, so a seeded uniform draw of patches stands in for it) and, for every item, applied its affine,
flip and colour augmentation to the window before taking the central 256² crop.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from pathseg.data.datasets import normalise
from pathseg.data.layout import image_path, mask_path
from pathseg.data.patchify import patch_starts
from pathseg.errors import DataError
from pathseg.io import read_mask, read_rgb

Window = tuple[int, int, int]  # (image index, y, x) in the padded image


def padded_windows(height: int, width: int, size: int, stride: int) -> tuple[int, list[tuple[int, int]]]:
    """Mirror padding and window corners ``(y, x)`` in the padded image (flush last row/column)."""
    pad = (size - stride) // 2
    ys = patch_starts(max(height + 2 * pad, size), size, stride)
    xs = patch_starts(max(width + 2 * pad, size), size, stride)
    return pad, [(y, x) for y in ys for x in xs]


def choose_patches(count: int, fraction: float, seed: int) -> list[int]:
    """A seeded share ``fraction`` of ``count`` patches (at least one), in index order."""
    k = max(1, round(fraction * count))
    return sorted(int(i) for i in np.random.default_rng(seed).choice(count, size=min(k, count), replace=False))


def _pad(a: np.ndarray, pad: int, size: int, fill: int) -> np.ndarray:
    """Mirror-pad by ``pad``, then pad with ``fill`` up to ``size`` where the image is still smaller."""
    spec = [(pad, pad), (pad, pad)] + [(0, 0)] * (a.ndim - 2)
    a = np.pad(a, spec, mode="reflect" if min(a.shape[:2]) > pad else "symmetric")
    extra = [(0, max(0, size - a.shape[0])), (0, max(0, size - a.shape[1]))] + [(0, 0)] * (a.ndim - 2)
    return np.pad(a, extra, constant_values=fill) if any(e[1] for e in extra[:2]) else a


class PatchDataset(Dataset):
    """Training items ``(image [3, crop, crop], mask [crop, crop])`` from fixed windows of a split.

    Args:
        root: Data set directory.
        split: Split folder.
        ids: Images to cut.
        size: Window side (512).
        stride: Window step (256).
        crop: Side of the central crop after augmentation (256).
        fraction: Share of the windows to train on.
        seed: Seed of the window subset.
        mean: Normalisation mean.
        std: Normalisation std.
        ignore_index: Mask value of padding outside the image.
    """

    def __init__(self, root: str | os.PathLike[str], split: str, ids: Sequence[str], size: int = 512,
                 stride: int = 256, crop: int = 256, fraction: float = 1.0, seed: int = 0,
                 mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5),
                 ignore_index: int = 255) -> None:
        from PIL import Image

        self.root, self.split, self.ids = Path(root), split, list(ids)
        self.size, self.crop, self.mean, self.std, self.ignore_index = size, crop, tuple(mean), tuple(std), ignore_index
        self.pad = (size - stride) // 2
        windows: list[Window] = []
        for i, sid in enumerate(self.ids):
            with Image.open(image_path(self.root, split, sid)) as im:
                w, h = im.size
            windows += [(i, y, x) for y, x in padded_windows(h, w, size, stride)[1]]
        if not windows:
            raise DataError(f"split '{split}' gives no training window", self.root)
        self.total_windows = len(windows)
        self.windows = [windows[j] for j in choose_patches(len(windows), fraction, seed)]
        self.transform = paper_transform(crop, ignore_index)

    def __len__(self) -> int:
        return len(self.windows)

    @property
    def image_ids(self) -> list[str]:
        """Images that contribute at least one chosen window."""
        return sorted({self.ids[i] for i, _, _ in self.windows})

    def window(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw ``uint8`` window and its mask (before augmentation)."""
        i, y, x = self.windows[index]
        sid = self.ids[i]
        image = _pad(read_rgb(image_path(self.root, self.split, sid)), self.pad, self.size, 0)
        mask = _pad(read_mask(mask_path(self.root, self.split, sid)), self.pad, self.size, self.ignore_index)
        s = self.size
        return image[y : y + s, x : x + s], mask[y : y + s, x : x + s]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision import tv_tensors

        image, mask = self.window(index)
        img = tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1))
        msk = tv_tensors.Mask(torch.from_numpy(mask.astype(np.int64)))
        img, msk = self.transform(img, msk)
        x = normalise(img.permute(1, 2, 0).numpy(), self.mean, self.std)
        return x, msk.as_subclass(torch.Tensor).long()


def paper_transform(crop: int, ignore_index: int) -> torch.nn.Module:
    """The original's fine-tuning augmentation (spec §2.3) in torchvision, then the central crop.

    Geometry as the original: rotation ±179°, shear ±5°, translation ±1 %, horizontal and vertical flips (p 0.5);
    the image is resampled bilinearly (the original: nearest), the mask with nearest. Colour: hue ±8/180, saturation
    ±0.2 and brightness ±0.1 (``ColorJitter``; the original added ±26 grey levels and chose one of Gaussian blur,
    median blur or noise; its contrast step was a no-op).
    """
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    fill = {tv_tensors.Image: 0, tv_tensors.Mask: ignore_index}
    return v2.Compose([
        v2.RandomAffine(degrees=179.0, translate=(0.01, 0.01), shear=(-5.0, 5.0),
                        interpolation=v2.InterpolationMode.BILINEAR, fill=fill),  # type: ignore[arg-type]
        v2.RandomHorizontalFlip(0.5),
        v2.RandomVerticalFlip(0.5),
        v2.CenterCrop(crop),
        v2.ColorJitter(brightness=0.1, saturation=0.2, hue=8.0 / 180.0),
    ])

