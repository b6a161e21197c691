"""Options of the instance-segmentation task (light: no torch import).

``InstanceSection`` is the ``instance`` section of a fine-tuning config (``instance.model=maskrcnn`` …). Fields left at
their "auto" value (``""``, ``0``, ``-1`` or an empty list) take the defaults of the object kind (nuclei or glands)
when :meth:`InstanceSection.resolved` is called; the kind itself comes from the data set (:func:`object_kind`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pathseg.errors import ConfigError

ObjectKind = Literal["nuclei", "glands"]
MODELS = ("maskrcnn", "hover", "contour")

#: Defaults per object kind. Nuclei are 10-40 px at 40x (MoNuSeg), glands 50-500 px at 20x (GlaS, CRAG).
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "nuclei": {"anchor_sizes": [8, 16, 32, 64, 128], "detections_per_img": 1000, "min_size": 10,
               "contour_width": 1, "monitor": "aji"},
    "glands": {"anchor_sizes": [32, 64, 128, 256, 512], "detections_per_img": 100, "min_size": 50,
               "contour_width": 3, "monitor": "object_dice"},
}


@dataclass
class InstanceSection:
    """Instance model, its post-processing and its detector settings.

    Args:
        model: ``maskrcnn`` (torchvision Mask R-CNN on a ResNet-FPN), ``hover`` (foreground + horizontal/vertical
            maps + watershed; nuclei) or ``contour`` (background/interior/contour + watershed; glands).
        objects: ``nuclei``, ``glands`` or ``auto`` (from the data set's name and classes).
        decoder: smp decoder of the proposal-free models (``unet``, ``fpn``, ``deeplabv3plus``).
        anchor_sizes: Mask R-CNN anchor size (px) per FPN level P2-P6 (auto: nuclei 8-128, glands 32-512).
        aspect_ratios: Anchor aspect ratios.
        semantic_head: Add a Panoptic-FPN semantic (foreground) head trained beside Mask R-CNN (UNIT protocol).
        detections_per_img: Mask R-CNN detections kept per image (auto: nuclei 1000, glands 100).
        score_threshold: Detections with at least this score are painted into the instance map (highest score
            first; earlier ones keep overlapping pixels). AP uses every detection.
        mask_threshold: Mask R-CNN mask probability threshold.
        frozen_bn: Frozen batch norm in the Mask R-CNN trunk (detectron2 default); ``False`` trains it.
        rpn_proposals: Mask R-CNN proposals kept at test time (at least ``detections_per_img``).
        roi_batch: Mask R-CNN RoIs sampled per training image (512; fewer trains faster on a CPU).
        fg_threshold: Foreground probability threshold of the watershed post-processing.
        edge_threshold: ``hover``: boundary energy above which a pixel is no marker.
        sigma: ``hover``: σ of the Gaussian derivative filters.
        interior_threshold: ``contour``: markers need at least this interior probability...
        contour_threshold: ``contour``: ...and less than this contour probability.
        marker_open_radius: Opening radius of the markers.
        min_size: Objects (and markers) smaller than this many pixels are dropped (auto: nuclei 10, glands 50).
        contour_width: ``contour`` targets: contour thickness in pixels (auto: nuclei 1, glands 3).
        monitor: Validation metric that selects the best weights (auto: nuclei ``aji``, glands ``object_dice``).
    """

    model: Literal["maskrcnn", "hover", "contour"] = "hover"
    objects: Literal["auto", "nuclei", "glands"] = "auto"
    decoder: Literal["unet", "deeplabv3plus", "fpn"] = "unet"
    anchor_sizes: list[int] = field(default_factory=list)
    aspect_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    semantic_head: bool = False
    detections_per_img: int = 0
    score_threshold: float = 0.5
    mask_threshold: float = 0.5
    frozen_bn: bool = True
    rpn_proposals: int = 1000
    roi_batch: int = 512
    fg_threshold: float = 0.5
    edge_threshold: float = 0.1
    sigma: float = 1.0
    interior_threshold: float = 0.5
    contour_threshold: float = 0.5
    marker_open_radius: int = 1
    min_size: int = -1
    contour_width: int = 0
    monitor: str = ""

    def validate(self) -> None:
        """Check names and ranges."""
        if self.model not in MODELS:
            raise ConfigError(f"unknown instance model '{self.model}' (choose from {', '.join(MODELS)})")
        if self.anchor_sizes and (len(self.anchor_sizes) != 5 or min(self.anchor_sizes) <= 0):
            raise ConfigError(f"anchor_sizes needs 5 positive sizes (FPN levels P2-P6), got {self.anchor_sizes}")
        for name in ("score_threshold", "mask_threshold", "fg_threshold", "interior_threshold", "contour_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"instance.{name} must be in [0, 1], got {getattr(self, name)}")

    def resolved(self, kind: ObjectKind) -> InstanceSection:
        """A copy with every "auto" field set from :data:`KIND_DEFAULTS` of ``kind``."""
        self.validate()
        defaults = KIND_DEFAULTS[kind]
        auto = {"anchor_sizes": [], "detections_per_img": 0, "min_size": -1, "contour_width": 0, "monitor": ""}
        changes: dict[str, Any] = {"objects": kind}
        for name, empty in auto.items():
            if getattr(self, name) == empty:
                changes[name] = defaults[name]
        return dataclasses.replace(self, **changes)

    def postprocess_args(self) -> dict[str, float | int]:
        """Keyword arguments of the watershed post-processing of ``model`` (``hover`` or ``contour``)."""
        common = {"fg_threshold": self.fg_threshold, "marker_open_radius": self.marker_open_radius,
                  "min_size": max(self.min_size, 0)}
        if self.model == "hover":
            return {**common, "edge_threshold": self.edge_threshold, "sigma": self.sigma}
        return {**common, "interior_threshold": self.interior_threshold, "contour_threshold": self.contour_threshold}


def object_kind(name: str, class_names: Sequence[str], objects: str = "auto") -> ObjectKind:
    """``nuclei`` or ``glands``: ``objects`` unless ``auto``, else from the data set name and class names.

    Raises:
        ConfigError: ``auto`` and neither word can be recognised.
    """
    if objects in ("nuclei", "glands"):
        return objects  # type: ignore[return-value]
    words = " ".join([name, *class_names]).lower()
    if any(w in words for w in ("nucle", "monuseg", "kumar", "pannuke", "cell")):
        return "nuclei"
    if any(w in words for w in ("gland", "glas", "crag")):
        return "glands"
    raise ConfigError(f"cannot tell whether '{name}' holds nuclei or glands; set instance.objects=nuclei|glands")
