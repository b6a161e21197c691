"""Semantic segmentation metrics from an accumulated confusion matrix.

Every metric is computed from one ``[K, K]`` confusion matrix ``M`` summed over all pixels of a data set
(rows = ground truth, columns = prediction), never averaged over images. For class ``c``:
``TP = M[c, c]``, ``FP = sum_r M[r, c] - TP``, ``FN = sum_k M[c, k] - TP``.

* ``IoU_c = TP / (TP + FP + FN)``, ``Dice_c = 2 TP / (2 TP + FP + FN)``.
* A class is *present* when ``TP + FP + FN > 0`` (it occurs in the ground truth or the prediction). An absent
  class has ``None`` in ``iou_per_class``/``dice_per_class`` and is left out of the means (not scored 0).
* ``miou``/``mdice``: mean over present classes; ``fwiou = sum_c f_c IoU_c`` with ``f_c`` the share of
  ground-truth pixels of class ``c``; ``pixel_accuracy = trace(M) / sum(M)``.
* Pixels whose ground truth is ``ignore_index`` are not counted.
* ``exclude_index`` (the WSSS convention, e.g. background in LUAD-HistoSeg): ground-truth pixels of that class
  are left out like ignored pixels, and the class is left out of every mean (its per-class values are ``None``).
  Predictions of that class on other pixels still count as errors for the true class.

Undefined scalars (no scored pixel at all) are ``None`` so ``metrics.json`` stays valid JSON.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["ConfusionMatrix", "metrics_from_confusion", "segmentation_metrics", "to_numpy"]


def to_numpy(x: Any) -> np.ndarray:
    """Turn a numpy array, torch tensor or nested list into a numpy array (no copy when possible)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        return np.asarray(x.detach().cpu().numpy())
    return np.asarray(x)


def _as_labels(x: Any, what: str) -> np.ndarray:
    arr = to_numpy(x)
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{what} must hold integer class indices, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _none_if_nan(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in values]


def _mean_or_none(values: np.ndarray) -> float | None:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else None


def metrics_from_confusion(matrix: np.ndarray, exclude_index: int | None = None) -> dict[str, Any]:
    """All segmentation metrics from a ``[K, K]`` confusion matrix (rows = ground truth, columns = prediction).

    Args:
        matrix: Pixel counts. Rows of ``exclude_index`` should already be zero (see :class:`ConfusionMatrix`).
        exclude_index: A class left out of the means; its per-class values are ``None``.

    Returns:
        ``iou_per_class``, ``dice_per_class`` (lists, ``None`` for absent or excluded classes), ``miou``,
        ``mdice``, ``fwiou``, ``pixel_accuracy``, ``num_pixels``, ``present_classes``.
    """
    m = np.asarray(matrix, dtype=np.float64)
    k = m.shape[0]
    tp = np.diag(m)
    gt = m.sum(axis=1)
    pr = m.sum(axis=0)
    union = gt + pr - tp
    present = union > 0
    if exclude_index is not None and 0 <= exclude_index < k:
        present[exclude_index] = False
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(present, tp / np.where(union > 0, union, 1), np.nan)
        dice = np.where(present, 2 * tp / np.where(gt + pr > 0, gt + pr, 1), np.nan)
    total = m.sum()
    gt_scored = np.where(present, gt, 0.0)
    fwiou = float((gt_scored / gt_scored.sum() * np.nan_to_num(iou)).sum()) if gt_scored.sum() > 0 else None
    return {
        "iou_per_class": _none_if_nan(iou),
        "dice_per_class": _none_if_nan(dice),
        "miou": _mean_or_none(iou),
        "mdice": _mean_or_none(dice),
        "fwiou": fwiou,
        "pixel_accuracy": float(tp.sum() / total) if total > 0 else None,
        "num_pixels": int(total),
        "present_classes": [int(c) for c in np.flatnonzero(present)],
    }


