"""UNIT's unpaired data: a real H&E crop and an independent pseudo mask (image + instance targets) per item.

Real tiles come from a canonical data set, a tile index or a plain folder of images; pseudo masks are generated on
the fly (:mod:`pathseg.synth.nuclei_masks`, seeded from torch's RNG) or read from a ``pathseg synth --kind
nuclei-masks`` folder. As in the original mapper, each side gets a random crop of 0.8-1.0 of its side, a resize to
``crop_size`` and a horizontal flip (instances with nearest neighbour; the real image bilinear, not nearest).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

from pathseg.errors import DataError
from pathseg.io import read_rgb
from pathseg.ssl.unit.config import MaskSourceConfig
from pathseg.synth.nuclei_masks import MaskParams, generate_masks, inner_contour, render, renumber

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


class FolderImages:
    """Every image file under a folder (recursive), for real tiles that are not a canonical data set."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.files = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise DataError("no images found in this folder", root)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": read_rgb(self.files[i])}


def real_source(data: Path, splits: tuple[str, ...]) -> Any:
    """Real images: canonical data set / tile index (engine's ``image_source``) or a plain folder."""
    from pathseg.ssl.data import image_source

    if data.is_dir() and not (data / "dataset.yaml").is_file() and not (data / "tiles.csv").is_file():
        return FolderImages(data)
    return image_source(data, splits, None)


def distance_targets(instances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Foreground ``[H, W]`` and the distance to the instance boundary normalised to 1 at each instance's peak."""
    fg = instances > 0
    core = fg & ~inner_contour(instances)
    dist = ndimage.distance_transform_edt(core) + fg  # contour pixels get 1, interior grows inwards
    peak = ndimage.maximum(dist, instances, index=np.arange(instances.max() + 1))
    peak = np.asarray(peak, dtype=np.float64)
    peak[0] = 1.0
    return fg.astype(np.float32), (dist / np.maximum(peak[instances], 1e-6) * fg).astype(np.float32)


def _box(size: tuple[int, int], side: int) -> tuple[int, int]:
    y = int(torch.randint(0, max(1, size[0] - side + 1), ()))
    x = int(torch.randint(0, max(1, size[1] - side + 1), ()))
    return y, x


def _to_tensor(image: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
    return (t - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


class UNITDataset:
    """Items ``{"real", "mask", "fg", "dist", "inst"}`` (``real``/``mask`` ``[3, S, S]``, the rest ``[S, S]``).

    The real image is normalised with ``mean``/``std`` (UNIT: 0.5, i.e. [-1, 1]); the mask image is always
    ``x / 127.5 - 1`` as in the original (PIXEL_MEAN = PIXEL_STD = 127.5).

    Args:
        real: Dataset of ``{"image": uint8 [H, W, 3]}`` items.
        crop_size: Output side.
        masks: Pseudo-mask source.
        mean: Normalisation mean of the real images.
        std: Normalisation std.
        real_downsample: Real crops are ``crop_size * real_downsample`` px before the resize (coarser mpp).
    """

    def __init__(self, real: Any, crop_size: int, masks: MaskSourceConfig, mean: tuple[float, ...] = (0.5,) * 3,
                 std: tuple[float, ...] = (0.5,) * 3, real_downsample: float = 1.0) -> None:
        from pathseg.synth.nuclei_masks_io import list_mask_tiles

        self.real, self.size, self.masks, self.mean, self.std = real, crop_size, masks, mean, std
        self.tiles = list_mask_tiles(masks.folder) if masks.folder else []
        self.real_downsample = real_downsample

    def __len__(self) -> int:
        return len(self.real)

    def _real(self, i: int) -> Tensor:
        image = np.asarray(self.real[i]["image"])
        full = min(round(self.size * self.real_downsample), *image.shape[:2])
        side = max(8, round(full * float(torch.empty(()).uniform_(0.8, 1.0))))
        y, x = _box(image.shape[:2], side)
        t = _to_tensor(image[y:y + side, x:x + side], self.mean, self.std)[None]
        t = F.interpolate(t, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)[0]
        return t.flip(2) if bool(torch.rand(()) < 0.5) else t

    def _mask_from_folder(self) -> tuple[np.ndarray, np.ndarray]:
        from pathseg.synth.nuclei_masks_io import read_mask_tile

        image, inst = read_mask_tile(self.tiles[int(torch.randint(0, len(self.tiles), ()))])
        side = max(8, round(image.shape[0] * float(torch.empty(()).uniform_(0.8, 1.0))))
        y, x = _box(image.shape[:2], side)
        idx = np.minimum((np.arange(self.size) + 0.5) * side / self.size, side - 1).astype(int)
        image, inst = image[y:y + side, x:x + side][idx][:, idx], inst[y:y + side, x:x + side][idx][:, idx]
        return image, renumber(inst)

    def _mask_generated(self) -> tuple[np.ndarray, np.ndarray]:
        scale = float(torch.empty(()).uniform_(0.8, 1.0))  # the crop-and-resize zoom, as a finer mpp
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ())))
        params = MaskParams(mpp=self.masks.mpp * scale, layout=self.masks.layout)
        m = generate_masks((self.size, self.size), params, rng)
        return render(m.instances, m.types, m.texture, self.masks.render), m.instances

    def _mask(self) -> tuple[np.ndarray, np.ndarray]:
        for _ in range(10):  # the original rejects tiles without any nucleus (or without background)
            image, inst = self._mask_from_folder() if self.tiles else self._mask_generated()
            if inst.max() > 0 and (inst == 0).any():
                break
        if bool(torch.rand(()) < 0.5):
            image, inst = image[:, ::-1], inst[:, ::-1]
        return np.ascontiguousarray(image), np.ascontiguousarray(inst)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        image, inst = self._mask()
        fg, dist = distance_targets(inst)
        mask = torch.from_numpy(image.copy()).permute(2, 0, 1).float() / 127.5 - 1
        return {"real": self._real(i), "mask": mask, "fg": torch.from_numpy(fg), "dist": torch.from_numpy(dist),
                "inst": torch.from_numpy(inst.astype(np.int64))}
