"""What an instance model predicts for one image."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class InstancePrediction:
    """One image's prediction.

    Attributes:
        instances: Instance map ``[H, W]`` (int32, 0 = background) scored by :func:`pathseg.metrics.instance_metrics`.
        scores: Confidence of each scored instance (Mask R-CNN; empty for proposal-free models).
        boxes: ``[N, 4]`` boxes ``(x0, y0, x1, y1)`` of the scored instances.
        crops: Per scored instance, ``(y0, x0, mask)``: its binary mask inside its box, placed at row ``y0``, column
            ``x0`` of the image (full-size masks of a thousand nuclei would not fit in memory).
    """

    instances: np.ndarray
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    crops: list[tuple[int, int, np.ndarray]] = field(default_factory=list)

    @property
    def scored(self) -> bool:
        """Whether the model gave scored instances (COCO AP can be computed)."""
        return len(self.crops) > 0 or len(self.scores) > 0
