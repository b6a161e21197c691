"""timm backbones: pooled-feature encoders and multi-scale feature extractors, built offline."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
from torch import nn

from pathseg.errors import ConfigError
from pathseg.registry import Registry

#: Backbones known to work with every pathseg component (any other timm name may be tried as well).
BACKBONES: Registry[dict[str, Any]] = Registry("backbone")
for _name in ("resnet18", "resnet34", "resnet50", "vit_small_patch16_224", "vit_base_patch16_224"):
    BACKBONES.add(_name, {"family": "vit" if _name.startswith("vit") else "cnn"})




def _resnet38d() -> nn.Module:
    from pathseg.models.resnet38d import ResNet38d

    return ResNet38d()


#: pathseg's own trunks returning feature levels with a timm-like ``feature_info`` (``channels()``,
#: ``reduction()``, ``module_name(i)``), at their native output stride; :func:`feature_encoder` builds them too.
FEATURE_BACKBONES: Registry[Callable[[], nn.Module]] = Registry("feature backbone")
FEATURE_BACKBONES.add("resnet38d", _resnet38d)  # MLPS stage 1 (output stride 8)


def _is_vit(name: str) -> bool:
    return name.startswith(("vit_", "deit", "eva", "beit"))


def _create(name: str, **kwargs: Any) -> nn.Module:
    import timm

    try:
        return timm.create_model(name, pretrained=False, **kwargs)
    except RuntimeError as exc:  # timm: unknown model
        if "Unknown model" in str(exc):
            near = timm.list_models(f"*{name.split('_')[0]}*")[:5]
            raise ConfigError(f"unknown timm backbone '{name}' (similar: {', '.join(near) or 'none'})") from None
        raise ConfigError(f"cannot build backbone '{name}' ({exc})") from None
    except (TypeError, ValueError, AssertionError) as exc:
        raise ConfigError(f"cannot build backbone '{name}' with {kwargs} ({exc})") from None


def create_encoder(
    name: str,
    weights: str | os.PathLike[str] | None = None,
    output_stride: int | None = None,
    in_chans: int = 3,
    allow_partial: bool = False,
) -> nn.Module:
    """A timm model returning pooled features ``[N, D]`` (``num_classes=0``; ``D = model.num_features``).

    Args:
        name: timm model name (``resnet18``, ``resnet50``, ``vit_small_patch16_224``, ...).
        weights: Optional local weights file (see :func:`pathseg.models.load_weights`); ``"random"`` or ``None``
            keeps the random initialisation.
        output_stride: Dilate the last stages to reach this stride (CNNs only; 8, 16 or 32).
        in_chans: Input channels.
        allow_partial: Load only the tensors of ``weights`` that fit (with a report) instead of refusing.

    Raises:
        ConfigError: Unknown backbone or unsupported option.
        PathsegError: The weights file cannot be read or does not fit the architecture.
    """
    kwargs: dict[str, Any] = {"num_classes": 0, "in_chans": in_chans}
    if output_stride is not None and output_stride != 32:
        if _is_vit(name):
            raise ConfigError(f"output_stride is not supported for the ViT backbone '{name}'")
        kwargs["output_stride"] = output_stride
    if _is_vit(name):
        kwargs["dynamic_img_size"] = True
    model = _create(name, **kwargs)
    if weights is not None and str(weights) != "random":
        from pathseg.models.weights import load_weights

        load_weights(model, weights, allow_partial=allow_partial)
    return model


class ViTFeatures(nn.Module):
    """Multi-scale-style feature maps of a timm ViT: intermediate blocks reshaped to ``[N, C, H/p, W/p]``.

    Exposes ``feature_info.channels()`` and ``feature_info.reduction()`` like timm's features_only models, and the
    wrapped timm ViT as ``.model`` (its keys are those of ``timm.create_model(name, num_classes=0)``).

    Args:
        model: A timm VisionTransformer (``num_classes=0``).
        out_indices: Block indices to return (negative from the end).
    """

    def __init__(self, model: nn.Module, out_indices: Sequence[int]) -> None:
        super().__init__()
        self.model = model
        self.out_indices = list(out_indices)
        dim = int(cast(int, getattr(model, "embed_dim", None) or getattr(model, "num_features")))  # noqa: B009
        patch: Any = getattr(model.patch_embed, "patch_size")  # noqa: B009
        stride = int(patch[0] if isinstance(patch, tuple | list) else patch)
        self.feature_info = _FeatureInfo([dim] * len(self.out_indices), [stride] * len(self.out_indices))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps of the chosen blocks, each ``[N, C, H/p, W/p]``."""
        outs = self.model.forward_intermediates(  # type: ignore[operator]
            x, indices=self.out_indices, intermediates_only=True, output_fmt="NCHW"
        )
        return list(outs)


class _FeatureInfo:
    def __init__(self, channels: list[int], reduction: list[int]) -> None:
        self._channels = channels
        self._reduction = reduction

    def channels(self) -> list[int]:
        return list(self._channels)

    def reduction(self) -> list[int]:
        return list(self._reduction)


def feature_encoder(
    name: str,
    weights: str | os.PathLike[str] | None = None,
    out_indices: Sequence[int] | None = None,
    output_stride: int | None = None,
) -> nn.Module:
    """A backbone returning a list of feature maps (timm ``features_only``; a reshape wrapper for ViTs).

    The module has ``feature_info.channels()`` and ``feature_info.reduction()``. For CNNs its parameter names equal
    those of :func:`create_encoder` (timm's FeatureListNet keeps them), so the same weights files load into both.

    Args:
        name: timm model name.
        weights: Optional local weights file.
        out_indices: Feature levels (CNN stages, or ViT blocks; default: all CNN stages / the last 4 ViT blocks).
        output_stride: Dilation for CNNs (8, 16 or 32).
    """
    model: nn.Module
    target: nn.Module
    if name in FEATURE_BACKBONES:
        if output_stride not in (None, 8):
            raise ConfigError(f"'{name}' has a fixed output stride of 8, got {output_stride}")
        model = FEATURE_BACKBONES.get(name)()
        target = model
    elif _is_vit(name):
        vit = create_encoder(name, output_stride=output_stride)
        depth = len(vit.blocks)  # type: ignore[arg-type]
        idx = list(out_indices) if out_indices is not None else [depth - 4, depth - 3, depth - 2, depth - 1]
        model = ViTFeatures(vit, idx)
        target = vit
    else:
        kwargs: dict[str, Any] = {"features_only": True}
        if out_indices is not None:
            kwargs["out_indices"] = tuple(out_indices)
        if output_stride is not None and output_stride != 32:
            kwargs["output_stride"] = output_stride
        model = _create(name, **kwargs)
        target = model
    if weights is not None and str(weights) != "random":
        from pathseg.models.weights import load_weights

        load_weights(target, weights)
    return model


class TimmFeatures(nn.Module):
    """A feature trunk (:func:`feature_encoder`) held as ``.model`` — for CNNs the keys of
    ``timm.create_model(name)`` — with ``out_channels``, as smp's ``tu-`` encoders (``model.encoder.model``).

    Args:
        name: Backbone name (timm, or one of :data:`FEATURE_BACKBONES`).
        out_indices: Feature levels (default: all).
        output_stride: Dilation for CNNs (8, 16 or 32).
    """

    def __init__(self, name: str, out_indices: Sequence[int] | None = None, output_stride: int | None = None) -> None:
        super().__init__()
        self.model = feature_encoder(name, out_indices=out_indices, output_stride=output_stride)
        info: Any = self.model.feature_info
        self.out_channels = [int(c) for c in info.channels()]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps, finest level first."""
        return list(self.model(x))
