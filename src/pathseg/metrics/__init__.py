"""Evaluation metrics: segmentation (confusion-matrix based), image-level classification and instances.

See ``docs/metrics.md`` for the definitions and conventions.
"""

from pathseg.metrics.accumulate import InstanceMetricAccumulator, aggregate_instance_metrics
from pathseg.metrics.classification import binary_auc, classification_metrics
from pathseg.metrics.coco import coco_ap
from pathseg.metrics.instance import instance_metrics
from pathseg.metrics.segmentation import ConfusionMatrix, metrics_from_confusion, segmentation_metrics

__all__ = [
    "ConfusionMatrix",
    "InstanceMetricAccumulator",
    "aggregate_instance_metrics",
    "binary_auc",
    "classification_metrics",
    "coco_ap",
    "instance_metrics",
    "metrics_from_confusion",
    "segmentation_metrics",
]
