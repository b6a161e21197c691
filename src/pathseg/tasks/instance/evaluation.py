"""Test-time evaluation of an instance model, predicted instance maps (TIFF) and contour pictures.

:func:`evaluate_instance` predicts every whole image of a data set one at a time, scores it with
:func:`pathseg.metrics.instance_metrics`, averages the split (:func:`aggregate_instance_metrics`: mean over images +
``object_f1_pooled``) and, for models with scored instances (Mask R-CNN), adds COCO box/mask AP. Predictions can
be written as ``<pred_dir>/<id>.tif`` (the same integer TIFF as the ground truth) while evaluating.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pathseg.io import atomic_path
from pathseg.metrics.accumulate import InstanceMetricAccumulator
from pathseg.metrics.coco import CocoAccumulator
from pathseg.tasks.instance.dataset import InstanceDataset

Example = tuple[str, np.ndarray, np.ndarray, np.ndarray]  # id, image uint8 [H, W, 3], true map, predicted map


def write_instance_map(path: str | os.PathLike[str], instances: np.ndarray) -> Path:
    """Write an instance map as a zlib-compressed integer TIFF (uint16, uint32 when needed), atomically."""
    import tifffile

    dtype = np.uint16 if int(instances.max(initial=0)) < 65536 else np.uint32
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, np.asarray(instances).astype(dtype), compression="zlib")
    return Path(path)


def denormalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``[3, H, W]`` normalised tensor → ``uint8 [H, W, 3]``."""
    m = torch.tensor(list(mean)).view(-1, 1, 1)
    s = torch.tensor(list(std)).view(-1, 1, 1)
    return ((x.cpu() * s + m).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()  # type: ignore[no-any-return]


@torch.no_grad()
def evaluate_instance(
    model: nn.Module,
    dataset: InstanceDataset,
    device: str | torch.device = "cpu",
    pred_dir: str | os.PathLike[str] | None = None,
    num_examples: int = 4,
    legacy_dice: bool = False,
    hausdorff: bool = True,
    max_dets: int = 100,
) -> tuple[dict[str, Any], list[Example]]:
    """Score ``model`` on every image of ``dataset`` (``train=False``: whole images).

    Args:
        model: A model with ``predict(images) -> list[InstancePrediction]``.
        dataset: The images and ground-truth instance maps.
        device: Where to run the model.
        pred_dir: If given, write each predicted instance map as ``pred_dir/<id>.tif``.
        num_examples: Images returned for pictures (the first ones).
        legacy_dice: ``dice`` with the UNIT +1 smoothing.
        hausdorff: Compute ``object_hausdorff``.
        max_dets: COCO ``maxDets`` of the AP (set it to at least the detections per image for nuclei).

    Returns:
        ``(metrics, examples)``: split metrics (plus ``box_ap`` … ``mask_ap75`` for scored instances and
        ``per_image`` metrics by id) and up to ``num_examples`` ``(id, image, true, pred)`` tuples.
    """
    model = model.to(device).eval()
    acc = InstanceMetricAccumulator(legacy_dice=legacy_dice, hausdorff=hausdorff)
    coco = CocoAccumulator(max_dets)
    scored = bool(getattr(model, "scores_instances", False))
    examples: list[Example] = []
    per_image: dict[str, dict[str, float | None]] = {}
    for i in range(len(dataset)):
        x, target = dataset[i]
        sid = dataset.ids[i]
        pred = model.predict(x[None].to(device))[0]  # type: ignore[operator]
        true = target["instances"].numpy()
        per_image[sid] = acc.update(pred.instances, true)
        if scored or pred.scored:
            scored = True
            coco.add(true, pred.crops, list(pred.scores), pred.boxes)
        if pred_dir is not None:
            write_instance_map(Path(pred_dir) / f"{sid}.tif", pred.instances)
        if len(examples) < num_examples:
            examples.append((sid, denormalise(x, dataset.mean, dataset.std), true, pred.instances))
    metrics = acc.compute()
    if scored:
        metrics.update(coco.compute())
    metrics["per_image"] = per_image
    return metrics, examples


def _palette(n: int = 256, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    colours = rng.integers(40, 256, (n, 3)).astype(np.uint8)
    colours[0] = 0
    return colours  # type: ignore[no-any-return]


def contour_overlay(image: np.ndarray, instances: np.ndarray, thickness: int = 1) -> np.ndarray:
    """``image`` with the inner contour of each instance drawn in a colour of its own (by id)."""
    from scipy import ndimage
    from skimage.segmentation import find_boundaries

    edge = find_boundaries(instances, mode="inner")
    if thickness > 1:
        edge = ndimage.binary_dilation(edge, iterations=thickness - 1) & (instances > 0)
    out = image.copy()
    pal = _palette()
    out[edge] = pal[1 + (instances[edge] - 1) % (len(pal) - 1)]
    return out


def plot_instance_examples(examples: Sequence[Example], path: str | os.PathLike[str], thickness: int = 0) -> bool:
    """One row per example: ground-truth contours | predicted contours over the image; ``False`` if none.

    ``thickness`` is the contour width in pixels (0: about 1/250 of the image's longer side, at least 2).
    """
    if not examples:
        return False
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(examples), 2, figsize=(8, 3.6 * len(examples)), squeeze=False)
    for row, (sid, image, true, pred) in zip(axes, examples):
        for ax, inst, name in ((row[0], true, "ground truth"), (row[1], pred, "prediction")):
            ax.imshow(contour_overlay(image, inst, thickness or max(2, round(max(image.shape[:2]) / 250))))
            ax.set_title(f"{sid}: {name} ({len(np.unique(inst)) - 1 if inst.any() else 0} objects)", fontsize=9)
            ax.axis("off")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    plt.close(fig)
    return True
