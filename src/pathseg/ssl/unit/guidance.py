"""Mask R-CNN instance guidance of UNIT (the original's ``SEG_GUIDE_STRATEGY = ISG``) on S's own FPN.

torchvision's RPN and RoI heads (box, class and mask; built by the instance task's
:func:`pathseg.tasks.instance.maskrcnn.detector_on`) run on S's P2-P6 of the generated image, so the cycle loss
and the segmentation loss come from one backbone pass (the original's ``both`` mode). Targets are the pseudo mask's
instances, turned into boxes and masks by the instance task's :func:`~pathseg.tasks.instance.dataset.make_targets`
(objects narrower or shorter than 2 px dropped, as detectron2). L_seg is the sum of the five Mask R-CNN losses
(objectness, RPN box, class, box, mask), each weighted 1. Differences from detectron2's branch: torchvision's heads
(no GroupNorm in the box and mask heads) and nucleus-sized anchors (8-128 px by default, where the original's
32-512 px are too large for 15-45 px nuclei, spec §6.9).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

LEVELS = ("0", "1", "2", "3", "pool")


class _PyramidSpec(nn.Module):
    """Stands in for the FPN when the detector is built: only ``out_channels`` is read, the heads are kept."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.out_channels = channels


class MaskRCNNBranch(nn.Module):
    """RPN + RoI heads of a one-class Mask R-CNN on a 5-level pyramid of ``fpn_dim`` channels.

    Args:
        fpn_dim: Channels of S's FPN.
        anchor_sizes: Anchor size (px) per level P2-P6.
        aspect_ratios: Anchor aspect ratios.
        roi_batch: RoIs sampled per image for the box head (detectron2: 512).
    """

    def __init__(self, fpn_dim: int, anchor_sizes: Sequence[int] = (8, 16, 32, 64, 128),
                 aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0), roi_batch: int = 512) -> None:
        super().__init__()
        from pathseg.tasks.instance.maskrcnn import detector_on

        detector = detector_on(_PyramidSpec(fpn_dim), 2, anchor_sizes, aspect_ratios, roi_batch=roi_batch)
        self.rpn: Any = detector.rpn
        self.roi_heads: Any = detector.roi_heads

    def losses(self, images: Tensor, pyramid: list[Tensor], instances: Tensor) -> dict[str, Tensor]:
        """The five Mask R-CNN losses of a batch (train mode).

        Args:
            images: The generated images ``[B, 3, H, W]`` (only their size is used).
            pyramid: S's P2-P6 of those images.
            instances: ``[B, H, W]`` int64 pseudo instance maps (0 = background).
        """
        from torchvision.models.detection.image_list import ImageList

        size = (int(images.shape[-2]), int(images.shape[-1]))
        image_list = ImageList(images, [size] * int(images.shape[0]))
        features = OrderedDict(zip(LEVELS, pyramid))
        targets = detection_targets(instances, images.device)
        proposals, rpn_losses = self.rpn(image_list, features, targets)
        _, roi_losses = self.roi_heads(features, proposals, image_list.image_sizes, targets)
        return {**rpn_losses, **roi_losses}


def detection_targets(instances: Tensor, device: torch.device) -> list[dict[str, Tensor]]:
    """Boxes, labels (1) and masks per image of ``[B, H, W]`` instance maps (the instance task's targets)."""
    from pathseg.tasks.instance.dataset import make_targets

    out = []
    for inst in instances.detach().cpu().numpy():
        t = make_targets(inst, "maskrcnn")
        out.append({k: t[k].to(device) for k in ("boxes", "labels", "masks")})
    return out
