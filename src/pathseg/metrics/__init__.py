"""Evaluation metrics: segmentation (confusion-matrix based) and image-level classification.

See ``docs/metrics.md`` for the definitions and conventions.
"""

from pathseg.metrics.classification import binary_auc, classification_metrics
from pathseg.metrics.segmentation import ConfusionMatrix, metrics_from_confusion, segmentation_metrics

__all__ = [
    "ConfusionMatrix",
    "binary_auc",
    "classification_metrics",
    "metrics_from_confusion",
    "segmentation_metrics",
]
