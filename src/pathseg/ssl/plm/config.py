"""Typed configuration of PLM (no torch import: the CLI stays fast). Defaults are the spec's hyper-parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pathseg.errors import ConfigError


@dataclass
class PLMViewConfig:
    """Augmentation of each view (spec §2.6: the DenseCL/ConCL NCT recipe; no stain jitter, no vflip or rot90).

    Args:
        scale: Area range of the random resized crop.
        ratio: Aspect-ratio range of the crop.
        color_jitter: Brightness, contrast, saturation, hue.
        color_jitter_p: Probability of the colour jitter.
        hed_sigma: σ of the HED stain jitter (0: off, as the original).
        hed_p: Probability of the HED jitter.
        grayscale_p: Probability of converting to grey.
        blur_p: Probability of the Gaussian blur.
        blur_sigma: Range of the blur σ.
        hflip: Random horizontal flips (recorded).
        vflip: Random vertical flips (pathseg extension, recorded).
        rot90: Random quarter turns (pathseg extension, recorded).
    """

    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    color_jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    color_jitter_p: float = 0.8
    hed_sigma: float = 0.0
    hed_p: float = 0.5
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    hflip: bool = True
    vflip: bool = False
    rot90: bool = False

    def validate(self) -> None:
        """Check ranges."""
        if not 0 < self.scale[0] <= self.scale[1] <= 1 or not 0 < self.ratio[0] <= self.ratio[1]:
            raise ConfigError("plm views: need 0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1]")


@dataclass
class PLMConfig:
    """Hyper-parameters of PLM (spec §2.6).

    Args:
        queue_size: Length of each of the two queues (16,384).
        momentum: Key-encoder momentum, constant (0.999).
        temperature: τ of both terms (0.2).
        loss_lambda: λ in ``(1 - λ)·L_G + λ·L_D`` (0.5; 0 is MoCo v2).
        proj_dim: Embedding size of both heads and of φ (128).
        hidden_dim: Hidden width of both heads (0: the backbone's feature size, 512 for ResNet-18).
        grid_size: Expected side G of the backbone's output map (0: take it from the backbone); always checked
            against the view size at run time.
        dense_normalize: ``mean`` divides the weighted dense loss by 2·B·N (the original); ``coverage`` by Σw.
        matching_layer: Use the linear φ after the overlap mixing (the original's ``linear=True``); off: identity.
        shuffle_bn: Shuffling BatchNorm for the keys (MoCo; :mod:`pathseg.ssl.shuffle_bn`), as the original.
        shuffle_groups: In one process, the virtual devices the key batch is split into (the original: 4 GPUs × 64);
            capped so that every group has at least two samples.
        head_init: ``kaiming`` (the original: Kaiming-normal fan-in linear layers, zero biases; the 1×1 convs keep
            PyTorch's default) or ``default`` (PyTorch's, as pathseg's MoCo v2 head).
        backbone_init: ``timm`` (timm's ResNet default: Kaiming fan-out, zero-initialised last BN of each block, as
            pathseg's other methods) or ``original`` (Kaiming fan-in, BN 1/0, no zero init, as the original).
        views: Augmentation of the two views.
    """

    queue_size: int = 16384
    momentum: float = 0.999
    temperature: float = 0.2
    loss_lambda: float = 0.5
    proj_dim: int = 128
    hidden_dim: int = 0
    grid_size: int = 0
    dense_normalize: Literal["mean", "coverage"] = "mean"
    matching_layer: bool = True
    shuffle_bn: bool = True
    shuffle_groups: int = 4
    head_init: Literal["default", "kaiming"] = "kaiming"
    backbone_init: Literal["timm", "original"] = "timm"
    views: PLMViewConfig = field(default_factory=PLMViewConfig)

    def validate(self) -> None:
        """Check ranges."""
        if not 0 <= self.loss_lambda <= 1 or self.queue_size < 1 or self.temperature <= 0:
            raise ConfigError("plm: need 0 <= loss_lambda <= 1, queue_size >= 1, temperature > 0")
        if not 0 <= self.momentum < 1 or self.proj_dim < 1 or self.hidden_dim < 0 or self.grid_size < 0:
            raise ConfigError("plm: need 0 <= momentum < 1, proj_dim >= 1, hidden_dim >= 0, grid_size >= 0")
        if self.shuffle_groups < 1:
            raise ConfigError(f"plm: shuffle_groups must be >= 1, got {self.shuffle_groups}")
