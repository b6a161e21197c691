"""Training targets derived from an instance map (numpy, vectorised over instances).

* :func:`hover_maps` — HoVer-Net's horizontal and vertical distance maps (Graham et al., "HoVer-Net: Simultaneous
  segmentation and classification of nuclei in multi-tissue histology images", MedIA 2019): for each pixel of an
  instance, its x (resp. y) offset from the instance's centre of mass, scaled per instance and per side so that
  negative offsets reach -1 and positive ones +1.
* :func:`contour_classes` — background 0 / interior 1 / contour 2, the contour being the instance pixels within
  ``width`` pixels of another id or of background (contour-aware gland networks: Chen et al., "DCAN: Deep
  contour-aware networks for accurate gland segmentation", CVPR 2016).
* :func:`detection_targets` — boxes, labels and binary masks for Mask R-CNN (torchvision's target format).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from pathseg.metrics.instance import relabel


def hover_maps(instances: np.ndarray) -> np.ndarray:
    """``[2, H, W]`` float32: horizontal (x) then vertical (y) distance maps in [-1, 1], 0 on background."""
    lab, n = relabel(instances)
    out = np.zeros((2, *lab.shape), np.float32)
    if n == 0:
        return out
    fg = lab > 0
    ids = np.arange(1, n + 1)
    yy, xx = np.indices(lab.shape, dtype=np.float64)
    area = np.bincount(lab.ravel(), minlength=n + 1).astype(np.float64)
    for axis, coord in enumerate((xx, yy)):
        centre = np.floor(np.bincount(lab.ravel(), coord.ravel(), minlength=n + 1) / np.maximum(area, 1) + 0.5)
        offset = np.where(fg, coord - centre[lab], 0.0)
        low = np.zeros(n + 1)
        high = np.zeros(n + 1)
        low[1:] = ndimage.minimum(offset, lab, ids)
        high[1:] = ndimage.maximum(offset, lab, ids)
        neg = np.where(low < 0, -low, 1.0)[lab]
        pos = np.where(high > 0, high, 1.0)[lab]
        out[axis] = np.where(offset < 0, offset / neg, offset / pos) * fg
    return out


def contour_classes(instances: np.ndarray, width: int = 3) -> np.ndarray:
    """``[H, W]`` int64: 0 background, 1 interior, 2 contour: object pixels with another id (or background) within
    ``width`` pixels (Chebyshev distance; image borders do not count)."""
    lab = np.asarray(instances)
    size = 2 * max(1, width) + 1
    lo = ndimage.minimum_filter(lab, size=size, mode="nearest")
    hi = ndimage.maximum_filter(lab, size=size, mode="nearest")
    fg = lab > 0
    out = fg.astype(np.int64)
    out[fg & ((lo != lab) | (hi != lab))] = 2
    return out


def detection_targets(instances: np.ndarray, min_size: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``[N, 4]`` (x0, y0, x1, y1; pixel edges, float32) and masks ``[N, H, W]`` (uint8) of the instances.

    Objects whose box is narrower or shorter than ``min_size`` pixels are dropped (as detectron2's mappers do).
    """
    lab, n = relabel(instances)
    boxes, keep = [], []
    for i, sl in enumerate(ndimage.find_objects(lab, max_label=n), start=1):
        if sl is None:
            continue
        y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        if y1 - y0 >= min_size and x1 - x0 >= min_size:
            boxes.append((x0, y0, x1, y1))
            keep.append(i)
    ids = np.asarray(keep, np.int64)
    masks = (lab[None] == ids[:, None, None]).astype(np.uint8) if len(ids) else np.zeros((0, *lab.shape), np.uint8)
    return np.asarray(boxes, np.float32).reshape(-1, 4), masks
