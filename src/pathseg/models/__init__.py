"""Backbones (timm), local weight files and segmentation models (segmentation-models-pytorch).

Everything is built offline: timm models are created with ``pretrained=False`` and weights come from local files
only (``.safetensors`` or ``torch.load(weights_only=True)`` for ``.pth/.pt/.ckpt/.bin``).

Main entry points:

- :func:`create_encoder` — a timm backbone giving pooled features (``num_classes=0``).
- :func:`feature_encoder` — multi-scale feature maps with ``.feature_info.channels()`` / ``.reduction()``.
- :func:`load_weights` — load a local weights file with prefix stripping and a :class:`LoadReport`.
- :func:`save_encoder` / :func:`read_encoder` — encoder files (safetensors + timm name and normalisation).
- :func:`create_segmentation_model` — U-Net / DeepLabV3+ / FPN from smp on a ``tu-<timm name>`` encoder.
"""

from pathseg.models.encoders import BACKBONES, create_encoder, feature_encoder
from pathseg.models.segmentation import DECODERS, create_segmentation_model
from pathseg.models.weights import (
    EncoderMeta,
    LoadReport,
    load_weights,
    read_encoder,
    read_state_dict,
    save_encoder,
)

__all__ = [
    "BACKBONES",
    "DECODERS",
    "EncoderMeta",
    "LoadReport",
    "create_encoder",
    "create_segmentation_model",
    "feature_encoder",
    "load_weights",
    "read_encoder",
    "read_state_dict",
    "save_encoder",
]
