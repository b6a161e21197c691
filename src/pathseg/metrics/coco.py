"""COCO box and mask average precision of scored instances against instance maps (pycocotools).

AP is the mean over IoU thresholds 0.50:0.05:0.95 of the 101-point interpolated precision (Lin et al., ECCV 2014),
AP50 and AP75 at one threshold; one category, every ground-truth object of a map is one annotation.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from pathseg.metrics.instance import relabel


def _rle(mask: np.ndarray) -> dict[str, Any]:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


class CocoAccumulator:
    """Builds the COCO ground truth and detections image by image (masks kept as RLE only), then scores them.

    Args:
        max_dets: Detections per image considered (COCO's ``maxDets``; nuclei need more than the default 100).
    """

    def __init__(self, max_dets: int = 100) -> None:
        self.max_dets = max_dets
        self.images: list[dict[str, Any]] = []
        self.anns: list[dict[str, Any]] = []
        self.dets: list[dict[str, Any]] = []

    def add(
        self, true: np.ndarray, crops: Sequence[tuple[int, int, np.ndarray]], scores: Sequence[float],
        boxes: np.ndarray | None = None,
    ) -> None:
        """One image: its ground-truth instance map and its scored instances.

        Args:
            true: Ground-truth instance map ``[H, W]``.
            crops: Per instance ``(y0, x0, mask)``: a binary mask placed at row ``y0``, column ``x0`` (a full-size
                mask is ``(0, 0, mask)``).
            scores: Per instance confidence.
            boxes: ``[N, 4]`` boxes ``(x0, y0, x1, y1)``; default the masks' bounding boxes.
        """
        from pycocotools import mask as mask_utils

        t, n = relabel(true)
        img_id = len(self.images) + 1
        h, w = t.shape
        self.images.append({"id": img_id, "height": int(h), "width": int(w)})
        for i in range(1, n + 1):
            rle = _rle(t == i)
            self.anns.append({"id": len(self.anns) + 1, "image_id": img_id, "category_id": 1, "iscrowd": 0,
                              "area": float(mask_utils.area(rle)), "bbox": mask_utils.toBbox(rle).tolist(),
                              "segmentation": rle})
        for k, ((y0, x0, m), s) in enumerate(zip(crops, scores)):
            full = np.zeros((h, w), np.uint8)
            full[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]] = m[: h - y0, : w - x0]
            rle = _rle(full)
            box = mask_utils.toBbox(rle).tolist()
            if boxes is not None:
                x0b, y0b, x1b, y1b = (float(v) for v in np.asarray(boxes)[k])
                box = [x0b, y0b, x1b - x0b, y1b - y0b]
            self.dets.append({"image_id": img_id, "category_id": 1, "score": float(s), "bbox": box,
                              "segmentation": rle})

    def compute(self) -> dict[str, float]:
        """``box_ap``, ``box_ap50``, ``box_ap75``, ``mask_ap``, ``mask_ap50``, ``mask_ap75`` (0 when nothing is
        predicted; -1 as pycocotools when the ground truth holds no object)."""
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        gt = COCO()
        gt.dataset = {"images": self.images, "annotations": self.anns, "categories": [{"id": 1, "name": "object"}]}
        with contextlib.redirect_stdout(io.StringIO()):
            gt.createIndex()
        out: dict[str, float] = {}
        for kind, prefix in (("bbox", "box"), ("segm", "mask")):
            stats = [0.0, 0.0, 0.0]
            if self.dets:
                with contextlib.redirect_stdout(io.StringIO()):
                    ev = COCOeval(gt, gt.loadRes([dict(d) for d in self.dets]), kind)
                    ev.params.maxDets = [1, 10, self.max_dets]
                    ev.evaluate()
                    ev.accumulate()
                    ev.summarize()
                stats = [float(v) for v in ev.stats[:3]]
            out.update({f"{prefix}_ap": stats[0], f"{prefix}_ap50": stats[1], f"{prefix}_ap75": stats[2]})
        return out


def coco_ap(
    true_maps: Sequence[np.ndarray],
    pred_masks: Sequence[np.ndarray],
    pred_scores: Sequence[np.ndarray],
    pred_boxes: Sequence[np.ndarray] | None = None,
    max_dets: int = 100,
) -> dict[str, float]:
    """COCO box and mask AP (IoU 0.50:0.95), AP50 and AP75 of scored instances (pycocotools, one category).

    Args:
        true_maps: Ground-truth instance maps, one per image.
        pred_masks: Per image, predicted binary masks ``[N, H, W]``.
        pred_scores: Per image, the ``N`` confidence scores.
        pred_boxes: Per image, ``[N, 4]`` boxes ``(x0, y0, x1, y1)``; default the masks' bounding boxes.
        max_dets: Detections per image considered.

    Returns:
        As :meth:`CocoAccumulator.compute`.
    """
    acc = CocoAccumulator(max_dets)
    for k, (true, masks, scores) in enumerate(zip(true_maps, pred_masks, pred_scores)):
        acc.add(true, [(0, 0, np.asarray(m)) for m in masks], list(np.asarray(scores)),
                None if pred_boxes is None else pred_boxes[k])
    return acc.compute()
