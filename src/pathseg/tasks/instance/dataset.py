"""Image + instance-map data set over the canonical layout (``<split>/instances/<id>.tif``).

Mirrors :class:`pathseg.data.datasets.SegmentationDataset`: images scaled to [0, 1] and normalised; with
``train=True`` a random crop of ``crop_size`` (smaller images padded: image 0, instance map 0 = background),
random flips and 90° rotations, the same for image and map. Targets are derived *after* augmentation (the
horizontal/vertical maps depend on orientation). Each sample is ``(image [3, H, W], target dict)``:

* always ``instances`` — ``[H, W]`` int64 instance ids (0 = background) and ``index`` — the sample's index (a
  0-d int64 tensor; validation uses it to merge the shards of data-parallel processes);
* ``targets="hover"`` — ``foreground`` ``[H, W]`` int64 and ``hv`` ``[2, H, W]`` float32 (:func:`hover_maps`);
* ``targets="contour"`` — ``classes`` ``[H, W]`` int64 (0/1/2, :func:`contour_classes`);
* ``targets="maskrcnn"`` — ``boxes`` ``[N, 4]`` float32 (x0, y0, x1, y1), ``labels`` ``[N]`` int64 (1),
  ``masks`` ``[N, H, W]`` uint8 and ``foreground`` (for the optional semantic head).

Batches are made by :func:`collate_instances`: stacked images and a list of target dicts.
"""

from __future__ import annotations

import os
from typing import Literal

import numpy as np
import torch

from pathseg.data.datasets import _Base, normalise, random_crop, random_flip_rotate
from pathseg.data.layout import image_path, instance_path
from pathseg.errors import DataError
from pathseg.io import read_mask, read_rgb
from pathseg.tasks.instance.targets import contour_classes, detection_targets, hover_maps

Targets = Literal["none", "hover", "contour", "maskrcnn"]
TARGETS_OF_MODEL: dict[str, Targets] = {"hover": "hover", "contour": "contour", "maskrcnn": "maskrcnn"}


class InstanceDataset(_Base):
    """``(image, target)`` samples of a split with instance maps.

    Args:
        root: Data set directory (canonical layout).
        split: Split folder.
        targets: Which model targets to add (see the module docstring).
        contour_width: Contour thickness of the ``contour`` targets.
        **kwargs: ``ids``, ``crop_size``, ``train``, ``mean``, ``std``, ``seed`` as
            :class:`~pathseg.data.datasets.SegmentationDataset`.

    Raises:
        DataError: An image has no instance map.
    """

    def __init__(
        self, root: str | os.PathLike[str], split: str, targets: Targets = "none", contour_width: int = 3,
        **kwargs: object,
    ) -> None:
        super().__init__(root, split, **kwargs)  # type: ignore[arg-type]
        self.targets = targets
        self.contour_width = contour_width
        missing = [i for i in self.ids if not instance_path(self.root, split, i).is_file()]
        if missing:
            raise DataError(f"{len(missing)} image(s) of split '{split}' have no instance map "
                            f"(instances/<id>.tif), e.g. '{missing[0]}'", self.root)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw ``uint8`` image and the integer instance map of sample ``index``."""
        sid = self.ids[index]
        image = read_rgb(image_path(self.root, self.split, sid))
        inst = read_mask(instance_path(self.root, self.split, sid))
        if inst.shape != image.shape[:2]:
            raise DataError(f"instance map shape {inst.shape} differs from image shape {image.shape[:2]}",
                            instance_path(self.root, self.split, sid))
        return image, inst.astype(np.int64)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image, inst = self.read(index)
        if self.train:
            rng = self._rng(index)
            if self.crop_size:
                image, cropped = random_crop(image, inst, self.crop_size, rng, ignore_index=0)
                assert cropped is not None
                inst = cropped
            image, flipped = random_flip_rotate(image, inst, rng)
            assert flipped is not None
            inst = flipped
        target = make_targets(inst, self.targets, self.contour_width)
        target["index"] = torch.tensor(index)
        return normalise(image, self.mean, self.std), target


def make_targets(inst: np.ndarray, targets: Targets, contour_width: int = 3) -> dict[str, torch.Tensor]:
    """The target dict of one instance map (see the module docstring)."""
    out = {"instances": torch.from_numpy(np.ascontiguousarray(inst, dtype=np.int64))}
    if targets in ("hover", "maskrcnn"):
        out["foreground"] = (out["instances"] > 0).long()
    if targets == "hover":
        out["hv"] = torch.from_numpy(hover_maps(inst))
    elif targets == "contour":
        out["classes"] = torch.from_numpy(contour_classes(inst, contour_width))
    elif targets == "maskrcnn":
        boxes, masks = detection_targets(inst)
        out.update(boxes=torch.from_numpy(boxes), masks=torch.from_numpy(masks),
                   labels=torch.ones(len(boxes), dtype=torch.int64))
    return out


def collate_instances(
    batch: list[tuple[torch.Tensor, dict[str, torch.Tensor]]],
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Stack the images (one size per batch) and keep the targets as a list."""
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]