class ConfusionMatrix:
    """A streaming confusion matrix over a whole data set.

    Args:
        num_classes: Number of classes ``K``; labels are ``0 .. K-1``.
        ignore_index: Ground-truth value of unlabeled pixels (not counted). Predictions must be valid classes.
        exclude_index: Optional class left out of the means; ground-truth pixels of that class are not counted.

    Example:
        >>> cm = ConfusionMatrix(2)
        >>> cm.update(np.array([0, 1, 1]), np.array([0, 1, 0]))
        >>> cm.compute()["miou"]
        0.5
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255, exclude_index: int | None = None) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.exclude_index = exclude_index
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def reset(self) -> None:
        """Set every count back to zero."""
        self.matrix[:] = 0

    def update(self, pred: Any, target: Any) -> None:
        """Add the pixels of one prediction/ground-truth pair (any equal shapes; numpy or torch integers).

        Raises:
            ValueError: Shapes differ, or a label outside ``0 .. K-1`` (other than ``ignore_index`` in the target).
            TypeError: Non-integer arrays.
        """
        p = _as_labels(pred, "pred")
        t = _as_labels(target, "target")
        if p.shape != t.shape:
            raise ValueError(f"pred and target shapes differ: {p.shape} vs {t.shape}")
        p = p.ravel()
        t = t.ravel()
        valid = np.ones(t.shape, dtype=bool) if self.ignore_index is None else t != self.ignore_index
        if self.exclude_index is not None:
            valid &= t != self.exclude_index
        p = p[valid]
        t = t[valid]
        k = self.num_classes
        if t.size and (t.min() < 0 or t.max() >= k):
            raise ValueError(f"target holds labels outside 0..{k - 1} (and not ignore_index {self.ignore_index})")
        if p.size and (p.min() < 0 or p.max() >= k):
            raise ValueError(f"pred holds labels outside 0..{k - 1} at labelled pixels")
        self.matrix += np.bincount(t * k + p, minlength=k * k).reshape(k, k)

    def merge(self, other: ConfusionMatrix) -> None:
        """Add another accumulator's counts (e.g. from another worker)."""
        if other.matrix.shape != self.matrix.shape:
            raise ValueError("confusion matrices of different sizes")
        self.matrix += other.matrix

    def compute(self) -> dict[str, Any]:
        """The metrics of everything added so far (see :func:`metrics_from_confusion`)."""
        return metrics_from_confusion(self.matrix, self.exclude_index)


def _pairs(pred: Any, target: Any) -> Iterable[tuple[Any, Any]]:
    if target is None:
        return pred  # an iterable of (pred, target) pairs
    if isinstance(pred, list | tuple) and isinstance(target, list | tuple):
        if len(pred) != len(target):
            raise ValueError(f"got {len(pred)} predictions but {len(target)} targets")
        return zip(pred, target)
    return [(pred, target)]


def segmentation_metrics(
    pred: Any,
    target: Any,
    num_classes: int,
    ignore_index: int | None = 255,
    exclude_index: int | None = None,
) -> dict[str, Any]:
    """Segmentation metrics over one image or a whole data set.

    Args:
        pred: Predicted class indices: an integer array/tensor, a list of them, or (with ``target=None``) an
            iterable of ``(pred, target)`` pairs.
        target: Ground truth of the same shape(s) as ``pred``, or ``None`` when ``pred`` yields pairs.
        num_classes: Number of classes.
        ignore_index: Ground-truth value of unlabeled pixels.
        exclude_index: Class left out of the means, ground-truth pixels of it not counted (WSSS convention).

    Returns:
        See :func:`metrics_from_confusion`; also ``confusion_matrix`` as a nested list.
    """
    cm = ConfusionMatrix(num_classes, ignore_index=ignore_index, exclude_index=exclude_index)
    for p, t in _pairs(pred, target):
        cm.update(p, t)
    out = cm.compute()
    out["confusion_matrix"] = cm.matrix.tolist()
    return out
