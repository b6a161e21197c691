"""Augmentations for H&E images: HED stain jitter beside colour jitter, blur, flips, 90° rotations and crops.

Two named recipes (``ViewConfig.preset``): ``he`` (default) is MoCo v2's recipe plus H&E-specific stain jitter,
vertical flips and 90° rotations; ``paper`` is the official MoCo v2 / DenseCL recipe as their code ran it, so
that a comparison can say which was used (see :func:`paper_view_transform`).

All randomness comes from torch's global RNG (torchvision v2 transforms and the custom ones here), so a caller can
make a sample reproducible with ``torch.manual_seed`` (the pretraining engine seeds every sample).

Inputs are ``uint8 [H, W, 3]`` numpy arrays or ``uint8 [3, H, W]`` tensors; outputs are normalised float tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.transforms import v2

from pathseg.errors import ConfigError

Preset = Literal["he", "paper"]
# Ruifrok & Johnston stain vectors as in skimage.color (rows: haematoxylin, eosin, DAB).
RGB_FROM_HED = torch.tensor([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=torch.float64)
HED_FROM_RGB = torch.linalg.inv(RGB_FROM_HED)
_LOG_ADJUST = float(np.log(1e-6))


def rgb_to_hed(rgb: Tensor) -> Tensor:
    """RGB ``[..., 3, H, W]`` floats in [0, 1] → HED stain concentrations (as ``skimage.color.rgb2hed``)."""
    x = rgb.clamp_min(1e-6).log() / _LOG_ADJUST
    hed = torch.einsum("...chw,cd->...dhw", x, HED_FROM_RGB.to(x))
    return hed.clamp_min(0)


def hed_to_rgb(hed: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_hed` (as ``skimage.color.hed2rgb``), clipped to [0, 1]."""
    log_rgb = -(hed * -_LOG_ADJUST)
    rgb = torch.einsum("...chw,cd->...dhw", log_rgb, RGB_FROM_HED.to(hed)).exp()
    return rgb.clamp(0, 1)


class HEDJitter(nn.Module):
    """Stain augmentation of Tellez et al. (2018): per HED channel ``s' = α·s + β``, α ~ U(1-σ, 1+σ), β ~ U(-σ, σ).

    Args:
        sigma: Strength σ (0.05 is the "HED-light" setting; 0.2 "HED-strong").
        p: Probability of applying it.
    """

    def __init__(self, sigma: float = 0.05, p: float = 0.5) -> None:
        super().__init__()
        self.sigma = sigma
        self.p = p

    def forward(self, img: Tensor) -> Tensor:
        """``img``: float ``[3, H, W]`` in [0, 1]; returns the same shape and dtype."""
        if self.sigma <= 0 or float(torch.rand(())) >= self.p:
            return img
        alpha = 1 + (torch.rand(3, 1, 1, dtype=torch.float64) * 2 - 1) * self.sigma
        beta = (torch.rand(3, 1, 1, dtype=torch.float64) * 2 - 1) * self.sigma
        hed = rgb_to_hed(img.to(torch.float64))
        return hed_to_rgb(hed * alpha + beta).to(img.dtype)


class RandomRot90(nn.Module):
    """Rotate by k·90°, k uniform in {0, 1, 2, 3} (tissue has no canonical orientation)."""

    def forward(self, img: Tensor) -> Tensor:
        """``img``: ``[..., H, W]``."""
        k = int(torch.randint(0, 4, ()))
        return torch.rot90(img, k, dims=(-2, -1)) if k else img


@dataclass
class ViewConfig:
    """Augmentation of one contrastive view (defaults: MoCo v2's recipe plus H&E-specific stain jitter).

    Args:
        preset: ``he`` (the fields below) or ``paper`` (the official MoCo v2 / DenseCL recipe,
            :func:`paper_view_transform`; the other fields must then keep their defaults).
        scale: Area range of the random resized crop.
        color_jitter: Brightness, contrast, saturation, hue of the colour jitter.
        color_jitter_p: Probability of the colour jitter.
        hed_sigma: σ of the HED stain jitter (0 disables it).
        hed_p: Probability of the HED stain jitter.
        grayscale_p: Probability of converting to grey.
        blur_p: Probability of the Gaussian blur (σ in ``blur_sigma``, kernel ≈ 10% of the crop).
        blur_sigma: Range of the blur σ.
        flips: Random horizontal and vertical flips.
        rot90: Random 90° rotations.
    """

    preset: Preset = "he"
    scale: tuple[float, float] = (0.2, 1.0)
    color_jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    color_jitter_p: float = 0.8
    hed_sigma: float = 0.05
    hed_p: float = 0.5
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    flips: bool = True
    rot90: bool = True

    def validate(self) -> None:
        """The ``paper`` preset is a fixed recipe: refuse fields that it would silently ignore."""
        if self.preset not in ("he", "paper"):
            raise ConfigError(f"views.preset must be 'he' or 'paper', got {self.preset!r}")
        if self.preset == "paper":
            changed = [f for f in self.__dataclass_fields__
                       if f != "preset" and getattr(self, f) != getattr(_DEFAULT_VIEWS, f)]
            if changed:
                raise ConfigError(f"views.preset=paper is the official recipe; it does not use views.{changed[0]} "
                                  "(leave it at its default, or use views.preset=he)")


