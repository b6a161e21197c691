"""Segmentation models: segmentation-models-pytorch decoders on timm encoders (``tu-<name>``), built offline,
and the original networks of two papers (pathseg's own, same contract: the timm model at ``model.encoder.model``):

- ``url_unet``: URL's ``ResNetUNet`` (:class:`pathseg.models.url_unet.PaperUNet`), whose ``decoder.*`` a URL
  stage-2 run with ``decoder: paper`` exports;
- ``plm_unet``: PLM's shallow U-Net (:class:`pathseg.models.plm_unet.ShallowUNet`) of its frozen-encoder BCSS
  experiment;
- ``deeplabv3plus_paper``: MLPS's DeepLabV3+ (:class:`pathseg.models.deeplab.DeepLabV3PlusPaper`, ASPP rates
  for the output stride, two 3×3 decoder convolutions with dropout).

ViT encoders (no feature pyramid) take the ``dpt`` decoder (smp's DPT, :func:`pathseg.models.vit.create_dpt`).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Literal

from torch import nn

from pathseg.errors import ConfigError
from pathseg.models.weights import LoadReport, load_weights
from pathseg.registry import Registry

log = logging.getLogger(__name__)

DECODERS: Registry[str] = Registry("decoder")
DECODERS.add("unet", "Unet")
DECODERS.add("deeplabv3plus", "DeepLabV3Plus")
DECODERS.add("fpn", "FPN")
DECODERS.add("url_unet", "pathseg:url_unet")
DECODERS.add("plm_unet", "pathseg:plm_unet")
DECODERS.add("deeplabv3plus_paper", "pathseg:deeplabv3plus_paper")
DECODERS.add("dpt", "pathseg:dpt")


def _own_model(decoder: str, encoder: str, num_classes: int, output_stride: int | None) -> nn.Module:
    """One of pathseg's own paper networks, or DPT on a ViT (only MLPS's DeepLabV3+ takes ``output_stride``)."""
    if decoder == "deeplabv3plus_paper":
        from pathseg.models.deeplab import DeepLabV3PlusPaper

        return DeepLabV3PlusPaper(encoder, num_classes, output_stride or 16)
    if output_stride is not None:
        raise ConfigError(f"output_stride is not supported by {decoder}")
    if decoder == "dpt":
        from pathseg.models.vit import create_dpt

        return create_dpt(encoder, num_classes)
    if decoder == "url_unet":
        from pathseg.models.url_unet import PaperUNet

        return PaperUNet(encoder, num_classes)
    from pathseg.models.plm_unet import ShallowUNet

    return ShallowUNet(encoder, num_classes)


def create_segmentation_model(
    decoder: Literal["unet", "deeplabv3plus", "fpn", "url_unet", "plm_unet", "deeplabv3plus_paper", "dpt"],
    encoder: str,
    num_classes: int,
    encoder_weights: str | os.PathLike[str] | None = None,
    output_stride: int | None = None,
    allow_partial: bool = False,
) -> nn.Module:
    """An smp model with a timm encoder, its encoder loaded from a local file.

    The timm model sits at ``model.encoder.model``; encoder files from ``pathseg export`` (keys of
    ``timm.create_model(name, num_classes=0)``) load into it by name. The :class:`LoadReport` is kept as
    ``model.encoder_load_report`` (``None`` for random init).

    Args:
        decoder: ``unet``, ``deeplabv3plus``, ``fpn`` (smp), ``url_unet``, ``plm_unet``, ``deeplabv3plus_paper``
            (the papers') or
            ``dpt`` (ViT encoders only).
        encoder: timm name (``resnet18``, ``resnet50``, ...).
        num_classes: Output channels.
        encoder_weights: Local weights file (encoder file or any weights file), or ``None`` / ``"random"``.
        output_stride: Encoder output stride (DeepLabV3+ only: 8 or 16; default 16).
        allow_partial: Load only the encoder tensors that fit (with a report) instead of refusing the file.

    ``model.decoder_loaded`` counts the ``decoder.*`` tensors loaded from ``encoder_weights`` (U-Nets: ``unet``
    and ``url_unet``, from URL stage-2 exports of the matching ``decoder``).

    Raises:
        ConfigError: Unknown decoder or encoder, or an option the decoder does not support.
        PathsegError: The weights file cannot be read or matches no encoder key.
    """
    target = DECODERS.get(decoder)
    _check_vit_decoder(decoder, encoder)
    model: Any
    try:
        if target.startswith("pathseg:"):
            model = _own_model(decoder, encoder, num_classes, output_stride)
        else:
            model = _smp_model(target, decoder, encoder, num_classes, output_stride)
    except (RuntimeError, ValueError, KeyError, TypeError, AssertionError) as exc:
        raise ConfigError(f"cannot build {decoder} on encoder '{encoder}' ({str(exc).splitlines()[0]})") from None
    report: LoadReport | None = None
    model.decoder_loaded = 0  # tensors of a pretrained U-Net decoder loaded from the same file (URL stage 2)
    if encoder_weights is not None and str(encoder_weights) not in ("random", "", "none"):
        report = load_weights(model.encoder.model, encoder_weights, allow_partial=allow_partial)
        log.info("encoder %s: %d keys loaded, %d missing", encoder, len(report.matched), len(report.missing))
        if decoder in ("unet", "url_unet"):
            model.decoder_loaded = load_unet_decoder(model, encoder_weights)
    model.encoder_load_report = report
    return model


def _check_vit_decoder(decoder: str, encoder: str) -> None:
    """A ViT needs the ``dpt`` decoder, and ``dpt`` needs a ViT (one clear error instead of smp's)."""
    from pathseg.models.vit import is_vit

    if is_vit(encoder) != (decoder == "dpt"):
        wanted = "decoder=dpt" if is_vit(encoder) else "a ViT encoder (vit_small_patch16_224, ...)"
        raise ConfigError(f"the {decoder} decoder does not fit the encoder '{encoder}': use {wanted}")


def _smp_model(cls_name: str, decoder: str, encoder: str, num_classes: int, output_stride: int | None) -> nn.Module:
    import segmentation_models_pytorch as smp

    kwargs: dict[str, object] = {}
    if output_stride is not None:
        if decoder != "deeplabv3plus":
            raise ConfigError(f"output_stride is only supported by deeplabv3plus, not {decoder}")
        kwargs["encoder_output_stride"] = output_stride
    return getattr(smp, cls_name)(encoder_name=f"tu-{encoder}", encoder_weights=None, classes=num_classes,
                                  **kwargs)  # type: ignore[no-any-return]


def load_unet_decoder(model: nn.Module, path: str | os.PathLike[str]) -> int:
    """Load the ``decoder.*`` tensors of an encoder file that also holds a U-Net decoder (URL stage 2 / joint runs)
    into an smp ``Unet``; files without ``decoder.*`` keys are left alone. Returns the number of tensors loaded.

    Raises:
        PathsegError: The file holds a U-Net decoder that does not fit this model.
    """
    from pathlib import Path

    from pathseg.errors import PathsegError

    if Path(path).suffix.lower() != ".safetensors":
        return 0
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
        tensors = {k[len("decoder."):]: fh.get_tensor(k) for k in fh.keys() if k.startswith("decoder.")}  # noqa: SIM118
    if not tensors:
        return 0
    try:
        model.get_submodule("decoder").load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise PathsegError(
            f"the U-Net decoder in this file (from {meta.get('method', 'an unknown method')}) does not fit: "
            f"{str(exc).splitlines()[0]}", path
        ) from None
    log.info("decoder: %d tensors loaded from %s", len(tensors), path)
    return len(tensors)
