"""Mask R-CNN (He et al., ICCV 2017) on a ResNet-FPN (Lin et al., CVPR 2017) whose trunk takes pathseg encoders.

The trunk is a torchvision ResNet without its classifier; its parameter names (``conv1.weight``, ``bn1.*``,
``layer1.0.conv1.weight`` …) are those of ``timm.create_model(name, num_classes=0)`` for resnet18/34/50/101/152, so
an exported encoder file loads into it by name (every tensor must fit; frozen batch norm has no
``num_batches_tracked``). It sits at ``model.detector.backbone.body``. torchvision's resizing and normalisation
are disabled (the data set normalises with the encoder's statistics; images keep their size, so anchor sizes are in
image pixels). An optional semantic head (Panoptic FPN, Kirillov et al., CVPR 2019) predicts the foreground from
P2-P5 and adds its cross-entropy.

Prediction paints the detections with ``score >= score_threshold`` into one instance map, highest score first,
earlier ones keeping overlapping pixels (as UNIT's nucleus evaluation); every detection is kept, with its score and
its mask inside its box, for COCO AP.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pathseg.errors import ConfigError
from pathseg.tasks.instance.types import InstancePrediction

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


class SemanticHead(nn.Module):
    """Panoptic-FPN semantic branch: per level (stride 4·2^k), max(k, 1) times conv3x3-GN-ReLU, each followed by
    2x upsampling for k > 0, summed at stride 4, then a 1x1 classifier upsampled 4x.

    Args:
        in_channels: FPN channels.
        num_classes: Output classes (2: background, object).
        channels: Channels of the branch.
        levels: FPN levels used (P2-P5).
    """

    def __init__(self, in_channels: int = 256, num_classes: int = 2, channels: int = 128, levels: int = 4) -> None:
        super().__init__()
        self.stages = nn.ModuleList()
        for k in range(levels):
            layers: list[nn.Module] = []
            for j in range(max(k, 1)):
                layers += [nn.Conv2d(in_channels if j == 0 else channels, channels, 3, padding=1, bias=False),
                           nn.GroupNorm(32, channels), nn.ReLU(inplace=True)]
                if k > 0:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.stages.append(nn.Sequential(*layers))
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Logits at 4x the resolution of ``features[0]``."""
        x = sum(stage(f) for stage, f in zip(self.stages, features))
        return F.interpolate(self.classifier(x), scale_factor=4, mode="bilinear", align_corners=False)  # type: ignore[arg-type]


