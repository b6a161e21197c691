"""The URL pretraining data set: images of a canonical data set (labels unused) with cached superpixels."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from pathseg.data.layout import image_path, list_ids, list_splits
from pathseg.errors import DataError
from pathseg.io import read_rgb
from pathseg.ssl.url.config import HE_MEAN, HE_STD, Stage, SuperpixelConfig, ViewConfig
from pathseg.ssl.url.superpixels import ensure_superpixels, load_superpixels
from pathseg.ssl.url.views import make_view, sample_center


def sample_generator() -> torch.Generator:
    """A generator seeded from torch's RNG (seeded per sample by the engine from the run seed): never a constant."""
    return torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))


class URLDataset(Dataset):
    """Two views per image for stage 1 (scales), stage 2 (dense crops + ids) or the joint variant.

    Samples are keyed by ``(split, id)``; the superpixel cache is per data set and split, so ids that repeat
    across slides never collide (the original flattened patch names without the slide id).

    Items (``S`` = number of scales, ``c`` = crop size, ``d = c / dense_stride``):
        - stage ``1``: ``scales1``, ``scales2`` ``[S, 3, c, c]``;
        - stage ``2``: ``image1``, ``image2`` ``[3, c, c]``, ``sp1``, ``sp2`` ``[d, d]`` (long, −1 = padding);
        - ``joint``: all four keys; the dense images are scale 0 (native) of each view.

    Args:
        root: Data set directory (canonical layout).
        splits: Splits to use (empty = all).
        stage: ``"1"``, ``"2"`` or ``"joint"``.
        views: View settings.
        superpixels: Superpixel settings (unused in stage 1).
        crop_size: Side of the views.
        mean: Normalisation mean.
        std: Normalisation std.
        progress: Show a progress bar while missing superpixel maps are computed.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        splits: Sequence[str],
        stage: Stage,
        views: ViewConfig,
        superpixels: SuperpixelConfig,
        crop_size: int = 256,
        mean: Sequence[float] = HE_MEAN,
        std: Sequence[float] = HE_STD,
        progress: bool = True,
    ) -> None:
        self.root = root
        self.stage = stage
        self.views = views
        self.superpixels = superpixels
        self.crop_size, self.mean, self.std = crop_size, tuple(mean), tuple(std)
        self.items = [(s, i) for s in (list(splits) or list_splits(root)) for i in list_ids(root, s)]
        if not self.items:
            raise DataError("no images to pretrain on", root)
        if stage != "1":
            for split in sorted({s for s, _ in self.items}):
                ensure_superpixels(root, split, [i for s, i in self.items if s == split], superpixels, progress)

    @property
    def _out(self) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
        return self.crop_size, self.mean, self.std

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        split, sample_id = self.items[index]
        rgb = read_rgb(image_path(self.root, split, sample_id))
        image = torch.from_numpy(np.array(rgb)).permute(2, 0, 1).float()
        gen = sample_generator()
        cfg = self.views
        center = sample_center((rgb.shape[0], rgb.shape[1]), cfg.patch_size, gen)
        out: dict[str, Tensor] = {}
        if self.stage == "1":
            shift = cfg.translate * cfg.patch_size / 2
            for v in (1, 2):
                out[f"scales{v}"], _ = make_view(image, None, center, cfg, gen, cfg.scales, shift, *self._out)
            return out
        ids = torch.from_numpy(load_superpixels(self.root, split, sample_id, self.superpixels, rgb).astype(np.int64))
        scales = cfg.scales if self.stage == "joint" else [1.0]
        shift = (cfg.translate + cfg.dense_translate) * cfg.patch_size
        for v in (1, 2):
            crops, sp = make_view(image, ids, center, cfg, gen, scales, shift, *self._out)
            assert sp is not None
            out[f"image{v}"], out[f"sp{v}"] = crops[0], sp
            if self.stage == "joint":
                out[f"scales{v}"] = crops
        return out
