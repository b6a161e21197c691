"""Colorectal tissue-class tiles: Kather 2016 (``kather2016``) and NCT-CRC-HE-100K / CRC-VAL-HE-7K (``nct-crc-he``).

Accepted source layouts (class folders -> classification; images re-saved as PNG):

* ``kather2016``: ``Kather_texture_2016_image_tiles_5000/<NN_CLASS>/*.tif`` (e.g. ``01_TUMOR``), or class folders
  directly under SRC (the re-packed copy), or split folders holding class folders. All tiles go to ``train``
  unless split folders are given. The official release has 625 tiles per class x 8 classes.
* ``nct-crc-he``: ``NCT-CRC-HE-100K/<CLASS>/*.tif`` (split ``train``) and ``CRC-VAL-HE-7K/<CLASS>/*.tif``
  (split ``test``), with classes ADI BACK DEB LYM MUC MUS NORM STR TUM; or class folders under SRC (``train``), or
  split folders holding class folders.

Output: task ``classification``, ``<split>/labels.csv`` with columns ``id,label`` (label = class name).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from pathseg.data.convert.base import (
    CONVERTERS,
    ConvertConfig,
    ConvertSummary,
    check_counts,
    image_files,
    progress,
    safe_id,
    save_image,
    write_labels,
)
from pathseg.data.layout import ClassInfo, DatasetInfo, write_dataset_info
from pathseg.errors import DataError

KATHER_CLASSES = ["tumor", "stroma", "complex", "lympho", "debris", "mucosa", "adipose", "empty"]
KATHER_PER_CLASS = 625
NCT_CLASSES = ["ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM"]
NCT_EXPECTED = {"train": 100_000, "test": 7_180}
KNOWN_SPLITS = {"train", "val", "valid", "validation", "test"}
NCT_FOLDERS = {"NCT-CRC-HE-100K": "train", "NCT-CRC-HE-100K-NONORM": "train", "CRC-VAL-HE-7K": "test"}
_COLORS = [(230, 25, 75), (245, 130, 48), (255, 225, 25), (60, 180, 75), (70, 240, 240), (0, 130, 200),
           (145, 30, 180), (240, 50, 230), (128, 128, 128)]


def kather_class(folder: str) -> str | None:
    """``01_TUMOR`` -> ``tumor``; None for folders that are not Kather class folders."""
    match = re.fullmatch(r"\d\d_([A-Za-z]+)", folder)
    return match.group(1).lower() if match and match.group(1).lower() in KATHER_CLASSES else None


def nct_class(folder: str) -> str | None:
    """``ADI`` -> ``ADI``; None for other folders."""
    return folder if folder in NCT_CLASSES else None


ToClass = Callable[[str], "str | None"]


def _class_dirs(d: Path, to_class: ToClass) -> dict[str, Path]:
    return {c: p for p in sorted(d.iterdir()) if p.is_dir() and (c := to_class(p.name)) is not None}


def _find_splits(src: Path, to_class: ToClass, named: dict[str, str]) -> dict[str, dict[str, Path]]:
    """``{split: {class: folder}}`` from class folders in SRC, in (named) split folders, or one level down."""
    for base in [src, *sorted(p for p in src.iterdir() if p.is_dir())]:
        direct = _class_dirs(base, to_class)
        if direct:
            return {named.get(base.name, "train"): direct}
        nested: dict[str, dict[str, Path]] = {}
        for p in sorted(base.iterdir()):
            found = _class_dirs(p, to_class) if p.is_dir() else {}
            if not found:
                continue
            split = named.get(p.name, p.name if p.name.lower() in KNOWN_SPLITS else "train")
            if split in nested:
                raise DataError(f"two folders of class folders map to split '{split}'", p)
            nested[split] = found
        if nested:
            return nested
    return {}


def _convert(src: Path, dst: Path, cfg: ConvertConfig, name: str, classes: list[str], to_class: ToClass,
             named: dict[str, str], info: DatasetInfo) -> ConvertSummary:
    splits = _find_splits(src, to_class, named)
    if not splits:
        raise DataError(f"no {name} class folders found (expected e.g. {classes[0]}/ folders of tiles)", src)
    summary = ConvertSummary()
    for split, class_dirs in splits.items():
        rows: list[list[str]] = []
        seen: dict[str, Path] = {}
        files = [(c, f) for c, d in class_dirs.items() for f in image_files(d)]
        for cls, f in progress(files, f"{name} {split}", cfg):
            sample_id = safe_id(f.stem)
            if sample_id in seen:
                raise DataError(f"id '{sample_id}' is also the id of {seen[sample_id]}", f)
            seen[sample_id] = f
            save_image(f, dst / split / "images" / f"{sample_id}.png")
            rows.append([sample_id, cls])
        write_labels(dst / split / "labels.csv", ["id", "label"], rows)
        summary.counts[split] = len(rows)
        per_class = {c: sum(1 for r in rows if r[1] == c) for c in classes}
        summary.notes.append(f"{name} {split}: " + ", ".join(f"{c} {n}" for c, n in per_class.items()))
        if name == "kather2016" and any(n != KATHER_PER_CLASS for n in per_class.values()):
            summary.warnings.append(f"kather2016 {split}: {len(rows)} tiles, the official release has "
                                    f"{KATHER_PER_CLASS} per class ({KATHER_PER_CLASS * len(classes)})")
    write_dataset_info(dst, info)
    return summary


@CONVERTERS.register("kather2016")
def convert_kather2016(src: Path, dst: Path, cfg: ConvertConfig) -> ConvertSummary:
    """Convert Kather 2016 colorectal texture tiles (8 classes)."""
    info = DatasetInfo(name="kather2016", task="classification",
                       classes=[ClassInfo(c, i, _COLORS[i]) for i, c in enumerate(KATHER_CLASSES)], mpp=0.495,
                       source=f"Kather et al. 2016 texture tiles from {src}", licence="CC BY 4.0")
    return _convert(src, dst, cfg, "kather2016", KATHER_CLASSES, kather_class, {}, info)


@CONVERTERS.register("nct-crc-he")
def convert_nct(src: Path, dst: Path, cfg: ConvertConfig) -> ConvertSummary:
    """Convert NCT-CRC-HE-100K (train) and CRC-VAL-HE-7K (test), 9 classes."""
    info = DatasetInfo(name="nct-crc-he", task="classification",
                       classes=[ClassInfo(c, i, _COLORS[i]) for i, c in enumerate(NCT_CLASSES)], mpp=0.5,
                       source=f"NCT-CRC-HE-100K / CRC-VAL-HE-7K (Kather et al. 2019) from {src}",
                       licence="CC BY 4.0")
    summary = _convert(src, dst, cfg, "nct-crc-he", NCT_CLASSES, nct_class, NCT_FOLDERS, info)
    check_counts(summary, "nct-crc-he", NCT_EXPECTED)
    return summary
