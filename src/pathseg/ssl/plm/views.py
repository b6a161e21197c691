"""Two views per image that record their geometry (PLM spec §1.1; SCRL-style transformation records).

Each view: random resized crop (torchvision's ``get_params``, torch RNG) → bilinear resize to ``crop_size`` →
horizontal flip (p = 0.5) → [vertical flip, rot90: pathseg extensions, off by default] → photometric jitter.
The record ``crop{1,2} = (top, left, height, width, hflip, vflip, rot90)`` holds the crop box as fractions of the
source image and what :func:`~pathseg.ssl.plm.grid_boxes` needs to find each output cell's box. Photometric ops do
not move pixels and record nothing. All randomness comes from torch's global RNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from pathseg.data.augment import photometric_ops


@dataclass(frozen=True)
class Geometry:
    """One draw of a view's geometry, in source pixels.

    Args:
        top: First row of the crop.
        left: First column of the crop.
        height: Rows of the crop.
        width: Columns of the crop.
        hflip: Mirror left-right after the resize.
        vflip: Mirror top-bottom after the horizontal flip.
        rot90: Quarter turns ``k`` of ``torch.rot90(img, k, dims=(-2, -1))``, last.
    """

    top: int
    left: int
    height: int
    width: int
    hflip: bool = False
    vflip: bool = False
    rot90: int = 0

    def record(self, source_hw: tuple[int, int]) -> Tensor:
        """``[7]`` float32: the crop box as fractions of a ``source_hw`` image, then hflip, vflip, rot90."""
        h, w = source_hw
        return torch.tensor([self.top / h, self.left / w, self.height / h, self.width / w,
                             float(self.hflip), float(self.vflip), float(self.rot90)], dtype=torch.float32)


def sample_geometry(img: Tensor, scale: tuple[float, float], ratio: tuple[float, float], hflip: bool = True,
                    vflip: bool = False, rot90: bool = False) -> Geometry:
    """Draw a crop (as ``RandomResizedCrop``) and flips/rotation with torch's global RNG.

    Args:
        img: The source image ``[C, H, W]`` (only its size is used).
        scale: Area range of the crop.
        ratio: Aspect-ratio range of the crop.
        hflip: Draw a horizontal flip (p = 0.5).
        vflip: Draw a vertical flip (p = 0.5).
        rot90: Draw ``k`` uniformly in {0, 1, 2, 3}.
    """
    i, j, h, w = v2.RandomResizedCrop.get_params(img, list(scale), list(ratio))  # type: ignore[arg-type]
    hf = hflip and bool(torch.rand(()) < 0.5)
    vf = vflip and bool(torch.rand(()) < 0.5)
    k = int(torch.randint(0, 4, ())) if rot90 else 0
    return Geometry(int(i), int(j), int(h), int(w), hf, vf, k)


def apply_geometry(img: Tensor, geom: Geometry, size: int) -> Tensor:
    """Crop ``img`` ``[C, H, W]`` (any dtype), resize it to ``size × size`` (bilinear, antialiased), flip, rotate."""
    out = TF.resized_crop(img, geom.top, geom.left, geom.height, geom.width, [size, size],
                          interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
    if geom.hflip:
        out = out.flip(-1)
    if geom.vflip:
        out = out.flip(-2)
    if geom.rot90:
        out = torch.rot90(out, geom.rot90, dims=(-2, -1))
    return out


def photometric_transform(crop_size: int, mean: Sequence[float], std: Sequence[float],
                          color_jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
                          color_jitter_p: float = 0.8, hed_sigma: float = 0.0, hed_p: float = 0.5,
                          grayscale_p: float = 0.2, blur_p: float = 0.5,
                          blur_sigma: tuple[float, float] = (0.1, 2.0)) -> v2.Compose:
    """uint8 view → float → [HED jitter] → colour jitter → grey → blur → normalise (as ``pathseg.data.augment``)."""
    ops: list[Any] = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    ops += photometric_ops(crop_size, mean, std, color_jitter, color_jitter_p, hed_sigma, hed_p, grayscale_p, blur_p,
                           blur_sigma)
    return v2.Compose(ops)


class RecordedViews:
    """Two independent views of one image plus their geometry records.

    Args:
        crop_size: Output side of each view.
        photometric: The colour pipeline applied after the geometry (uint8 in, normalised float out).
        scale: Area range of the crop (0.2-1).
        ratio: Aspect-ratio range of the crop (3/4-4/3).
        hflip: Random horizontal flips (the original's only flip).
        vflip: Random vertical flips (pathseg extension).
        rot90: Random quarter turns (pathseg extension).

    Returns (``__call__``):
        ``{"view1", "view2"}``: ``[3, S, S]`` float; ``{"crop1", "crop2"}``: ``[7]`` records (see
        :meth:`Geometry.record`).
    """

    def __init__(self, crop_size: int, photometric: Any, scale: tuple[float, float] = (0.2, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), hflip: bool = True, vflip: bool = False,
                 rot90: bool = False) -> None:
        self.crop_size, self.photometric = crop_size, photometric
        self.scale, self.ratio = scale, ratio
        self.hflip, self.vflip, self.rot90 = hflip, vflip, rot90

    def __call__(self, image: np.ndarray | Tensor) -> dict[str, Tensor]:
        """``image``: uint8 ``[H, W, 3]`` array (or ``[3, H, W]`` tensor)."""
        if isinstance(image, np.ndarray):
            img = torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1)
        else:
            img = image
        hw = (int(img.shape[-2]), int(img.shape[-1]))
        out: dict[str, Tensor] = {}
        for v in (1, 2):
            geom = sample_geometry(img, self.scale, self.ratio, self.hflip, self.vflip, self.rot90)
            out[f"view{v}"] = self.photometric(apply_geometry(img, geom, self.crop_size))
            out[f"crop{v}"] = geom.record(hw)
        return out
