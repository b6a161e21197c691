"""The URL pretraining data set: images of a canonical data set (labels unused) or tiles of a slide tile index
read at its µm/px (:mod:`pathseg.ssl.url.sources`), with cached superpixels."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from pathseg.ssl.url.canvas import build_item
from pathseg.ssl.url.config import HE_MEAN, HE_STD, Stage, SuperpixelConfig, ViewConfig
from pathseg.ssl.url.sources import open_source
from pathseg.ssl.url.views import sample_center


def sample_generator() -> torch.Generator:
    """A generator seeded from torch's RNG (seeded per sample by the engine from the run seed): never a constant."""
    return torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))


class URLDataset(Dataset):
    """Two views per image for stage 1 (scales), stage 2 (dense crops + ids) or the joint variant.

    Data set samples are keyed by ``(split, id)``, tiles by slide, position, size and µm/px; the superpixel cache
    follows these keys, so ids that repeat across slides never collide (the original flattened patch names without
    the slide id).

    Items (``S`` = number of scales, ``c`` = crop size, ``d = c / dense_stride``):
        - stage ``1``: ``scales1``, ``scales2`` ``[S, 3, c, c]``;
        - stage ``2``: ``image1``, ``image2`` ``[3, c, c]``, ``sp1``, ``sp2`` ``[d, d]`` (long, −1 = padding);
        - ``joint``: all four keys; the dense images are scale 0 (native) of each view;
        - with ``views.batched`` (the default) the raw sample of :mod:`pathseg.ssl.url.canvas` instead (canvas
          and random draws), which the method renders into these keys in the training step.

    Args:
        root: Data set directory (canonical layout) or tile index (``tiles.csv`` or its folder).
        splits: Splits of a data set to use (empty = all).
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
        self.source = open_source(root, splits, superpixels)
        if stage != "1":
            self.source.ensure(progress)

    @property
    def _out(self) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
        return self.crop_size, self.mean, self.std

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        rgb = self.source.read(index)
        image = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)
        gen = sample_generator()
        cfg = self.views
        center = sample_center((rgb.shape[0], rgb.shape[1]), cfg.patch_size, gen)
        ids = None if self.stage == "1" else torch.from_numpy(self.source.superpixels(index, rgb).astype(np.int64))
        return build_item(image, ids, center, cfg, self.stage, gen, *self._out)
