"""``pathseg data patchify``: cut a segmentation data set into patches with patch-level labels.

Each patch of ``size`` x ``size`` pixels (step ``stride``, default ``size``; a last patch is aligned with the
right/bottom border so the whole image is covered) gets label 1 for every class covering at least
``min_fraction`` of the patch's labelled (non-ignored) pixels. Patches without any labelled pixel are dropped;
images smaller than ``size`` are skipped.

Output: a ``patch_labels`` data set with the same classes (and ``exclude_index``), ``<split>/labels.csv`` with one
0/1 column per class (all classes but ``exclude_index``), and the true masks kept in ``<split>/masks/`` for every
split whose name does not start with ``train`` (validation and test), so WSSS methods can be evaluated there;
``--keep-train-masks`` keeps them for training splits too, so that pseudo masks can be scored against the truth
(WSSS training reads only ``labels.csv``).
Patch ids are ``<image id>_y<row>_x<col>``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from pathseg.errors import ConfigError, DataError


@dataclass
class PatchifyConfig:
    """Cut a segmentation data set into labelled patches (a patch_labels data set)."""

    root: Path = field(metadata={"positional": True, "help": "segmentation data set directory"})
    out: Path = field(metadata={"help": "output data set directory"})
    size: int = field(default=224, metadata={"help": "patch side in pixels"})
    min_fraction: float = field(default=0.05, metadata={"help": "fraction of labelled pixels a class needs"})
    stride: int | None = field(default=None, metadata={"help": "step between patches (default: --size)"})
    splits: list[str] = field(default_factory=list, metadata={"help": "splits to cut (default: all)"})
    keep_train_masks: bool = field(
        default=False,
        metadata={"help": "also keep the true masks of training splits, to measure pseudo-mask quality only"},
    )
    overwrite: bool = field(default=False, metadata={"help": "replace an existing output directory"})

    def validate(self) -> None:
        """Check sizes and fractions."""
        if self.size < 1 or (self.stride is not None and self.stride < 1):
            raise ConfigError("--size and --stride must be positive")
        if not 0.0 < self.min_fraction <= 1.0:
            raise ConfigError(f"--min-fraction must be in (0, 1], got {self.min_fraction}")


def patch_starts(length: int, size: int, stride: int) -> list[int]:
    """Start offsets covering ``[0, length)`` with windows of ``size`` (the last one aligned with the end)."""
    if length < size:
        return []
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


def patch_labels(mask: np.ndarray, classes: list[int], ignore_index: int, min_fraction: float) -> list[int] | None:
    """0/1 per class: covers at least ``min_fraction`` of the labelled pixels; None when none is labelled."""
    labelled = mask[mask != ignore_index]
    if labelled.size == 0:
        return None
    counts = np.bincount(labelled.ravel(), minlength=256)
    return [int(counts[c] / labelled.size >= min_fraction) for c in classes]


def patchify_dataset(cfg: PatchifyConfig) -> dict[str, int]:
    """Write the patch data set; returns the number of patches per split.

    Raises:
        DataError: The input is not a valid segmentation data set, or no patch could be cut.
    """
    from pathseg.data.check import check_dataset, raise_if_problems
    from pathseg.data.convert.base import write_labels
    from pathseg.data.layout import (
        image_path,
        list_ids,
        list_splits,
        mask_path,
        read_dataset_info,
        write_dataset_info,
    )
    from pathseg.io import read_mask, read_rgb, staging_dir, write_png

    info = read_dataset_info(cfg.root)
    if info.task not in ("segmentation", "instance"):
        raise DataError(f"patchify needs a segmentation or instance data set, this one is '{info.task}'",
                        Path(cfg.root) / "dataset.yaml")
    available = list_splits(cfg.root)
    splits = cfg.splits or available
    for s in splits:
        if s not in available:
            raise DataError(f"split '{s}' not found (have: {', '.join(available)})", cfg.root)
    stride = cfg.stride or cfg.size
    kept = [c for c in sorted(info.classes, key=lambda c: c.index) if c.index != info.exclude_index]
    out_info = replace(info, name=f"{info.name}-patches{cfg.size}", task="patch_labels",
                       source=f"pathseg data patchify {cfg.root} --size {cfg.size} --stride {stride} "
                              f"--min-fraction {cfg.min_fraction}")
    counts: dict[str, int] = {}
    palette = info.palette()
    with staging_dir(cfg.out, overwrite=cfg.overwrite) as tmp:
        for split in splits:
            keep_masks = cfg.keep_train_masks or not split.startswith("train")
            rows: list[list[str]] = []
            for sample_id in list_ids(cfg.root, split):
                mpath = mask_path(cfg.root, split, sample_id)
                if not mpath.is_file():
                    print(f"warning: {split}/{sample_id}: no mask, skipped", file=sys.stderr)
                    continue
                image, mask = read_rgb(image_path(cfg.root, split, sample_id)), read_mask(mpath)
                if image.shape[:2] != mask.shape:
                    raise DataError("mask size differs from image size", mpath)
                for y in patch_starts(mask.shape[0], cfg.size, stride):
                    for x in patch_starts(mask.shape[1], cfg.size, stride):
                        m = mask[y: y + cfg.size, x: x + cfg.size]
                        labels = patch_labels(m, [c.index for c in kept], info.ignore_index, cfg.min_fraction)
                        if labels is None:
                            continue
                        pid = f"{sample_id}_y{y}_x{x}"
                        write_png(tmp / split / "images" / f"{pid}.png", image[y: y + cfg.size, x: x + cfg.size])
                        if keep_masks:
                            write_png(tmp / split / "masks" / f"{pid}.png", m, palette=palette)
                        rows.append([pid, *map(str, labels)])
            if not rows:
                raise DataError(f"split '{split}': no patch of {cfg.size}x{cfg.size} pixels could be cut",
                                Path(cfg.root) / split)
            write_labels(tmp / split / "labels.csv", ["id", *(c.name for c in kept)], rows)
            counts[split] = len(rows)
        write_dataset_info(tmp, out_info)
        raise_if_problems(check_dataset(tmp), shown_root=Path(cfg.out))
    return counts


def patchify_command(cfg: PatchifyConfig) -> int:
    """CLI: write the patch data set and print the patches per split."""
    counts = patchify_dataset(cfg)
    for split, n in counts.items():
        print(f"  {split}: {n} patches")
    print(f"wrote {cfg.out}: {sum(counts.values())} patches of {cfg.size}x{cfg.size}")
    return 0
