"""``pathseg data check``: validate a canonical data set and summarise it.

Every problem is collected with its file (nothing stops at the first one). Checked: ``dataset.yaml`` is valid;
every image decodes; ids are unique across suffixes; each split has images; images and masks pair up and have
the same size; mask values are class indices or ``ignore_index``; instance maps are integer label maps of the
image's size; ``labels.csv`` ids exist and its values are valid for the task.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pathseg.data.check_report import (
    CheckReport,
    Problem,
    SplitStats,
    format_report,
    raise_if_problems,
    summary,
)
from pathseg.data.layout import (
    IMAGE_SUFFIXES,
    DatasetInfo,
    read_dataset_info,
    read_labels_csv,
)
from pathseg.data.validate import class_warnings, mask_values_problem, size_problem, validate_for_training
from pathseg.errors import DataError, PathsegError

__all__ = ["CheckConfig", "CheckReport", "Problem", "SplitStats", "check_command", "check_dataset", "format_report",
           "raise_if_problems", "summary", "validate_for_training"]

LABELLED_TASKS = ("segmentation", "instance")


def _files_by_id(folder: Path, suffixes: tuple[str, ...], report: CheckReport) -> dict[str, Path]:
    """Map id -> file in ``folder``; several files with one id (``a.png`` and ``a.jpg``) are a problem."""
    found: dict[str, list[Path]] = {}
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes:
                found.setdefault(p.stem, []).append(p)
    for sample_id, paths in found.items():
        if len(paths) > 1:
            report.add(paths[1], f"id '{sample_id}' appears with several suffixes: {', '.join(p.name for p in paths)}")
    return {k: v[0] for k, v in found.items()}


def _image_size(path: Path, report: CheckReport) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode not in {"RGB", "RGBA", "L", "P", "CMYK", "I;16", "I", "LA"}:
                report.add(path, f"unexpected image mode {img.mode}")
            return img.size[1], img.size[0]
    except (OSError, SyntaxError, ValueError) as exc:
        report.add(path, f"cannot decode image ({exc})")
        return None


def _read_instance_map(path: Path) -> np.ndarray:
    import tifffile

    try:
        arr = tifffile.imread(path)
    except Exception as exc:  # tifffile raises many types
        raise DataError(f"cannot decode TIFF ({exc})", path) from None
    return np.asarray(arr)


def _check_masks(
    split_dir: Path, images: dict[str, Path], sizes: dict[str, tuple[int, int]], info: DatasetInfo,
    stats: SplitStats, report: CheckReport, required: bool,
) -> None:
    from pathseg.io import read_mask

    folder = split_dir / "masks"
    if not folder.is_dir():
        if required:
            report.add(split_dir, f"no masks/ folder (a {info.task} data set needs a mask per image)")
        return
    masks = _files_by_id(folder, (".png",), report)
    valid = {c.index for c in info.classes} | {info.ignore_index}
    names = {c.index: c.name for c in info.classes}
    counts = np.zeros(256, dtype=np.int64)
    for sample_id in sorted(images):
        if sample_id not in masks:
            report.add(images[sample_id], "image has no mask (expected masks/" + sample_id + ".png)")
    for sample_id, path in sorted(masks.items()):
        if sample_id not in images:
            report.add(path, "mask has no image")
            continue
        try:
            mask = read_mask(path)
        except DataError as exc:
            report.add(path, exc.message)
            continue
        stats.masks += 1
        if _size_differs(path, "mask", mask.shape, sizes.get(sample_id), report):
            continue
        if mask.dtype != np.uint8:
            report.add(path, f"mask must be 8-bit, got {mask.dtype}")
            continue
        hist = np.bincount(mask.ravel(), minlength=256)
        bad = [int(v) for v in np.flatnonzero(hist) if int(v) not in valid]
        if bad:
            report.add(path, mask_values_problem(bad, sorted(names), info.ignore_index))
            continue
        counts += hist
    stats.class_pixels = {names[i]: int(counts[i]) for i in sorted(names)}
    stats.ignored_pixels = int(counts[info.ignore_index]) if 0 <= info.ignore_index < 256 else 0


def _size_differs(path: Path, what: str, shape: tuple[int, ...], image_shape: tuple[int, int] | None,
                  report: CheckReport) -> bool:
    """Report ``path`` when its ``shape`` differs from its image's ``(H, W)``; returns whether it did."""
    if image_shape is None or shape == image_shape:
        return False
    report.add(path, size_problem(what, shape, image_shape))
    return True


def _check_instances(split_dir: Path, images: dict[str, Path], sizes: dict[str, tuple[int, int]],
                     info: DatasetInfo, stats: SplitStats, report: CheckReport) -> None:
    folder = split_dir / "instances"
    if not folder.is_dir():
        return
    for sample_id, path in sorted(_files_by_id(folder, (".tif", ".tiff"), report).items()):
        if sample_id not in images:
            report.add(path, "instance map has no image")
            continue
        try:
            inst = _read_instance_map(path)
        except DataError as exc:
            report.add(path, exc.message)
            continue
        if inst.ndim != 2 or not np.issubdtype(inst.dtype, np.integer):
            report.add(path, f"instance map must be a 2-D integer array, got {inst.dtype} {inst.shape}")
            continue
        if _size_differs(path, "instance map", inst.shape, sizes.get(sample_id), report):
            continue
        if inst.size and int(inst.min()) < 0:
            report.add(path, "instance ids must be >= 0")
            continue
        ids = np.unique(inst)
        stats.instance_maps += 1
        stats.instances.append(int((ids > 0).sum()))
        sidecar = split_dir / "instance_classes" / f"{sample_id}.json"
        if sidecar.is_file():
            try:
                table = json.loads(sidecar.read_text(encoding="utf-8"))
                valid = {c.index for c in info.classes}
                if not isinstance(table, dict) or any(int(v) not in valid for v in table.values()):
                    report.add(sidecar, "instance classes must map instance ids to class indices")
            except (ValueError, TypeError) as exc:
                report.add(sidecar, f"invalid JSON ({exc})")


