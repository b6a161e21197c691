"""Build instance models from an :class:`InstanceSection`, and rebuild a saved one (``instance_model.json``).

The factory unpacks the section into the models' constructor arguments (no module ever sees the dataclass).
A trained model is saved as safetensors (:func:`pathseg.tasks.common.save_weights`) beside
``instance_model.json`` (:class:`InstanceModelSpec`), from which :func:`load_instance_model` rebuilds it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from pathseg.config import from_dict
from pathseg.data.datasets import IMAGENET_MEAN, IMAGENET_STD
from pathseg.errors import DataError
from pathseg.io import atomic_write_text
from pathseg.tasks.instance.config import InstanceSection
from pathseg.tasks.instance.dataset import TARGETS_OF_MODEL, Targets

SPEC_FILE = "instance_model.json"


def build_instance_model(
    section: InstanceSection, encoder: str, encoder_weights: str | os.PathLike[str] | None = None
) -> nn.Module:
    """The model named by ``section.model`` on the timm/torchvision encoder ``encoder``.

    Args:
        section: A resolved section (:meth:`InstanceSection.resolved`; "auto" fields filled).
        encoder: timm name (``resnet18``, ``resnet50`` …).
        encoder_weights: Encoder file or ``None``/``"random"``.

    Raises:
        ConfigError: Unknown model, decoder or encoder; an unresolved section.
        PathsegError: The weights file cannot be read or matches no key.
    """
    from pathseg.errors import ConfigError

    if section.objects == "auto":
        raise ConfigError("resolve the instance section first (InstanceSection.resolved(kind))")
    if section.model == "maskrcnn":
        from pathseg.tasks.instance.maskrcnn import build_maskrcnn

        return build_maskrcnn(
            backbone=encoder, encoder_weights=encoder_weights, num_classes=2, anchor_sizes=section.anchor_sizes,
            aspect_ratios=section.aspect_ratios, semantic_head=section.semantic_head,
            detections_per_img=section.detections_per_img, frozen_bn=section.frozen_bn,
            score_threshold=section.score_threshold, mask_threshold=section.mask_threshold,
            rpn_proposals=section.rpn_proposals, roi_batch=section.roi_batch,
        )
    from pathseg.tasks.instance.proposal_free import build_proposal_free

    return build_proposal_free(section.model, encoder, encoder_weights=encoder_weights,  # type: ignore[arg-type]
                               decoder=section.decoder, postprocess=section.postprocess_args())


def targets_for(section: InstanceSection) -> Targets:
    """The data set targets the section's model trains on."""
    return TARGETS_OF_MODEL[section.model]


@dataclass
class InstanceModelSpec:
    """Everything needed to rebuild a trained instance model.

    Attributes:
        encoder: timm name of the trunk.
        mean: Input normalisation mean.
        std: Input normalisation std.
        section: The resolved :class:`InstanceSection` as a dict.
        class_names: The data set's class names.
    """

    encoder: str
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    section: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)

    def instance_section(self) -> InstanceSection:
        """The section as a dataclass."""
        return from_dict(InstanceSection, self.section)

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``folder/instance_model.json`` atomically."""
        path = Path(folder) / SPEC_FILE
        atomic_write_text(path, json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> InstanceModelSpec:
        """Read ``folder/instance_model.json``.

        Raises:
            DataError: Missing or invalid.
        """
        path = Path(folder) / SPEC_FILE
        if not path.is_file():
            raise DataError(f"{SPEC_FILE} not found (not an instance fine-tuning run?)", path)
        try:
            return cls(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as exc:
            raise DataError(f"invalid {SPEC_FILE} ({exc})", path) from None


def load_instance_model(folder: str | os.PathLike[str], which: str = "best") -> tuple[nn.Module, InstanceModelSpec]:
    """Rebuild the model of ``folder`` from its spec and ``model_<which>.safetensors`` (strict key match).

    Raises:
        DataError: Missing files, or weights that do not fit the architecture.
    """
    from safetensors.torch import load_file

    spec = InstanceModelSpec.load(folder)
    weights = Path(folder) / f"model_{which}.safetensors"
    if not weights.is_file():
        raise DataError(f"model_{which}.safetensors not found", folder)
    model = build_instance_model(spec.instance_section(), spec.encoder)
    try:
        model.load_state_dict(load_file(str(weights)), strict=True)
    except (RuntimeError, OSError) as exc:
        raise DataError(f"weights do not fit the architecture in {SPEC_FILE} ({str(exc)[:300]})", weights) from None
    return model.eval(), spec
