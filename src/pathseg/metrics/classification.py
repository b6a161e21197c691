"""Image-level classification metrics: accuracy, balanced accuracy, macro F1 and one-vs-rest AUC.

No scikit-learn: AUC is the Mann–Whitney statistic computed from average ranks (ties count one half),
``AUC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg)`` with ``R_pos`` the sum of the positives' ranks.

* ``accuracy``: share of samples whose arg-max score is the true class.
* ``balanced_accuracy``: mean recall over the classes that occur in ``y_true``.
* ``macro_f1``: mean of ``F1_c = 2 TP / (2 TP + FP + FN)`` over classes occurring in ``y_true`` or the prediction.
* ``auc``: binary: AUC of the positive-class score; multi-class: mean one-vs-rest AUC over classes that have both
  positives and negatives in ``y_true`` (``None`` if none has).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pathseg.metrics.segmentation import to_numpy

__all__ = ["binary_auc", "classification_metrics", "rankdata"]


def rankdata(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``, ties given their average rank (like ``scipy.stats.rankdata``)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    order = np.argsort(x, kind="mergesort")
    sx = x[order]
    # boundaries of runs of equal values
    starts = np.r_[True, sx[1:] != sx[:-1]]
    run_id = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    ends = np.r_[first[1:], sx.size]
    avg = (first + ends + 1) / 2.0  # mean of 1-based positions first+1 .. ends
    ranks = np.empty_like(sx)
    ranks[order] = avg[run_id]
    return ranks


def binary_auc(is_positive: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve of ``score`` for the boolean labels ``is_positive``; ``None`` if one side is empty."""
    pos = np.asarray(is_positive, dtype=bool).ravel()
    n_pos = int(pos.sum())
    n_neg = pos.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(score)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def classification_metrics(y_true: Any, y_score: Any, num_classes: int | None = None) -> dict[str, Any]:
    """Classification metrics from true labels and per-class scores.

    Args:
        y_true: ``[N]`` integer labels.
        y_score: ``[N, C]`` class probabilities (or logits: only their order matters), or ``[N]`` scores of
            class 1 in a binary task.
        num_classes: Number of classes; default ``C`` (2 for 1-D scores).

    Returns:
        ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``auc``, ``auc_per_class`` (``None`` where undefined),
        ``confusion_matrix`` (rows = truth) and ``num_samples``.
    """
    y = to_numpy(y_true).astype(np.int64).ravel()
    s = to_numpy(y_score).astype(np.float64)
    if s.ndim == 1:
        s = np.stack([1.0 - s, s], axis=1)
    if s.ndim != 2 or s.shape[0] != y.size:
        raise ValueError(f"y_score must be [N, C] or [N] with N = {y.size}, got shape {s.shape}")
    k = num_classes if num_classes is not None else s.shape[1]
    if s.shape[1] != k:
        raise ValueError(f"y_score has {s.shape[1]} columns but num_classes is {k}")
    if y.size and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"y_true holds labels outside 0..{k - 1}")
    n = y.size
    pred = s.argmax(axis=1) if n else y
    cm = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    in_truth = support > 0
    f1_defined = (support + predicted) > 0
    recall = tp[in_truth] / support[in_truth]
    f1 = 2 * tp[f1_defined] / (support + predicted)[f1_defined]
    auc_per_class = [binary_auc(y == c, s[:, c]) for c in range(k)]
    defined = [a for a in auc_per_class if a is not None]
    auc = auc_per_class[1] if k == 2 else (float(np.mean(defined)) if defined else None)
    return {
        "accuracy": float(tp.sum() / n) if n else None,
        "balanced_accuracy": float(recall.mean()) if recall.size else None,
        "macro_f1": float(f1.mean()) if f1.size else None,
        "auc": auc,
        "auc_per_class": auc_per_class,
        "confusion_matrix": cm.tolist(),
        "num_samples": int(n),
    }