def _check_labels(split_dir: Path, images: dict[str, Path], info: DatasetInfo, stats: SplitStats,
                  report: CheckReport) -> None:
    path = split_dir / "labels.csv"
    if not path.is_file():
        if info.task == "classification":
            report.add(split_dir, "no labels.csv (a classification data set needs one per split)")
        elif info.task == "patch_labels" and not (split_dir / "masks").is_dir():
            report.add(split_dir, "no labels.csv and no masks/ (a patch_labels split needs one of them)")
        return
    try:
        header, rows = read_labels_csv(path)
    except DataError as exc:
        report.add(path, exc.message)
        return
    names = info.class_names
    tissue = [c.name for c in sorted(info.classes, key=lambda c: c.index) if c.index != info.exclude_index]
    by_index = {str(c.index): c.name for c in info.classes}
    if info.task == "classification" and header[1:] != ["label"]:
        report.add(path, f"classification labels.csv must have columns id,label; got {','.join(header)}")
        return
    if info.task == "patch_labels" and header[1:] != tissue:
        report.add(path, f"patch_labels columns must be id,{','.join(tissue)} (every class but exclude_index); "
                         f"got {','.join(header)}")
        return
    if info.task == "classification" or info.task == "patch_labels":
        for sample_id in sorted(set(images) - set(rows)):
            report.add(path, f"image '{sample_id}' has no row")
    counts: dict[str, Counter[str]] = {h: Counter() for h in header[1:]}
    for sample_id, row in rows.items():
        if sample_id not in images:
            report.add(path, f"id '{sample_id}' has no image in {split_dir.name}/images")
            continue
        for col, value in row.items():
            if info.task == "classification":
                value = by_index.get(value, value)
                if value not in names:
                    report.add(path, f"id '{sample_id}': label '{value}' is not a class ({', '.join(names)})")
                    continue
            elif info.task == "patch_labels" and value not in {"0", "1"}:
                report.add(path, f"id '{sample_id}': column '{col}' must be 0 or 1, got '{value}'")
                continue
            elif value == "":
                report.add(path, f"id '{sample_id}': empty value in column '{col}'")
                continue
            counts[col][value] += 1
    stats.label_counts = {col: dict(sorted(c.items())) for col, c in counts.items()}


def _check_split(root: Path, split: str, info: DatasetInfo, report: CheckReport, progress: bool) -> SplitStats:
    from tqdm import tqdm

    split_dir = root / split
    stats = SplitStats()
    images = _files_by_id(split_dir / "images", IMAGE_SUFFIXES, report)
    stats.images = len(images)
    if not images:
        report.add(split_dir / "images", f"split '{split}' has no images")
        return stats
    sizes: dict[str, tuple[int, int]] = {}
    for sample_id, path in tqdm(sorted(images.items()), desc=f"check {split}", disable=not progress, leave=False):
        size = _image_size(path, report)
        if size is not None:
            sizes[sample_id] = size
    required = info.task in LABELLED_TASKS
    _check_masks(split_dir, images, sizes, info, stats, report, required)
    if stats.masks:
        report.warnings += class_warnings(split, stats.class_pixels, stats.ignored_pixels, info.ignore_index)
    _check_instances(split_dir, images, sizes, info, stats, report)
    _check_labels(split_dir, images, info, stats, report)
    return stats


def check_dataset(root: str | os.PathLike[str], progress: bool = False) -> CheckReport:
    """Validate a data set in the canonical layout, collecting every problem.

    Args:
        root: The data set directory.
        progress: Show a progress bar while decoding images.

    Returns:
        The report; ``report.ok`` is true when nothing is wrong.
    """
    root = Path(root)
    report = CheckReport(root=root)
    if not root.is_dir():
        report.add(root, "data set directory not found")
        return report
    try:
        info = read_dataset_info(root)
        info.validate()
    except PathsegError as exc:
        report.add(exc.path or root / "dataset.yaml", exc.message)
        return report
    report.info = info
    if not info.classes and info.task != "unlabeled":
        report.add(root / "dataset.yaml", f"a {info.task} data set needs classes")
    splits = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "splits" and not p.name.startswith("."))
    if not splits:
        report.add(root, "no split folders (expected e.g. train/images/)")
    for split in splits:
        if not (root / split / "images").is_dir():
            report.add(root / split, "split folder has no images/ folder")
            continue
        report.splits[split] = _check_split(root, split, info, report, progress)
    return report


@dataclass
class CheckConfig:
    """Validate a data set in pathseg's canonical layout and print its statistics."""

    root: Path = field(metadata={"positional": True, "help": "data set directory"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})


def check_command(cfg: CheckConfig) -> int:
    """CLI: print statistics and return 0, or list the problems and exit 2."""
    report = check_dataset(cfg.root, progress=cfg.progress and sys.stderr.isatty())
    raise_if_problems(report)
    print(format_report(report))
    for line in report.warnings:
        print(f"warning: {line}", file=sys.stderr)
    print(f"ok: {cfg.root} is a valid data set")
    return 0


