"""Segmentation models: segmentation-models-pytorch decoders on timm encoders (``tu-<name>``), built offline."""

from __future__ import annotations

import logging
import os
from typing import Literal

from torch import nn

from pathseg.errors import ConfigError
from pathseg.models.weights import LoadReport, load_weights
from pathseg.registry import Registry

log = logging.getLogger(__name__)

DECODERS: Registry[str] = Registry("decoder")
DECODERS.add("unet", "Unet")
DECODERS.add("deeplabv3plus", "DeepLabV3Plus")
DECODERS.add("fpn", "FPN")


def create_segmentation_model(
    decoder: Literal["unet", "deeplabv3plus", "fpn"],
    encoder: str,
    num_classes: int,
    encoder_weights: str | os.PathLike[str] | None = None,
    output_stride: int | None = None,
) -> nn.Module:
    """An smp model with a timm encoder, its encoder loaded from a local file.

    The timm model sits at ``model.encoder.model``; encoder files from ``pathseg export`` (keys of
    ``timm.create_model(name, num_classes=0)``) load into it by name. The :class:`LoadReport` is kept as
    ``model.encoder_load_report`` (``None`` for random init).

    Args:
        decoder: ``unet``, ``deeplabv3plus`` or ``fpn``.
        encoder: timm name (``resnet18``, ``resnet50``, ...).
        num_classes: Output channels.
        encoder_weights: Local weights file (encoder file or any weights file), or ``None`` / ``"random"``.
        output_stride: Encoder output stride (DeepLabV3+ only: 8 or 16; default 16).

    Raises:
        ConfigError: Unknown decoder or encoder, or an option the decoder does not support.
        PathsegError: The weights file cannot be read or matches no encoder key.
    """
    import segmentation_models_pytorch as smp

    cls = getattr(smp, DECODERS.get(decoder))
    kwargs: dict[str, object] = {}
    if output_stride is not None:
        if decoder != "deeplabv3plus":
            raise ConfigError(f"output_stride is only supported by deeplabv3plus, not {decoder}")
        kwargs["encoder_output_stride"] = output_stride
    try:
        model = cls(encoder_name=f"tu-{encoder}", encoder_weights=None, classes=num_classes, **kwargs)
    except (RuntimeError, ValueError, KeyError, TypeError, AssertionError) as exc:
        raise ConfigError(f"cannot build {decoder} on encoder '{encoder}' ({str(exc).splitlines()[0]})") from None
    report: LoadReport | None = None
    model.decoder_loaded = 0  # tensors of a pretrained U-Net decoder loaded from the same file (URL stage 2)
    if encoder_weights is not None and str(encoder_weights) not in ("random", "", "none"):
        report = load_weights(model.encoder.model, encoder_weights)
        log.info("encoder %s: %d keys loaded, %d missing", encoder, len(report.matched), len(report.missing))
        if decoder == "unet":
            model.decoder_loaded = load_unet_decoder(model, encoder_weights)
    model.encoder_load_report = report
    return model


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