class MaskRCNNModel(nn.Module):
    """torchvision ``MaskRCNN`` plus an optional :class:`SemanticHead`, sharing one FPN pass.

    Args:
        detector: A torchvision ``MaskRCNN`` (built by :func:`build_maskrcnn`).
        semantic_head: Optional semantic branch on the FPN features.
        score_threshold: Detections painted into the instance map need at least this score.
        mask_threshold: Mask probability threshold.
    """

    scores_instances = True  # predictions carry scores: evaluation adds COCO AP
    detector: Any

    def __init__(
        self, detector: nn.Module, semantic_head: nn.Module | None = None, score_threshold: float = 0.5,
        mask_threshold: float = 0.5,
    ) -> None:
        super().__init__()
        self.detector = detector
        self.semantic_head = semantic_head
        self.score_threshold = score_threshold
        self.mask_threshold = mask_threshold

    @property
    def encoder(self) -> nn.Module:
        """The ResNet trunk (for freezing and its own learning rate)."""
        return self.detector.backbone.body  # type: ignore[no-any-return]

    def _features(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None) -> Any:
        image_list, targets = self.detector.transform(list(images), targets)
        return image_list, targets, self.detector.backbone(image_list.tensors)

    def losses(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """RPN, box, class and mask losses (+ ``loss_semantic``) of a batch; the model must be in train mode."""
        det = [{k: t[k].to(images.device) for k in ("boxes", "labels", "masks")} for t in targets]
        image_list, det, features = self._features(images, det)
        proposals, rpn_losses = self.detector.rpn(image_list, features, det)
        _, roi_losses = self.detector.roi_heads(features, proposals, image_list.image_sizes, det)
        out = {**rpn_losses, **roi_losses}
        if self.semantic_head is not None:
            h, w = images.shape[-2:]
            logits = self.semantic_head(list(features.values())[:4])[..., :h, :w]
            fg = torch.stack([t["foreground"] for t in targets]).to(images.device)
            out["loss_semantic"] = F.cross_entropy(logits, fg)
        return out

    def forward(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Raw detections per image (eval mode): ``boxes``, ``labels``, ``scores``, ``masks`` ``[N, 1, 28, 28]``."""
        image_list, _, features = self._features(images)
        proposals, _ = self.detector.rpn(image_list, features)
        detections, _ = self.detector.roi_heads(features, proposals, image_list.image_sizes)
        return detections  # type: ignore[no-any-return]

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> list[InstancePrediction]:
        """Instance maps and scored instances of a batch (the model must be in eval mode)."""
        return [self._paint(d, images.shape[-2:]) for d in self(images)]

    def _paint(self, det: dict[str, torch.Tensor], size: Sequence[int]) -> InstancePrediction:
        h, w = int(size[0]), int(size[1])
        scores = det["scores"].float().cpu().numpy()
        boxes = det["boxes"].float().cpu()
        order = np.argsort(-scores, kind="stable")
        inst = np.zeros((h, w), np.int32)
        crops: list[tuple[int, int, np.ndarray]] = []
        for k in order:
            x0, y0 = int(boxes[k, 0].floor().clamp(0, w - 1)), int(boxes[k, 1].floor().clamp(0, h - 1))
            x1, y1 = int(boxes[k, 2].ceil().clamp(x0 + 1, w)), int(boxes[k, 3].ceil().clamp(y0 + 1, h))
            prob = F.interpolate(det["masks"][k : k + 1].float().cpu(), size=(y1 - y0, x1 - x0), mode="bilinear",
                                 align_corners=False)[0, 0]
            mask = (prob >= self.mask_threshold).numpy()
            crops.append((y0, x0, mask))
            if scores[k] >= self.score_threshold:
                region = inst[y0:y1, x0:x1]
                region[mask & (region == 0)] = len(crops)
        return InstancePrediction(instances=inst, scores=scores[order], boxes=boxes.numpy()[order], crops=crops)


def _no_resize_transform(size_divisible: int = 32) -> nn.Module:
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    class NoResize(GeneralizedRCNNTransform):
        """Batches and pads images (to ``size_divisible``) without resizing or normalising them."""

        def resize(self, image: torch.Tensor, target: Any = None) -> tuple[torch.Tensor, Any]:
            return image, target

        def normalize(self, image: torch.Tensor) -> torch.Tensor:
            return image

    return NoResize(min_size=1, max_size=1, image_mean=[0.0] * 3, image_std=[1.0] * 3, size_divisible=size_divisible)


def build_trunk(
    backbone: str = "resnet50", encoder_weights: str | os.PathLike[str] | None = None, frozen_bn: bool = True
) -> nn.Module:
    """A torchvision ResNet with timm-compatible names, its weights from an encoder file (or random).

    Raises:
        ConfigError: ``backbone`` is not a ResNet torchvision builds.
        PathsegError: The weights file cannot be read or does not fit the trunk.
    """
    from torchvision.models import resnet
    from torchvision.ops import misc

    if backbone not in RESNETS:
        raise ConfigError(f"Mask R-CNN needs a ResNet trunk ({', '.join(RESNETS)}), got '{backbone}'")
    norm = misc.FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
    trunk = getattr(resnet, backbone)(weights=None, norm_layer=norm)
    trunk.fc = nn.Identity()  # no classifier: the keys are exactly those of timm's num_classes=0 model
    if encoder_weights is not None and str(encoder_weights) not in ("random", "", "none"):
        from pathseg.models import load_weights

        trunk.load_report = load_weights(trunk, encoder_weights)  # refuses a file that does not fit the trunk
    return trunk  # type: ignore[no-any-return]


def build_maskrcnn(
    backbone: str = "resnet50",
    encoder_weights: str | os.PathLike[str] | None = None,
    num_classes: int = 2,
    anchor_sizes: Sequence[int] = (32, 64, 128, 256, 512),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    semantic_head: bool = False,
    detections_per_img: int = 100,
    frozen_bn: bool = True,
    score_threshold: float = 0.5,
    mask_threshold: float = 0.5,
    rpn_proposals: int = 1000,
    roi_batch: int = 512,
) -> MaskRCNNModel:
    """Mask R-CNN on a ResNet-FPN (P2-P6) with one anchor size per level.

    Args:
        backbone: torchvision/timm ResNet name.
        encoder_weights: Encoder file (``pathseg export``) or any weights file with ResNet keys; ``None`` = random.
        num_classes: Classes including background (2: background, object).
        anchor_sizes: Anchor size in pixels for P2, P3, P4, P5, P6 (nuclei 8-128, glands 32-512).
        aspect_ratios: Anchor aspect ratios (every level).
        semantic_head: Add a :class:`SemanticHead` (foreground) trained beside the detector.
        detections_per_img: Detections kept per image.
        frozen_bn: Frozen batch norm in the trunk.
        score_threshold: Score needed to enter the instance map.
        mask_threshold: Mask probability threshold.
        rpn_proposals: Proposals kept after NMS at test time (at least ``detections_per_img``; training: 2000).
        roi_batch: RoIs sampled per training image for the box head (torchvision/detectron2: 512).
    """
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    if len(anchor_sizes) != 5:
        raise ConfigError(f"anchor_sizes needs one size per FPN level P2-P6 (5), got {list(anchor_sizes)}")
    trunk: Any = build_trunk(backbone, encoder_weights, frozen_bn)
    width = 64 * trunk.layer1[0].expansion
    fpn = BackboneWithFPN(trunk, return_layers={f"layer{i + 1}": str(i) for i in range(4)},
                          in_channels_list=[width * 2**i for i in range(4)], out_channels=256,
                          extra_blocks=LastLevelMaxPool())
    detector = detector_on(fpn, num_classes, anchor_sizes, aspect_ratios, detections_per_img, rpn_proposals,
                           roi_batch)
    head = SemanticHead(256, 2) if semantic_head else None
    return MaskRCNNModel(detector, head, score_threshold=score_threshold, mask_threshold=mask_threshold)


def detector_on(
    fpn: nn.Module,
    num_classes: int = 2,
    anchor_sizes: Sequence[int] = (32, 64, 128, 256, 512),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    detections_per_img: int = 100,
    rpn_proposals: int = 1000,
    roi_batch: int = 512,
) -> Any:
    """torchvision ``MaskRCNN`` (no resizing or normalising) on any FPN backbone: a module with ``out_channels``
    whose forward returns the levels P2-P6 as an ordered dict (keys ``"0"``-``"3"``, ``"pool"``).

    Used by :func:`build_maskrcnn` and by methods that run the heads on their own FPN (UNIT's instance guidance).
    Arguments as :func:`build_maskrcnn`.

    Raises:
        ConfigError: Not five anchor sizes.
    """
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    if len(anchor_sizes) != 5:
        raise ConfigError(f"anchor_sizes needs one size per FPN level P2-P6 (5), got {list(anchor_sizes)}")
    anchors = AnchorGenerator(sizes=tuple((int(s),) for s in anchor_sizes),
                              aspect_ratios=(tuple(float(a) for a in aspect_ratios),) * 5)
    proposals = max(rpn_proposals, detections_per_img)
    detector = MaskRCNN(fpn, num_classes=num_classes, rpn_anchor_generator=anchors,
                        box_detections_per_img=detections_per_img, box_batch_size_per_image=roi_batch,
                        rpn_pre_nms_top_n_test=proposals, rpn_post_nms_top_n_test=proposals)
    detector.transform = _no_resize_transform()
    return detector
