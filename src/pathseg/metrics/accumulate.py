"""Split-level instance metrics: the mean over images of :func:`pathseg.metrics.instance.instance_scores` plus the
pooled object F1, image by image (:class:`InstanceMetricAccumulator`) and across data-parallel ranks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pathseg.metrics.instance import KEYS, _f1, instance_scores


def aggregate_instance_metrics(
    per_image: Sequence[dict[str, float | None]], counts: Sequence[tuple[int, int, int]]
) -> dict[str, Any]:
    """Split-level metrics: the mean over images of every key (images where it is ``None`` skipped), plus
    ``object_f1_pooled`` from the TP/FP/FN summed over the split, ``num_images`` and ``num_objects``."""
    out: dict[str, Any] = {}
    for key in KEYS:
        vals = [float(m[key]) for m in per_image if m.get(key) is not None]  # type: ignore[arg-type]
        out[key] = float(np.mean(vals)) if vals else None
    tp, fp, fn = (int(sum(c[i] for c in counts)) for i in range(3))
    out["object_f1_pooled"] = _f1(tp, fp, fn) if (tp + fp + fn) else (1.0 if counts else None)
    out.update(num_images=len(per_image), num_objects=tp + fn, num_predicted=tp + fp)
    return out


class InstanceMetricAccumulator:
    """Collects :func:`instance_scores` image by image; :meth:`compute` gives :func:`aggregate_instance_metrics`.

    Under data-parallel validation each process sees a shard of the images; :meth:`sync` gathers every process's
    images so that :meth:`compute` scores the whole split on every rank. Images are identified by the ``key`` given
    to :meth:`update` (the data set index), which also removes the copies that a distributed sampler adds to make
    the shards equal.
    """

    def __init__(self, legacy_dice: bool = False, hausdorff: bool = True) -> None:
        self.legacy_dice = legacy_dice
        self.hausdorff = hausdorff
        self.reset()

    def reset(self) -> None:
        """Forget every image."""
        self.per_image: list[dict[str, float | None]] = []
        self.counts: list[tuple[int, int, int]] = []
        self.keys: list[int | None] = []

    def update(self, pred: np.ndarray, true: np.ndarray, key: int | None = None) -> dict[str, float | None]:
        """Score one image (``key``: its data set index, for :meth:`sync`); returns its metrics."""
        m, c = instance_scores(pred, true, legacy_dice=self.legacy_dice, hausdorff=self.hausdorff)
        self.per_image.append(m)
        self.counts.append(c)
        self.keys.append(key)
        return m

    def sync(self) -> None:
        """Replace this process's images by those of all processes (no-op without ``torch.distributed``).

        Images with a key are kept once each, in key order; images without one are all kept, in rank order.
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        states: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(states, (self.keys, self.per_image, self.counts))
        self.reset()
        seen: dict[int, tuple[dict[str, float | None], tuple[int, int, int]]] = {}
        for keys, per_image, counts in states:
            for key, m, c in zip(keys, per_image, counts):
                if key is None:
                    self.keys.append(None)
                    self.per_image.append(m)
                    self.counts.append(tuple(c))  # type: ignore[arg-type]
                else:
                    seen.setdefault(int(key), (m, tuple(c)))  # type: ignore[arg-type]
        for key in sorted(seen):
            self.keys.append(key)
            self.per_image.append(seen[key][0])
            self.counts.append(seen[key][1])

    def compute(self) -> dict[str, Any]:
        """Split-level metrics of the images so far."""
        return aggregate_instance_metrics(self.per_image, self.counts)