def paper_view_transform(crop_size: int, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """The official MoCo v2 / DenseCL view, in its order (``moco/main_moco.py`` ``aug_plus``; DenseCL's
    ``configs/selfsup/densecl/densecl_imagenet_200ep.py``).

    ``RandomResizedCrop(crop, scale=(0.2, 1))`` → ``ColorJitter(0.4, 0.4, 0.4, 0.1)`` with p = 0.8 →
    grey with p = 0.2 → Gaussian blur σ ~ U(0.1, 2) with p = 0.5 → horizontal flip → to float → normalise.
    The photometric steps run on uint8 values as the originals did on PIL images. The originals blur with PIL's
    ``GaussianBlur(radius=σ)`` (σ in pixels whatever the crop size); here an exact Gaussian with a 13-pixel kernel
    (±3 σ_max) is used. No stain jitter, vertical flips or rotations.
    """
    kernel = 2 * int(np.ceil(3 * 2.0)) + 1
    return v2.Compose([
        v2.ToImage(),
        v2.RandomResizedCrop(crop_size, scale=(0.2, 1.0), antialias=True),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.5),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(mean), list(std)),
    ])


_DEFAULT_VIEWS = ViewConfig()


def view_transform(
    crop_size: int, mean: Sequence[float], std: Sequence[float], scale: tuple[float, float] = (0.2, 1.0),
    color_jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1), color_jitter_p: float = 0.8,
    hed_sigma: float = 0.05, hed_p: float = 0.5, grayscale_p: float = 0.2, blur_p: float = 0.5,
    blur_sigma: tuple[float, float] = (0.1, 2.0), flips: bool = True, rot90: bool = True, preset: Preset = "he",
) -> v2.Compose:
    """One view's pipeline: uint8 image → crop → flips/rot90 → HED jitter → colour jitter → grey → blur → normalise.

    ``preset="paper"`` returns :func:`paper_view_transform` (the other recipe arguments are not used).
    """
    if preset == "paper":
        return paper_view_transform(crop_size, mean, std)
    ops: list[Any] = [v2.ToImage(), v2.RandomResizedCrop(crop_size, scale=scale, antialias=True)]
    if flips:
        ops += [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip()]
    if rot90:
        ops.append(RandomRot90())
    ops.append(v2.ToDtype(torch.float32, scale=True))
    ops += photometric_ops(crop_size, mean, std, color_jitter, color_jitter_p, hed_sigma, hed_p, grayscale_p, blur_p,
                           blur_sigma)
    return v2.Compose(ops)


def photometric_ops(crop_size: int, mean: Sequence[float], std: Sequence[float],
                    color_jitter: tuple[float, float, float, float], color_jitter_p: float, hed_sigma: float,
                    hed_p: float, grayscale_p: float, blur_p: float, blur_sigma: tuple[float, float]) -> list[Any]:
    """The colour part of a view on a float image: HED jitter → colour jitter → grey → blur → normalise."""
    ops: list[Any] = []
    if hed_sigma > 0 and hed_p > 0:
        ops.append(HEDJitter(hed_sigma, hed_p))
    if color_jitter_p > 0 and any(color_jitter):
        b, c, s, h = color_jitter
        ops.append(v2.RandomApply([v2.ColorJitter(b, c, s, h)], p=color_jitter_p))
    if grayscale_p > 0:
        ops.append(v2.RandomGrayscale(p=grayscale_p))
    if blur_p > 0:
        kernel = max(3, int(0.1 * crop_size) // 2 * 2 + 1)
        ops.append(v2.RandomApply([v2.GaussianBlur(kernel, sigma=blur_sigma)], p=blur_p))
    ops.append(v2.Normalize(list(mean), list(std)))
    return ops


class MultiView:
    """Apply independent random pipelines to one image: ``{"view1": Tensor, "view2": Tensor, ...}``.

    Args:
        transforms: One pipeline per view.
    """

    def __init__(self, transforms: Sequence[Any]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: np.ndarray | Tensor) -> dict[str, Tensor]:
        """``image``: uint8 ``[H, W, 3]`` array (or ``[3, H, W]`` tensor)."""
        if isinstance(image, np.ndarray):
            img = torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1)
        else:
            img = image
        return {f"view{i + 1}": t(img) for i, t in enumerate(self.transforms)}


def two_views(cfg: ViewConfig, crop_size: int, mean: Sequence[float], std: Sequence[float]) -> MultiView:
    """Two views with the same recipe ``cfg`` (MoCo v2, DenseCL; ``cfg.preset`` selects ``he`` or ``paper``)."""
    cfg.validate()
    kwargs = {f: getattr(cfg, f) for f in cfg.__dataclass_fields__}
    return MultiView([view_transform(crop_size, mean, std, **kwargs) for _ in range(2)])
