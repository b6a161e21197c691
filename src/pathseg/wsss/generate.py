"""Pseudo-mask generation over a training split (spec §2): Grad-CAM → combination rule → palette PNGs.

Output: one canonical segmentation data set per layer, ``OUT/<layer>/dataset.yaml`` and
``OUT/<layer>/train/{images,masks}/<id>.png`` (images hard-linked or copied from the source). Masks are
written atomically, and images whose masks exist already are skipped, so an interrupted run resumes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from pathseg.data.layout import DatasetInfo, image_path, mask_path, write_dataset_info
from pathseg.io import read_mask, write_png
from pathseg.metrics import ConfusionMatrix
from pathseg.wsss.classifier import MultiLabelClassifier
from pathseg.wsss.config import PseudoConfig
from pathseg.wsss.data import PatchLabelSet, has_masks
from pathseg.wsss.gradcam import grad_cams
from pathseg.wsss.pseudo_masks import background_rule, combine, crf_refine, require_crf, white_background

log = logging.getLogger(__name__)

TRAIN_SPLIT = "train"


def uses_background(cfg: PseudoConfig, info: DatasetInfo) -> bool:
    """Whether the white-pixel background rule applies (see :func:`pathseg.wsss.pseudo_masks.background_rule`)."""
    return background_rule(cfg.background, info)


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def generate_pseudo_masks(
    model: MultiLabelClassifier, root: Path, info: DatasetInfo, cfg: PseudoConfig, out: Path, normalize: str,
    device: str = "cpu",
) -> dict[str, Any]:
    """Write the pseudo masks of every configured layer and measure them against true masks if any.

    Returns:
        ``{"num_images", "background_fraction", "quality": {layer: metrics} (when true masks exist)}``.
    """
    bg = uses_background(cfg, info)
    if bg and info.exclude_index is None:
        from pathseg.errors import ConfigError

        raise ConfigError("pseudo.background=white needs a data set with an exclude_index (the background class)")
    if cfg.crf:
        require_crf()
    ds = PatchLabelSet(root, TRAIN_SPLIT, info, normalize=normalize, augment=False, max_items=cfg.max_images)
    for layer in cfg.layers:
        layer_info = dataclasses.replace(info, name=f"{info.name}-pm-{layer}", task="segmentation",
                                         source=f"MLPS pseudo masks ({layer}) of {root}")
        write_dataset_info(out / layer, layer_info)
    todo = [i for i in range(len(ds))
            if not all(mask_path(out / layer, TRAIN_SPLIT, ds.ids[i]).is_file() for layer in cfg.layers)]
    log.info("pseudo: %d patches, %d done already, layers %s", len(ds), len(ds) - len(todo), cfg.layers)
    palette = info.palette()
    model = model.to(device).eval()
    white_pixels = total_pixels = 0
    loader = DataLoader(torch.utils.data.Subset(ds, todo), batch_size=cfg.batch_size, shuffle=False)
    for b, batch in enumerate(loader):
        cams = grad_cams(model, batch["image"].to(device), cfg.layers)
        for j, idx in enumerate(batch["index"].tolist()):
            rgb = ds.rgb(idx)
            white = white_background(rgb, cfg.white_threshold, cfg.white_min_size) if bg else None
            if white is not None:
                white_pixels += int(white.sum())
            total_pixels += rgb.shape[0] * rgb.shape[1]
            labels = ds.labels[idx]
            for layer in cfg.layers:
                g = cams[layer][j].cpu().numpy()
                if cfg.crf:
                    pm = crf_refine(rgb, g, labels, white, info.exclude_index, cfg.crf_iterations)
                else:
                    pm = combine(g, labels, white, info.exclude_index, info.ignore_index, parity=cfg.parity)
                write_png(mask_path(out / layer, TRAIN_SPLIT, ds.ids[idx]), pm, palette=palette)
                _link_or_copy(image_path(root, TRAIN_SPLIT, ds.ids[idx]),
                              out / layer / TRAIN_SPLIT / "images" / image_path(root, TRAIN_SPLIT, ds.ids[idx]).name)
        if (b + 1) % 10 == 0 or b + 1 == len(loader):
            log.info("  pseudo: %d/%d patches", min((b + 1) * cfg.batch_size, len(todo)), len(todo))
    result: dict[str, Any] = {"num_images": len(ds)}
    if bg and total_pixels:
        result["background_fraction"] = white_pixels / total_pixels
    if has_masks(root, TRAIN_SPLIT):
        result["quality"] = pseudo_mask_quality(root, info, ds.ids, out, cfg.layers)
    return result


def pseudo_mask_quality(
    root: Path, info: DatasetInfo, ids: list[str], out: Path, layers: list[str]
) -> dict[str, dict[str, Any]]:
    """Per-layer WSSS metrics of the pseudo masks against the true training masks (pixels a pseudo mask leaves
    as ``ignore`` are not counted; their share is reported as ``ignored_fraction``)."""
    quality = {}
    for layer in layers:
        cm = ConfusionMatrix(info.num_classes, ignore_index=info.ignore_index, exclude_index=info.exclude_index)
        ignored = counted = 0
        for sid in ids:
            true_path = mask_path(root, TRAIN_SPLIT, sid)
            if not true_path.is_file():
                continue
            target = read_mask(true_path).astype(np.int64)
            pm = read_mask(mask_path(out / layer, TRAIN_SPLIT, sid)).astype(np.int64)
            unknown = pm == info.ignore_index
            ignored += int(unknown.sum())
            counted += pm.size
            cm.update(np.where(unknown, 0, pm), np.where(unknown, info.ignore_index, target))
        metrics = cm.compute()
        metrics["ignored_fraction"] = ignored / counted if counted else None
        quality[layer] = metrics
    return quality
